"""`backend: sagemaker`: each run is a SageMaker training job (script mode, managed spot training).

The same training script runs as the job's entry point: hyperparameters arrive as `--key value`,
the model goes to SM_MODEL_DIR (/opt/ml/model) and checkpoints to /opt/ml/checkpoints, which
SageMaker syncs with `checkpoint_s3_uri` - so an interrupted spot job resumes through the same
checkpoint code as on EC2. `collect_run` turns a finished job into the campaign's S3 layout and
result.json, with training vs billable seconds and the spot savings (1 - billable / training).

The sagemaker SDK (about 1 GB) is an optional extra: `pip install '.[sagemaker]'`.
"""
from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from instance_benchmarks.campaign import CampaignSpec, RunSpec, estimate, hyperparameter_text
from instance_benchmarks.catalog import Catalog, load_catalog
from instance_benchmarks.errors import TrainfleetInputError
from instance_benchmarks.harness import summarize
from instance_benchmarks.launcher import (
    CAMPAIGN_TAG, RUN_TAG, LaunchSummary, check_budget, now_iso, require_bucket, spent_usd,
)
from instance_benchmarks.pricing import PriceQuote
from instance_benchmarks.results import campaign_specs, read_json, record_campaign, run_location, run_prefix, write_json
from training_scripts.storage import sha256_hex

OPT_ML = "/opt/ml"
MODEL_DIR = f"{OPT_ML}/model"
CHECKPOINT_DIR = f"{OPT_ML}/checkpoints"
CODE_DIR = f"{OPT_ML}/input/data/code"
SOURCE_PACKAGE = Path(__file__).resolve().parents[1] / "training_scripts"


def require_sdk():
    try:
        import sagemaker.train  # noqa: F401
    except ImportError:
        raise TrainfleetInputError(
            "backend: sagemaker needs the optional SageMaker SDK: pip install '.[sagemaker]'") from None


def sagemaker_quote(spec: CampaignSpec, catalog: Catalog, instance_type: str) -> PriceQuote:
    price = catalog.get(instance_type).sagemaker_price(spec.region)
    return PriceQuote(f"ml.{instance_type}", spec.region, "spot" if spec.market == "spot" else "on-demand",
                      price, price, f"catalog {catalog.as_of} (SageMaker training price; spot savings show "
                      "as billable < training seconds)", now_iso())


def stage_source(into: Path) -> Path:
    """The job's code channel: the training_scripts package (the entry point imports it)."""
    shutil.copytree(SOURCE_PACKAGE, into / "training_scripts", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return into


def build_trainer(spec: CampaignSpec, run: RunSpec, *, bucket: str, role_arn: str, attempt: int, source_dir: Path,
                  session):
    """A ModelTrainer for one run (the SDK's objects; nothing is sent until .train())."""
    from sagemaker.core.training.configs import CheckpointConfig, Compute, OutputDataConfig, SourceCode, StoppingCondition
    from sagemaker.train import ModelTrainer

    prefix = f"s3://{bucket}/{run_prefix(spec.campaign, run.run_id)}"
    spot = spec.market == "spot"
    settings = spec.sagemaker or {}
    return ModelTrainer(
        sagemaker_session=session,
        role=role_arn,
        base_job_name=f"tf-{run.run_id}-a{attempt}"[:48],
        training_image=settings["image_uri"],
        source_code=SourceCode(source_dir=str(source_dir), entry_script=f"training_scripts/{spec.workload}.py"),
        compute=Compute(instance_type=f"ml.{run.instance_type}", instance_count=1, enable_managed_spot_training=spot),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=spec.max_runtime_minutes * 60,
            max_wait_time_in_seconds=settings["max_wait_minutes"] * 60 if spot else None),
        checkpoint_config=CheckpointConfig(s3_uri=f"{prefix}/checkpoints", local_path=CHECKPOINT_DIR),
        output_data_config=OutputDataConfig(s3_output_path=f"{prefix}/sagemaker"),
        hyperparameters={**hyperparameter_text(run.hyperparameters), "output": MODEL_DIR, "checkpoint": CHECKPOINT_DIR},
        environment={"PYTHONPATH": CODE_DIR},
        tags=[{"key": CAMPAIGN_TAG, "value": spec.campaign}, {"key": RUN_TAG, "value": run.run_id}],
    )


