"""One-shot jobs under mock_aws: list by stack and by S3 output, follow the log, download with every key checked."""
from __future__ import annotations

import json
import os
import sys

import boto3
import pytest

from instance_benchmarks import cli, jobs
from instance_benchmarks.core.contract import SSM_EXPORTS, SSM_PREFIX
from instance_benchmarks.core.errors import TrainfleetInputError

REGION = "us-east-1"


@pytest.fixture
def cfn(aws):
    return boto3.client("cloudformation", region_name=REGION)


@pytest.fixture
def deployed(s3, bucket, ssm):
    """The SSM exports `trainfleet` reads, so the CLI runs in-process against this bucket."""
    values = {"bucket": bucket, "subnet_ids": "subnet-1", "security_group_id": "sg-1",
              "instance_profile_arn": "arn:aws:iam::123456789012:instance-profile/x",
              "launch_templates": '{"cpu": {"spot": "lt-1", "on-demand": "lt-2", "root_volume_gib": 30}}'}
    for key, suffix in SSM_EXPORTS.items():
        ssm.put_parameter(Name=f"{SSM_PREFIX}/{suffix}", Value=values[key], Type="String")
    return bucket


def _stack(cfn, name: str, instance_id: str) -> None:
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {"InstanceId": {"Value": instance_id}, "JobId": {"Value": name.split("-", 1)[-1]}}}
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))


def _instance(ec2, *, terminated: bool = False) -> str:
    # one of moto's own images (listing them takes seconds)
    instance_id = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
                                    InstanceType="c5.xlarge")["Instances"][0]["InstanceId"]
    if terminated:
        ec2.terminate_instances(InstanceIds=[instance_id])
    return instance_id


def _put(s3, bucket: str, job_id: str, files: dict[str, bytes]) -> None:
    for name, body in files.items():
        s3.put_object(Bucket=bucket, Key=f"jobs/{job_id}/{name}", Body=body)


@pytest.fixture
def outputs(s3, bucket):
    """What jobs uploaded: running (its log so far), done (exit 0, outputs), broke (exit 3)."""
    _put(s3, bucket, "running", {"bootstrap.log": b"cloning\n"})
    _put(s3, bucket, "done", {"job-status.json": b'{"exit_code": 0}', "model.pt": b"weights",
                              "metrics/train.jsonl": b"{}\n", "bootstrap.log": b"ok\n"})
    _put(s3, bucket, "broke", {"job-status.json": b'{"exit_code": 3}'})
    return bucket


@pytest.fixture
def fleet(outputs, cfn, ec2):
    """The stacks: running (live instance), done (terminated), lost (terminated, no job-status.json); broke's
    stack is gone; plus a stack that is not a job."""
    _stack(cfn, "TrainingJob-running", _instance(ec2))
    _stack(cfn, "TrainingJob-done", _instance(ec2, terminated=True))
    _stack(cfn, "TrainingJob-lost", _instance(ec2, terminated=True))
    _stack(cfn, "Storage", "i-0")
    return outputs


def test_list_finds_jobs_by_stack_and_by_output_with_their_state(fleet, cfn, s3, ec2):
    rows = {row["job_id"]: row for row in jobs.list_jobs(cfn, s3, fleet, ec2)}
    assert sorted(rows) == ["broke", "done", "lost", "running"]  # not the Storage stack
    assert rows["running"]["state"] == "running" and rows["running"]["stack"] == "TrainingJob-running"
    assert rows["done"]["state"] == "succeeded" and rows["done"]["exit_code"] == 0
    assert (rows["done"]["files"], rows["done"]["bytes"]) == (4, len(b'{"exit_code": 0}weights{}\nok\n'))
    assert rows["broke"]["state"] == "failed (exit 3)" and rows["broke"]["stack"] is None
    assert rows["lost"]["state"].startswith("ended without job-status.json (instance terminated")
    assert rows["done"]["output"] == f"s3://{fleet}/jobs/done/"


def test_an_unknown_job_names_the_known_ones(fleet, cfn, s3):
    with pytest.raises(TrainfleetInputError, match=r"no job dnoe: .*known: broke, done, lost, running \(did you mean done\?\)"):
        jobs.require_job(cfn, s3, fleet, "dnoe")
    with pytest.raises(TrainfleetInputError, match="job id"):
        jobs.require_job(cfn, s3, fleet, "../done")


