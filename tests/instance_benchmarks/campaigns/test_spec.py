from pathlib import Path

import pytest
import yaml

from instance_benchmarks.campaign_file import load_spec, parse_spec
from instance_benchmarks.campaigns.plan import estimate
from instance_benchmarks.campaigns.spec import override_args
from instance_benchmarks.catalog import load_catalog
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.catalog.pricing import quote
from tests.instance_benchmarks.conftest import spec_dict


def test_example_campaign_is_the_seed_sweep():
    spec = load_spec("examples/campaign.yaml")
    runs = spec.runs()
    assert len(runs) == 12 and spec.repeats == 2  # each of the 6 batch sizes twice
    assert sorted(r.hyperparameters["batch_size"] for r in runs) == sorted([3, 5, 7, 10, 12, 15] * 2)
    assert spec.script == "training_scripts/cartpole_pg.py"


@pytest.mark.parametrize("path", sorted(str(p) for p in (Path(__file__).resolve().parents[3] / "examples").rglob("*.yaml")))
def test_every_example_campaign_validates(path):
    assert load_spec(path).runs()


def test_run_ids_are_stable_and_unique():
    first, second = parse_spec(spec_dict()).runs(), parse_spec(spec_dict()).runs()
    assert [r.run_id for r in first] == [r.run_id for r in second]
    assert len({r.run_id for r in first}) == 6


def test_matrix_is_a_cartesian_product():
    spec = parse_spec(spec_dict(matrix={"instance_type": ["c5.xlarge", "m5.large"], "learning_rate": [0.01, 0.001]}))
    assert len(spec.runs()) == 4


def test_override_args():
    assert override_args({"batch_size": 3, "hidden_layers": [32, 16], "amp": True}) == [
        "--batch_size=3", "--hidden_layers=32,16", "--amp=true"]


@pytest.mark.parametrize("changes, message", [
    ({"matrix": {"instance_type": ["p9.mega"]}}, "unknown instance type 'p9.mega'"),
    ({"region": "mars-1"}, "unknown region"),
    ({"repo": "http://github.com/a/b.git"}, "neither an https:// URL nor a local git repository"),
    ({"repo": "ssh://git@github.com/a/b.git"}, "instances have no ssh key"),
    ({"repo": "git@github.com:a/b.git"}, "instances have no ssh key"),
    ({"repo": "/nonexistent/repo"}, "neither an https:// URL nor a local git repository"),
    ({"repo": "https://github.com/a/b.git;reboot"}, "not allowed"),
    ({"ref": "main;id"}, "git ref"),
    ({"script": "../../outside.py"}, "escapes the repository"),
    ({"max_runtime_minutes": 0}, "max_runtime_minutes must be a whole number from 1 to 10080, got 0"),
    ({"max_runtime_minutes": -5}, "max_runtime_minutes must be a whole number from 1 to 10080"),
    ({"budget_usd": -1}, "budget_usd must be a finite number > 0, got -1"),
    ({"market": "reserved"}, "spot or on-demand"),
    ({"workload": "gpt5"}, "workload 'gpt5'"),
    ({"campaign": "Bad Name"}, "campaign"),
    ({"matrix": {"batch_size": [3]}}, "matrix: missing required key 'instance_type'"),
    ({"matrix": {"instance_type": []}}, "non-empty list"),
    ({"matrix": {"instance_type": ["c5.xlarge"], "batch_size": [0]}}, "batch_size must be positive"),
    ({"matrix": {"instance_type": ["c5.xlarge"], "batch_size": [-3]}}, "batch_size must be positive"),
    ({"matrix": {"instance_type": ["c5.xlarge"], "batch_size": ["ten"]}}, "expected int"),
    ({"matrix": {"instance_type": ["c5.xlarge"], "warp_factor": [9]}}, "no hyperparameter 'warp_factor'"),
    ({"matrix": {"instance_type": ["c5.xlarge", "c5.xlarge"]}}, "twice"),
    ({"hyperparameters": {"output": "/tmp"}}, "set by trainfleet"),
    ({"hyperparameters": {"epochs": True}}, "must be int"),
    ({"target": {"metric": "x"}}, "target: missing required key 'value'"),
    ({"estimated_minutes": 99}, "exceeds max_runtime_minutes"),
    ({"backend": "lambda"}, "backend"),
    ({"surprise": 1}, "unknown key 'surprise'"),
    ({"budget_usd": float("inf")}, "budget_usd must be a finite number"),
    ({"budget_usd": float("nan")}, "budget_usd"),
    ({"target": {"metric": "x", "value": float("nan")}}, "target.value must be a finite number, got nan"),
    ({"workload": None, "script": "train.py", "hyperparameters": {"a-b": 1}}, "must be lowercase letters, digits and _"),
    ({"workload": None, "script": "train.py", "hyperparameters": {"note": "two\nlines"}}, "control character"),
    ({"matrix": {"instance_type": ["c5.xlarge"], "hidden_layers": [["\n"]]}}, "control character"),
    ({"workload": None, "script": "train.py", "hyperparameters": {"lr": float("inf")}}, "finite number"),
    ({"workload": None, "script": "train.py", "hyperparameters": {"nested": {"a": 1}}}, "number, true/false, text"),
    ({"workload": None}, "give the script to run"),
    ({"backend": "sagemaker", "fallback": {"market": "on-demand"}}, "does not support fallback"),
    ({"sagemaker": {"max_wait_minutes": 60}}, "needs backend: sagemaker"),
    ({"metric_definitions": [{"name": "loss", "regex": "loss (\\d+) (\\d+)"}]}, "exactly one capturing group"),
])
def test_bad_specs_are_refused_with_one_line(changes, message):
    with pytest.raises(TrainfleetInputError, match=message) as info:
        parse_spec(spec_dict(**changes))
    assert "\n" not in str(info.value)


