"""Where a run's files go: a local directory or an `s3://bucket/prefix` URI, behind one small interface.

Writes are atomic (local: temp file + rename; S3: boto3's managed transfer, one PutObject or, above its
multipart threshold, a multipart upload, so objects over S3's 5 GB single-PUT limit go too) and carry a
SHA-256 checksum: S3 verifies it on upload (`ChecksumSHA256` of the whole object on a single PUT, of each part
on a multipart upload) and the whole object's hex digest is stored as object metadata, checked on every read.

An instance role may list its bucket only under its own prefixes (an `s3:prefix` condition), and S3 answers a
GetObject of a missing key with 403 AccessDenied, not 404, to a caller not allowed to list that key (S3 API
reference, GetObject, "Permissions"). `read_bytes` then asks a listing of that very key (allowed under the
prefix) whether it exists: absent reads as None, a real denial still raises.
boto3 honours AWS_ENDPOINT_URL, so the same code talks to AWS or to moto's server.
"""
from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 8 * 1024 * 1024  # bytes hashed at a time when a file is uploaded from disk


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

    def write_file(self, name: str, path: Path) -> str:
        """Upload the file at `path` as `name` (streamed, whatever its size); returns its SHA-256."""
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

    def write_file(self, name: str, path: Path) -> str:
        return self.write_bytes(name, Path(path).read_bytes())

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


def _error_code(error) -> str:
    return error.response.get("Error", {}).get("Code", "")


def _stream_sha256(handle) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: handle.read(CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


@dataclass
class S3Location(Location):
    bucket: str
    prefix: str
    client: object
    transfer: object = field(default=None, repr=False)  # boto3 TransferConfig; None: boto3's defaults (8 MB)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, name: str) -> str:
        return f"{self.prefix.rstrip('/')}/{name}" if self.prefix else name

    def _transfer(self):
        from boto3.s3.transfer import TransferConfig

        return self.transfer or TransferConfig()

    def _upload(self, name: str, fileobj, size: int, hex_digest: str) -> str:
        """boto3's managed transfer: one PutObject with the whole object's SHA-256 below the multipart
        threshold, else a multipart upload with a SHA-256 per part (S3 has no full-object SHA-256 for those)."""
        config = self._transfer()
        checksum = ({"ChecksumSHA256": base64.b64encode(bytes.fromhex(hex_digest)).decode()}
                    if size < config.multipart_threshold else {"ChecksumAlgorithm": "SHA256"})
        self.client.upload_fileobj(fileobj, self.bucket, self._key(name), Config=config,
                                   ExtraArgs={"Metadata": {"sha256": hex_digest}, **checksum})
        return hex_digest

    def write_bytes(self, name: str, data: bytes) -> str:
        return self._upload(name, io.BytesIO(data), len(data), sha256_hex(data))

    def write_file(self, name: str, path: Path) -> str:
        with open(path, "rb") as handle:  # one open file: hashed, then sent from its start
            digest = _stream_sha256(handle)
            handle.seek(0)
            return self._upload(name, handle, os.fstat(handle.fileno()).st_size, digest)

    def _exists(self, key: str) -> bool:
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1).get("Contents", [])
        return any(obj["Key"] == key for obj in listed)

    def read_bytes(self, name: str) -> bytes | None:
        key = self._key(name)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            return None
        except self.client.exceptions.ClientError as error:
            if _error_code(error) not in ("AccessDenied", "403"):
                raise
            try:  # 403 for a key we may not list (a missing one, to S3): does it exist?
                exists = self._exists(key)
            except self.client.exceptions.ClientError:
                raise error from None
            if exists:
                raise
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
        return S3Location(self.bucket, self._key(name), self.client, self.transfer)

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
