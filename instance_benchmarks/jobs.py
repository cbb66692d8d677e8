"""One-shot jobs (the CDK stacks `TrainingJob-<job-id>`): list them, read or follow their log, download
their output. Every function takes its boto3 clients as arguments; `commands/jobs.py` is the command line.

A job is known by its stack (CloudFormation, in the region it was deployed to) and by its outputs in the
bucket, `s3://<bucket>/jobs/<job-id>/`: what the script wrote to `$TRAINFLEET_OUTPUT_DIR`, plus
`job-status.json` (`{"exit_code": N}`, written when the script ends) and `bootstrap.log` (pushed every
minute while the job runs, and last when it ends). A job whose stack was destroyed still lists by its outputs.

The bucket is untrusted input (the job's script writes to it under the instance role): every key is
checked before anything is written (relative, no `.`/`..`/empty parts, no backslash or control
characters, under `--out` after resolving links), and each file is moved into place only once complete.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path, PurePosixPath
from typing import Callable

from botocore.exceptions import ClientError

from instance_benchmarks.core.bootstrap import JOB_STACK_PREFIX, JOBS_PREFIX, job_prefix
from instance_benchmarks.core.errors import TrainfleetInputError, did_you_mean, known_names
from instance_benchmarks.core.validation import download_path, is_identifier, validate_identifier

LOG_NAME = "bootstrap.log"
STATUS_NAME = "job-status.json"
FINISHED_LINE = re.compile(rb"trainfleet: bootstrap finished with status (\d+)")  # the job's last log line
_ENDED_INSTANCE = {"shutting-down", "terminated", "stopping", "stopped"}


def _not_found(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound", "ValidationError")


def _job_stacks(cfn) -> dict[str, dict]:
    """{job id: stack} for every live TrainingJob-* stack in the client's region."""
    stacks = {}
    for page in cfn.get_paginator("describe_stacks").paginate():
        for stack in page["Stacks"]:
            name = stack["StackName"]
            if name.startswith(JOB_STACK_PREFIX) and is_identifier(name[len(JOB_STACK_PREFIX):]):
                stacks[name[len(JOB_STACK_PREFIX):]] = stack
    return stacks


def _job_prefixes(s3, bucket: str) -> list[str]:
    """Job ids with outputs in the bucket (`jobs/<id>/`)."""
    ids = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{JOBS_PREFIX}/", Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            job_id = common["Prefix"][len(JOBS_PREFIX) + 1:].rstrip("/")
            if is_identifier(job_id):
                ids.append(job_id)
    return ids


def _objects(s3, bucket: str, job_id: str) -> list[dict]:
    prefix = job_prefix(job_id) + "/"
    return [item for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])]


