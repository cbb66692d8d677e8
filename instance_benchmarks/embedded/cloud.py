"""The embedded default's cloud: moto's server on 127.0.0.1 with the trainfleet stacks deployed into it.

No AWS account is needed. The stacks are the same synthesized templates `cdk deploy` would deploy;
the only difference is the AMI parameters (moto has neither the Deep Learning AMI's nor Ubuntu's):
every image kind's is set to one parameter this module creates, pointing at one of moto's images.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from instance_benchmarks.embedded.deploy import deploy, synthesize
from instance_benchmarks.embedded.moto_server import MotoServer
from stacks.config import AppConfig

LOCAL_AMI_PARAMETER = "/trainfleet/local/ami-id"


def local_config(config: AppConfig | None = None) -> AppConfig:
    """`config` (default: the defaults) with every image kind's AMI parameter set to LOCAL_AMI_PARAMETER and
    the default security group left as it is (restricting it takes a Lambda-backed custom resource, which
    moto cannot run)."""
    config = config or AppConfig()
    images = {kind: replace(image, ami_parameter=LOCAL_AMI_PARAMETER) for kind, image in config.images.items()}
    return replace(config, images=images, restrict_default_security_group=False)


def register_local_ami(ec2, ssm, parameter: str = LOCAL_AMI_PARAMETER) -> str:
    image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ssm.put_parameter(Name=parameter, Value=image_id, Type="String", Overwrite=True)
    return image_id


@dataclass
class LocalCloud:
    """moto's server plus the deployed stacks' outputs."""

    server: MotoServer
    outputs: dict[str, dict[str, str]]

    def client(self, service: str):
        return self.server.client(service)


def start_local_cloud(config: AppConfig | None = None, region: str = "us-east-1") -> LocalCloud:
    """Synthesize (CDK, in a thread: mostly waiting on jsii's Node process) while moto's server starts and
    the AMI parameter is registered, then deploy the stacks into it."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdk-synth") as pool:
        synthesized = pool.submit(synthesize, local_config(config))
        server = MotoServer(region=region)
        try:
            server.start()
            register_local_ami(server.client("ec2"), server.client("ssm"))
            outputs = deploy(server.client("cloudformation"), synthesized.result())
        except BaseException:
            server.stop()
            raise
    return LocalCloud(server=server, outputs=outputs)
