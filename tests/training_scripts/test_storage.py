import hashlib
import json

import pytest

from training_scripts import tabular_mlp
from training_scripts.storage import ChecksumMismatch, LocalLocation, open_location


def test_local_write_is_atomic_and_listed(tmp_path):
    location = LocalLocation(tmp_path)
    digest = location.write_bytes("a/b.bin", b"xyz")
    assert digest == hashlib.sha256(b"xyz").hexdigest()
    assert location.read_bytes("a/b.bin") == b"xyz" and location.read_bytes("missing") is None
    assert location.list() == ["a/b.bin"]


def test_s3_round_trip_with_checksum(s3, bucket):
    location = open_location(f"s3://{bucket}/runs/x", s3)
    location.write_bytes("f.txt", b"hello")
    head = s3.head_object(Bucket=bucket, Key="runs/x/f.txt")
    assert head["Metadata"]["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert location.read_bytes("f.txt") == b"hello"
    assert location.list() == ["f.txt"]


def test_s3_read_detects_corruption(s3, bucket):
    location = open_location(f"s3://{bucket}/p", s3)
    s3.put_object(Bucket=bucket, Key="p/f", Body=b"tampered", Metadata={"sha256": hashlib.sha256(b"orig").hexdigest()})
    with pytest.raises(ChecksumMismatch):
        location.read_bytes("f")


def test_unsupported_scheme():
    with pytest.raises(ValueError, match="unsupported location"):
        open_location("gs://bucket/x")


def test_training_run_writes_to_s3(s3, bucket):
    config = tabular_mlp.Config(dry_run=True, output=f"s3://{bucket}/jobs/t1")
    tabular_mlp.run(config)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="jobs/t1/")["Contents"]}
    assert {"jobs/t1/result.json", "jobs/t1/model.pt", "jobs/t1/checkpoints/latest.pt"} <= keys
    result = json.loads(s3.get_object(Bucket=bucket, Key="jobs/t1/result.json")["Body"].read())
    model = s3.get_object(Bucket=bucket, Key="jobs/t1/model.pt")["Body"].read()
    assert hashlib.sha256(model).hexdigest() == result["artifacts"]["model.pt"]


@pytest.mark.parametrize("variable", ["TRAINFLEET_OUTPUT_DIR", "SM_MODEL_DIR"])
def test_platform_output_dir_is_the_default(tmp_path, monkeypatch, variable):
    for name in ("TRAINFLEET_OUTPUT_DIR", "SM_MODEL_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, str(tmp_path / "out"))
    tabular_mlp.run(tabular_mlp.Config(dry_run=True))
    assert json.loads((tmp_path / "out" / "result.json").read_text())["status"] == "complete"
    assert (tmp_path / "out" / "checkpoints" / "latest.pt").exists()


def test_a_missing_key_read_as_403_without_list_permission_is_absent(s3, bucket):
    """AWS, not moto: the instance role lists only under its prefixes, so S3 answers GetObject of a missing
    key with 403 AccessDenied. The agent reads metrics.jsonl and the checkpoint on attempt 1, where neither
    exists: that must read as absent, not crash the attempt before it uploads its results."""
    from tests.aws_faults import deny_missing_keys

    deny_missing_keys(s3)
    location = open_location(f"s3://{bucket}/campaigns/c/runs/r", s3)
    with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):  # the fault layer is in place
        s3.get_object(Bucket=bucket, Key="campaigns/c/runs/r/metrics.jsonl")
    assert location.read_bytes("metrics.jsonl") is None
    from instance_benchmarks.agent.main import _previous_metrics

    assert _previous_metrics(location) == []  # the agent's read on attempt 1 (it crashed here on AWS)
    location.write_bytes("metrics.jsonl", b"{}\n")
    assert location.read_bytes("metrics.jsonl") == b"{}\n"
    from training_scripts.loop import Checkpointer

    assert Checkpointer(location.child("checkpoints")).load() is None  # a first attempt's resume


def test_a_real_denial_still_raises(s3, bucket):
    from tests.aws_faults import deny_everything

    s3.put_object(Bucket=bucket, Key="other/f", Body=b"x")
    deny_everything(s3)
    with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
        open_location(f"s3://{bucket}/other", s3).read_bytes("f")


def test_objects_above_the_multipart_threshold_go_in_parts_with_their_checksum(s3, bucket, tmp_path):
    """S3 takes at most 5 GB in one PutObject: above boto3's multipart threshold the managed transfer sends
    parts (each with its SHA-256); the whole object's SHA-256 stays in the metadata and is checked on read."""
    from boto3.s3.transfer import TransferConfig

    small = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    location = open_location(f"s3://{bucket}/campaigns/c/runs/r", s3)
    location.transfer = small
    calls = []
    s3.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    data = bytes(range(256)) * (48 * 1024)  # 12 MiB: three parts of 5 MiB at most
    digest = location.child("train").write_bytes("model.pt", data)
    assert calls.count("UploadPart") == 3 and "PutObject" not in calls and "CompleteMultipartUpload" in calls
    head = s3.head_object(Bucket=bucket, Key="campaigns/c/runs/r/train/model.pt")
    assert head["Metadata"]["sha256"] == digest == hashlib.sha256(data).hexdigest()
    assert head["ContentLength"] == len(data)
    assert location.child("train").read_bytes("model.pt") == data
    path = tmp_path / "ckpt.pt"
    path.write_bytes(data[::-1])
    calls.clear()
    assert location.write_file("ckpt.pt", path) == hashlib.sha256(data[::-1]).hexdigest()
    assert calls.count("UploadPart") == 3 and location.read_bytes("ckpt.pt") == data[::-1]
    calls.clear()
    location.write_bytes("small.json", b"{}")  # below the threshold: one PutObject with the object's SHA-256
    assert calls == ["PutObject"]
