"""Trained models in S3: list the complete runs' models, download them with checksum verification."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.campaigns.store import list_campaigns, load_run_records, run_prefix


class IntegrityError(IOError):
    pass


def list_models(s3, bucket: str, campaign: str | None = None) -> list[dict]:
    rows = []
    for name in [campaign] if campaign else list_campaigns(s3, bucket):
        for record in load_run_records(s3, bucket, name):
            result = record["result"]
            if not result or "model.pt" not in result.get("train_artifacts", {}):
                continue
            key = f"{run_prefix(name, record['run_id'])}/train/model.pt"
            size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
            rows.append({"campaign": name, "run_id": record["run_id"], "instance_type": result["instance_type"],
                         "hyperparameters": result.get("hyperparameters"), "final_metric": result.get("final_metric"),
                         "primary_metric": result.get("primary_metric"), "size_bytes": size,
                         "sha256": result["train_artifacts"]["model.pt"]})
    return rows


def parse_run_ref(ref: str) -> tuple[str, str]:
    campaign, sep, run_id = ref.partition("/")
    if not sep or not campaign or not run_id or "/" in run_id:
        raise TrainfleetInputError(f"run {ref!r} must be CAMPAIGN/RUN_ID (see `trainfleet models list`)")
    return campaign, run_id


def download_run(s3, bucket: str, campaign: str, run_id: str, out_dir: Path,
                 progress: Callable[[str, int, int], None] | None = None) -> dict[str, Path]:
    """Download a complete run's training artifacts; each is verified against result.json's SHA-256
    before it is moved into place, so `out_dir` never holds a corrupt or partial file."""
    records = {r["run_id"]: r for r in load_run_records(s3, bucket, campaign)}
    if run_id not in records:
        raise TrainfleetInputError(f"no run {campaign}/{run_id} in s3://{bucket}")
    if records[run_id].get("unreadable"):
        raise TrainfleetInputError(f"run {campaign}/{run_id} cannot be read: {records[run_id]['unreadable']}")
    result = records[run_id]["result"]
    if result is None:
        raise TrainfleetInputError(f"run {campaign}/{run_id} is incomplete (no result.json): nothing to download")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, expected in sorted(result["train_artifacts"].items()):
        key = f"{run_prefix(campaign, run_id)}/train/{name}"
        target = (out_dir / name).resolve()
        if out_dir.resolve() not in target.parents:
            raise IntegrityError(f"artifact name {name!r} in result.json would be written outside {out_dir}; refused")
        target.parent.mkdir(parents=True, exist_ok=True)
        size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        os.close(fd)
        try:
            done = 0

            def tick(chunk: int, name=name, size=size) -> None:
                nonlocal done
                done += chunk
                if progress:
                    progress(name, done, size)

            s3.download_file(bucket, key, tmp, Callback=tick)
            digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
            if digest != expected:
                raise IntegrityError(f"{name}: SHA-256 {digest[:12]}... does not match the run's {expected[:12]}...")
            os.replace(tmp, target)
            written[name] = target
        finally:
            Path(tmp).unlink(missing_ok=True)
    return written
