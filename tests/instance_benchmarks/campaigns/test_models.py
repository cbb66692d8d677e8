
import pytest

from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.campaigns.models import IntegrityError, download_run, list_models, parse_run_ref
from instance_benchmarks.campaigns.store import run_location, write_json


@pytest.fixture
def run(s3, bucket):
    location = run_location(s3, bucket, "sweep", "r1")
    train = location.child("train")
    files = {"model.pt": b"weights" * 1000, "config.json": b"{}"}
    checksums = {name: train.write_bytes(name, data) for name, data in files.items()}
    write_json(location, "result.json", {"status": "complete", "run_id": "r1", "instance_type": "c5.xlarge",
                                         "train_artifacts": checksums, "final_metric": 0.9, "primary_metric": "acc"})
    write_json(run_location(s3, bucket, "sweep", "r2"), "launch.json", {"attempts": []})
    return files


def test_list_models(s3, bucket, run):
    rows = list_models(s3, bucket)
    assert [(r["campaign"], r["run_id"], r["size_bytes"]) for r in rows] == [("sweep", "r1", 7000)]


def test_download_verifies_checksums(s3, bucket, run, tmp_path):
    seen = []
    written = download_run(s3, bucket, "sweep", "r1", tmp_path, progress=lambda n, d, t: seen.append((n, d, t)))
    assert (tmp_path / "model.pt").read_bytes() == run["model.pt"] and set(written) == {"model.pt", "config.json"}
    assert seen[-1][1] == seen[-1][2]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_corrupted_download_is_refused_and_leaves_nothing(s3, bucket, run, tmp_path):
    s3.put_object(Bucket=bucket, Key="campaigns/sweep/runs/r1/train/model.pt", Body=b"tampered")
    with pytest.raises(IntegrityError, match="model.pt: SHA-256"):
        download_run(s3, bucket, "sweep", "r1", tmp_path)
    assert not (tmp_path / "model.pt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.pt")]


def test_incomplete_and_unknown_runs(s3, bucket, run, tmp_path):
    with pytest.raises(TrainfleetInputError, match="incomplete"):
        download_run(s3, bucket, "sweep", "r2", tmp_path)
    with pytest.raises(TrainfleetInputError, match="no run sweep/r9"):
        download_run(s3, bucket, "sweep", "r9", tmp_path)


def test_run_ref():
    assert parse_run_ref("sweep/r1") == ("sweep", "r1")
    with pytest.raises(TrainfleetInputError, match="CAMPAIGN/RUN_ID"):
        parse_run_ref("r1")
