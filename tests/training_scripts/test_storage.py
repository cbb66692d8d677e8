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
