"""Runs SageMaker training jobs that moto accepted but cannot execute, the way SageMaker would.

From the job's own description in moto it downloads the input channels (the code the SDK uploaded),
restores `CheckpointConfig.S3Uri` into the local checkpoint path, installs the SourceCode's
requirements file with the SDK's own installer (as the SDK's sm_train.sh does), runs the entry script with the
job's hyperparameters as `--key value` and SM_* variables (paths under /opt/ml mapped to a temporary
folder), then syncs checkpoints back and uploads `model.tar.gz` to the output path, with the host facts
(measure.record.HOST_FILE) in `trainfleet/host.json`: this machine as the stand-in for the job's type, and
the seconds it measured (`job_seconds`, which moto's description lacks; with no spot capacity to reclaim
here, billable = training seconds). The machine's load while the job ran goes into
its attempt (`host_load`, see `hostload.py`).
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from instance_benchmarks.backends.sagemaker.jobs import OPT_ML, model_archive_key
from instance_benchmarks.embedded.hostload import record_host_load
from instance_benchmarks.embedded.worker import instance_environment
from instance_benchmarks.measure.hostload import HostLoadMeter
from instance_benchmarks.measure.record import HOST_FILE
from training_scripts.storage import S3Location


def _split(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    return bucket, prefix.rstrip("/")


def _download_prefix(s3, uri: str, into: Path) -> None:
    bucket, prefix = _split(uri)
    for key in S3Location(bucket, prefix, s3).list():
        target = into / key
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, f"{prefix}/{key}", str(target))


def _upload_dir(s3, local: Path, uri: str) -> None:
    bucket, prefix = _split(uri)
    for path in sorted(p for p in local.rglob("*") if p.is_file() and not p.name.startswith(".")):
        S3Location(bucket, prefix, s3).write_bytes(path.relative_to(local).as_posix(), path.read_bytes())


def _cli_value(value: str) -> str:
    """The SDK stores hyperparameters JSON-encoded; the container driver decodes them back."""
    try:
        decoded = json.loads(value)
    except (TypeError, ValueError):
        return value
    return decoded if isinstance(decoded, str) else json.dumps(decoded)


class LocalSageMakerExecutor:
    def __init__(self, sagemaker_client, s3, env: dict, *, host, log=print, own_pids: tuple[int, ...] = ()) -> None:
        self.sm, self.s3, self.env, self.host, self.log = sagemaker_client, s3, env, host, log
        self.own_pids = own_pids  # moto's server: trainfleet's own CPU time, not a competitor's

    def run_job(self, job_name: str) -> int:
        job = self.sm.describe_training_job(TrainingJobName=job_name)
        with tempfile.TemporaryDirectory(prefix="trainfleet-opt-ml-") as tmp:
            root = Path(tmp)
            local = lambda text: text.replace(OPT_ML, str(root))  # noqa: E731
            for channel in job.get("InputDataConfig", []):
                _download_prefix(self.s3, channel["DataSource"]["S3DataSource"]["S3Uri"],
                                 root / "input" / "data" / channel["ChannelName"])
            source = json.loads((root / "input/data/sm_drivers/sourcecode.json").read_text())
            checkpoint = job.get("CheckpointConfig") or {}
            checkpoint_dir = Path(local(checkpoint.get("LocalPath", f"{OPT_ML}/checkpoints")))
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            if checkpoint.get("S3Uri"):
                _download_prefix(self.s3, checkpoint["S3Uri"], checkpoint_dir)  # what SageMaker restores on start
            model_dir = root / "model"
            model_dir.mkdir()
            hyperparameters = {k: local(_cli_value(v)) for k, v in (job.get("HyperParameters") or {}).items()}
            args = [part for key, value in hyperparameters.items() for part in (f"--{key}", value)]
            code_dir = root / "input/data/code"
            env = self.job_environment(job, root, model_dir, code_dir, hyperparameters)
            self.log(f"[{job_name}] running {source['entry_script']} as a SageMaker job (local executor)")
            started = time.monotonic()
            meter = HostLoadMeter(self.own_pids).start()
            if source.get("requirements"):
                installed = self.install_requirements(root, code_dir, source["requirements"], env)
                if installed.returncode != 0:
                    self.log(installed.stdout[-2000:])
                    return installed.returncode
            completed = subprocess.run([sys.executable, str(code_dir / source["entry_script"]), *args], cwd=code_dir,
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                       timeout=job["StoppingCondition"]["MaxRuntimeInSeconds"])
            seconds = time.monotonic() - started
            load = meter.stop()
            if completed.returncode != 0:
                self.log(completed.stdout[-2000:])
            if checkpoint.get("S3Uri"):
                _upload_dir(self.s3, checkpoint_dir, checkpoint["S3Uri"])
                run_bucket, run_prefix = _split(checkpoint["S3Uri"])
                run_prefix = run_prefix.rsplit("/checkpoints", 1)[0]
                record_host_load(S3Location(run_bucket, run_prefix, self.s3), load, run_prefix.rsplit("/", 1)[-1],
                                 self.log, job_name=job_name)
            if completed.returncode == 0:
                facts = {"label": self.host_label(job), "stand_in": True, "peak_tflops": self.host.peak_tflops,
                         "peak_source": self.host.peak_source, "job_seconds": seconds}
                (model_dir / "trainfleet").mkdir(exist_ok=True)
                (model_dir / "trainfleet" / HOST_FILE).write_text(json.dumps(facts))
                buffer = io.BytesIO()
                with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
                    for path in sorted(model_dir.rglob("*")):
                        if path.is_file() and not path.name.startswith("."):
                            archive.add(path, arcname=path.relative_to(model_dir).as_posix())
                bucket, key = model_archive_key(job)
                self.s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
            return completed.returncode

    def job_environment(self, job: dict, root: Path, model_dir: Path, code_dir: Path, hyperparameters: dict) -> dict:
        """What the job's container would hold (its Environment, SM_* variables, a HOME) on the stand-ins'
        allowlist (embedded/worker.instance_environment), never the host's environment."""
        home = root / "home"
        home.mkdir(exist_ok=True)
        env = instance_environment(self.env, HOME=str(home))
        env.update({name: value.replace(OPT_ML, str(root)) for name, value in (job.get("Environment") or {}).items()})
        env.update(SM_MODEL_DIR=str(model_dir), SM_HPS=json.dumps(hyperparameters), SM_CHANNEL_CODE=str(code_dir),
                   SM_CURRENT_HOST="algo-1")
        return env

    def host_label(self, job: dict) -> str:
        return f"{self.host.label} for {job['ResourceConfig']['InstanceType']}"

    @staticmethod
    def install_requirements(root: Path, code_dir: Path, requirements: str, env: dict):
        """What sm_train.sh does before the entry script: the installer the SDK ships in the sm_drivers channel,
        run in the code directory (here into this Python's environment, where they are normally satisfied)."""
        installer = root / "input/data/sm_drivers/scripts/install_requirements.py"
        return subprocess.run([sys.executable, str(installer), requirements], cwd=code_dir,
                              env={**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
