"""A third backend added the way the README's layout section says: its own module (here, this test) and the
registry, nothing else. It runs a whole campaign through the runner (launch, poll, settle, relaunch check,
report, best model, teardown) against in-process moto, as the EC2 runner tests do.

The fake cloud runs each attempt "instantly": `launch` starts it, `live` lists it until `collect` finishes it,
writing the artifacts and result.json (figures from measure.harness, as every backend's collect does).
"""
from __future__ import annotations

import json

import pytest

from instance_benchmarks import runner
from instance_benchmarks.backends import registry
from instance_benchmarks.backends.base import Backend, RunState, TeardownSummary
from instance_benchmarks.campaigns.store import campaign_document, read_json, run_location, write_json
from instance_benchmarks.catalog.pricing import PriceQuote
from instance_benchmarks.core.billing import cost_usd
from instance_benchmarks.core.contract import now_iso
from instance_benchmarks.measure.harness import summarize
from tests.instance_benchmarks.conftest import bound_spec, spec_dict
from training_scripts.storage import sha256_hex

RATE = {3: 400.0, 12: 900.0}  # samples/s the fake cloud trains at, by batch size
TRAIN_SECONDS = 90.0


class FakeBackend(Backend):
    """Runs nothing anywhere: every attempt completes when it is collected."""

    NAME = "fake"
    RUN_PREFIX = "fk-"
    CAPABILITIES = frozenset()

    def __init__(self, env) -> None:
        super().__init__(env)
        self.running: dict[str, tuple[str, dict]] = {}  # run id -> (campaign, hyperparameters)
        self.launches: list[str] = []
        self.torn_down: list[str] = []

    def quote(self, spec, instance, market, catalog) -> PriceQuote:
        price = self.list_price(instance, spec.region)
        return PriceQuote(instance.name, spec.region, market, price, price, "catalog (fake backend)", now_iso())

    def launch(self, spec, run, attempt, price, catalog) -> dict:
        self.running[run.run_id] = (spec.campaign, run.hyperparameters)
        self.launches.append(run.run_id)
        return {"attempt": attempt, "backend": self.NAME, "instance_type": run.instance_type, "market": price.market,
                "price": price.to_dict(), "launched_at": now_iso(), "outcome": "launched", "cost_usd": None}

    def live(self, campaign: str) -> dict[str, RunState]:
        return {run_id: RunState(run_id, f"fake-{run_id}", "running")
                for run_id, (owner, _) in self.running.items() if owner == campaign}

    def collect(self, spec: dict, run_id: str, record: dict) -> bool:
        if run_id not in self.running:
            return False
        campaign, hyper = self.running.pop(run_id)
        last = record["attempts"][-1]
        usd_per_hour = last["price"]["usd_per_hour"]
        rate = RATE[hyper["batch_size"]]
        history = [{"t": t, "samples": rate * t, "step": t, "final10_reward": 20.0 + rate * t / 200}
                   for t in range(0, int(TRAIN_SECONDS) + 1, 10)]
        location = run_location(self.env.client("s3"), self.env.infra.bucket, campaign, run_id)
        train = location.child("train")
        artifacts = {"model.txt": train.write_bytes("model.txt", f"weights of {run_id}\n".encode()),
                     "metrics.jsonl": train.write_bytes("metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history).encode())}
        cost = cost_usd(TRAIN_SECONDS, usd_per_hour)
        last.update(outcome="completed", cost_usd=cost, ended_at=now_iso())
        figures = summarize(history, usd_per_hour=usd_per_hour, peak_tflops=None, target=spec.get("target"),
                            train_seconds=TRAIN_SECONDS)
        write_json(location, "result.json", {
            "status": "complete", "backend": self.NAME, "campaign": campaign, "run_id": run_id,
            "instance_type": last["instance_type"], "market": last["market"], "price": last["price"],
            "hyperparameters": record.get("hyperparameters"), "attempts": len(record["attempts"]), "cost_usd": cost,
            "train_artifacts": artifacts, "completed_at": now_iso(), **figures})
        return True

    def teardown(self, campaign: str) -> TeardownSummary:
        ended = sorted(run_id for run_id, (owner, _) in self.running.items() if owner == campaign)
        for run_id in ended:
            del self.running[run_id]
        self.torn_down.append(campaign)
        return TeardownSummary(self.NAME, stopped=ended)


@pytest.fixture
def fake_backend():
    registry.register(FakeBackend)
    yield FakeBackend
    del registry.BACKENDS[FakeBackend.NAME]


def test_a_fake_backend_runs_a_campaign_through_the_runner(fake_backend, env, s3, infra, tmp_path):
    env.poll_seconds = 0  # the fake cloud needs no time to pass
    spec = bound_spec(spec_dict(backend="fake", budget_usd=5.0,
                                matrix={"instance_type": ["c5.xlarge", "m5.large"], "batch_size": [3, 12]}))
    said: list[str] = []
    done = runner.run_to_report(env, [spec], out=tmp_path / "out", log=said.append)

    backend = env.backend("fake")
    assert isinstance(backend, FakeBackend) and sorted(backend.launches) == sorted(r.run_id for r in spec.runs())
    assert all(run_id.startswith("fk-") for run_id in backend.launches) and backend.torn_down == ["sweep"]
    report = done["report"]
    assert len(report.rows) == 4 and {row["backend"] for row in report.rows} == {"fake"}
    assert done["best"]["label"].endswith("batch_size=12")  # the faster rate reaches the higher final reward
    assert (tmp_path / "out" / "best-model" / "model.txt").read_text() == f"weights of {done['best']['run_id']}\n"
    assert done["left_running"] == [] and (tmp_path / "out" / "report.md").is_file()
    document = read_json(run_location(s3, infra.bucket, "sweep", done["best"]["run_id"]), "launch.json")
    assert [a["outcome"] for a in document["attempts"]] == ["completed"] and document["backend"] == "fake"
    assert document["attempts"][0]["cost_usd"] == pytest.approx(cost_usd(TRAIN_SECONDS, document["attempts"][0]["price"]["usd_per_hour"]))
    assert list(campaign_document(s3, infra.bucket, "sweep")["backends"]) == ["fake"]
    assert any("sweep (fake): 4 launched" in line for line in said)


def test_the_registry_refuses_a_second_backend_with_a_taken_name_or_run_prefix(fake_backend):
    class Again(FakeBackend):
        RUN_PREFIX = "fk2-"

    class SamePrefix(FakeBackend):
        NAME = "other"

    with pytest.raises(ValueError, match="backend 'fake' is already registered"):
        registry.register(Again)
    with pytest.raises(ValueError, match="run prefix 'fk-' is already backend 'fake''s"):
        registry.register(SamePrefix)
    assert registry.backend_class("fake") is FakeBackend and "other" not in registry.BACKENDS
