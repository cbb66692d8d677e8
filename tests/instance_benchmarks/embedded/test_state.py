"""The local state: a mirror of the embedded bucket that the next --local command restores."""
import json

import pytest

from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.embedded.state import LocalState
from training_scripts.storage import S3Location


def test_save_then_restore_into_a_fresh_bucket_keeps_bytes_and_checksums(s3, bucket, tmp_path):
    location = S3Location(bucket, "campaigns/c/runs/r", s3)
    location.write_bytes("result.json", b'{"ok": true}')
    location.write_bytes("train/model.pt", b"\x00weights")
    state = LocalState(tmp_path / "state", log=lambda *_: None).open()
    assert state.save(s3, bucket) == 2
    assert state.save(s3, bucket) == 0  # unchanged: nothing fetched or rewritten
    location.delete("train/model.pt")
    location.write_bytes("launch.json", b"{}")
    assert state.save(s3, bucket) == 2  # one gone, one new
    state.close()

    s3.create_bucket(Bucket="fresh")
    reader = LocalState(tmp_path / "state", writable=False, log=lambda *_: None).open()
    assert reader.restore(s3, "fresh") == 2
    restored = S3Location("fresh", "campaigns/c/runs/r", s3)
    assert restored.read_bytes("result.json") == b'{"ok": true}'  # read_bytes checks the sha256 metadata
    assert restored.read_bytes("train/model.pt") is None
    assert json.loads(reader.read("campaigns/c/runs/r/result.json")) == {"ok": True}
    reader.close()


def test_a_corrupted_saved_object_is_not_restored(s3, bucket, tmp_path):
    S3Location(bucket, "campaigns/c", s3).write_bytes("campaign.json", b"{}")
    state = LocalState(tmp_path, log=lambda *_: None).open()
    state.save(s3, bucket)
    [blob] = [p for p in (tmp_path / "objects").rglob("*") if p.is_file()]
    blob.write_bytes(b"tampered")
    said = []
    state.log = said.append
    s3.create_bucket(Bucket="fresh")
    assert state.restore(s3, "fresh") == 0
    assert "does not match its SHA-256" in said[0]


def test_keys_never_become_paths(s3, bucket, tmp_path):
    s3.put_object(Bucket=bucket, Key="../../escape", Body=b"x")
    LocalState(tmp_path / "state", log=lambda *_: None).open().save(s3, bucket)
    assert not (tmp_path / "escape").exists()
    assert {p.name for p in (tmp_path / "state").iterdir()} == {"lock", "manifest.json", "objects"}


def test_one_writer_at_a_time_readers_share(tmp_path):
    writer = LocalState(tmp_path).open()
    with pytest.raises(TrainfleetInputError, match="in use by another trainfleet --local command"):
        LocalState(tmp_path).open()
    with pytest.raises(TrainfleetInputError, match="in use"):
        LocalState(tmp_path, writable=False).open()
    writer.close()
    first, second = LocalState(tmp_path, writable=False).open(), LocalState(tmp_path, writable=False).open()
    with pytest.raises(TrainfleetInputError, match="in use"):
        LocalState(tmp_path).open()
    first.close()
    second.close()


def test_an_unreadable_manifest_is_one_line(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(TrainfleetInputError, match="cannot be read"):
        LocalState(tmp_path).open()


def test_state_folder_is_one_place_whatever_the_current_directory(tmp_path, monkeypatch):
    from instance_benchmarks.embedded.state import state_dir

    monkeypatch.delenv("TRAINFLEET_STATE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert state_dir() == tmp_path / "home" / ".local" / "state" / "trainfleet"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/xdg")  # the XDG spec: relative paths are ignored
    assert state_dir() == tmp_path / "home" / ".local" / "state" / "trainfleet"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir() == tmp_path / "xdg" / "trainfleet"
    monkeypatch.setenv("TRAINFLEET_STATE", str(tmp_path / "env"))
    assert state_dir() == tmp_path / "env"
    assert state_dir("given") == tmp_path / "given"  # --state: made absolute, so a later chdir changes nothing
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert state_dir() == tmp_path / "env" and LocalState().root == tmp_path / "env"