def test_missing_key():
    data = spec_dict()
    del data["repo"]
    with pytest.raises(TrainfleetInputError, match="missing required key 'repo'"):
        parse_spec(data)


def test_bad_files(tmp_path):
    with pytest.raises(TrainfleetInputError, match="cannot read campaign file"):
        load_spec(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("campaign: [unclosed\n")
    with pytest.raises(TrainfleetInputError, match="not valid YAML at line"):
        load_spec(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(TrainfleetInputError, match="expected a mapping"):
        load_spec(tmp_path / "list.yaml")
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(spec_dict()))
    assert load_spec(tmp_path / "ok.yaml").campaign == "sweep"


def test_estimate_worst_case_is_every_run_hitting_its_watchdog():
    spec = parse_spec(spec_dict(estimated_minutes=5, matrix={"instance_type": ["c5.xlarge", "g5.xlarge"], "batch_size": [3, 5]}))
    catalog = load_catalog()
    quotes = {t: quote(None, catalog.get(t), region="us-east-1", market="on-demand") for t in ("c5.xlarge", "g5.xlarge")}
    plan = estimate(spec, quotes)
    assert plan.runs == 4
    assert plan.worst_case_usd == pytest.approx(2 * 0.5 * 0.17 + 2 * 0.5 * 1.006)
    assert plan.expected_usd == pytest.approx((2 * 0.17 + 2 * 1.006) * 5 / 60)
    assert not plan.within(1.17) and plan.within(1.18)


def test_spot_worst_case_is_the_on_demand_price_and_the_root_volume_is_billed():
    """A spot price may rise up to on-demand during a run: the budget's worst case assumes it did; the
    expected cost uses the quoted spot price. Both include the root volume's gp3 cost."""
    from instance_benchmarks.catalog.pricing import PriceQuote

    spec = parse_spec(spec_dict(estimated_minutes=6, max_runtime_minutes=60, matrix={"instance_type": ["g5.xlarge"], "batch_size": [3]}))
    ebs = load_catalog().ebs_usd_per_hour(100, "us-east-1")
    assert ebs == pytest.approx(100 * 0.08 / 730)
    spot = PriceQuote("g5.xlarge", "us-east-1", "spot", 0.40 + ebs, 1.006 + ebs, "test", "now", ebs)
    plan = estimate(spec, {"g5.xlarge": spot})
    assert plan.worst_case_usd == pytest.approx(1.006 + ebs)
    assert plan.expected_usd == pytest.approx((0.40 + ebs) / 10)


@pytest.mark.parametrize("itype, reason", [
    ("p3.2xlarge", r"NVIDIA V100 \(Volta\).*use g4dn \(T4\), g5 \(A10G\)"),
    ("t3.micro", r"1 GiB of memory is too little for PyTorch"),
    ("t2.micro", r"1 GiB of memory is too little"),
])
def test_types_without_a_working_image_are_refused_on_ec2_with_the_reason(itype, reason):
    with pytest.raises(TrainfleetInputError, match=rf"{itype} cannot run trainfleet on EC2: {reason}"):
        parse_spec(spec_dict(matrix={"instance_type": [itype], "batch_size": [3]}))
    with pytest.raises(TrainfleetInputError, match="cannot run trainfleet on EC2"):
        parse_spec(spec_dict(fallback={"instance_type": itype}))


def test_a_foreign_script_takes_any_identifier_hyperparameters(tmp_path):
    from tests.instance_benchmarks.conftest import make_git_repo

    make_git_repo(tmp_path / "mine", {"train.py": "print('hi')\n"})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec_dict(
        workload=None, repo="mine", script="train.py", target=None,
        hyperparameters={"lr": 0.1, "note": "$(reboot); rm -rf /"},
        metric_definitions=[{"name": "loss", "regex": "loss=([0-9.]+)"}],
        matrix={"instance_type": ["c5.xlarge"], "batch_size": [32, 64]})))
    spec = load_spec(tmp_path / "spec.yaml")
    assert spec.repo == f"file://{(tmp_path / 'mine').resolve()}"  # relative to the campaign file
    task = spec.task_dict(spec.runs()[0])
    assert task["args"] == ["--lr=0.1", "--note=$(reboot); rm -rf /", "--batch_size=32"]
    assert task["metric_definitions"] == [{"name": "loss", "regex": "loss=([0-9.]+)"}]


