"""Trained models in S3: list the complete runs' models, download them with checksum verification.

The bucket is untrusted input (training scripts write to it under the instance role): every artifact
name and checksum read from `result.json` is validated before anything is fetched, and a download is
written to a temporary directory beside the target, moved into place only when every SHA-256 matches."""
from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import secrets
from pathlib import Path, PurePosixPath
from typing import Callable

from botocore.exceptions import ClientError

from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.core.validation import download_path, validate_identifier
from instance_benchmarks.campaigns.store import list_campaigns, load_run_records, run_prefix

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class IntegrityError(TrainfleetInputError):
    """The bucket holds something trainfleet refuses to write to disk: a bad name or a wrong checksum."""


class DownloadError(TrainfleetInputError):
    """The download's target cannot be written (not a directory, no permission, disk full)."""


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
    return validate_identifier(campaign, "campaign"), validate_identifier(run_id, "run id")


def artifact_path(name, out_dir: Path) -> PurePosixPath:
    """An artifact name from result.json as a safe relative path under `out_dir`, or IntegrityError."""
    return download_path(name, out_dir, what="artifact name {name} in result.json", error=IntegrityError)


def _artifacts(result: dict, out_dir: Path) -> dict[PurePosixPath, tuple[str, str]]:
    """{relative path: (name, sha256)} for every artifact, all checked before anything is fetched."""
    artifacts = result.get("train_artifacts")
    if not isinstance(artifacts, dict):
        raise IntegrityError("result.json: train_artifacts is not an object; refused")
    checked: dict[PurePosixPath, tuple[str, str]] = {}
    for name, expected in sorted(artifacts.items(), key=lambda item: str(item[0])):
        path = artifact_path(name, out_dir)
        if not isinstance(expected, str) or not _SHA256.fullmatch(expected):
            raise IntegrityError(f"artifact {name!r} in result.json has no SHA-256 (got {str(expected)[:20]!r}); refused")
        clash = [other for other in checked if other in path.parents or path in other.parents]
        if clash:
            raise IntegrityError(f"artifact names {str(clash[0])!r} and {name!r} in result.json collide; refused")
        checked[path] = (name, expected)
    return checked


def check_target(out_dir: Path) -> Path:
    """`out_dir` as an absolute path if it can receive a download (a directory, or a new name whose
    existing ancestors are all directories), else DownloadError; checked before anything is fetched."""
    absolute = Path(os.path.abspath(out_dir))
    if not absolute.name:
        raise DownloadError(f"--out {out_dir} cannot be the file system's root")
    if absolute.exists() and not absolute.is_dir():
        raise DownloadError(f"--out {out_dir} exists and is not a directory")
    for path in absolute.parents:
        if path.exists():
            if not path.is_dir():
                raise DownloadError(f"--out {out_dir}: {path} exists and is not a directory")
            break
    return absolute


def _clashes(out_dir: Path, artifacts) -> None:
    """Nothing already in `out_dir` may stop a file from being moved into place (a directory where a
    file goes, a file where a directory goes), so the move never fails halfway."""
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise DownloadError(f"cannot write to {out_dir}: permission denied; nothing was written")
    for relative in artifacts:
        for ancestor in reversed(relative.parents[:-1]):
            if (out_dir / ancestor).is_symlink() or ((out_dir / ancestor).exists() and not (out_dir / ancestor).is_dir()):
                raise DownloadError(f"{out_dir / ancestor} exists and is not a directory; nothing was written")
        target = out_dir / relative
        if target.is_dir() or target.is_symlink():
            raise DownloadError(f"{target} exists and is a directory or a link; nothing was written")


def _describe(error: OSError, out_dir: Path) -> str:
    if error.errno == errno.ENOSPC:
        return f"no space left on the device to download into {out_dir}; nothing was written"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write to {out_dir}: {error.strerror or 'permission denied'}; nothing was written"
    return f"cannot download into {out_dir}: {error.strerror or error}; nothing was written"


def download_run(s3, bucket: str, campaign: str, run_id: str, out_dir: Path,
                 progress: Callable[[str, int, int], None] | None = None) -> dict[str, Path]:
    """Download a complete run's training artifacts into `out_dir`. Every name is validated first; the
    files go to a temporary directory beside `out_dir` and are moved into place only when every SHA-256
    matches, so a refused or failed download (IntegrityError, DownloadError) leaves nothing behind."""
    records = {r["run_id"]: r for r in load_run_records(s3, bucket, campaign)}
    if run_id not in records:
        raise TrainfleetInputError(f"no run {campaign}/{run_id} in s3://{bucket}")
    if records[run_id].get("unreadable"):
        raise TrainfleetInputError(f"run {campaign}/{run_id} cannot be read: {records[run_id]['unreadable']}")
    result = records[run_id]["result"]
    if result is None:
        raise TrainfleetInputError(f"run {campaign}/{run_id} is incomplete (no result.json): nothing to download")
    out_dir = Path(out_dir)
    artifacts = _artifacts(result, out_dir)
    absolute = check_target(out_dir)
    if out_dir.is_dir():
        _clashes(out_dir, artifacts)
    created = [path for path in absolute.parents if not path.exists()]  # removed again if the download fails
    staging = None
    try:
        absolute.parent.mkdir(parents=True, exist_ok=True)
        staging = absolute.parent / f".{absolute.name}.partial-{secrets.token_hex(6)}"
        staging.mkdir()  # the umask's permissions, as a plain mkdir of out_dir would have
        for relative, (name, expected) in artifacts.items():
            key = f"{run_prefix(campaign, run_id)}/train/{name}"
            local = staging / relative
            local.parent.mkdir(parents=True, exist_ok=True)
            try:
                size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                    raise
                raise IntegrityError(f"{name}: listed in result.json but not in s3://{bucket}/{key}; "
                                     "nothing was written") from None
            done = 0

            def tick(chunk: int, name=name, size=size) -> None:
                nonlocal done
                done += chunk
                if progress:
                    progress(name, done, size)

            s3.download_file(bucket, key, str(local), Callback=tick)
            digest = _sha256(local)
            if digest != expected:
                raise IntegrityError(f"{name}: SHA-256 {digest[:12]}... does not match the run's {expected[:12]}...; "
                                     "nothing was written")
        written = _move_into_place(staging, out_dir, artifacts)
    except OSError as error:
        _remove(staging, created)
        raise DownloadError(_describe(error, out_dir)) from None
    except BaseException:  # a refused checksum, an S3 error, Ctrl-C: nothing stays behind
        _remove(staging, created)
        raise
    return written


def _remove(staging: Path | None, created: list[Path]) -> None:
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)
    for path in created:  # deepest first
        try:
            path.rmdir()
        except OSError:
            break


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _move_into_place(staging: Path, out_dir: Path, artifacts) -> dict[str, Path]:
    """Same file system (staging is beside out_dir): renames that do not copy and cannot run out of space."""
    if not out_dir.exists():
        os.rename(staging, out_dir)
    else:
        for relative in artifacts:
            (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / relative, out_dir / relative)
        shutil.rmtree(staging, ignore_errors=True)  # the emptied staging folders
    return {name: (out_dir / relative).resolve() for relative, (name, _) in artifacts.items()}
