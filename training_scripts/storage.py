"""Where a run's files go: a local directory or an `s3://bucket/prefix` URI, behind one small interface.

Writes are atomic (local: temp file + rename; S3: one PutObject) and carry a SHA-256 checksum
(S3 verifies `ChecksumSHA256` on upload and the hex digest is stored as object metadata).
boto3 honours AWS_ENDPOINT_URL, so the same code talks to AWS or to moto's server.
"""
from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """`data` at `path`, whole or not at all: a synced temporary file beside it, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ChecksumMismatch(IOError):
    pass


class Location:
    """Base: `write_bytes`, `read_bytes` (None when absent), `list`, `delete`, `uri`."""

    uri: str

    def write_bytes(self, name: str, data: bytes) -> str:
        raise NotImplementedError

    def read_bytes(self, name: str) -> bytes | None:
        raise NotImplementedError

    def list(self, prefix: str = "") -> list[str]:
        raise NotImplementedError

    def child(self, name: str) -> "Location":
        raise NotImplementedError

    def delete(self, name: str) -> None:
        """Remove `name`; silent when it is already gone."""
        raise NotImplementedError


@dataclass
class LocalLocation(Location):
    root: Path

    @property
    def uri(self) -> str:
        return str(self.root)

    def write_bytes(self, name: str, data: bytes) -> str:
        atomic_write(self.root / name, data)
        return sha256_hex(data)

    def read_bytes(self, name: str) -> bytes | None:
        path = self.root / name
        return path.read_bytes() if path.is_file() else None

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.is_dir():
            return []
        names = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(n for n in names if n.startswith(prefix) and not Path(n).name.startswith("."))

    def child(self, name: str) -> "LocalLocation":
        return LocalLocation(self.root / name)

    def delete(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)


@dataclass
class S3Location(Location):
    bucket: str
    prefix: str
    client: object

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, name: str) -> str:
        return f"{self.prefix.rstrip('/')}/{name}" if self.prefix else name

    def write_bytes(self, name: str, data: bytes) -> str:
        digest = hashlib.sha256(data)
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._key(name),
            Body=data,
            ChecksumSHA256=base64.b64encode(digest.digest()).decode(),
            Metadata={"sha256": digest.hexdigest()},
        )
        return digest.hexdigest()

    def read_bytes(self, name: str) -> bytes | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(name))
        except self.client.exceptions.NoSuchKey:
            return None
        data = response["Body"].read()
        expected = response.get("Metadata", {}).get("sha256")
        if expected and sha256_hex(data) != expected:
            raise ChecksumMismatch(f"{self.uri}/{name}: SHA-256 does not match the uploaded checksum")
        return data

    def list(self, prefix: str = "") -> list[str]:
        base = self._key("")
        paginator = self.client.get_paginator("list_objects_v2")
        names = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base + prefix):
            names += [obj["Key"][len(base):] for obj in page.get("Contents", [])]
        return sorted(names)

    def child(self, name: str) -> "S3Location":
        return S3Location(self.bucket, self._key(name), self.client)

    def delete(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(name))


def open_location(uri: str, s3_client=None) -> Location:
    """`s3://bucket/prefix` or a local path."""
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://"):].partition("/")
        if not bucket:
            raise ValueError(f"S3 URI {uri!r} has no bucket")
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        return S3Location(bucket, prefix.strip("/"), s3_client)
    if "://" in uri:
        raise ValueError(f"unsupported location {uri!r}: use a local path or s3://bucket/prefix")
    return LocalLocation(Path(uri))
