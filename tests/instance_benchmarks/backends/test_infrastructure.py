import json

import pytest

from instance_benchmarks.backends.infrastructure import resolve_infrastructure
from instance_benchmarks.core.errors import TrainfleetInputError

TEMPLATES = {
    "gpu": {"spot": "lt-0gpuspot", "on-demand": "lt-0gpuondemand", "root_volume_gib": 100},
    "cpu": {"spot": "lt-0cpuspot", "on-demand": "lt-0cpuondemand", "root_volume_gib": 30},
}
COMMON = {
    "/trainfleet/bucket-name": "trainfleet-bucket",
    "/trainfleet/subnet-ids": "subnet-a,subnet-b",
    "/trainfleet/security-group-id": "sg-1",
    "/trainfleet/instance-profile-arn": "arn:aws:iam::123456789012:instance-profile/p",
}


def _put(ssm, parameters: dict) -> None:
    for name, value in parameters.items():
        ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)


def _one_line_redeploy(info) -> None:
    message = str(info.value)
    assert "\n" not in message and "npx cdk deploy Storage Network Compute" in message


def test_reads_the_templates_per_image_and_market(ssm):
    _put(ssm, {**COMMON, "/trainfleet/launch-templates": json.dumps(TEMPLATES)})
    infra = resolve_infrastructure(ssm)
    assert infra.bucket == "trainfleet-bucket" and infra.subnet_ids == ("subnet-a", "subnet-b")
    assert infra.template_for("spot", "gpu") == "lt-0gpuspot"
    assert infra.template_for("on-demand", "gpu") == "lt-0gpuondemand"
    assert infra.template_for("spot", "cpu") == "lt-0cpuspot"
    assert infra.template_for("on-demand", "cpu") == "lt-0cpuondemand"
    assert (infra.root_volume_gib("gpu"), infra.root_volume_gib("cpu")) == (100, 30)
    assert dict(infra.launch_templates["cpu"]) == TEMPLATES["cpu"]


def test_an_image_the_stack_lacks_asks_to_redeploy(ssm):
    _put(ssm, {**COMMON, "/trainfleet/launch-templates": json.dumps({"gpu": TEMPLATES["gpu"]})})
    infra = resolve_infrastructure(ssm)
    with pytest.raises(TrainfleetInputError, match="no launch templates for the 'cpu' image") as info:
        infra.template_for("spot", "cpu")
    _one_line_redeploy(info)
    with pytest.raises(TrainfleetInputError):
        infra.root_volume_gib("cpu")
    with pytest.raises(ValueError, match="market"):
        infra.template_for("reserved", "gpu")


def test_nothing_deployed_says_deploy_first(ssm):
    with pytest.raises(TrainfleetInputError, match="not deployed in this account/region") as info:
        resolve_infrastructure(ssm)
    _one_line_redeploy(info)


def test_a_compute_stack_from_before_per_image_templates_asks_to_redeploy(ssm):
    _put(ssm, {**COMMON, "/trainfleet/launch-template/spot-id": "lt-old1",
               "/trainfleet/launch-template/on-demand-id": "lt-old2"})
    with pytest.raises(TrainfleetInputError, match="predates per-image launch templates") as info:
        resolve_infrastructure(ssm)
    _one_line_redeploy(info)


@pytest.mark.parametrize("value", [
    "lt-0123",                                                   # a bare id
    "{not json",
    json.dumps({}),
    json.dumps({"spot": "lt-1", "on-demand": "lt-2"}),           # one template pair, no image level
    json.dumps({"gpu": {"spot": "lt-1", "on-demand": "lt-2"}}),  # no root volume size
    json.dumps({"gpu": {"spot": "lt-1", "root_volume_gib": 100}}),
    json.dumps({"gpu": {"spot": "lt-1", "on-demand": "lt-2", "root_volume_gib": "100"}}),
])
def test_an_old_or_malformed_export_asks_to_redeploy(ssm, value):
    _put(ssm, {**COMMON, "/trainfleet/launch-templates": value})
    with pytest.raises(TrainfleetInputError, match="/trainfleet/launch-templates") as info:
        resolve_infrastructure(ssm)
    _one_line_redeploy(info)


def test_another_prefix(ssm):
    _put(ssm, {name.replace("/trainfleet", "/tf2"): value for name, value in
               {**COMMON, "/trainfleet/launch-templates": json.dumps(TEMPLATES)}.items()})
    assert resolve_infrastructure(ssm, "/tf2").template_for("spot", "cpu") == "lt-0cpuspot"
