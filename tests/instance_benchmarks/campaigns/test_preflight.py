"""Preflight: a missing script or workdir in a local repository, a target metric or a benchmark counter that
nothing produces, an unreachable repository: one line, exit 2, before anything starts."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from instance_benchmarks.campaign_file import parse_spec
from instance_benchmarks.campaigns.preflight import preflight
from instance_benchmarks.core.errors import TrainfleetInputError
from tests.instance_benchmarks.conftest import make_git_repo, spec_dict

ROOT = Path(__file__).resolve().parents[3]
TRAIN = 'import json\nfor step in range(3):\n    print(json.dumps({"step": step, "val_loss": 1.0 / (step + 1)}))\n'


def _mine(tmp_path, files=None):
    repo = tmp_path / "mine"
    make_git_repo(repo, files or {"src/train.py": TRAIN, "README.md": "mine\n"})
    return repo


def _data(repo, **changes):
    base = {"workload": None, "repo": str(repo), "script": "train.py", "workdir": "src", "target": None}
    return spec_dict(**{**base, **changes})


def _check(data, **kwargs):
    notes = []
    bound = preflight(parse_spec(data), warn=notes.append, **kwargs)
    return bound, notes


def test_a_good_local_campaign_passes_bound_to_its_commit(tmp_path):
    repo = _mine(tmp_path)
    bound, notes = _check(_data(repo, target={"metric": "val_loss", "value": 0.5},
                                benchmark={"max_steps": 2, "total_steps": 100}))
    assert bound.commit and len(bound.commit) == 40 and notes == []


@pytest.mark.parametrize("changes, message", [
    ({"script": "trian.py"}, r"script 'src/trian.py' is not in .*mine at main \([0-9a-f]{12}\)"),
    ({"workdir": "scr"}, r"workdir 'scr' is not a folder of .*mine at main"),
    ({"ref": "mian"}, r"ref 'mian' is not a branch, tag or commit of .*did you mean main"),
    ({"target": {"metric": "val_mse", "value": 0.1}},
     r"target.metric needs the metric 'val_mse', but nothing produces it: no metric_definitions entry"),
    ({"benchmark": {"max_minutes": 1, "total_samples": 1000}},
     r"benchmark \(total_samples counts `samples`\) needs the metric 'samples', but nothing produces it"),
])
def test_what_would_fail_after_a_billed_boot_is_refused_before(tmp_path, changes, message):
    repo = _mine(tmp_path)
    with pytest.raises(TrainfleetInputError, match=message) as error:
        _check(_data(repo, **changes))
    assert "\n" not in str(error.value)


def test_a_benchmark_without_a_step_metric_is_refused(tmp_path):
    repo = _mine(tmp_path, {"train.py": 'print("loss 0.5")\n'})
    data = _data(repo, workdir=None, benchmark={"max_minutes": 1, "total_steps": 1000},
                 metric_definitions=[{"name": "loss", "regex": "loss ([0-9.]+)"}])
    with pytest.raises(TrainfleetInputError, match=r"needs the metric 'step', but nothing produces it"):
        _check(data)
    data["metric_definitions"].append({"name": "step", "regex": "step ([0-9]+)"})
    assert _check(data)[0].benchmark["total_steps"] == 1000  # a definition produces it


def test_a_target_only_a_metric_definition_produces_passes(tmp_path):
    repo = _mine(tmp_path, {"train.py": 'print("val_mse 0.05")\n'})
    data = _data(repo, workdir=None, target={"metric": "val_mse", "value": 0.1},
                 metric_definitions=[{"name": "val_mse", "regex": "val_mse ([0-9.]+)"}])
    assert _check(data)[1] == []


def test_a_bundled_workload_must_print_the_benchmark_counter(workloads_repo):
    data = spec_dict(repo=str(workloads_repo), target=None, benchmark={"max_minutes": 1, "total_samples": 10_000})
    with pytest.raises(TrainfleetInputError, match=r"needs the metric 'samples', which cartpole_pg does not print"):
        _check(data)
    data["benchmark"] = {"max_minutes": 1, "total_steps": 10_000}
    assert _check(data)[0].commit


def test_uncommitted_changes_warn_and_a_remote_repository_is_not_read(tmp_path):
    repo = _mine(tmp_path)
    (repo / "src" / "train.py").write_text("edited = True\n")
    _, notes = _check(_data(repo))
    assert len(notes) == 1 and "src/train.py" in notes[0] and "will not be run" in notes[0]
    remote = spec_dict(workload=None, script="train.py", target={"metric": "val_mse", "value": 0.1})
    bound, notes = _check(remote)
    assert bound.commit and notes and "val_mse" in notes[0] and "remote repository is not read" in notes[0]


def test_offline_skips_the_network_and_leaves_a_remote_unbound():
    data = spec_dict(repo="https://example.invalid/acme/gone.git")
    with pytest.raises(TrainfleetInputError, match=r"^repo https://example\.invalid/acme/gone\.git cannot be read"):
        _check(data)
    bound, _ = _check(data, offline=True)
    assert bound.commit is None


def _trainfleet(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-c", "from instance_benchmarks.cli import main; main()", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command, changes, message", [
    (["campaign", "validate"], {"script": "trian.py"}, "script 'src/trian.py' is not in"),
    (["campaign", "run", "--local"], {"script": "trian.py"}, "script 'src/trian.py' is not in"),
    (["campaign", "launch", "--yes"], {"script": "trian.py"}, "script 'src/trian.py' is not in"),
    (["campaign", "run", "--local"], {"target": {"metric": "val_mse", "value": 0.1}},
     "target.metric needs the metric 'val_mse', but nothing produces it"),
    (["campaign", "run", "--local"], {"benchmark": {"max_minutes": 1, "total_samples": 100}},
     "needs the metric 'samples', but nothing produces it"),
])
def test_the_cli_refuses_in_one_line_before_anything_starts(tmp_path, command, changes, message):
    repo = _mine(tmp_path)
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(_data(repo, **changes)))
    result = _trainfleet(*command, "--out", str(tmp_path / "reports"), str(path)) if "run" in command else \
        _trainfleet(*command, str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
    assert "moto" not in result.stdout and not (tmp_path / "reports").exists()  # nothing started


def test_validate_names_the_commit_and_offline_skips_the_network(tmp_path):
    repo = _mine(tmp_path)
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(_data(repo)))
    result = _trainfleet("campaign", "validate", str(path))
    assert result.returncode == 0, result.stderr
    assert "code commit " in result.stdout
    gone = tmp_path / "gone.yaml"
    gone.write_text(yaml.safe_dump(spec_dict(repo="https://example.invalid/acme/gone.git")))
    assert _trainfleet("campaign", "validate", str(gone)).returncode == 2
    offline = _trainfleet("campaign", "validate", "--offline", str(gone))
    assert offline.returncode == 0 and "not resolved (--offline)" in offline.stdout
