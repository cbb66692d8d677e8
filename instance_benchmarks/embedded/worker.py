"""Plays the part of the EC2 instances moto records but cannot boot.

For each running instance of a campaign it takes the instance's real user data from moto and executes
it under bash, in a sandbox folder standing in for the instance's disk (`TRAINFLEET_ROOT`). The script
does everything it does on EC2: downloads trainfleet's wheel from moto's S3 (boto3, as the instance role would),
verifies its SHA-256, installs it, and runs the agent, which clones the campaign's repository, sets it
up and runs the training script. Only what moto cannot do is stood in for, here and nowhere else:

* instance boot: instances run one at a time on this machine, each one's billing clock starting when
  it boots here (`launched_at` in the host facts; `booted`, which the environment's `started_at` reports), so
  waiting in the queue is not billed, not even when a teardown ends an instance that never booted;
* `shutdown`: a stub on PATH records the watchdog and the final shutdown; the worker enforces the
  watchdog by killing the script at its deadline and terminates the instance in moto when it ends,
  as the launch template's shutdown behaviour (terminate) would;
* the metadata service: disabled (no spot notices) unless a test passes a fake IMDS endpoint;
* the hardware: results are labelled as measured on this machine (the host facts, `host.json` on the
  instance's disk, which the agent reads as any environment's description of its host), not on
  the instance type they are priced as, and the machine's load while each instance ran is recorded in
  its attempt (`host_load`, see `hostload.py`), with a warning when other processes competed for its CPUs;
* the machine's power: each instance's user data runs under `guard` (a subreaper), so ending the
  instance (watchdog, Ctrl-C, teardown) ends every process it started, and a killed `trainfleet` takes
  its instances with it;
* the environment: an instance's is built from an allowlist (`instance_environment`), never from the host's
  (whose GITHUB_TOKEN or AWS credentials an untrusted script would print into its logs).
"""
from __future__ import annotations

import base64
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from instance_benchmarks.backends.ec2.instances import campaign_instances, tag
from instance_benchmarks.core.contract import ATTEMPT_TAG, CAMPAIGN_TAG, RUN_TAG, now_iso, run_prefix
from instance_benchmarks.embedded.guard import GRACE_SECONDS
from instance_benchmarks.embedded.hostload import record_host_load
from instance_benchmarks.measure.hostload import HostLoadMeter
from instance_benchmarks.measure.record import HOST_FILE
from training_scripts.storage import S3Location

SHUTDOWN_STUB = """#!/bin/bash
# trainfleet embedded default: stands in for shutdown(8); the worker terminates the instance in moto.
echo "shutdown $*" >> "${0%/bin/shutdown}/shutdown.log"
"""
_WATCHDOG = re.compile(r"^shutdown -h \+(\d+) ", re.MULTILINE)

# What a stand-in takes from the host's environment, by name, and nothing else: how this machine reaches the
# network and its package index (an instance reaches PyPI and GitHub directly), its locale, time zone, temporary
# folder and GPU selection. Values are the host's own settings; none is a credential of trainfleet's.
HOST_PASSTHROUGH = (
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_TRUSTED_HOST", "PIP_CERT", "PIP_CONSTRAINT",
    "PIP_NO_INDEX", "PIP_DEFAULT_TIMEOUT",
    "LANG", "LC_ALL", "TZ", "TMPDIR", "CUDA_VISIBLE_DEVICES",
)


