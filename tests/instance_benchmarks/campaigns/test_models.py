
import errno
import hashlib
import os
import sys

import pytest

from instance_benchmarks import cli
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.campaigns.models import (
    DownloadError, IntegrityError, check_target, download_run, list_models, parse_run_ref,
)
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


# --------------------------------------------------------------------------- a hostile bucket
MODEL = b"weights" * 1000


def _tree(root):
    """Every path under `root` with its bytes (None for directories)."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def _plant(s3, bucket, artifacts: dict, run_id="r3"):
    """A complete run whose result.json lists `artifacts` {name: sha256}; model.pt really is in S3."""
    location = run_location(s3, bucket, "sweep", run_id)
    checksums = {"model.pt": location.child("train").write_bytes("model.pt", MODEL)}
    write_json(location, "result.json", {"status": "complete", "run_id": run_id, "instance_type": "c5.xlarge",
                                         "train_artifacts": {**checksums, **artifacts}})
    return checksums["model.pt"]


@pytest.fixture
def deployed(monkeypatch, s3, bucket, ssm):
    """The SSM exports `trainfleet` reads (in moto), so the CLI runs in-process against this bucket."""
    from instance_benchmarks.core.contract import SSM_EXPORTS, SSM_PREFIX

    values = {"bucket": bucket, "subnet_ids": "subnet-1", "security_group_id": "sg-1",
              "instance_profile_arn": "arn:aws:iam::123456789012:instance-profile/x",
              "launch_templates": '{"cpu": {"spot": "lt-1", "on-demand": "lt-2", "root_volume_gib": 30}}'}
    for key, suffix in SSM_EXPORTS.items():
        ssm.put_parameter(Name=f"{SSM_PREFIX}/{suffix}", Value=values[key], Type="String")
    s3.put_object(Bucket=bucket, Key="campaigns/sweep/campaign.json", Body=b'{"campaign": "sweep", "backends": {}}')
    return bucket


def _download(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["trainfleet", "models", "download", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("name", [
    "../evil.pt", "./../../evil.pt", "sub/../../evil.pt", "..", "model\x00.pt", "evil\n.pt", "evil\x7f",
    "a\\..\\evil.pt", "", "sub//evil.pt", "sub/./evil.pt", "ABSOLUTE",
])
def test_hostile_artifact_names_exit_2_and_write_nothing(monkeypatch, capsys, s3, deployed, tmp_path, name):
    work = tmp_path / "work"
    work.mkdir()
    name = str(tmp_path / "outside" / "evil.pt") if name == "ABSOLUTE" else name
    _plant(s3, deployed, {name: hashlib.sha256(b"evil").hexdigest()})
    monkeypatch.chdir(work)
    before = _tree(tmp_path)
    status, err = _download(monkeypatch, capsys, "sweep/r3", "--out", str(work / "out"))
    assert status == 2 and err.startswith("error: artifact name ") and "refused" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _tree(tmp_path) == before  # nothing inside --out (not even model.pt), nothing outside it


def test_hostile_names_are_refused_before_anything_is_fetched(s3, bucket, tmp_path, monkeypatch):
    _plant(s3, bucket, {"../x": hashlib.sha256(b"x").hexdigest()})
    monkeypatch.setattr(s3, "download_file", lambda *a, **k: pytest.fail("fetched before validating"))
    with pytest.raises(IntegrityError, match="outside"):
        download_run(s3, bucket, "sweep", "r3", tmp_path / "out")


@pytest.mark.parametrize("artifacts, message", [
    ({"weights.bin": "not-a-sha"}, "has no SHA-256"),
    ({"weights.bin": None}, "has no SHA-256"),
    ({"sub": "0" * 64, "sub/x": "0" * 64}, "collide"),
])
def test_malformed_checksums_and_colliding_names_are_refused(s3, bucket, tmp_path, artifacts, message):
    _plant(s3, bucket, artifacts)
    with pytest.raises(IntegrityError, match=message):
        download_run(s3, bucket, "sweep", "r3", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_checksum_mismatch_exits_2_and_leaves_nothing(monkeypatch, capsys, s3, deployed, tmp_path):
    location = run_location(s3, deployed, "sweep", "r3")
    _plant(s3, deployed, {"config.json": location.child("train").write_bytes("config.json", b"{}")})
    s3.put_object(Bucket=deployed, Key="campaigns/sweep/runs/r3/train/config.json", Body=b"{tampered}")
    status, err = _download(monkeypatch, capsys, "sweep/r3", "--out", str(tmp_path / "out"))
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "config.json: SHA-256" in err and "does not match" in err
    assert list(tmp_path.iterdir()) == []  # model.pt matched, but it is not moved into place either


def test_checksum_mismatch_keeps_an_existing_out_dir_as_it_was(s3, bucket, tmp_path):
    _plant(s3, bucket, {"config.json": hashlib.sha256(b"expected").hexdigest()})
    s3.put_object(Bucket=bucket, Key="campaigns/sweep/runs/r3/train/config.json", Body=b"other")
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.pt").write_bytes(b"previous model")
    with pytest.raises(IntegrityError, match="does not match"):
        download_run(s3, bucket, "sweep", "r3", out)
    assert _tree(tmp_path) == {"out": None, "out/model.pt": b"previous model"}


def test_an_artifact_missing_from_the_bucket_is_one_error(s3, bucket, tmp_path):
    _plant(s3, bucket, {"gone.bin": "0" * 64})
    with pytest.raises(IntegrityError, match="gone.bin: listed in result.json but not in s3://"):
        download_run(s3, bucket, "sweep", "r3", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_out_is_a_file_exits_2_before_any_aws_call(monkeypatch, capsys, tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"keep me")
    status, err = _download(monkeypatch, capsys, "sweep/r3", "--out", str(target))  # no moto: no AWS call made
    assert (status, err) == (2, f"error: --out {target} exists and is not a directory\n")
    assert target.read_bytes() == b"keep me"
    with pytest.raises(DownloadError, match="is not a directory"):
        check_target(target / "below")


@pytest.mark.parametrize("code, message", [
    (errno.ENOSPC, "no space left on the device to download into"),
    (errno.EACCES, "cannot write to"),
])
def test_output_errors_exit_2_and_leave_nothing_behind(monkeypatch, capsys, s3, deployed, tmp_path, code, message):
    from instance_benchmarks.environment import Environment

    real = s3.download_file

    def full_disk(bucket, key, filename, **kwargs):
        real(bucket, key, filename, **kwargs)  # a partial file exists when the disk fills
        raise OSError(code, os.strerror(code), filename)

    _plant(s3, deployed, {})
    monkeypatch.setattr(s3, "download_file", full_disk)
    original = Environment.client
    monkeypatch.setattr(Environment, "client", lambda self, service: s3 if service == "s3" else original(self, service))
    out = tmp_path / "deep" / "er" / "out"
    status, err = _download(monkeypatch, capsys, "sweep/r3", "--out", str(out))
    assert status == 2 and err.startswith(f"error: {message}") and "nothing was written" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # the parents it created are gone too


def test_download_into_an_existing_folder_keeps_other_files(s3, bucket, run, tmp_path):
    location = run_location(s3, bucket, "sweep", "r3")
    checksums = {"sub/dir/data.bin": location.child("train").write_bytes("sub/dir/data.bin", b"data")}
    _plant(s3, bucket, checksums)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "model.pt").write_bytes(b"old")
    written = download_run(s3, bucket, "sweep", "r3", out)
    assert set(written) == {"model.pt", "sub/dir/data.bin"}
    assert _tree(tmp_path) == {"out": None, "out/model.pt": MODEL, "out/notes.txt": b"mine", "out/sub": None,
                               "out/sub/dir": None, "out/sub/dir/data.bin": b"data"}


def test_a_file_where_a_folder_goes_is_refused_before_fetching(s3, bucket, tmp_path):
    location = run_location(s3, bucket, "sweep", "r3")
    _plant(s3, bucket, {"sub/x.bin": location.child("train").write_bytes("sub/x.bin", b"x")})
    (tmp_path / "sub").write_bytes(b"a file")
    with pytest.raises(DownloadError, match="is not a directory"):
        download_run(s3, bucket, "sweep", "r3", tmp_path)
    assert _tree(tmp_path) == {"sub": b"a file"}


@pytest.mark.parametrize("ref", ["sweep/../r1", "*/r1", "sweep/r*", "../sweep/r1", "sweep/", "/r1", "", "Sweep/r1"])
def test_run_refs_are_validated(ref):
    with pytest.raises(TrainfleetInputError):
        parse_run_ref(ref)
