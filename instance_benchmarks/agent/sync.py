"""Folders on the instance <-> prefixes in the run's S3 location (every object with its SHA-256)."""
from __future__ import annotations

import threading
from pathlib import Path

from training_scripts.storage import S3Location


def _files(folder: Path) -> dict[str, Path]:
    """Relative name -> path, skipping hidden files (temporary files of atomic writes start with '.')."""
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)}


def restore(location: S3Location, folder: Path) -> list[str]:
    """Download every object under `location` into `folder` (checksums verified on read)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = location.list()
    for name in names:
        target = (folder / name).resolve()
        if folder.resolve() not in target.parents:
            raise ValueError(f"{location.uri}/{name} would land outside {folder}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(location.read_bytes(name))
    return names


def upload(folder: Path, location: S3Location) -> dict[str, str]:
    """Upload every file in `folder`; returns name -> SHA-256."""
    return {name: location.write_file(name, path) for name, path in _files(folder).items()}


class Mirror:
    """Keeps `location` equal to `folder`: uploads what changed since the last push, deletes what is gone."""

    def __init__(self, folder: Path, location: S3Location) -> None:
        self.folder, self.location = folder, location
        self._seen: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self.pushes = 0

    def push(self) -> None:
        with self._lock:
            files = _files(self.folder)
            for name, path in files.items():
                try:
                    stat = path.stat()
                    signature = (stat.st_size, stat.st_mtime_ns)
                    if self._seen.get(name) != signature:
                        self.location.write_file(name, path)
                        self._seen[name] = signature
                except FileNotFoundError:  # replaced while we looked: the next push takes the new one
                    continue
            for name in set(self.location.list()) - set(files):
                self.location.client.delete_object(Bucket=self.location.bucket, Key=self.location._key(name))
                self._seen.pop(name, None)
            self.pushes += 1

    def mark_restored(self) -> None:
        """Files just restored from S3 need no upload."""
        self._seen = {name: (p.stat().st_size, p.stat().st_mtime_ns) for name, p in _files(self.folder).items()}


class PeriodicPush(threading.Thread):
    def __init__(self, mirror: Mirror, interval: float) -> None:
        super().__init__(daemon=True)
        self.mirror, self.interval = mirror, interval
        self._halt = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                self.mirror.push()
            except Exception as error:  # noqa: BLE001 - a failed periodic push is retried at the next tick
                self.errors.append(str(error))

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=60)
