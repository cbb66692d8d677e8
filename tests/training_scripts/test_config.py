import pytest

from training_scripts.config import ConfigError, parse_overrides
from training_scripts.tabular_mlp import Config


def test_typed_overrides():
    config = parse_overrides(Config, ["--epochs=3", "--learning_rate", "0.01", "--hidden_layers=32,16", "--dry-run", "--amp=false"])
    assert (config.epochs, config.learning_rate, config.hidden_layers, config.dry_run, config.amp) == (3, 0.01, (32, 16), True, False)


@pytest.mark.parametrize("argv, message", [
    (["--epochs=three"], "expected int"),
    (["--nonsense=1"], "unknown option"),
    (["--dropout=1.5"], "dropout"),
    (["--batch_size=0"], "batch_size must be positive"),
    (["--amp=perhaps"], "expected bool"),
    (["positional"], "unexpected argument"),
])
def test_bad_overrides(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_overrides(Config, argv)


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        Config().epochs = 5


# ----------------------------------------------------------------------------- declared bounds and choices
import dataclasses  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from training_scripts.config import TrainConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ("tabular_mlp", "cnn_digits", "lstm_regressor", "cartpole_pg", "cifar10_resnet", "gpt_tokens")


@pytest.mark.parametrize("workload, argv, message", [
    ("tabular_mlp", ["--device=tpu"], "--device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("tabular_mlp", ["--device=cuda:x"], "--device must be auto, cpu, cuda or cuda:N, got 'cuda:x'"),
    ("tabular_mlp", ["--epochs=0"], "--epochs must be positive and at most 100000, got 0"),
    ("tabular_mlp", ["--epochs=100001"], "--epochs must be positive and at most 100000, got 100001"),
    ("tabular_mlp", ["--batch_size=0"], "--batch_size must be positive and at most 1048576, got 0"),
    ("tabular_mlp", ["--learning_rate=0"], "--learning_rate must be positive and at most 10, got 0.0"),
    ("tabular_mlp", ["--learning_rate=nan"], "--learning_rate must be positive and at most 10, got nan"),
    ("tabular_mlp", ["--weight_decay=-0.1"], "--weight_decay must be in [0, 1], got -0.1"),
    ("tabular_mlp", ["--dropout=1"], "--dropout must be in [0, 1), got 1.0"),
    ("tabular_mlp", ["--hidden_layers=64,0"], "--hidden_layers: each width must be positive and at most 65536, got (64, 0)"),
    ("tabular_mlp", ["--hidden_layers=" + ",".join(["8"] * 65)], "--hidden_layers must have 0 to 64 widths"),
    ("tabular_mlp", ["--patience=-1"], "--patience must be in [0, 100000], got -1"),
    ("tabular_mlp", ["--checkpoint_every=0"], "--checkpoint_every must be positive and at most 1000000000, got 0"),
    ("tabular_mlp", ["--log_every=0"], "--log_every must be positive and at most 1000000000, got 0"),
    ("tabular_mlp", ["--seed=-1"], "--seed must be in [0, 4294967295], got -1"),
    ("tabular_mlp", ["--seed=4294967296"], "--seed must be in [0, 4294967295], got 4294967296"),
    ("tabular_mlp", ["--max_steps=-1"], "--max_steps must be in [0, 1000000000], got -1"),
    ("tabular_mlp", ["--amp_dtype=fp8"], "--amp_dtype must be one of auto, bf16, fp16, got 'fp8'"),
    ("tabular_mlp", ["--data_placement=disk"], "--data_placement must be one of auto, device, host, got 'disk'"),
    ("tabular_mlp", ["--rows=5"], "--rows must be in [10, 10000000], got 5"),
    ("tabular_mlp", ["--val_fraction=1"], "--val_fraction must be in (0, 1), got 1.0"),
    ("cnn_digits", ["--channels=16,5000"], "--channels: each width must be positive and at most 4096, got (16, 5000)"),
    ("lstm_regressor", ["--hidden_layers="], "--hidden_layers must have 1 to 16 widths, got ()"),  # narrowed
    ("lstm_regressor", ["--hidden_layers=10000"], "--hidden_layers: each width must be positive and at most 8192"),
    ("lstm_regressor", ["--window=1"], "--window must be in [2, 100000], got 1"),
    ("lstm_regressor", ["--val_fraction=0"], "--val_fraction must be in (0, 1), got 0.0"),
    ("cartpole_pg", ["--batch_size=2000"], "--batch_size must be positive and at most 1024, got 2000"),  # narrowed
    ("cartpole_pg", ["--gamma=0"], "--gamma must be positive and at most 1, got 0.0"),
    ("cartpole_pg", ["--max_episode_steps=0"], "--max_episode_steps must be positive and at most 100000, got 0"),
    ("cifar10_resnet", ["--cutout=99"], "--cutout must be in [0, 32], got 99"),
    ("cifar10_resnet", ["--momentum=1"], "--momentum must be in [0, 1), got 1.0"),
    ("cifar10_resnet", ["--target_accuracy=1.5"], "--target_accuracy must be positive and at most 1, got 1.5"),
    ("gpt_tokens", ["--n_layer=0"], "--n_layer must be positive and at most 256, got 0"),
    ("gpt_tokens", ["--vocab_size=1"], "--vocab_size must be in [2, 1048576], got 1"),
    ("gpt_tokens", ["--min_lr_ratio=2"], "--min_lr_ratio must be in [0, 1], got 2.0"),
])
def test_declared_bounds_and_choices_are_refused_naming_the_field_and_the_bound(workload, argv, message):
    config_cls = importlib.import_module(f"training_scripts.{workload}").Config
    with pytest.raises(ConfigError) as raised:
        parse_overrides(config_cls, argv)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


@pytest.mark.parametrize("argv", [["--device=auto"], ["--device=cpu"], ["--device=cuda"], ["--device=cuda:3"],
                                  ["--dropout=0"], ["--seed=4294967295"], ["--hidden_layers="], ["--max_steps=0"],
                                  ["--learning_rate=10"], ["--weight_decay=1"]])
def test_values_on_the_bounds_are_accepted(argv):
    parse_overrides(Config, argv)


def test_direct_construction_is_checked_too():
    with pytest.raises(ConfigError, match="--device must be auto, cpu, cuda or cuda:N, got 'tpu'"):
        Config(device="tpu")
    with pytest.raises(ConfigError, match="--epochs must be positive"):
        dataclasses.replace(Config(), epochs=0)
    with pytest.raises(ConfigError, match=r"--batch_size must be a number in \[1, 1048576\], got '64'"):
        Config(batch_size="64")


@pytest.mark.parametrize("workload", WORKLOADS)
def test_workloads_inherit_the_shared_bounds_and_only_narrow_them(workload):
    config_cls = importlib.import_module(f"training_scripts.{workload}").Config
    config_cls()  # the defaults are within the bounds
    shared, own = TrainConfig.BOUNDS, config_cls.BOUNDS
    assert set(shared) <= set(own)
    for name, bound in shared.items():
        narrowed = own[name]
        if bound.choices:
            assert set(narrowed.choices) <= set(bound.choices), name
        if bound.low is not None:
            assert narrowed.low >= bound.low and narrowed.high <= bound.high, name
        if bound.items is not None:
            assert bound.items[0] <= narrowed.items[0] and narrowed.items[1] <= bound.items[1], name
    assert set(own) <= {f.name for f in dataclasses.fields(config_cls)}  # no bound for a field that does not exist


def test_the_script_itself_refuses_a_device_outside_its_choices(tmp_path):
    done = subprocess.run([sys.executable, "-m", "training_scripts.cnn_digits", "--device=tpu", f"--output={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr == "error: --device must be auto, cpu, cuda or cuda:N, got 'tpu'\n"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("workload", WORKLOADS)
def test_metrics_declares_exactly_what_the_metric_lines_carry(workload, tmp_path, monkeypatch):
    """A dry run with a known peak (so mfu is logged where the loop can log it) emits every declared metric
    and no other number."""
    module = importlib.import_module(f"training_scripts.{workload}")
    monkeypatch.setenv("TRAINFLEET_PEAK_TFLOPS", json.dumps({"device": "cpu", "fp32": 0.5}))
    data = "synthetic" if workload in ("cifar10_resnet", "gpt_tokens") else ""
    module.run(module.Config(dry_run=True, data=data, device="cpu", output=str(tmp_path)))
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    emitted = {key for line in lines if "event" not in line for key, value in line.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)}
    assert emitted == set(module.METRICS)
    assert len(set(module.METRICS)) == len(module.METRICS)
