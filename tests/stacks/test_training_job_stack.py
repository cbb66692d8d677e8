
from aws_cdk.assertions import Match


def _user_data(templates) -> str:
    instance = next(iter(templates["job"].find_resources("AWS::EC2::Instance").values()))
    parts = instance["Properties"]["UserData"]["Fn::Base64"]["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else "<BUCKET>" for p in parts)


def test_instance_uses_spot_template_and_catalog_type(templates):
    templates["job"].has_resource_properties("AWS::EC2::Instance", {
        "InstanceType": "p3.2xlarge",
        "LaunchTemplate": {"LaunchTemplateId": {"Fn::ImportValue": Match.string_like_regexp("SpotTemplate")}},
        "Tags": Match.array_with([{"Key": "trainfleet:job", "Value": "job-test"}]),
    })


def test_user_data_clones_runs_uploads_and_has_watchdog(templates):
    script = _user_data(templates)
    assert "shutdown -h +90 " in script
    assert "git remote add origin -- https://github.com/acme/train.git" in script
    assert "python3 training_scripts/tabular_mlp.py --epochs=3 || status=$?" in script
    assert "s3://<BUCKET>/jobs/job-test" in script
    assert "trap finish EXIT" in script


def test_outputs_name_the_job(templates):
    outputs = templates["job"].to_json()["Outputs"]
    assert outputs["JobId"]["Value"] == "job-test"
    assert outputs["OutputPrefix"]["Value"] == "jobs/job-test/"