def test_download_keeps_paths_under_out(outputs, s3, tmp_path):
    written = jobs.download_job(s3, outputs, "done", tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in written) == [
        "bootstrap.log", "job-status.json", "metrics/train.jsonl", "model.pt"]
    assert (tmp_path / "out" / "model.pt").read_bytes() == b"weights"
    assert not [p for p in (tmp_path / "out").rglob(".*partial*")]
    with pytest.raises(TrainfleetInputError, match="no output"):
        jobs.download_job(s3, outputs, "lost", tmp_path / "lost")


@pytest.mark.parametrize("key", ["../evil", "a/../../evil", "..", "/abs/evil", "a//evil", "a/./evil",
                                 "evil\x01", "evil\x7f", "a\\..\\evil", "model.pt/inner"])
def test_a_hostile_key_is_refused_before_anything_is_written(outputs, s3, tmp_path, key):
    s3.put_object(Bucket=outputs, Key=f"jobs/done/{key}", Body=b"evil")
    out = tmp_path / "work" / "out"
    with pytest.raises(TrainfleetInputError, match="refused, nothing was written"):
        jobs.download_job(s3, outputs, "done", out)
    assert not out.exists() and not (tmp_path / "evil").exists() and not (tmp_path / "work" / "evil").exists()


def test_a_link_under_out_cannot_redirect_a_download(outputs, s3, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "metrics")
    with pytest.raises(TrainfleetInputError, match="resolves outside"):
        jobs.download_job(s3, outputs, "done", out)
    assert list(elsewhere.iterdir()) == [] and not (out / "model.pt").exists()


def test_follow_prints_the_log_as_it_grows_and_returns_the_jobs_status(outputs, s3):
    pushes = iter([b"cloning\ntraining\n", b"cloning\ntraining\ntrainfleet: bootstrap finished with status 4\n"])
    shown = []
    status = jobs.follow_log(s3, outputs, "running", shown.append, poll_seconds=0,
                             sleep=lambda _: _put(s3, outputs, "running", {"bootstrap.log": next(pushes)}))
    assert status == 4
    assert b"".join(shown) == b"cloning\ntraining\ntrainfleet: bootstrap finished with status 4\n"
    assert shown[0] == b"cloning\n"  # each part once, as it arrived
    assert jobs.follow_log(s3, outputs, "lost", shown.append, ended=lambda: True, sleep=pytest.fail) is None


def _cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["trainfleet", "jobs", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


def test_cli_lists_shows_logs_and_downloads(monkeypatch, capsys, fleet, deployed, tmp_path):
    code, out, _ = _cli(monkeypatch, capsys, "list")
    assert code == 0 and all(job in out for job in ("running", "succeeded", "failed (exit 3)", "TrainingJob-done"))
    code, out, _ = _cli(monkeypatch, capsys, "logs", "done")
    assert code == 0 and out == "ok\n"
    code, out, _ = _cli(monkeypatch, capsys, "download", "done", "--out", str(tmp_path / "d"))
    assert code == 0 and "downloaded 4 files" in out and (tmp_path / "d" / "metrics" / "train.jsonl").is_file()


def test_cli_refuses_unknown_jobs_and_bad_targets_with_exit_2(monkeypatch, capsys, fleet, deployed, tmp_path):
    for args in (("logs", "dnoe"), ("download", "dnoe", "--out", str(tmp_path / "x"))):
        code, _, err = _cli(monkeypatch, capsys, *args)
        assert code == 2 and err.startswith("error: no job dnoe") and len(err.strip().splitlines()) == 1
    (tmp_path / "file").write_text("")
    code, _, err = _cli(monkeypatch, capsys, "download", "done", "--out", str(tmp_path / "file"))
    assert code == 2 and "not a directory" in err
    assert not (tmp_path / "x").exists()
    code, _, err = _cli(monkeypatch, capsys, "logs", "broke")  # no log pushed: says so, not success
    assert code == 1 and "no bootstrap.log" in err


@pytest.mark.parametrize("follow", [[], ["--follow", "--poll-seconds", "1"]], ids=["logs", "follow"])
def test_a_jobs_output_reaches_the_terminal_defused(monkeypatch, capsys, fleet, deployed, s3, follow):
    """The job's script wrote its log: its escapes are shown as text, lines stay lines."""
    end = "trainfleet: bootstrap finished with status 0\n"
    _put(s3, fleet, "done", {"bootstrap.log": f"\x1b]0;pwned\x07ok \u202eexe\r\n\x9b2Jend\n{end}".encode()})
    code, out, _ = _cli(monkeypatch, capsys, "logs", "done", *follow)
    assert code == 0 and out == f"\\x1b]0;pwned\\x07ok \\u202eexe\n\\x9b2Jend\n{end}"
