"""`backend: sagemaker`: each run is a SageMaker training job (script mode, managed spot training).

The same training script runs as the job's entry point: hyperparameters arrive as `--key value`,
the model goes to SM_MODEL_DIR (/opt/ml/model) and checkpoints to /opt/ml/checkpoints, which
SageMaker syncs with `checkpoint_s3_uri` - so an interrupted spot job resumes through the same
checkpoint code as on EC2. `collect_job` turns a finished job into the campaign's S3 layout and
result.json (measure.record.build_result, as on EC2), with training vs billable seconds and the spot savings
(1 - billable / training). Where the job ran is the instance type it names unless the job's output says
otherwise (`trainfleet/host.json`, host facts a stand-in host leaves there; see measure.record.HOST_FILE).

A bundled workload on the shared loop's DistributedDataParallel path (core.contract.DISTRIBUTED_WORKLOADS) runs under
the SDK's torchrun distribution (`sagemaker.train.distributed.Torchrun`, one process per GPU on each node)
when the run spans `nodes: N` instances or its type has several GPUs; the job's InstanceCount is `nodes`,
and SageMaker bills each of them (BillableTimeInSeconds x InstanceCount): the backend's quote is the price
of the whole cluster, so the estimate, the budget and every recorded cost count N instances.

The job's image is the AWS PyTorch training container (Deep Learning Container) for its instance type,
the CUDA variant for GPU types and the CPU variant otherwise (`default_image`), unless the campaign's
`sagemaker.image_uri` names one for every run.

The sagemaker SDK (about 1 GB) is an optional extra: `pip install '.[sagemaker]'`.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tarfile
import zipfile
from pathlib import Path

from instance_benchmarks.backends.packaging import build_wheel
from instance_benchmarks.campaigns.store import run_location, write_json
from instance_benchmarks.catalog import load_catalog
from instance_benchmarks.core.bootstrap import AGENT_REQUIREMENTS
from instance_benchmarks.core.contract import (
    CAMPAIGN_TAG, CHECKPOINT_DIR_VAR, DISTRIBUTED_WORKLOADS, NO_METRICS, RUN_TAG, TASK_FILE, hyperparameter_text,
    now_iso, run_prefix,
)
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.core.git import clone
from instance_benchmarks.measure.harness import summarize
from instance_benchmarks.measure.record import HOST_FILE, build_result, catalog_peak, host_facts, parse_host
from instance_benchmarks.measure.record_model import metric_lines
import training_scripts
from training_scripts.storage import sha256_hex

OPT_ML = "/opt/ml"
MODEL_DIR = f"{OPT_ML}/model"
CHECKPOINT_DIR = f"{OPT_ML}/checkpoints"
CODE_DIR = f"{OPT_ML}/input/data/code"
SOURCE_PACKAGE = Path(training_scripts.__file__).resolve().parent

# The newest PyTorch training DLC the SDK's bundled image config lists (sagemaker 3.27,
# sagemaker/core/image_uri_config/pytorch.json: training 2.10.0, py313), looked up per instance type.
PYTORCH_VERSION, PYTHON_VERSION = "2.10.0", "py313"

# A bundled workload's requirements (gymnasium, scikit-learn, ... beyond the DLC's PyTorch), the same file the
# EC2 agent installs for `workload:` campaigns; staged with the package, installed by the SDK (build_trainer).
WORKLOAD_REQUIREMENTS = "training_scripts/requirements.txt"

# ModelTrainer names a job `<base_job_name>-<YYYYmmddHHMMSS>` cut at SageMaker's 63 characters
# (sagemaker.train.utils._get_unique_name): a base of at most 48 keeps all of it, `-a<attempt>` included.
JOB_BASE_LENGTH = 48
_JOB_ATTEMPT = re.compile(r"-a(\d+)(?:-\d{14})?$")


def job_base_name(run_id: str, attempt: int) -> str:
    """`tf-<run_id>-a<attempt>`; a run id too long for it keeps its head and gains a hash of the whole id,
    so the attempt (which crash recovery and teardown read back) is never cut off and names stay distinct."""
    suffix = f"-a{int(attempt)}"
    base = f"tf-{run_id}"
    if len(base) + len(suffix) > JOB_BASE_LENGTH:
        digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
        base = f"{base[:JOB_BASE_LENGTH - len(suffix) - len(digest) - 1].rstrip('-')}-{digest}"
    return base + suffix


def job_attempt(job_name: str) -> int | None:
    """The attempt a training job ran, from its name (`job_base_name`, then the SDK's timestamp)."""
    match = _JOB_ATTEMPT.search(job_name)
    return int(match.group(1)) if match else None


def require_sdk():
    try:
        import sagemaker.train  # noqa: F401  # the optional [sagemaker] extra: is it installed?
    except ImportError:
        raise TrainfleetInputError(
            "backend: sagemaker needs the optional SageMaker SDK: pip install '.[sagemaker]'") from None


def default_image(region: str, instance) -> str:
    """The AWS PyTorch training DLC for a run on `instance` (a catalog InstanceSpec) in `region`: its GPU
    (CUDA) variant for a GPU type, its CPU variant otherwise, from the SDK's own image config (no AWS call)."""
    from sagemaker.core import image_uris  # the optional [sagemaker] extra (see require_sdk)

    processor = "gpu" if instance.is_gpu else "cpu"
    try:
        uri = image_uris.retrieve(framework="pytorch", region=region, version=PYTORCH_VERSION,
                                  py_version=PYTHON_VERSION, instance_type=f"ml.{instance.name}",
                                  image_scope="training")
    except ValueError as error:
        raise TrainfleetInputError(f"no PyTorch {PYTORCH_VERSION} training image for ml.{instance.name} in "
                                   f"{region}: {error}; set sagemaker.image_uri") from None
    if f":{PYTORCH_VERSION}-{processor}-" not in uri:  # the SDK decides by family name, the catalog by GPUs
        raise TrainfleetInputError(f"the SDK's PyTorch image for ml.{instance.name} is {uri}, not a {processor} "
                                   "image as the catalog says it needs; set sagemaker.image_uri")
    return uri


ENTRY = f"""import importlib, pathlib, subprocess, sys
here = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(here / "_trainfleet"))
try:
    import re2  # noqa: F401  # the agent's linear-time metric regexes
except ImportError:  # the image lacks it: install the pinned wheel beside trainfleet's
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(here / "_trainfleet"),
                    *{list(AGENT_REQUIREMENTS)!r}], check=True)
    importlib.invalidate_caches()
from instance_benchmarks.agent.container import main
sys.exit(main(here))
"""


def stage_source(into: Path, spec, run) -> dict:
    """The job's code channel. A bundled workload: the training_scripts package (the entry point imports
    it) with its requirements.txt. Any other task: the repository cloned at the campaign's ref,
    trainfleet's wheel unpacked, the task and `trainfleet_entry.py`, which runs the campaign's `setup`
    commands or installs the repository's requirements.txt before the task (see agent/container.py).
    Returns what to record on the attempt."""
    if spec.workload:
        shutil.copytree(SOURCE_PACKAGE, into / "training_scripts", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        if not (into / WORKLOAD_REQUIREMENTS).is_file():
            raise RuntimeError(f"{SOURCE_PACKAGE / 'requirements.txt'} is missing: the SageMaker job could not "
                               "install the workload's requirements (reinstall trainfleet from its sources)")
        return {}
    commit = clone(spec.repo, spec.ref, into / "repo", spec.commit)
    shutil.rmtree(into / "repo" / ".git")
    wheel = build_wheel()
    with zipfile.ZipFile(wheel.path) as archive:
        archive.extractall(into / "_trainfleet")  # nosec B202  # the wheel this process just built from its own sources
    task = {**spec.task_dict(run), "run_id": run.run_id, "instance_type": run.instance_type,
            "max_runtime_minutes": spec.max_runtime_minutes}
    (into / TASK_FILE).write_text(json.dumps(task))
    (into / "trainfleet_entry.py").write_text(ENTRY)
    return {"commit": commit, "agent_wheel": {"sha256": wheel.sha256}}


def torchrun_processes(spec, run) -> int | None:
    """Processes per node when the job runs under the SDK's torchrun distribution, else None (one plain
    process): a workload on the DDP path across `nodes` instances or across a multi-GPU type's GPUs gets one
    process per GPU (one per node on a CPU type, with gloo), as the EC2 agent starts it with torchrun."""
    gpus = load_catalog().get(run.instance_type).gpu_count
    if spec.workload not in DISTRIBUTED_WORKLOADS or (getattr(spec, "nodes", 1) == 1 and gpus < 2):
        return None
    return max(1, gpus)


def build_trainer(spec, run, *, bucket: str, role_arn: str, attempt: int, source_dir: Path, image: str,
                  session):
    """A ModelTrainer for one run (the SDK's objects; nothing is sent until .train()).

    Requirements are installed one way per job, never twice. A bundled workload's script is the entry
    itself, so its requirements go to SourceCode(requirements=...), which the SDK's own sm_train.sh
    installs before the script starts. A repository's task passes none: its requirements.txt (or the
    campaign's `setup` commands, which replace it) are installed by trainfleet's entry point, as the EC2
    agent does - `setup` must win over requirements.txt, the file may sit in the task's workdir, and the
    entry point times the setup (setup_seconds) and keeps its log, which an install by the SDK before the
    entry starts would hide."""
    from sagemaker.core.training.configs import (  # the optional [sagemaker] extra (see require_sdk)
        CheckpointConfig, Compute, OutputDataConfig, SourceCode, StoppingCondition,
    )
    from sagemaker.train import ModelTrainer  # (the extra, as above)
    from sagemaker.train.distributed import Torchrun  # (the extra, as above)

    processes = torchrun_processes(spec, run)
    prefix = f"s3://{bucket}/{run_prefix(spec.campaign, run.run_id)}"
    spot = spec.market == "spot"
    settings = spec.backend_settings or {}
    return ModelTrainer(
        sagemaker_session=session,
        role=role_arn,
        base_job_name=job_base_name(run.run_id, attempt),
        training_image=image,
        source_code=SourceCode(source_dir=str(source_dir),
                               requirements=WORKLOAD_REQUIREMENTS if spec.workload else None,
                               entry_script=f"training_scripts/{spec.workload}.py" if spec.workload else "trainfleet_entry.py"),
        compute=Compute(instance_type=f"ml.{run.instance_type}", instance_count=getattr(spec, "nodes", 1),
                        enable_managed_spot_training=spot),
        distributed=Torchrun(process_count_per_node=processes) if processes else None,
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=spec.max_runtime_minutes * 60,
            max_wait_time_in_seconds=settings["max_wait_minutes"] * 60 if spot else None),
        checkpoint_config=CheckpointConfig(s3_uri=f"{prefix}/checkpoints", local_path=CHECKPOINT_DIR),
        output_data_config=OutputDataConfig(s3_output_path=f"{prefix}/sagemaker"),
        hyperparameters={**hyperparameter_text(run.hyperparameters), "output": MODEL_DIR, "checkpoint": CHECKPOINT_DIR}
        if spec.workload else hyperparameter_text(run.hyperparameters),
        environment={"PYTHONPATH": CODE_DIR} if spec.workload else {CHECKPOINT_DIR_VAR: CHECKPOINT_DIR},
        tags=[{"key": CAMPAIGN_TAG, "value": spec.campaign}, {"key": RUN_TAG, "value": run.run_id}],
    )


def created_job_name(trainer) -> str:
    """The name of the job `trainer.train()` just created (the SDK appends a timestamp to base_job_name),
    read from the public `ModelTrainer.output_data`, documented as
    `{s3_output_path}/{training_job_name}/output/output.tar.gz`."""
    output = trainer.output_data_config.s3_output_path.rstrip("/") + "/"
    uri = trainer.output_data
    name = uri[len(output):].split("/", 1)[0] if uri.startswith(output) else ""
    if not name.startswith(trainer.base_job_name):
        raise RuntimeError(f"cannot tell the training job's name from ModelTrainer.output_data {uri!r}")
    return name


def job_status(sagemaker_client, job_name: str) -> str:
    return sagemaker_client.describe_training_job(TrainingJobName=job_name)["TrainingJobStatus"]


def job_seconds(job: dict, host: dict | None = None) -> tuple[float, float, str]:
    """(training, billable, source): SageMaker's own figures, else the seconds the host the job ran on measured
    (its host facts' `job_seconds`: no spot capacity reclaimed, billable = training), else its start/end times."""
    if job.get("TrainingTimeInSeconds") is not None:
        training = float(job["TrainingTimeInSeconds"])
        return training, float(job.get("BillableTimeInSeconds", training)), "describe_training_job"
    if host and isinstance(host.get("job_seconds"), (int, float)):
        seconds = float(host["job_seconds"])
        return seconds, seconds, f"measured by {host['label']} (billable = training)"
    start, end = job.get("TrainingStartTime"), job.get("TrainingEndTime")
    seconds = (end - start).total_seconds() if start and end else 0.0
    return seconds, seconds, "training start/end times"


def model_archive_key(job: dict) -> tuple[str, str]:
    output = job["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    bucket, _, prefix = output[len("s3://"):].partition("/")
    return bucket, f"{prefix}/{job['TrainingJobName']}/output/model.tar.gz"


def collect_job(sagemaker_client, s3, bucket: str, campaign: str, run_id: str, record: dict, *,
                peak_tflops: dict, target: dict | None = None) -> bool:
    """Settle the run's last job in `record`. For a completed job: unpack model.tar.gz into
    runs/<run>/train/ (checksums verified against the script's own result.json) and write result.json.
    Returns whether `record` changed; nothing changes while the job runs or its model is not uploaded."""
    location = run_location(s3, bucket, campaign, run_id)
    attempts = record.get("attempts", [])
    last = attempts[-1] if attempts else {}
    if last.get("outcome") != "launched" or not last.get("job_name"):
        return False
    job = sagemaker_client.describe_training_job(TrainingJobName=last["job_name"])
    status = job["TrainingJobStatus"]
    if status in ("Failed", "Stopped"):
        training_s, billable_s, _ = job_seconds(job)
        last.update(outcome=status.lower(), failure=job.get("FailureReason"), run_seconds=training_s,
                    billed_seconds=billable_s, cost_usd=billable_s * last["price"]["usd_per_hour"] / 3600,
                    ended_at=now_iso())
        return True
    if status != "Completed":
        return False
    archive_bucket, key = model_archive_key(job)
    try:
        body = s3.get_object(Bucket=archive_bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return False  # completed but its model is not uploaded yet
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        files = {m.name.lstrip("./"): archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}
    supplied = files.pop(f"trainfleet/{HOST_FILE}", None)
    host = parse_host(supplied, f"{last['job_name']}: trainfleet/{HOST_FILE}") if supplied is not None else None
    if "trainfleet/task-result.json" in files:
        return _collect_task(job, files, location, record, campaign, run_id, peak_tflops=peak_tflops, host=host,
                             target=target)
    train_result = json.loads(files["result.json"])
    for name, digest in train_result["artifacts"].items():
        if sha256_hex(files[name]) != digest:
            raise IOError(f"{last['job_name']}: {name} in model.tar.gz does not match its SHA-256")
    train = location.child("train")
    for name, data in files.items():
        if name != "result.json":
            train.write_bytes(name, data)
    train.write_bytes("result.json", files["result.json"])
    price = _settle_completed(job, last, host)
    history = metric_lines(files.get("metrics.jsonl", b""))  # the job's output: typed lines, unreadable ones skipped
    precision = train_result.get("precision") or "fp32"
    where = _host(last, host, peak_tflops, precision)
    figures = summarize(history, script_result=train_result, usd_per_hour=price, peak_tflops=where["peak_tflops"],
                        target=target)
    _write_result(location, record, campaign, run_id, host=where, figures=figures,
                  workload=train_result.get("workload"), fingerprint=train_result.get("fingerprint"),
                  precision=precision, train_artifacts=train_result["artifacts"], final=train_result["final"],
                  world_size=train_result.get("world_size"), target=target)
    return True


def _settle_completed(job: dict, last: dict, host: dict | None) -> float:
    """Record a completed job's training and billable seconds and its cost; returns its $/h."""
    training_s, billable_s, source = job_seconds(job, host)
    price = last["price"]["usd_per_hour"]
    last.update(outcome="completed", run_seconds=training_s, billed_seconds=billable_s, timing_source=source,
                cost_usd=billable_s * price / 3600, ended_at=now_iso())
    return price


def _host(last: dict, supplied: dict | None, peak_tflops: dict, precision: str) -> dict:
    """Where the job ran (measure.record.host_facts): the stand-in host its output names, at that host's peak,
    else the job's instances at the catalog's peak for the run's precision (`peak_tflops`: the whole cluster's)."""
    if supplied is not None:
        return host_facts(supplied["label"], stand_in=supplied.get("stand_in", True),
                          peak_tflops=supplied.get("peak_tflops"), peak_source=supplied.get("peak_source"))
    nodes = last.get("nodes") or 1
    return host_facts(f"sagemaker ml.{last['instance_type']}" + (f" x{nodes}" if nodes > 1 else ""),
                      peak_tflops=catalog_peak(peak_tflops, precision),
                      peak_source=f"catalog {last['instance_type']} {precision}" + (f" x{nodes}" if nodes > 1 else ""))


def _write_result(location, record: dict, campaign: str, run_id: str, *, host: dict, figures: dict,
                  train_artifacts: dict, final: dict | None = None, **facts) -> None:
    attempts = record["attempts"]
    last = attempts[-1]
    write_json(location, "result.json", build_result(
        campaign=campaign, run_id=run_id, attempts=attempts, host=host, figures=figures,
        backend={"name": "sagemaker", "job_name": last["job_name"], "timing_source": last["timing_source"]},
        hyperparameters=record.get("hyperparameters"), train_artifacts=train_artifacts, final=final,
        nodes=last.get("nodes") or 1, **facts))


def _collect_task(job: dict, files: dict, location, record: dict, campaign: str, run_id: str, *,
                  peak_tflops: dict, host: dict | None, target: dict | None) -> bool:
    """A repository's own task (agent/container.py): its outputs are the artifacts, its metric lines the figures."""
    last = record["attempts"][-1]
    task_result = json.loads(files.pop("trainfleet/task-result.json"))
    history = metric_lines(files.pop("trainfleet/metrics.jsonl", b""))  # as above
    logs = location.child(f"logs/attempt-{last['attempt']}")
    for name in [n for n in files if n.startswith("trainfleet/")]:
        logs.write_bytes(name.split("/", 1)[1], files.pop(name))
    location.write_bytes("metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history).encode())
    artifacts = {name: location.child("train").write_bytes(name, data) for name, data in sorted(files.items())}
    price = _settle_completed(job, last, host)
    last.update(exit_code=task_result["exit_code"], setup_seconds=task_result["setup_seconds"],
                script_seconds=task_result["script_seconds"], benchmark_slice=task_result["benchmark_slice"])
    if task_result.get("no_metrics"):  # the script printed no metric line (agent/container.py): no result
        last.update(outcome=NO_METRICS, note=str(task_result["no_metrics"])[:1000])
        return True
    where = _host(last, host, peak_tflops, "fp32")
    figures = summarize(history, train_seconds=task_result["script_seconds"], usd_per_hour=price,
                        peak_tflops=where["peak_tflops"], target=target)
    _write_result(location, record, campaign, run_id, host=where, figures=figures, precision="fp32",
                  code=last.get("commit"), benchmark_slice=task_result["benchmark_slice"], train_artifacts=artifacts,
                  target=target)
    return True
