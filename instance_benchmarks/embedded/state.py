"""The embedded default's results outlive moto's server: a local mirror of its bucket.

moto keeps everything in memory, so without this every `--local` command would start from an empty
account. `LocalState` mirrors the objects of the Storage stack's bucket (campaign.json, launch.json,
checkpoints, logs, result.json, reports: the whole campaign state, which lives in S3 and nowhere else)
into a folder, and restores them into a freshly deployed bucket when the next `--local` command starts;
the commands then read and write them through the same boto3 code as on AWS.

* Where: one folder, whatever the current directory: `--state DIR`, else `$TRAINFLEET_STATE`, else
  `$XDG_STATE_HOME/trainfleet`, else `~/.local/state/trainfleet` (`state_dir`). The mirror is its
  `manifest.json`, `objects/` and `lock`; `--local` reports go to its `reports/` unless `--out` says
  otherwise. One mirror for every region: the embedded default is one local account.
* When: `campaign run --local` saves after each launch round, every 30 s while an instance runs (its
  checkpoints) and after each instance ends, so a SIGKILL loses at most the attempt that was running
  (its `launch.json` is there: the next run settles it as lost and relaunches it).
* How: objects are stored by SHA-256 under `objects/` (keys read from the bucket never become paths);
  `manifest.json` (key -> SHA-256, metadata, content type) is replaced atomically after the objects it
  names are on disk, so a kill mid-save leaves the previous consistent state. A restored object's bytes
  are checked against the manifest's SHA-256 before they are uploaded.
* Who: one writer at a time (`campaign run`/`collect --local` take an exclusive lock, `status`, `logs`,
  `models`, `info` and `local up` a shared one); a busy state is a one-line error, exit 2.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path

from instance_benchmarks.core.errors import TrainfleetInputError
from training_scripts.storage import atomic_write

STATE_ENV = "TRAINFLEET_STATE"
MANIFEST = "manifest.json"
REPORTS = "reports"  # `--local` reports without --out: <state>/reports/<campaign>/
VERSION = 1


def state_dir(explicit: Path | str | None = None) -> Path:
    """The `--local` state folder, absolute and independent of the current directory: `explicit` (--state),
    else $TRAINFLEET_STATE, else $XDG_STATE_HOME/trainfleet (an absolute XDG_STATE_HOME only, as the XDG
    base directory specification says), else ~/.local/state/trainfleet."""
    chosen = explicit or os.environ.get(STATE_ENV)
    if chosen:
        return Path(chosen).expanduser().absolute()
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "state"
    return base / "trainfleet"


class LocalState:
    """A folder mirroring the embedded bucket. `open()` takes the lock; `restore` and `save` move objects."""

    def __init__(self, root: Path | str | None = None, *, writable: bool = True, log=print) -> None:
        self.root = state_dir(root)
        self.writable, self.log = writable, log
        self._lock = None
        self._etags: dict[str, str] = {}  # key -> ETag in this server's bucket, for what the manifest holds
        self.entries: dict[str, dict] = {}

    # ---------------------------------------------------------------- lock
    def open(self) -> "LocalState":
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._lock = (self.root / "lock").open("a+")
        except OSError as error:
            raise TrainfleetInputError(f"local state {self.root}: {error.strerror or error}") from None
        try:
            fcntl.flock(self._lock, (fcntl.LOCK_EX if self.writable else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise TrainfleetInputError(
                f"local state {self.root} is in use by another trainfleet --local command; wait for it to end "
                f"(or give it another --state folder)") from None
        self.entries = self._read_manifest()
        return self

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def _read_manifest(self) -> dict[str, dict]:
        path = self.root / MANIFEST
        if not path.is_file():
            return {}
        try:
            document = json.loads(path.read_text())
            entries = document["objects"]
            if not isinstance(entries, dict):
                raise TypeError("objects is not a mapping")
        except (ValueError, KeyError, TypeError) as error:
            raise TrainfleetInputError(f"local state {path} cannot be read ({error}); move it aside to start afresh") from None
        return entries

    def _blob(self, sha256: str) -> Path:
        return self.root / "objects" / sha256[:2] / sha256

    # ---------------------------------------------------------------- restore / save
    def read(self, key: str) -> bytes | None:
        """A saved object's bytes (checked against its SHA-256), or None when the state has no such key."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        data = self._blob(entry["sha256"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ValueError(f"local state: {key} does not match its SHA-256")
        return data

    def restore(self, s3, bucket: str) -> int:
        """Upload every saved object into `bucket` (a fresh deployment's); returns how many."""
        restored = 0
        for key, entry in sorted(self.entries.items()):
            try:
                data = self._blob(entry["sha256"]).read_bytes()
            except OSError:
                self.log(f"local state: {key} is missing from {self.root}; not restored")
                continue
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                self.log(f"local state: {key} does not match its SHA-256; not restored")
                continue
            extra = {"ContentType": entry["content_type"]} if entry.get("content_type") else {}
            response = s3.put_object(Bucket=bucket, Key=key, Body=data, Metadata=entry.get("metadata") or {}, **extra)
            self._etags[key] = response["ETag"]
            restored += 1
        return restored

    def save(self, s3, bucket: str) -> int:
        """Mirror `bucket` into the folder (new and changed objects fetched, deleted ones dropped); returns
        how many objects changed. A no-op for a read-only state."""
        if not self.writable:
            return 0
        listed: dict[str, str] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                listed[item["Key"]] = item["ETag"]
        entries = {key: entry for key, entry in self.entries.items() if key in listed}
        changed = len(self.entries) - len(entries)
        for key, etag in listed.items():
            if key in entries and self._etags.get(key) == etag:
                continue
            try:
                response = s3.get_object(Bucket=bucket, Key=key)
            except s3.exceptions.NoSuchKey:  # deleted since it was listed
                continue
            data = response["Body"].read()
            digest = hashlib.sha256(data).hexdigest()
            blob = self._blob(digest)
            if not blob.is_file():
                atomic_write(blob, data)
            entry = {"sha256": digest, "metadata": response.get("Metadata") or {},
                     "content_type": response.get("ContentType")}
            if entries.get(key) != entry:
                changed += 1
            entries[key] = entry
            self._etags[key] = response.get("ETag", etag)
        if changed or not (self.root / MANIFEST).is_file():
            atomic_write(self.root / MANIFEST, json.dumps({"version": VERSION, "objects": entries},
                                                           indent=1, sort_keys=True).encode())
            self._collect_garbage(entries)
        self.entries = entries
        return changed

    def _collect_garbage(self, entries: dict[str, dict]) -> None:
        """Drop objects the manifest no longer names (after the manifest was written)."""
        keep = {entry["sha256"] for entry in entries.values()}
        for blob in (self.root / "objects").glob("*/*"):
            if blob.name not in keep and not blob.name.startswith("."):
                blob.unlink(missing_ok=True)
