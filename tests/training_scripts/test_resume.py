"""A run interrupted at any step and resumed ends with the same weights as an uninterrupted run."""
from __future__ import annotations

import io
from dataclasses import replace

import pytest
import torch

from training_scripts import cartpole_pg, lstm_regressor, tabular_mlp
from training_scripts.loop import Preempted, fit


def _weights(output) -> dict:
    return torch.load(io.BytesIO((output / "model.pt").read_bytes()), weights_only=False)["model"]


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


class Crash(Exception):
    pass


def _stopper(at_call: int, exc):
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        if calls["n"] == at_call:
            if exc is None:
                return True
            raise exc
        return False

    return should_stop


@pytest.fixture(scope="module")
def tabular_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    config = tabular_mlp.Config(rows=1500, epochs=3, checkpoint_every=7, output=str(out), dropout=0.2)
    tabular_mlp.run(config)
    return config, _weights(out)


@pytest.mark.parametrize("stop_at", [1, 4, 5, 11])  # 4 steps an epoch (1200 rows // 256), 12 in all
def test_graceful_stop_then_resume_matches(tmp_path, tabular_reference, stop_at):
    config, reference = tabular_reference
    config = replace(config, output=str(tmp_path))
    with pytest.raises(Preempted):
        fit(config, tabular_mlp.build_task(config), should_stop=_stopper(stop_at, None), echo=False)
    result = tabular_mlp.run(config)
    assert result["attempts"] == 2
    _assert_same(_weights(tmp_path), reference)


@pytest.mark.parametrize("crash_at", [4, 8, 11])
def test_hard_crash_resumes_from_last_checkpoint_and_matches(tmp_path, tabular_reference, crash_at):
    config, reference = tabular_reference
    config = replace(config, output=str(tmp_path))
    with pytest.raises(Crash):
        fit(config, tabular_mlp.build_task(config), should_stop=_stopper(crash_at, Crash()), echo=False)
    tabular_mlp.run(config)
    _assert_same(_weights(tmp_path), reference)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    # the first checkpoint is written at the end of epoch 0 (after step 4); a crash before it restarts from scratch
    assert any('"event": "resumed"' in line for line in lines) == (crash_at > 4)


def test_lstm_resume_matches(tmp_path):
    base = lstm_regressor.Config(length=800, epochs=2, checkpoint_every=5, window=16)
    lstm_regressor.run(replace(base, output=str(tmp_path / "a")))
    interrupted = replace(base, output=str(tmp_path / "b"))
    with pytest.raises(Preempted):
        fit(interrupted, lstm_regressor.build_task(interrupted), should_stop=_stopper(6, None), echo=False)  # of 8 steps (624 // 128 an epoch)
    lstm_regressor.run(interrupted)
    _assert_same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))


def test_cartpole_resume_matches(tmp_path):
    base = cartpole_pg.Config(epochs=6, batch_size=3, checkpoint_every=2, max_episode_steps=100)
    cartpole_pg.train(replace(base, output=str(tmp_path / "a")), echo=False)
    interrupted = replace(base, output=str(tmp_path / "b"))
    with pytest.raises(Crash):
        cartpole_pg.train(interrupted, should_stop=_stopper(3, Crash()), echo=False)
    result = cartpole_pg.train(interrupted, echo=False)
    assert result["attempts"] == 2
    _assert_same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))


def test_changed_hyperparameters_refuse_to_resume(tmp_path, tabular_reference):
    config, _ = tabular_reference
    config = replace(config, output=str(tmp_path))
    with pytest.raises(Preempted):
        fit(config, tabular_mlp.build_task(config), should_stop=_stopper(3, None), echo=False)
    with pytest.raises(Exception, match="different learning_rate"):
        tabular_mlp.run(replace(config, learning_rate=0.5))


