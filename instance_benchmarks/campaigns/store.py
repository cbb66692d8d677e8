"""Reading and writing the campaigns' S3 layout (see `core.contract` for the layout itself)."""
from __future__ import annotations

import json

from instance_benchmarks.core.contract import campaign_prefix, run_prefix
from training_scripts.storage import S3Location


def run_location(s3, bucket: str, campaign: str, run_id: str) -> S3Location:
    return S3Location(bucket, run_prefix(campaign, run_id), s3)


def read_json(location: S3Location, name: str) -> dict | None:
    data = location.read_bytes(name)
    return None if data is None else json.loads(data)


def write_json(location: S3Location, name: str, value: dict) -> str:
    return location.write_bytes(name, json.dumps(value, indent=2, sort_keys=True, default=str).encode())


def list_campaigns(s3, bucket: str) -> list[str]:
    response = s3.list_objects_v2(Bucket=bucket, Prefix="campaigns/", Delimiter="/")
    return sorted(p["Prefix"].split("/")[1] for p in response.get("CommonPrefixes", []))


def list_runs(s3, bucket: str, campaign: str) -> list[str]:
    prefix = f"{campaign_prefix(campaign)}/runs/"
    paginator = s3.get_paginator("list_objects_v2")
    runs: set[str] = set()
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        runs.update(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []))
    return sorted(runs)


def _checked(location: S3Location, name: str) -> dict | None:
    """A run record from the bucket, which anything with write access (a training script under the
    instance role, a truncated upload) may have broken: a JSON object, or ValueError saying what is wrong."""
    try:
        value = read_json(location, name)
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"{name} is not JSON ({str(error).splitlines()[0][:80]})") from None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{name} holds a {type(value).__name__}, not an object")
    attempts = value.get("attempts", []) if name == "launch.json" else []
    if not isinstance(attempts, list) or not all(isinstance(a, dict) for a in attempts):
        raise ValueError(f"{name}: attempts is not a list of objects")
    return value


def load_run_records(s3, bucket: str, campaign: str) -> list[dict]:
    """One record per run: its launch attempts and, only if complete, its result. A run whose records
    cannot be read is kept apart (`status: unreadable`, `unreadable`: why) so the others still report."""
    records = []
    for run_id in list_runs(s3, bucket, campaign):
        location = run_location(s3, bucket, campaign, run_id)
        record = {"run_id": run_id, "launch": {}, "result": None}
        try:
            record["launch"] = _checked(location, "launch.json") or {}  # kept when only result.json is broken:
            record["result"] = _checked(location, "result.json")        # its attempts' cost still counts
        except ValueError as error:
            record.update(status="unreadable", unreadable=str(error))
        else:
            record["status"] = "complete" if record["result"] else "incomplete"
        records.append(record)
    return records


def record_campaign(s3, bucket: str, spec, document: dict) -> None:
    """campaign.json holds one entry per backend, so EC2 and SageMaker runs can share a campaign."""
    location = S3Location(bucket, campaign_prefix(spec.campaign), s3)
    current = read_json(location, "campaign.json") or {}
    backends = current.get("backends", {})
    backends[spec.backend] = {"spec": spec.to_dict(), **document}
    write_json(location, "campaign.json", {"campaign": spec.campaign, "backends": backends})


def campaign_specs(s3, bucket: str, campaign: str) -> list[dict]:
    document = read_json(S3Location(bucket, campaign_prefix(campaign), s3), "campaign.json") or {}
    return [entry["spec"] for entry in document.get("backends", {}).values()]
