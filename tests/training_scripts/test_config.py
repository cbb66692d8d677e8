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