def test_a_corrupt_checkpoint_is_moved_aside_and_the_run_starts_afresh(tmp_path, capsys):
    from training_scripts.loop import Checkpointer
    from training_scripts.storage import LocalLocation

    folder = LocalLocation(tmp_path / "ckpt")
    folder.write_bytes("latest.pt", b"\x80\x04 truncated")
    config = tabular_mlp.Config(rows=1500, epochs=1, output=str(tmp_path / "out"), checkpoint=str(tmp_path / "ckpt"))
    result = tabular_mlp.run(config)
    assert result["attempts"] == 1  # trained from scratch instead of failing on the checkpoint
    assert (tmp_path / "ckpt" / "corrupt-1" / "latest.pt").read_bytes() == b"\x80\x04 truncated"
    assert Checkpointer(folder).load() is not None  # the run's own, new checkpoint loads
    assert "did not load" in capsys.readouterr().err


def _cnn_state(tmp_path) -> bytes:
    """A real checkpoint of another workload (cnn_digits, one step)."""
    from training_scripts import cnn_digits

    cnn_digits.run(cnn_digits.Config(epochs=1, max_steps=1, output=str(tmp_path / "cnn-out"),
                                     checkpoint=str(tmp_path / "cnn-ckpt")))
    return (tmp_path / "cnn-ckpt" / "latest.pt").read_bytes()


def _saved(value) -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("planted", ["empty dict", "a list", "another workload", "model only", "wrong optimizer"])
def test_a_checkpoint_that_loads_but_does_not_fit_is_quarantined(tmp_path, capsys, planted):
    """Before, `{}` failed every attempt with a KeyError, another workload's state with a size mismatch."""
    import torch

    from training_scripts.storage import LocalLocation

    mlp_config = tabular_mlp.Config(rows=1500, epochs=1, output=str(tmp_path / "own"), checkpoint=str(tmp_path / "own-ck"))
    tabular_mlp.run(mlp_config)
    own = torch.load(tmp_path / "own-ck" / "latest.pt", weights_only=True)
    data = {"empty dict": lambda: _saved({}), "a list": lambda: _saved([1, 2]),
            "another workload": lambda: _cnn_state(tmp_path),
            "model only": lambda: _saved({"model": own["model"], "optimizer": own["optimizer"], "config": own["config"]}),
            "wrong optimizer": lambda: _saved({**own, "optimizer": {"param_groups": [{"params": [0]}], "state": {}}}),
            }[planted]()
    folder = LocalLocation(tmp_path / "ckpt")
    folder.write_bytes("latest.pt", data)
    config = tabular_mlp.Config(rows=1500, epochs=1, output=str(tmp_path / "out"), checkpoint=str(tmp_path / "ckpt"))
    result = tabular_mlp.run(config)
    assert result["attempts"] == 1  # trained from scratch
    assert (tmp_path / "ckpt" / "corrupt-1" / "latest.pt").read_bytes() == data
    assert '"checkpoint_quarantined"' in capsys.readouterr().out


def test_a_cartpole_checkpoint_of_another_workload_is_quarantined(tmp_path):
    from training_scripts import cartpole_pg

    data = _cnn_state(tmp_path)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "latest.pt").write_bytes(data)
    result = cartpole_pg.run(cartpole_pg.Config(epochs=1, batch_size=2, output=str(tmp_path / "out"),
                                                checkpoint=str(tmp_path / "ckpt")))
    assert result["attempts"] == 1 and (tmp_path / "ckpt" / "corrupt-1" / "latest.pt").read_bytes() == data


def test_a_checkpoint_that_would_run_code_is_refused_not_unpickled(tmp_path):
    """A pickle planted in the checkpoint folder (anyone who can write the bucket) never executes."""
    import io
    import os
    import pickle

    import torch

    from training_scripts.loop import Checkpointer
    from training_scripts.storage import LocalLocation

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    buffer = io.BytesIO()
    torch.save({"model": Payload()}, buffer, pickle_module=pickle)
    folder = LocalLocation(tmp_path / "ckpt")
    folder.write_bytes("latest.pt", buffer.getvalue())
    assert Checkpointer(folder).load() is None
    assert not marker.exists() and (tmp_path / "ckpt" / "corrupt-1" / "latest.pt").is_file()
    assert folder.read_bytes("latest.pt") is None
