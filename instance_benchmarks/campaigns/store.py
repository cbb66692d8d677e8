"""Reading and writing the campaigns' S3 layout (see `core.contract` for the layout itself).

Records are read through their models (measure.record_model): an older shape is migrated, a broken one is a
one-line reason (`unreadable`), never a traceback."""
from __future__ import annotations

import json

from instance_benchmarks.core.contract import campaign_prefix, run_prefix
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.measure.record_model import RecordError, load_json, metric_line, parse_document
from training_scripts.storage import S3Location


def run_location(s3, bucket: str, campaign: str, run_id: str) -> S3Location:
    return S3Location(bucket, run_prefix(campaign, run_id), s3)


def read_json(location: S3Location, name: str) -> dict | None:
    data = location.read_bytes(name)
    return None if data is None else json.loads(data)


def write_json(location: S3Location, name: str, value: dict) -> str:
    return location.write_bytes(name, json.dumps(value, indent=2, sort_keys=True, default=str).encode())


def list_campaigns(s3, bucket: str) -> list[str]:
    names: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="campaigns/", Delimiter="/"):
        names.update(p["Prefix"].split("/")[1] for p in page.get("CommonPrefixes", []))
    return sorted(names)


def list_runs(s3, bucket: str, campaign: str) -> list[str]:
    prefix = f"{campaign_prefix(campaign)}/runs/"
    paginator = s3.get_paginator("list_objects_v2")
    runs: set[str] = set()
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        runs.update(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []))
    return sorted(runs)


def read_record(location: S3Location, name: str, run_id: str | None = None) -> dict | None:
    """A record from the bucket, which anything with write access (a training script under the instance role,
    a truncated upload) may have broken: the record as its model reads it (an older shape migrated), or
    ValueError (RecordError) saying in one line what is wrong. None: there is no such record."""
    data = location.read_bytes(name)
    if data is None:
        return None
    return parse_document(name, load_json(data, name), run_id=run_id)


def load_run_records(s3, bucket: str, campaign: str) -> list[dict]:
    """One record per run: its launch attempts and, only if complete, its result. A run whose records
    cannot be read is kept apart (`status: unreadable`, `unreadable`: why) so the others still report."""
    records = []
    for run_id in list_runs(s3, bucket, campaign):
        location = run_location(s3, bucket, campaign, run_id)
        record = {"run_id": run_id, "launch": {}, "result": None}
        try:
            record["launch"] = read_record(location, "launch.json", run_id) or {}  # kept when only result.json is
            record["result"] = read_record(location, "result.json", run_id)        # broken: its cost still counts
        except ValueError as error:
            record.update(status="unreadable", unreadable=str(error))
        else:
            record["status"] = "complete" if record["result"] else "incomplete"
        records.append(record)
    return records


def record_campaign(s3, bucket: str, spec, document: dict) -> None:
    """campaign.json holds one entry per backend, so EC2 and SageMaker runs can share a campaign."""
    location = S3Location(bucket, campaign_prefix(spec.campaign), s3)
    try:
        current = read_record(location, "campaign.json") or {}
    except RecordError as error:  # never overwritten: it holds the other backends' entries
        raise TrainfleetInputError(f"campaign {spec.campaign}: {error}; nothing was launched") from None
    backends = current.get("backends", {})
    backends[spec.backend] = {"spec": spec.to_dict(), **document}
    # the region its runs were launched in: status, collect and teardown go there unless told otherwise
    write_json(location, "campaign.json", {"campaign": spec.campaign, "region": spec.region, "backends": backends})


def campaign_document(s3, bucket: str, campaign: str) -> dict | None:
    """campaign.json, the mark of a campaign that was launched (None: no such campaign in this bucket)."""
    try:
        return read_record(S3Location(bucket, campaign_prefix(campaign), s3), "campaign.json")
    except RecordError:
        return {}  # there, but unreadable: it exists; its specs are unknown


def campaign_specs(s3, bucket: str, campaign: str) -> list[dict]:
    document = campaign_document(s3, bucket, campaign) or {}
    return [entry["spec"] for entry in (document.get("backends") or {}).values()
            if isinstance(entry, dict) and isinstance(entry.get("spec"), dict)]


def current_run_ids(document: dict | None) -> set[str] | None:
    """The runs of the campaign's current code and settings (each backend's `run_ids`, written at its last
    launch); its other runs were made from earlier code or settings. None: campaign.json from before run ids
    were recorded, when every run counts as current."""
    entries = [entry for entry in ((document or {}).get("backends") or {}).values() if isinstance(entry, dict)]
    lists = [entry["run_ids"] for entry in entries if isinstance(entry.get("run_ids"), list)]
    return {str(run_id) for ids in lists for run_id in ids} if lists else None


def campaign_region(document: dict | None) -> str | None:
    """The region a campaign was launched in: campaign.json's `region`, else its specs' (older records)."""
    document = document or {}
    if isinstance(document.get("region"), str):
        return document["region"]
    regions = {entry["spec"].get("region") for entry in (document.get("backends") or {}).values()
               if isinstance(entry, dict) and isinstance(entry.get("spec"), dict)}
    return regions.pop() if len(regions) == 1 else None


# What an attempt leaves in logs/attempt-N/: bootstrap.log (user data, agent and the script's output, pushed
# during the run and at its end), script.log (the script's output alone, at the end), progress.json (the
# latest metric values, pushed during the run).
LOG_NAMES = ("bootstrap.log", "script.log")


def attempt_logs(s3, bucket: str, campaign: str, run_id: str, attempt: int) -> S3Location:
    return run_location(s3, bucket, campaign, run_id).child(f"logs/attempt-{attempt}")


def read_log(s3, bucket: str, campaign: str, run_id: str, attempt: int, name: str, start: int = 0) -> bytes | None:
    """The bytes of an attempt's log from `start` on (b"" when none are new), or None if there is no such log."""
    location = attempt_logs(s3, bucket, campaign, run_id, attempt)
    try:
        response = s3.get_object(Bucket=bucket, Key=location._key(name),
                                 **({"Range": f"bytes={start}-"} if start else {}))
    except s3.exceptions.NoSuchKey:
        return None
    except s3.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") == "InvalidRange":  # nothing past `start` yet
            return b""
        raise
    return response["Body"].read()


def log_tail(s3, bucket: str, campaign: str, run_id: str, attempt: int, lines: int = 10) -> list[str]:
    """The last non-empty lines of an attempt's log (the script's own, else the bootstrap log)."""
    for name in ("script.log", "bootstrap.log"):
        data = read_log(s3, bucket, campaign, run_id, attempt, name)
        if data:
            text = [line for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()]
            return text[-lines:]
    return []


def read_progress(s3, bucket: str, campaign: str, run_id: str, attempt: int) -> dict | None:
    """The latest metric values an attempt's agent pushed (progress.json: {"latest": {name: value}, ...}), if
    any and readable; the values are the script's, so typed like a metric line (finite scalars, bounded)."""
    data = attempt_logs(s3, bucket, campaign, run_id, attempt).read_bytes("progress.json")
    try:
        value = None if data is None else load_json(data, "progress.json")
    except RecordError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("latest"), dict):
        return None
    progress = {"latest": metric_line(value["latest"])}
    if isinstance(value.get("records"), int) and not isinstance(value["records"], bool) and 0 <= value["records"] < 2**63:
        progress["records"] = value["records"]   # how many metric lines the agent had read
    if isinstance(value.get("at"), str) and len(value["at"]) <= 64:
        progress["at"] = value["at"]             # when it pushed them
    return progress
