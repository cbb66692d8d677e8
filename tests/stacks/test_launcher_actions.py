"""The launcher policy grants exactly core.contract.LAUNCHER_ACTIONS, the list `trainfleet doctor` simulates."""
from instance_benchmarks.core.contract import LAUNCHER_ACTIONS


def _as_list(value):
    return value if isinstance(value, list) else [value]


def test_the_launcher_policy_is_built_from_the_one_action_list(templates):
    policies = templates["compute"].find_resources("AWS::IAM::ManagedPolicy")
    launcher = [p for p in policies.values() if "trainfleet-launcher" in str(p["Properties"].get("ManagedPolicyName"))]
    assert len(launcher) == 1
    statements = launcher[0]["Properties"]["PolicyDocument"]["Statement"]
    granted = {s["Sid"]: tuple(_as_list(s["Action"])) for s in statements}
    assert granted == LAUNCHER_ACTIONS