@pytest.mark.parametrize("field, value", [("campaign", "sweep\n"), ("ref", "main\n"), ("script", "train.py\n")])
def test_a_trailing_newline_is_never_accepted(field, value):
    """`$` in a regex matches before a final newline: every check must match the whole value."""
    with pytest.raises(TrainfleetInputError):
        parse_spec(spec_dict(**{field: value}))


def test_run_ids_show_the_configuration_and_keep_their_hash():
    spec = parse_spec(spec_dict(matrix={"instance_type": ["c5.xlarge"], "batch_size": [128], "learning_rate": [0.001]}))
    [run] = spec.runs()
    assert run.run_id.startswith("c5-xlarge-bs128-lr0p001-") and len(run.run_id.rsplit("-", 1)[1]) == 8
    only_types = parse_spec(spec_dict(matrix={"instance_type": ["c5.xlarge", "m5.large"]})).runs()
    assert [r.run_id.count("-") for r in only_types] == [2, 2]  # c5-xlarge-<hash>: the ids campaigns had before


def test_readable_run_ids_are_valid_ids_for_any_value():
    from instance_benchmarks.campaigns.spec import readable_run_id
    from instance_benchmarks.core.validation import validate_identifier

    hostile = {"note": "$(touch /tmp/x); rm -rf / #", "hidden_layers": [1024, 1024, 512], "amp": True, "lr": -1e-05,
               "a_very_long_hyperparameter_name_indeed": "x" * 80}
    run_id = readable_run_id("sm-", "g6e.12xlarge", hostile, "0123abcd", 20)
    assert validate_identifier(run_id, "run id") == run_id and len(run_id) <= 63
    assert run_id.startswith("sm-g6e-12xlarge-note") and run_id.endswith("-0123abcd-r20")


def test_repeats_run_each_configuration_again_with_the_same_seed():
    spec = parse_spec(spec_dict(repeats=3, matrix={"instance_type": ["c5.xlarge"], "batch_size": [3, 5]}))
    runs = spec.runs()
    assert len(runs) == 6 and len({r.run_id for r in runs}) == 6
    first = [r for r in runs if r.hyperparameters["batch_size"] == 3]
    assert [r.run_id for r in first[1:]] == [first[0].run_id + "-r2", first[0].run_id + "-r3"]
    assert [r.repeat for r in first] == [1, 2, 3] and all("seed" not in r.hyperparameters for r in first)
    assert parse_spec(spec_dict(matrix={"instance_type": ["c5.xlarge"], "batch_size": [3, 5]})).runs()[0].run_id \
        == first[0].run_id  # adding repeats keeps the first run's id: its result is reused


def test_vary_seed_gives_each_repeat_its_own_seed():
    spec = parse_spec(spec_dict(repeats=3, vary_seed=True, hyperparameters={"epochs": 3, "seed": 7},
                                matrix={"instance_type": ["c5.xlarge"], "batch_size": [3]}))
    assert [r.hyperparameters["seed"] for r in spec.runs()] == [7, 8, 9]
    assert "--seed=8" in spec.task_dict(spec.runs()[1])["args"]


