"""The embedded default end to end: a campaign run, a new commit, the same campaign again. The new commit is
measured (the instance checks it out), and the first commit's result is kept apart, never current."""
import pytest

from instance_benchmarks import runner
from instance_benchmarks.campaign_file import parse_spec
from instance_benchmarks.campaigns.store import read_json, run_location
from instance_benchmarks.embedded.environment import EmbeddedEnvironment
from tests.instance_benchmarks.conftest import commit_change, make_git_repo, spec_dict

TRAIN = """import json, os
for step in range(1, 4):
    print(json.dumps({"step": step, "loss": VALUE / step}), flush=True)
open(os.path.join(os.environ["TRAINFLEET_OUTPUT_DIR"], "model.pt"), "w").write("VALUE")
"""


@pytest.fixture(scope="module")
def embedded():
    with EmbeddedEnvironment.start(log=lambda *_: None) as env:
        yield env


def test_a_new_commit_is_measured_and_the_old_result_is_shown_apart(embedded, tmp_path):
    repo = tmp_path / "mine"
    first = make_git_repo(repo, {"train.py": TRAIN.replace("VALUE", "1.0")})
    spec = parse_spec(spec_dict(campaign="recommit", workload=None, repo=str(repo), ref="main", script="train.py",
                                target=None, hyperparameters={}, matrix={"instance_type": ["c5.xlarge"]}))
    before = runner.run_to_report(embedded, [spec], out=tmp_path / "one", log=lambda *_: None)["report"]
    [old] = before.rows
    second = commit_change(repo, {"train.py": TRAIN.replace("VALUE", "2.0")})
    outcome = runner.run_to_report(embedded, [spec], out=tmp_path / "two", log=lambda *_: None)
    report = outcome["report"]
    [new] = report.rows
    assert new["run_id"] != old["run_id"] and new["code"] == second and old["code"] == first
    assert [(r["run_id"], r["code"]) for r in report.earlier] == [(old["run_id"], first[:12])]
    assert report.incomplete == []
    s3, bucket = embedded.client("s3"), embedded.infra.bucket
    location = run_location(s3, bucket, "recommit", new["run_id"])
    assert read_json(location, "result.json")["final"]["loss"] == pytest.approx(2.0 / 3)  # the new code ran
    assert location.child("train").read_bytes("model.pt") == b"2.0"
    assert read_json(location, "launch.json")["code"]["commit"] == second
    markdown = (tmp_path / "two" / "report.md").read_text()
    assert old["run_id"] not in markdown.split("## Earlier code")[0]
