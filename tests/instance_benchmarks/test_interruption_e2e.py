"""Spot interruption end to end: moto's server, a fake IMDS that announces an interruption right after
the run's first checkpoint, the agent forwarding it, the launcher relaunching, the run resuming."""
import io
import json
from dataclasses import replace
from pathlib import Path

import torch

from instance_benchmarks.campaigns.spec import parse_spec
from instance_benchmarks.embedded.moto_server import LOCAL_CREDENTIALS
from tests.instance_benchmarks.conftest import spec_dict
from tests.instance_benchmarks.fake_imds import FakeIMDS
from training_scripts import cartpole_pg

ROOT = Path(__file__).resolve().parents[2]
HYPER = {"epochs": 30, "batch_size": 4, "checkpoint_every": 5, "max_episode_steps": 200, "seed": 3}


def _checkpoint_exists() -> bool:
    """True once any run of the campaign has a checkpoint in moto (the endpoint comes from the env)."""
    import os

    import boto3

    endpoint = os.environ.get("TRAINFLEET_TEST_MOTO")
    if not endpoint:
        return False
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    for bucket in s3.list_buckets()["Buckets"]:
        listing = s3.list_objects_v2(Bucket=bucket["Name"], Prefix="campaigns/")
        if any(o["Key"].endswith("checkpoints/latest.pt") for o in listing.get("Contents", [])):
            return True
    return False


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import instance_benchmarks.embedded.cloud as local

    started = local.start_local_cloud

    def start_and_remember(*args, **kwargs):
        cloud = started(*args, **kwargs)
        monkeypatch.setenv("TRAINFLEET_TEST_MOTO", cloud.server.endpoint)
        return cloud

    monkeypatch.setattr(local, "start_local_cloud", start_and_remember)
    spec = parse_spec(spec_dict(campaign="interrupt", max_attempts=3, fallback={"market": "on-demand"},
                                hyperparameters=HYPER, matrix={"instance_type": ["c5.xlarge"]}))
    with FakeIMDS(when=_checkpoint_exists) as imds:
        outcome = local.run_local_campaign(
            spec, out=tmp_path, log=lambda *_: None, source_dir=ROOT,
            worker_env={"AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint,
                        "TRAINFLEET_SPOT_POLL_SECONDS": "0.1"})
        assert imds.notices_left == 0 and imds.rejected == 0

    [row] = outcome["report"].rows
    assert row["attempts"] == 2 and outcome["left_running"] == []
    assert row["market"] == "on-demand"  # the fallback after the spot interruption
    assert row["cost_usd"] >= 2 * 60 * 0.17 / 3600  # both attempts billed, each at least 60 s
    result_files = list(tmp_path.glob("best-model/*"))
    assert {p.name for p in result_files} >= {"model.pt", "metrics.jsonl"}

    # the same training, never interrupted
    reference = cartpole_pg.train(replace(cartpole_pg.Config(**HYPER), output=str(tmp_path / "reference")), echo=False)
    resumed = torch.load(io.BytesIO((tmp_path / "best-model" / "model.pt").read_bytes()), weights_only=False)["model"]
    expected = torch.load(io.BytesIO((tmp_path / "reference" / "model.pt").read_bytes()), weights_only=False)["model"]
    assert all(torch.equal(resumed[k], expected[k]) for k in expected)
    assert reference["attempts"] == 1

    history = [json.loads(line) for line in (tmp_path / "best-model" / "metrics.jsonl").read_text().splitlines()]
    preempted = next(h for h in history if h.get("event") == "preempted")
    resumed_at = next(h for h in history if h.get("event") == "resumed")
    assert 0 <= preempted["step"] - resumed_at["step"] <= HYPER["checkpoint_every"]
    assert preempted["step"] < HYPER["epochs"]  # it really was mid-training