def launch_campaign(sagemaker_client, s3, boto_session, spec: CampaignSpec, bucket: str, *,
                    catalog: Catalog | None = None, role_arn: str | None = None) -> LaunchSummary:
    """Price, check the budget, then create one training job per run that is neither complete nor live."""
    require_sdk()
    from sagemaker.core.helper.session_helper import Session

    catalog = catalog or load_catalog()
    require_bucket(s3, bucket)
    role_arn = role_arn or (spec.sagemaker or {}).get("role_arn")
    if not role_arn:
        raise TrainfleetInputError("backend: sagemaker needs sagemaker.role_arn (an execution role SageMaker can assume)")
    quotes = {t: sagemaker_quote(spec, catalog, t) for t in spec.matrix["instance_type"]}
    plan = estimate(spec, quotes)
    pending, complete, live, spent = [], [], [], 0.0
    for run in spec.runs():
        location = run_location(s3, bucket, spec.campaign, run.run_id)
        record = read_json(location, "launch.json") or {}
        spent += spent_usd(record)
        last = (record.get("attempts") or [{}])[-1]
        if location.read_bytes("result.json") is not None:
            complete.append(run.run_id)
        elif last.get("job_name") and job_status(sagemaker_client, last["job_name"]) in ("InProgress", "Stopping", "Completed"):
            live.append(run.run_id)  # running, or done and waiting for `collect`: never a second job
        elif len(record.get("attempts", [])) < spec.max_attempts:
            pending.append(run)
    summary = LaunchSummary(spec.campaign, plan.worst_case_usd, plan.expected_usd, spent,
                            skipped_complete=complete, skipped_live=live)
    # jobs not yet collected may still bill up to their worst case
    committed = sum(plan.per_run[r][1] for r in live)
    check_budget(spec, needed=sum(plan.per_run[r.run_id][1] for r in pending), already=spent + committed,
                 count=len(pending), noun="SageMaker jobs")
    record_campaign(s3, bucket, spec, {
        "catalog_as_of": catalog.as_of, "written_at": now_iso(),
        "estimate": {"worst_case_usd": plan.worst_case_usd, "expected_usd": plan.expected_usd, "runs": plan.runs},
        "quotes": {t: q.to_dict() for t, q in quotes.items()}})
    session = Session(boto_session=boto_session, default_bucket=bucket)
    with tempfile.TemporaryDirectory(prefix="trainfleet-sm-") as staging:
        source_dir = stage_source(Path(staging))
        for run in pending:
            location = run_location(s3, bucket, spec.campaign, run.run_id)
            record = read_json(location, "launch.json") or {"run_id": run.run_id, "label": run.label, "attempts": []}
            attempt = len(record["attempts"]) + 1
            trainer = build_trainer(spec, run, bucket=bucket, role_arn=role_arn, attempt=attempt,
                                    source_dir=source_dir, session=session)
            trainer.train(wait=False, logs=False)
            job_name = trainer._latest_training_job.training_job_name  # the SDK's documented handle
            entry = {"attempt": attempt, "backend": "sagemaker", "job_name": job_name,
                     "instance_type": run.instance_type, "market": quotes[run.instance_type].market,
                     "price": quotes[run.instance_type].to_dict(), "launched_at": now_iso(), "cost_usd": None,
                     "outcome": "launched"}
            record["attempts"].append(entry)
            record.update(hyperparameters=run.hyperparameters, instance_type=run.instance_type)
            write_json(location, "launch.json", record)
            summary.launched.append({"run_id": run.run_id, **entry})
    return summary


def job_status(sagemaker_client, job_name: str) -> str:
    return sagemaker_client.describe_training_job(TrainingJobName=job_name)["TrainingJobStatus"]


