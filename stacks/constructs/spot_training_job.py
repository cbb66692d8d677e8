"""One training instance launched from the compute stack's launch template with generated user data."""
from __future__ import annotations

from aws_cdk import Acknowledgment, Fn, Validations
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from instance_benchmarks.core.bootstrap import Bootstrap, build_user_data


class SpotTrainingJob(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        job_id: str,
        instance_type: str,
        bootstrap: Bootstrap,
        launch_template: ec2.LaunchTemplate,
        launch_template_version: str,
        machine_image: ec2.IMachineImage,
        subnet: ec2.ISubnet,
        burstable: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        image = machine_image.get_image(self)
        self.instance = ec2.CfnInstance(
            self,
            "Instance",
            instance_type=instance_type,
            image_id=image.image_id,
            subnet_id=subnet.subnet_id,
            launch_template=ec2.CfnInstance.LaunchTemplateSpecificationProperty(
                launch_template_id=launch_template.launch_template_id,
                version=launch_template_version,  # resolved from SSM at deploy, never an import (Compute's stack)
            ),
            user_data=Fn.base64(build_user_data(bootstrap)),
            # T family: standard credits, so a long CPU-bound job is throttled instead of billed for surplus credits
            credit_specification=ec2.CfnInstance.CreditSpecificationProperty(cpu_credits="standard")
            if burstable
            else None,
            tags=[
                {"key": "trainfleet:job", "value": job_id},
                {"key": "Name", "value": f"trainfleet-{job_id}"},
            ],
        )
        self.output_prefix = f"{bootstrap.prefix}/"
        reasons = {
            "AwsSolutions-EC26": "The root volume is encrypted by the launch template's block device mapping.",
            "AwsSolutions-EC28": "A short-lived training instance; metrics go to S3, detailed monitoring adds cost only.",
            "AwsSolutions-EC29": "Training instances terminate themselves when done; termination protection would defeat the watchdog.",
        }
        for rule, reason in reasons.items():
            Validations.of(self.instance).acknowledge(Acknowledgment(id=rule, reason=reason))
