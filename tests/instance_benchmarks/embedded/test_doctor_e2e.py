"""`trainfleet doctor --local` as a user runs it: its own process, moto's server with the stacks deployed; every
check passes, the ones moto cannot answer named as stubbed, the bootstrap stack as not checkable; exit 0."""
from tests.instance_benchmarks.embedded.local_cli import Command


def test_doctor_local_is_all_green_with_the_stubbed_checks_named(tmp_path):
    command = Command(tmp_path / "state", "doctor", "--local", "--campaign", "examples/campaign.yaml")
    code, out, err = command.finish()
    assert code == 0, (out, err)
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") == 5
            and line.split("│")[1].strip()}
    for name in ("credentials and region", "stack Storage", "stack Network", "stack Compute", "image parameters",
                 "artifact bucket", "spot service-linked role", "spot vCPU quotas", "on-demand vCPU quotas",
                 "launcher policy"):
        assert rows[name].split("│")[2].strip() == "ok", rows[name]
    assert rows["CDK bootstrap"].split("│")[2].strip() == "skip"
    assert out.count("stubbed on the embedded default") == 4
    assert "not checkable on the embedded default" in out and "ready: every check passed" in out