def instance_environment(cloud_env: dict, *, bin_dirs: tuple[str, ...] = (), **needs: str) -> dict:
    """The environment of a stand-in instance or SageMaker job: what one has on AWS (a system PATH, a UTF-8
    locale, AWS credentials and region, here moto's `cloud_env`), the host's HOST_PASSTHROUGH, and the
    stand-in's own `needs` (its disk, boot time, host label...). Nothing else of the host's comes through."""
    env = {"LANG": "C.UTF-8", **{k: os.environ[k] for k in HOST_PASSTHROUGH if k in os.environ}}
    env.update(cloud_env)
    env.update(PATH=os.pathsep.join([*bin_dirs, str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
               AWS_EC2_METADATA_DISABLED="true", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(needs)
    return env


class LocalWorker:
    def __init__(self, cloud, *, host, extra_env: dict | None = None, log=print, root: Path | None = None,
                 on_progress=None, progress_seconds: float = 30.0) -> None:
        self.cloud, self.host, self.extra_env, self.log = cloud, host, extra_env or {}, log
        self.root = Path(root or tempfile.mkdtemp(prefix="trainfleet-instances-"))
        self.handled: set[str] = set()
        self.booted: dict[str, str] = {}  # instance id -> when it booted here (ISO 8601)
        # called while an instance runs (every `progress_seconds`) and after each one ends: the
        # environment saves the bucket's state then, so a killed command loses at most what was running
        self.on_progress, self.progress_seconds = on_progress, progress_seconds

    def env(self, instance: dict, sandbox: Path) -> dict:
        env = instance_environment(
            self.cloud.server.env, bin_dirs=(str(sandbox / "bin"),),
            HOME=str(sandbox / "home"),
            TRAINFLEET_ROOT=str(sandbox / "disk"),
        )
        env.update(self.extra_env)  # what a test or the caller adds on purpose (a fake IMDS, shorter intervals)
        return env

    def host_facts(self, instance_type: str, **more) -> dict:
        """What this machine tells a run about itself (measure.record.HOST_FILE): a stand-in for `instance_type`."""
        return {"label": f"{self.host.label} for {instance_type}", "stand_in": True,
                "peak_tflops": self.host.peak_tflops, "peak_source": self.host.peak_source, **more}

    def run_instance(self, instance: dict) -> int:
        ec2 = self.cloud.client("ec2")
        instance_id = instance["InstanceId"]
        raw = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
        user_data = base64.b64decode(raw).decode()
        sandbox = self.root / instance_id
        (sandbox / "bin").mkdir(parents=True)
        (sandbox / "home").mkdir()
        (sandbox / "user-data.sh").write_text(user_data)
        stub = sandbox / "bin" / "shutdown"
        stub.write_text(SHUTDOWN_STUB)
        stub.chmod(0o755)
        watchdog = _WATCHDOG.search(user_data)
        deadline = int(watchdog.group(1)) * 60 if watchdog else None
        self.log(f"[{instance_id}] {tag(instance, RUN_TAG)} on {instance['InstanceType']}: "
                 f"executing its user data in {sandbox} (local worker)")
        console = sandbox / "console.log"
        meter = HostLoadMeter(own_pids=(self.cloud.server.pid,)).start()
        # the guard plays the machine: whatever the user data starts ends with it (or with this process)
        command = [sys.executable, "-m", "instance_benchmarks.embedded.guard", "--parent", str(os.getpid()),
                   "--grace", str(GRACE_SECONDS), "--", "/bin/bash", str(sandbox / "user-data.sh")]
        self.booted[instance_id] = now_iso()
        (sandbox / "disk").mkdir()  # the instance's disk holds its host facts, the boot time among them
        (sandbox / "disk" / HOST_FILE).write_text(json.dumps(
            self.host_facts(instance["InstanceType"], launched_at=self.booted[instance_id])))
        with console.open("wb") as out:
            process = subprocess.Popen(command, cwd=sandbox, env=self.env(instance, sandbox), stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = self._wait(process, deadline)
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the machine stops; the launcher's teardown ends the
                self._power_off(process)  # instance in EC2, so the attempt is the user's (`torn down`), not `lost`
                raise
            except BaseException:  # an error here: the instance does not outlive it
                self._power_off(process)
                ec2.terminate_instances(InstanceIds=[instance_id])
                raise
            ec2.terminate_instances(InstanceIds=[instance_id])  # shutdown -h now, behaviour = terminate
        self.record_load(instance, meter.stop())
        if code != 0:
            self.log(console.read_text(errors="replace")[-3000:])
        return code

    def _wait(self, process: subprocess.Popen, deadline: float | None) -> int:
        """The user data's exit status; past the watchdog's deadline the machine is shut down."""
        started = time.monotonic()
        while True:
            left = None if deadline is None else deadline - (time.monotonic() - started)
            if left is not None and left <= 0:  # the watchdog's `shutdown -h +N` firing
                return self._power_off(process)
            try:
                return process.wait(timeout=self.progress_seconds if left is None else min(left, self.progress_seconds))
            except subprocess.TimeoutExpired:
                if self.on_progress is not None:
                    self.on_progress()

    def record_load(self, instance: dict, load: dict | None) -> None:
        """The machine's load while the instance ran, into its attempt in launch.json (`host_load`)."""
        campaign, run_id, attempt = (tag(instance, name) for name in (CAMPAIGN_TAG, RUN_TAG, ATTEMPT_TAG))
        if campaign and run_id and (attempt or "").isdigit():
            location = S3Location(self.cloud.outputs["Storage"]["BucketName"], run_prefix(campaign, run_id),
                                  self.cloud.client("s3"))
            record_host_load(location, load, run_id, self.log, attempt=int(attempt))

    @staticmethod
    def _power_off(process: subprocess.Popen) -> int:
        """SIGTERM to the guard, which ends every process of the instance (SIGKILL after its grace)."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                return process.wait(timeout=GRACE_SECONDS + 10)
            except subprocess.TimeoutExpired:
                process.kill()
        return process.wait()

    def drain(self, campaign: str) -> dict[str, int]:
        """Run every running instance of the campaign until none is left; returns instance -> exit status."""
        codes: dict[str, int] = {}
        while True:
            live = [i for i in campaign_instances(self.cloud.client("ec2"), campaign, ["pending", "running"])
                    if i["InstanceId"] not in self.handled]
            if not live:
                return codes
            for instance in sorted(live, key=lambda i: tag(i, RUN_TAG) or ""):
                self.handled.add(instance["InstanceId"])
                codes[instance["InstanceId"]] = code = self.run_instance(instance)
                if self.on_progress is not None:
                    self.on_progress()
                self.log(f"[{instance['InstanceId']}] {tag(instance, RUN_TAG)}: instance ended (user data exit {code})")

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def local_host_label() -> str:
    return f"local {platform.node()} ({os.cpu_count()} CPUs)"
