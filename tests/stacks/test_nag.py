"""cdk-nag runs on the whole app: the real app synthesizes clean, and a violation is caught."""
import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3

from stacks.app_stacks import build_stacks
from stacks.config import AppConfig


def test_unacknowledged_finding_fails_synthesis():
    app = cdk.App()
    stacks = build_stacks(app, AppConfig())
    s3.Bucket(stacks.storage, "Unencrypted", enforce_ssl=False)  # no SSL policy, no logs: AwsSolutions-S1/S10
    with pytest.raises(RuntimeError, match=r"ValidationFailed(.|\n)*Storage/Unencrypted(.|\n)*AwsSolutions-S10"):
        app.synth()


def test_every_acknowledgement_names_a_reason(app_stacks):
    from aws_cdk import Validations

    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    acknowledged = {}
    for stack in (app_stacks.storage, app_stacks.compute, app_stacks.training_job):
        for node in stack.node.find_all():
            for entry in node.node.metadata:
                if entry.type == key:
                    acknowledged.update({f"{node.node.path} {rule}": reason for rule, reason in entry.data.items()})
    assert len(acknowledged) >= 10
    assert all(len(reason) > 40 for reason in acknowledged.values()), acknowledged
    # each acknowledgement sits on one resource, never on a whole stack
    assert not [k for k in acknowledged if k.split(" ")[0] in ("Storage", "Network", "Compute", "TrainingJob-job-test")]