@pytest.mark.parametrize("changes, message", [
    ({"repeats": 0}, "repeats must be a whole number from 1 to 20"),
    ({"repeats": 21}, "repeats must be a whole number from 1 to 20"),
    ({"repeats": True}, "repeats must be a whole number"),
    ({"vary_seed": "yes"}, "vary_seed must be true or false"),
    ({"vary_seed": True, "matrix": {"instance_type": ["c5.xlarge"], "seed": [1, 2]}}, "seed cannot be in the matrix"),
    ({"vary_seed": True, "workload": None, "script": "train.py", "hyperparameters": {"seed": 1.5}},
     "vary_seed needs a whole-number seed"),
    ({"repeats": 20, "matrix": {"instance_type": ["c5.xlarge"], "batch_size": list(range(1, 27))}},
     "the matrix expands to 26 runs x 20 repeats (at most 500)"),
])
def test_bad_repeats_are_one_line_errors(changes, message):
    with pytest.raises(TrainfleetInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_spec(spec_dict(**changes))


# ----------------------------------------------------------------------------- hyperparameters against the workload
@pytest.mark.parametrize("changes, message", [
    ({"hyperparameters": {"epochs": 3, "device": "tpu"}},
     "hyperparameters: --device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ({"matrix": {"instance_type": ["c5.xlarge"], "device": ["cpu", "tpu"]}},
     "matrix.device: --device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ({"hyperparameters": {"epochs": 3, "hidden_layers": [64, 100000]}},
     "hyperparameters: --hidden_layers: each width must be positive and at most 65536, got (64, 100000)"),
    ({"matrix": {"instance_type": ["c5.xlarge"], "batch_size": [3, 2000]}},
     "matrix.batch_size: --batch_size must be positive and at most 1024, got 2000"),  # cartpole narrows it
    ({"hyperparameters": {"epochs": 3, "gamma": 1.5}}, "hyperparameters: --gamma must be positive and at most 1, got 1.5"),
    ({"repeats": 3, "vary_seed": True, "hyperparameters": {"epochs": 3, "seed": 4294967294}},
     "vary_seed: --seed must be in [0, 4294967295], got 4294967296"),
    ({"target": {"metric": "val_accuracy", "value": 0.9}},
     "target.metric 'val_accuracy': cartpole_pg emits step, epoch, loss, mean_reward, final10_reward, samples_per_s, "
     "sec_per_step, interval_s, train_seconds, episodes"),
    ({"workload": "tabular_mlp", "hyperparameters": {"epochs": 3}, "matrix": {"instance_type": ["c5.xlarge"]},
      "target": {"metric": "final10_reward", "value": 195}}, "target.metric 'final10_reward': tabular_mlp emits "),
])
def test_workload_bounds_choices_and_metrics_are_one_line_errors(changes, message):
    with pytest.raises(TrainfleetInputError) as raised:
        parse_spec(spec_dict(**changes), source="c.yaml")
    assert str(raised.value).startswith(f"c.yaml: {message}") and "\n" not in str(raised.value)


@pytest.mark.parametrize("workload, metric", [("cartpole_pg", "final10_reward"), ("cartpole_pg", "samples_per_s"),
                                              ("tabular_mlp", "val_accuracy"), ("lstm_regressor", "val_mse"),
                                              ("cifar10_resnet", "test_accuracy"), ("gpt_tokens", "tokens_per_s")])
def test_a_target_on_a_metric_the_workload_emits_is_accepted(workload, metric):
    spec = parse_spec(spec_dict(workload=workload, hyperparameters={"epochs": 3},
                                matrix={"instance_type": ["c5.xlarge"]}, target={"metric": metric, "value": 1}))
    assert spec.target == {"metric": metric, "value": 1}


def test_a_foreign_script_may_target_any_metric_and_pass_any_device():
    spec = parse_spec(spec_dict(workload=None, script="train.py", hyperparameters={"device": "tpu"},
                                target={"metric": "val_accuracy", "value": 0.9}))
    assert spec.target["metric"] == "val_accuracy" and spec.hyperparameters == {"device": "tpu"}


def test_metrics_grace_minutes_reaches_the_agent_only_when_metrics_are_expected():
    spec = parse_spec(spec_dict())  # a bundled workload always prints metric lines
    assert spec.metrics_grace_minutes == 5.0 and spec.task_dict(spec.runs()[0])["metrics_grace_seconds"] == 300.0
    spec = parse_spec(spec_dict(workload=None, script="train.py", target=None, metrics_grace_minutes=0.5,
                                metric_definitions=[{"name": "val_mse", "regex": "val_mse=([0-9.]+)"}]))
    assert spec.task_dict(spec.runs()[0])["metrics_grace_seconds"] == 30.0
    quiet = parse_spec(spec_dict(workload=None, script="train.py", target=None))  # nothing to wait for
    assert quiet.task_dict(quiet.runs()[0])["metrics_grace_seconds"] is None


@pytest.mark.parametrize("value", [0, -1, "5", True, float("inf")])
def test_a_bad_metrics_grace_minutes_is_one_input_error(value):
    with pytest.raises(TrainfleetInputError, match=r"^[^\n]*metrics_grace_minutes must be a finite number > 0"):
        parse_spec(spec_dict(metrics_grace_minutes=value))
