from dataclasses import replace

import pytest
from aws_cdk.assertions import Match, Template

from tests.stacks.conftest import JOB, build


def _user_data(templates) -> str:
    instance = next(iter(templates["job"].find_resources("AWS::EC2::Instance").values()))
    parts = instance["Properties"]["UserData"]["Fn::Base64"]["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else "<BUCKET>" for p in parts)


@pytest.fixture(scope="module")
def job_templates():
    """The TrainingJob template for a CPU type on demand and for a burstable type on spot."""
    return {
        instance_type: Template.from_stack(build(replace(JOB, instance_type=instance_type, spot=spot)).training_job)
        for instance_type, spot in (("c5.xlarge", False), ("t3.medium", True))
    }


def _instance(template) -> dict:
    (instance,) = template.find_resources("AWS::EC2::Instance").values()
    return instance["Properties"]


def test_instance_uses_gpu_spot_template_and_catalog_type(templates):
    templates["job"].has_resource_properties("AWS::EC2::Instance", {
        "InstanceType": "g5.xlarge",
        "LaunchTemplate": {"LaunchTemplateId": {"Fn::ImportValue": Match.string_like_regexp("ComputeGpuSpotTemplate")}},
        "Tags": Match.array_with([{"Key": "trainfleet:job", "Value": "job-test"}]),
    })
    parameters = templates["job"].to_json()["Parameters"]
    assert parameters[_instance(templates["job"])["ImageId"]["Ref"]]["Default"] == "/custom/gpu/ami"
    assert "CreditSpecification" not in _instance(templates["job"])


def test_cpu_type_uses_cpu_template_of_its_market(job_templates):
    template = job_templates["c5.xlarge"]
    properties = _instance(template)
    assert "ComputeCpuOnDemandTemplate" in properties["LaunchTemplate"]["LaunchTemplateId"]["Fn::ImportValue"]
    assert template.to_json()["Parameters"][properties["ImageId"]["Ref"]]["Default"] == "/custom/cpu/ami"
    assert "CreditSpecification" not in properties


def test_burstable_type_runs_with_standard_credits(job_templates):
    properties = _instance(job_templates["t3.medium"])
    assert properties["CreditSpecification"] == {"CPUCredits": "standard"}
    assert "ComputeCpuSpotTemplate" in properties["LaunchTemplate"]["LaunchTemplateId"]["Fn::ImportValue"]


def test_user_data_clones_runs_with_the_image_python_uploads_and_has_watchdog(templates, job_templates):
    script = _user_data(templates)
    assert "shutdown -h +90 " in script
    assert "git remote add origin -- https://github.com/acme/train.git" in script
    assert "\nPY=/opt/pytorch/bin/python\n" in script  # the DLAMI's PyTorch environment
    assert '"$PY" training_scripts/tabular_mlp.py --epochs=3 || status=$?' in script
    assert "'<BUCKET>' jobs/job-test \"$TRAINFLEET_ROOT/out\"" in script  # uploaded with boto3 to the bucket
    assert "trap finish EXIT" in script
    cpu = _user_data({"job": job_templates["c5.xlarge"]})
    assert "\nPY=python3\n" in cpu and '"$PY" -m venv --system-site-packages' in cpu  # Ubuntu's system python


def test_outputs_name_the_job(templates):
    outputs = templates["job"].to_json()["Outputs"]
    assert outputs["JobId"]["Value"] == "job-test"
    assert outputs["OutputPrefix"]["Value"] == "jobs/job-test/"


@pytest.fixture(scope="module")
def two_jobs():
    """Two jobs synthesized as they are deployed side by side: one app per `-c job_id=...`."""
    return {job_id: build(replace(JOB, job_id=job_id, instance_type="c5.xlarge")).training_job
            for job_id in ("alpha", "beta-2")}


def test_each_job_is_its_own_stack_with_its_own_output_prefix(two_jobs):
    assert {job_id: stack.stack_name for job_id, stack in two_jobs.items()} == {
        "alpha": "TrainingJob-alpha", "beta-2": "TrainingJob-beta-2"}
    for job_id, stack in two_jobs.items():
        template = Template.from_stack(stack)
        outputs = template.to_json()["Outputs"]
        assert outputs["JobId"]["Value"] == job_id and outputs["OutputPrefix"]["Value"] == f"jobs/{job_id}/"
        template.has_resource_properties("AWS::EC2::Instance", {
            "Tags": Match.array_with([{"Key": "trainfleet:job", "Value": job_id}])})
        assert f"' jobs/{job_id} \"$TRAINFLEET_ROOT/out\"" in _user_data({"job": template})


def test_user_data_installs_requirements_then_instance_requirements_and_pushes_its_log(two_jobs):
    script = _user_data({"job": Template.from_stack(two_jobs["alpha"])})
    assert "for file in requirements.txt requirements-instance.txt; do" in script
    assert '"$PY" -m pip install -q -r "$dir/$file"; break' in script
    assert script.index("requirements-instance.txt") < script.index('"$PY" training_scripts/tabular_mlp.py')
    assert "( while sleep 60; do \"$PY\" -c " in script and "jobs/alpha/bootstrap.log" in script
    assert 'kill "$LOG_PUSHER"' in script  # the final upload is not raced by the pusher


def test_a_job_id_that_cannot_name_a_stack_is_refused():
    from instance_benchmarks.core.bootstrap import job_stack_name
    from instance_benchmarks.core.errors import TrainfleetInputError

    with pytest.raises(TrainfleetInputError, match="job_id 'Bad_Id'"):
        job_stack_name("Bad_Id")


def test_no_stack_exports_a_launch_template_version(templates):
    """The launch templates' AMIs are resolved from SSM on every Compute deploy, so their latest version
    changes; CloudFormation refuses to change an exported value another stack imports ("Export ... cannot be
    updated as it is in use by TrainingJob-..."). So no version is exported: the job stack reads it from
    the SSM parameter the Compute stack writes, resolved when the job stack deploys."""
    import json

    exports = [o for t in templates.values() for o in t.to_json().get("Outputs", {}).values() if "Export" in o]
    assert exports and not [o for o in exports if "LatestVersionNumber" in json.dumps(o["Value"])]
    job = templates["job"].to_json()
    version = _instance(templates["job"])["LaunchTemplate"]["Version"]
    assert "Fn::ImportValue" not in json.dumps(version)
    parameter = job["Parameters"][version["Ref"]]
    assert parameter["Type"] == "AWS::SSM::Parameter::Value<String>"
    assert parameter["Default"] == "/trainfleet/launch-template-versions/gpu-spot"
    written = {p["Properties"]["Name"]: p["Properties"]["Value"]
               for p in templates["compute"].find_resources("AWS::SSM::Parameter").values()}
    value = written["/trainfleet/launch-template-versions/gpu-spot"]
    assert value["Fn::GetAtt"][1] == "LatestVersionNumber" and "GpuSpot" in value["Fn::GetAtt"][0]
