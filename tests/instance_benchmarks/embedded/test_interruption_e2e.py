"""Spot interruption end to end on the embedded default: a fake IMDS announces an interruption once the
run's first checkpoint is in S3; the agent sends SIGTERM, syncs the checkpoint folder, settles the
attempt as interrupted; the runner relaunches on the fallback and attempt 2 resumes from the checkpoint."""
import io
import json
from dataclasses import replace

import torch

from instance_benchmarks import runner
from instance_benchmarks.campaigns.store import read_json, run_location
from instance_benchmarks.embedded.environment import EmbeddedEnvironment
from tests.instance_benchmarks.conftest import bound_spec, make_git_repo, spec_dict
from tests.instance_benchmarks.embedded.fake_imds import FakeIMDS
from training_scripts import cartpole_pg

HYPER = {"epochs": 30, "batch_size": 4, "checkpoint_every": 5, "max_episode_steps": 200, "seed": 3}


def _interrupted_run(spec, tmp_path, checkpoint_name: str):
    """Run `spec` (one run) with a fake IMDS that interrupts once a checkpoint file is in S3."""
    holder = {}

    def checkpointed() -> bool:
        env = holder.get("env")
        if env is None:
            return False
        listing = env.client("s3").list_objects_v2(Bucket=env.infra.bucket, Prefix=f"campaigns/{spec.campaign}/")
        return any(o["Key"].endswith(f"checkpoints/{checkpoint_name}") for o in listing.get("Contents", []))

    with FakeIMDS(when=checkpointed) as imds:
        worker_env = {"AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.endpoint,
                      "TRAINFLEET_SPOT_POLL_SECONDS": "0.1", "TRAINFLEET_CHECKPOINT_SYNC_SECONDS": "0.2"}
        with EmbeddedEnvironment.start(worker_env=worker_env, log=lambda *_: None) as env:
            holder["env"] = env
            outcome = runner.run_to_report(env, [spec], out=tmp_path, log=lambda *_: None)
            [run] = spec.runs()
            location = run_location(env.client("s3"), env.infra.bucket, spec.campaign, run.run_id)
            record, metrics = read_json(location, "launch.json"), location.read_bytes("metrics.jsonl")
        assert imds.notices_left == 0 and imds.rejected == 0
    history = [json.loads(line) for line in metrics.splitlines()]
    return outcome, record, history


def test_interrupted_bundled_run_resumes_to_the_same_weights(tmp_path, workloads_repo):
    spec = bound_spec(spec_dict(campaign="interrupt", repo=str(workloads_repo), max_attempts=3,
                                fallback={"market": "on-demand"}, hyperparameters=HYPER,
                                matrix={"instance_type": ["c5.xlarge"]}))
    outcome, record, _ = _interrupted_run(spec, tmp_path, "latest.pt")
    [row] = outcome["report"].rows
    assert [a["outcome"] for a in record["attempts"]] == ["interrupted", "completed"]
    assert record["attempts"][0]["exit_code"] == 75 and record["attempts"][0]["interruption_notice"]
    assert row["attempts"] == 2 and outcome["left_running"] == []
    assert row["market"] == "on-demand"  # the fallback after the spot interruption
    assert row["cost_usd"] >= 2 * 60 * 0.17 / 3600  # both attempts billed, each at least 60 s

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


SLOW_SCRIPT = '''
import json, os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(75))
ckpt = os.path.join(os.environ["TRAINFLEET_CHECKPOINT_DIR"], "state.json")
start = json.load(open(ckpt))["epoch"] + 1 if os.path.exists(ckpt) else 0
print(json.dumps({"event": "start", "resumed_from": start}), flush=True)
for epoch in range(start, 12):
    time.sleep(0.3)
    print(json.dumps({"epoch": epoch, "step": epoch + 1, "loss": 1.0 / (epoch + 1)}), flush=True)
    with open(ckpt + ".tmp", "w") as f:
        json.dump({"epoch": epoch}, f)
    os.replace(ckpt + ".tmp", ckpt)
open(os.path.join(os.environ["TRAINFLEET_OUTPUT_DIR"], "done.txt"), "w").write("ok")
'''


def test_a_foreign_script_resumes_from_its_checkpoint_dir(tmp_path):
    make_git_repo(tmp_path / "slow", {"train.py": SLOW_SCRIPT})
    spec = bound_spec(spec_dict(campaign="foreign-resume", workload=None, repo=str(tmp_path / "slow"), ref="main",
                                script="train.py", target=None, hyperparameters={}, max_attempts=3,
                                matrix={"instance_type": ["c5.xlarge"]}))
    outcome, record, history = _interrupted_run(spec, tmp_path, "state.json")
    assert [a["outcome"] for a in record["attempts"]] == ["interrupted", "completed"]
    assert len(outcome["report"].rows) == 1
    starts = [h["resumed_from"] for h in history if h.get("event") == "start"]
    assert starts[0] == 0 and starts[1] > 0  # attempt 2 began where attempt 1's checkpoint left off
    epochs = [h["epoch"] for h in history if "epoch" in h]
    assert sorted(set(epochs)) == list(range(12)) and epochs[-1] == 11
    assert outcome["report"].rows[0]["attempts"] == 2 and outcome["left_running"] == []