def _read(s3, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if _not_found(error):
            return None
        raise


def exit_code(s3, bucket: str, job_id: str) -> int | None:
    """The script's exit status from job-status.json, or None while it runs (or if it never ended)."""
    raw = _read(s3, bucket, f"{job_prefix(job_id)}/{STATUS_NAME}")
    try:
        code = json.loads(raw)["exit_code"] if raw is not None else None
    except (ValueError, TypeError, KeyError):
        return None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _instance_states(ec2, instance_ids: list[str]) -> dict[str, str]:
    if ec2 is None or not instance_ids:
        return {}
    states = {}
    for instance_id in instance_ids:  # one by one: an id that is long gone must not hide the others
        try:
            reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        except ClientError:
            continue
        for reservation in reservations:
            for instance in reservation["Instances"]:
                states[instance["InstanceId"]] = instance["State"]["Name"]
    return states


def _state(stack: dict | None, instance_state: str | None, code: int | None) -> str:
    if code is not None:
        return "succeeded" if code == 0 else f"failed (exit {code})"
    if stack is not None and not stack["StackStatus"].endswith("_COMPLETE"):
        return stack["StackStatus"].lower()
    if instance_state in _ENDED_INSTANCE:
        return f"ended without job-status.json (instance {instance_state}: watchdog or boot failure; see its log)"
    if instance_state in ("pending", "running"):
        return instance_state
    return "no job-status.json" if stack is None else "unknown"


def list_jobs(cfn, s3, bucket: str, ec2=None) -> list[dict]:
    """Every job with a stack (in cfn's region) or outputs in the bucket, by id: state, stack, instance,
    output files and bytes, last upload."""
    stacks = _job_stacks(cfn)
    ids = sorted(set(stacks) | set(_job_prefixes(s3, bucket)))
    outputs = {job_id: {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
               for job_id, stack in stacks.items()}
    states = _instance_states(ec2, [o["InstanceId"] for o in outputs.values() if "InstanceId" in o])
    rows = []
    for job_id in ids:
        stack = stacks.get(job_id)
        instance_id = outputs.get(job_id, {}).get("InstanceId")
        objects = _objects(s3, bucket, job_id)
        code = exit_code(s3, bucket, job_id) if any(o["Key"].endswith("/" + STATUS_NAME) for o in objects) else None
        rows.append({
            "job_id": job_id,
            "state": _state(stack, states.get(instance_id), code),
            "exit_code": code,
            "stack": stack["StackName"] if stack else None,
            "stack_status": stack["StackStatus"] if stack else None,
            "instance_id": instance_id,
            "files": len(objects),
            "bytes": sum(o["Size"] for o in objects),
            "updated": max((o["LastModified"] for o in objects), default=None),
            "output": f"s3://{bucket}/{job_prefix(job_id)}/",
        })
    return rows


def require_job(cfn, s3, bucket: str, job_id: str, *, region: str | None = None, ec2=None) -> dict:
    """The job's row from `list_jobs`, or a one-line input error naming the jobs that exist."""
    validate_identifier(job_id, "job id")
    rows = list_jobs(cfn, s3, bucket, ec2)
    for row in rows:
        if row["job_id"] == job_id:
            return row
    known = [row["job_id"] for row in rows]
    where = f" (region {region})" if region else ""
    raise TrainfleetInputError(f"no job {job_id}: no stack {JOB_STACK_PREFIX}{job_id}{where} and nothing in "
                               f"s3://{bucket}/{job_prefix(job_id)}/; known: {known_names(known)}"
                               f"{did_you_mean(job_id, known)}")


def read_log(s3, bucket: str, job_id: str) -> bytes | None:
    """The job's bootstrap.log as last pushed to S3, or None before its first push."""
    return _read(s3, bucket, f"{job_prefix(job_id)}/{LOG_NAME}")


def follow_log(s3, bucket: str, job_id: str, write: Callable[[bytes], None], *,
               ended: Callable[[], bool] = lambda: False, poll_seconds: float = 15.0,
               sleep: Callable[[float], None] = time.sleep) -> int | None:
    """Write the log as it grows (the job pushes it every minute) until its last line, `bootstrap finished
    with status N`, arrives (returns N), or `ended()` says the job is gone and a last read added nothing
    (returns None: it ended without finishing, e.g. the watchdog)."""
    shown = 0
    while True:
        gone = ended()  # asked before the read, so a log pushed just before the end is still shown
        log = read_log(s3, bucket, job_id) or b""
        if len(log) < shown:  # cannot shrink unless rewritten from the start: show it again
            shown = 0
        if len(log) > shown:
            write(log[shown:])
            shown = len(log)
        finished = FINISHED_LINE.search(log)
        if finished:
            return int(finished.group(1))
        if gone:
            return None
        sleep(poll_seconds)


def output_path(relative: str, out_dir: Path) -> PurePosixPath:
    """A key below the job's prefix as a safe relative path, or a one-line input error."""
    return download_path(relative, out_dir, what="object key {name}", refused="refused, nothing was written")


def _plan(objects: list[dict], prefix: str, out_dir: Path) -> dict[Path, dict]:
    """{absolute target: object} for every object, all checked before anything is written."""
    root = out_dir.resolve()
    plan: dict[Path, dict] = {}
    relatives: list[PurePosixPath] = []
    for item in objects:
        key = item["Key"]
        if key.endswith("/") and item.get("Size", 0) == 0:
            continue  # a console "folder" marker: nothing to write
        relative = output_path(key[len(prefix):], out_dir)
        target = (root / relative).resolve()  # a link already under --out may point elsewhere
        if root not in target.parents:
            raise TrainfleetInputError(f"object key {key!r} resolves outside {out_dir}; refused, nothing was written")
        clash = [other for other in relatives if other in relative.parents or relative in other.parents]
        if clash:
            raise TrainfleetInputError(f"object keys {prefix}{clash[0]} and {key} collide (a file and a folder); "
                                       "refused, nothing was written")
        relatives.append(relative)
        if target.is_dir():
            raise TrainfleetInputError(f"{target} is a directory where {key} goes; refused, nothing was written")
        plan[target] = item
    return plan


def download_job(s3, bucket: str, job_id: str, out_dir: Path,
                 progress: Callable[[str, int, int], None] | None = None) -> list[Path]:
    """Download everything under s3://bucket/jobs/<job-id>/ into `out_dir` (kept relative paths). Every key
    is validated first; each file is written beside its target and renamed into place when complete."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TrainfleetInputError(f"--out {out_dir} exists and is not a directory")
    prefix = job_prefix(job_id) + "/"
    objects = _objects(s3, bucket, job_id)
    plan = _plan(objects, prefix, out_dir)
    if not plan:
        raise TrainfleetInputError(f"job {job_id} has no output in s3://{bucket}/{prefix} yet")
    written = []
    for target, item in plan.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.parent / f".{target.name}.partial-{secrets.token_hex(4)}"
        done = 0

        def tick(chunk: int, name=item["Key"][len(prefix):], size=item["Size"]) -> None:
            nonlocal done
            done += chunk
            if progress:
                progress(name, done, size)

        try:
            s3.download_file(bucket, item["Key"], str(partial), Callback=tick)
            os.replace(partial, target)
        finally:
            if partial.exists():
                partial.unlink()
        written.append(target)
    return written
