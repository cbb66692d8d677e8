"""The embedded default: moto's server on 127.0.0.1 with the trainfleet stacks deployed into it.

No AWS account is needed. The stacks are the same synthesized templates `cdk deploy` would deploy;
the only local difference is the AMI parameter (moto has no Deep Learning AMI), which is set to a
parameter this module creates, pointing at one of moto's images.
"""
from __future__ import annotations

import base64
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from instance_benchmarks.deploy import deploy, synthesize
from instance_benchmarks.launcher import RUN_TAG, campaign_instances, tag
from instance_benchmarks.moto_server import MotoServer
from instance_benchmarks.userdata import decode_agent_config, encode_agent_config
from stacks.config import AppConfig

LOCAL_AMI_PARAMETER = "/trainfleet/local/ami-id"


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
    config = replace(config or AppConfig(), ami_parameter=LOCAL_AMI_PARAMETER)
    stacks = synthesize(config)
    server = MotoServer(region=region).start()
    try:
        register_local_ami(server.client("ec2"), server.client("ssm"))
        outputs = deploy(server.client("cloudformation"), stacks)
    except BaseException:
        server.stop()
        raise
    return LocalCloud(server=server, outputs=outputs)


class LocalWorker:
    """Plays the part of the EC2 instances moto starts but cannot run.

    For each running instance of a campaign it reads the instance's real user data from moto, takes
    the agent configuration the launcher embedded there, and runs the real agent as a local process
    against moto's endpoint, from this checkout instead of a fresh `git clone` (the one step it
    skips). Results are labelled as measured on this machine, not on the EC2 type. When the agent
    exits, the worker terminates the instance in moto, as the instance's own shutdown would.
    """

    def __init__(self, cloud: LocalCloud, source_dir: Path, *, extra_env: dict | None = None, log=print) -> None:
        self.cloud, self.source_dir, self.extra_env, self.log = cloud, Path(source_dir), extra_env or {}, log
        self.handled: set[str] = set()

    def env(self, instance_type: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(self.cloud.server.env)
        env["TRAINFLEET_HOST_LABEL"] = f"local {platform.node()} ({os.cpu_count()} CPUs) for {instance_type}"
        env.setdefault("AWS_EC2_METADATA_DISABLED", "true")
        env.update(self.extra_env)
        return env

    def run_instance(self, instance: dict) -> int:
        ec2 = self.cloud.client("ec2")
        instance_id = instance["InstanceId"]
        raw = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
        config = decode_agent_config(base64.b64decode(raw).decode())
        # Runs queue on this one machine; on EC2 each instance starts at once. Bill from the moment the
        # local "instance" actually starts, so waiting in the queue is not counted as instance time.
        config["launched_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.log(f"[{instance_id}] {config['run_id']} attempt {config['attempt']} on {config['instance_type']} (local worker)")
        try:
            completed = subprocess.run(
                [sys.executable, "-m", "instance_benchmarks.agent", "--config-b64", encode_agent_config(config)],
                cwd=self.source_dir, env=self.env(config["instance_type"]),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                timeout=config["max_runtime_minutes"] * 60 + 60,
            )
            code = completed.returncode
            if code != 0:
                self.log(completed.stdout[-2000:])
        finally:
            ec2.terminate_instances(InstanceIds=[instance_id])  # shutdown -h now, behaviour = terminate
        return code

    def drain(self, campaign: str) -> dict[str, int]:
        """Run every live instance of the campaign until none is left; returns instance -> agent exit code."""
        codes: dict[str, int] = {}
        while True:
            live = [i for i in campaign_instances(self.cloud.client("ec2"), campaign, ["pending", "running"])
                    if i["InstanceId"] not in self.handled]
            if not live:
                return codes
            for instance in sorted(live, key=lambda i: tag(i, RUN_TAG) or ""):
                self.handled.add(instance["InstanceId"])
                codes[instance["InstanceId"]] = self.run_instance(instance)


def run_local_campaign(spec, *, out: Path, log=print, report=None, source_dir: Path | None = None,
                       worker_env: dict | None = None, more_specs: tuple = ()) -> dict:
    """The embedded default end to end: deploy into moto, launch, run the agents locally (relaunching
    interrupted runs), report, download the best model, tear down and check nothing is left running.
    `more_specs` (same campaign id, e.g. a `backend: sagemaker` twin) run in the same session and
    land in the same report."""
    from instance_benchmarks.launcher import LIVE_STATES, resolve_infrastructure, teardown
    from instance_benchmarks.models import download_run
    from instance_benchmarks.report import write_report

    source_dir = source_dir or Path(__file__).resolve().parents[1]
    log("starting moto's server on 127.0.0.1 and deploying the Storage, Network and Compute stacks ...")
    cloud = start_local_cloud(region=spec.region)
    try:
        ec2, s3 = cloud.client("ec2"), cloud.client("s3")
        infra = resolve_infrastructure(cloud.client("ssm"))
        log(f"deployed: bucket {infra.bucket}, spot template {infra.spot_template_id}, endpoint {cloud.server.endpoint}")
        for each in (spec, *more_specs):
            if each.campaign != spec.campaign:
                raise ValueError(f"campaigns {spec.campaign!r} and {each.campaign!r} cannot share one local run")
            if each.backend == "sagemaker":
                _run_sagemaker_locally(cloud, each, infra.bucket, log)
            else:
                _run_ec2_locally(cloud, each, infra, LocalWorker(cloud, source_dir, extra_env=worker_env, log=log), log)
        bucket = infra.bucket
        if report is not None:
            built = report(s3, bucket, spec.campaign, out)
        else:
            built, _ = write_report(s3, bucket, spec.campaign, out)
        best = _best_run(built)
        model_files = {}
        if best is not None:
            model_files = download_run(s3, bucket, spec.campaign, best["run_id"], out / "best-model")
            log(f"best run {best['run_id']} ({best['label']}): model and artifacts in {out / 'best-model'} (SHA-256 verified)")
        torn = teardown(ec2, spec.campaign)
        left = [i for i in campaign_instances(ec2, spec.campaign, LIVE_STATES)]
        log(f"teardown: {len(torn.terminated)} terminated, {len(torn.cancelled_spot_requests)} spot requests cancelled, "
            f"{len(left)} instances left running")
        return {"report": built, "best": best, "model_files": model_files, "left_running": left, "bucket": bucket}
    finally:
        cloud.server.stop()


def _best_run(report) -> dict | None:
    rows = [r for r in report.rows if r.get("final_metric") is not None]
    if not rows:
        return None
    return (max if report.higher_is_better else min)(rows, key=lambda r: r["final_metric"])


def _log_estimate(log, spec, summary) -> None:
    expected = f", expected ${summary.estimate_expected_usd:.4f}" if summary.estimate_expected_usd is not None else ""
    log(f"{spec.campaign} ({spec.backend}): {len(spec.runs())} runs, worst case ${summary.estimate_worst_usd:.4f}"
        f"{expected}, budget ${spec.budget_usd:.2f}")


def _run_ec2_locally(cloud: LocalCloud, spec, infra, worker: "LocalWorker", log) -> None:
    from instance_benchmarks.launcher import launch_campaign

    rounds = 0
    while True:  # relaunch interrupted runs until every run is complete or out of attempts
        summary = launch_campaign(cloud.client("ec2"), cloud.client("s3"), spec, infra, spot_history=False)
        if rounds == 0:
            _log_estimate(log, spec, summary)
        if not summary.launched:
            return
        log(f"launched {len(summary.launched)} instance(s) in moto; running their agents on this machine")
        worker.drain(spec.campaign)
        rounds += 1


def _run_sagemaker_locally(cloud: LocalCloud, spec, bucket: str, log) -> None:
    import boto3

    from instance_benchmarks import sagemaker_backend
    from instance_benchmarks.harness import local_peak_tflops
    from instance_benchmarks.sagemaker_local import LocalSageMakerExecutor

    sagemaker_backend.require_sdk()
    iam = cloud.client("iam")
    role = iam.create_role(RoleName=f"trainfleet-sagemaker-{spec.campaign}"[:64], AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "sagemaker.amazonaws.com"}}]}))["Role"]["Arn"]
    # The SDK builds its own clients from the session: point this process at moto while it launches.
    saved = {k: os.environ.get(k) for k in (*cloud.server.env, "SAGEMAKER_VALIDATE_ROLE")}
    os.environ.update(cloud.server.env, SAGEMAKER_VALIDATE_ROLE="false")
    try:
        summary = sagemaker_backend.launch_campaign(
            cloud.client("sagemaker"), cloud.client("s3"), boto3.Session(region_name=spec.region), spec, bucket,
            role_arn=role)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    _log_estimate(log, spec, summary)
    log(f"created {len(summary.launched)} SageMaker training job(s) in moto; running them on this machine")
    executor = LocalSageMakerExecutor(cloud.client("sagemaker"), cloud.client("s3"), cloud.server.env, log=log)
    peak, _ = local_peak_tflops()
    for entry in summary.launched:
        executor.run_job(entry["job_name"])
        sagemaker_backend.collect_run(cloud.client("sagemaker"), cloud.client("s3"), bucket, spec.campaign,
                                      entry["run_id"], peak_tflops=peak, host=f"local {platform.node()}")
