"""100 concurrent simulated runs write to one bucket on moto's server: 100 complete, verified results."""
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from instance_benchmarks.campaigns.models import download_run, list_models
from instance_benchmarks.embedded.moto_server import MotoServer
from instance_benchmarks.campaigns.report import build_report
from instance_benchmarks.campaigns.store import load_run_records, run_location, write_json
from training_scripts.cartpole_pg import Config
from training_scripts.loop import RunRecorder, write_artifacts

RUNS = 100


@pytest.fixture(scope="module")
def server():
    with MotoServer() as server:
        server.client("s3").create_bucket(Bucket="shared")
        yield server


def simulate_run(server: MotoServer, index: int) -> str:
    s3 = server.client("s3")  # one client per worker, as on separate instances
    run_id = f"run-{index:03d}"
    location = run_location(s3, "shared", "concurrent", run_id)
    write_json(location, "launch.json", {"run_id": run_id, "hyperparameters": {"batch_size": index},
                                         "attempts": [{"attempt": 1, "outcome": "completed", "cost_usd": 0.01}]})
    recorder = RunRecorder(echo=False)
    for step in range(1, 4):
        recorder.log(step=step, loss=1.0 / step, samples_per_s=100.0 + index, interval_s=0.5, sec_per_step=0.5,
                     train_seconds=step * 0.5, final10_reward=float(index))
    weights = {"w": torch.full((64, 64), float(index))}
    train = write_artifacts(location.child("train"), Config(batch_size=index + 1), model_state=weights,
                            recorder=recorder, final={"final10_reward": float(index)},
                            info={"primary_metric": "final10_reward"})
    write_json(location, "result.json", {
        "status": "complete", "run_id": run_id, "instance_type": "c5.xlarge", "market": "spot",
        "price": {"usd_per_hour": 0.07}, "train_artifacts": train["artifacts"], "final_metric": float(index),
        "primary_metric": "final10_reward", "samples_per_s": 100.0 + index, "train_seconds": 1.5,
        "cost_usd": 0.01, "attempts": 1})
    return run_id


def test_hundred_concurrent_runs_lose_nothing(server, tmp_path):
    with ThreadPoolExecutor(max_workers=25) as pool:
        written = list(pool.map(lambda i: simulate_run(server, i), range(RUNS)))
    s3 = server.client("s3")
    records = load_run_records(s3, "shared", "concurrent")
    assert sorted(r["run_id"] for r in records) == sorted(written)
    assert all(r["status"] == "complete" for r in records)
    report = build_report(s3, "shared", "concurrent")
    assert len(report.rows) == RUNS and report.incomplete == []
    assert sorted(r["samples_per_s"] for r in report.rows) == [100.0 + i for i in range(RUNS)]
    assert len(list_models(s3, "shared", "concurrent")) == RUNS
    for index in (0, 57, 99):  # downloads verify every artifact's SHA-256
        files = download_run(s3, "shared", "concurrent", f"run-{index:03d}", tmp_path / str(index))
        state = torch.load(files["model.pt"], weights_only=False)["model"]
        assert torch.equal(state["w"], torch.full((64, 64), float(index)))