def job_seconds(job: dict, timing: dict | None) -> tuple[float, float, str]:
    """(training, billable, source): SageMaker's own figures, else those the local executor measured."""
    if job.get("TrainingTimeInSeconds") is not None:
        training = float(job["TrainingTimeInSeconds"])
        return training, float(job.get("BillableTimeInSeconds", training)), "describe_training_job"
    if timing:
        return float(timing["training_seconds"]), float(timing["billable_seconds"]), timing["source"]
    start, end = job.get("TrainingStartTime"), job.get("TrainingEndTime")
    seconds = (end - start).total_seconds() if start and end else 0.0
    return seconds, seconds, "training start/end times"


def model_archive_key(job: dict) -> tuple[str, str]:
    output = job["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    bucket, _, prefix = output[len("s3://"):].partition("/")
    return bucket, f"{prefix}/{job['TrainingJobName']}/output/model.tar.gz"


def collect_run(sagemaker_client, s3, bucket: str, campaign: str, run_id: str, *, peak_tflops: float | None,
                host: str | None = None) -> dict | None:
    """For a completed job: unpack model.tar.gz into runs/<run>/train/ (checksums verified against the
    script's own result.json), then write result.json. Returns it, or None while the job is not done."""
    location = run_location(s3, bucket, campaign, run_id)
    record = read_json(location, "launch.json") or {}
    attempts = record.get("attempts", [])
    if not attempts or location.read_bytes("result.json") is not None:
        return read_json(location, "result.json")
    last = attempts[-1]
    job = sagemaker_client.describe_training_job(TrainingJobName=last["job_name"])
    status = job["TrainingJobStatus"]
    if status != "Completed":
        if status in ("Failed", "Stopped"):
            last.update(outcome=status.lower(), failure=job.get("FailureReason"))
            write_json(location, "launch.json", record)
        return None
    archive_bucket, key = model_archive_key(job)
    try:
        body = s3.get_object(Bucket=archive_bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None  # completed but its model is not uploaded yet
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        files = {m.name.lstrip("./"): archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}
    train_result = json.loads(files["result.json"])
    for name, digest in train_result["artifacts"].items():
        if sha256_hex(files[name]) != digest:
            raise IOError(f"{last['job_name']}: {name} in model.tar.gz does not match its SHA-256")
    train = location.child("train")
    for name, data in files.items():
        if name != "result.json":
            train.write_bytes(name, data)
    train.write_bytes("result.json", files["result.json"])
    timing = read_json(location, "sagemaker-timing.json")
    training_s, billable_s, source = job_seconds(job, timing)
    price = last["price"]["usd_per_hour"]
    cost = billable_s * price / 3600
    last.update(outcome="completed", training_seconds=training_s, billable_seconds=billable_s, cost_usd=cost,
                ended_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    write_json(location, "launch.json", record)
    history = [json.loads(line) for line in files.get("metrics.jsonl", b"").splitlines() if line.strip()]
    targets = [s.get("target") for s in campaign_specs(s3, bucket, campaign) if s.get("backend") == "sagemaker"]
    figures = summarize(train_result, history, usd_per_hour=price, peak_tflops=peak_tflops,
                        target=targets[0] if targets else None)
    result = {
        "status": "complete", "backend": "sagemaker", "campaign": campaign, "run_id": run_id,
        "job_name": last["job_name"], "workload": train_result.get("workload"),
        "instance_type": last["instance_type"], "market": last["market"], "price": last["price"],
        "hyperparameters": record.get("hyperparameters"),
        "measured_on": "local" if host else "sagemaker", "host": host or f"sagemaker ml.{last['instance_type']}",
        "fingerprint": train_result.get("fingerprint"), "peak_tflops": peak_tflops,
        "attempts": len(attempts), "interruptions": 0,
        "training_seconds": training_s, "billable_seconds": billable_s, "timing_source": source,
        "spot_savings": (1 - billable_s / training_s) if training_s else None,
        "cost_usd": sum(a.get("cost_usd") or 0.0 for a in attempts),
        "train_artifacts": train_result["artifacts"], "final": train_result["final"],
        "completed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **figures,
    }
    write_json(location, "result.json", result)
    return result
