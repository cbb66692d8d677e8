"""Campaign files as untrusted input: each refusal is one line, exit 2 at the CLI, and fast."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from instance_benchmarks.campaign_file import load_spec
from instance_benchmarks.campaigns.yamlfile import MAX_BYTES, MAX_DEPTH, load_yaml_file
from instance_benchmarks.core.errors import TrainfleetInputError
from tests.instance_benchmarks.conftest import spec_dict

ROOT = Path(__file__).resolve().parents[3]
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))


def _refused(tmp_path: Path, content: bytes | str, match: str) -> str:
    path = tmp_path / "campaign.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    started = time.monotonic()
    with pytest.raises(TrainfleetInputError, match=match) as raised:
        load_yaml_file(path)
    assert time.monotonic() - started < 1.0
    assert "\n" not in str(raised.value)
    return str(raised.value)


def test_a_pasted_second_key_is_refused_naming_both_lines(tmp_path):
    text = yaml.safe_dump(spec_dict(), sort_keys=False) + "budget_usd: 1000\n"
    first = text.splitlines().index("budget_usd: 10.0") + 1
    last = len(text.splitlines())
    _refused(tmp_path, text, rf"duplicate key 'budget_usd' \(lines {first} and {last}\)")
    _refused(tmp_path, "target: {metric: loss, value: 1, value: 2}\n", r"duplicate key 'value' \(lines 1 and 1\)")
    _refused(tmp_path, "matrix:\n  lr: [1]\n  lr: [2]\n", r"duplicate key 'lr' \(lines 2 and 3\)")


def test_merge_keys_and_small_aliases_still_work(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {epochs: 3, lr: 1}\nhyperparameters:\n  <<: *b\n  lr: 0.1\nother: *b\n")
    assert load_yaml_file(path) == {"base": {"epochs": 3, "lr": 1}, "hyperparameters": {"epochs": 3, "lr": 0.1},
                                    "other": {"epochs": 3, "lr": 1}}  # a merged key may be overridden


def test_bytes_that_are_not_utf8_are_refused(tmp_path):
    _refused(tmp_path, b"campaign: caf\xe9\n", r"not UTF-8 text \(byte 13\)")


def test_an_oversized_file_is_refused_without_reading_it_all(tmp_path):
    _refused(tmp_path, "# " + "x" * MAX_BYTES + "\n", "over 1,000,000 bytes")


def test_dev_zero_is_refused_at_once():
    started = time.monotonic()
    with pytest.raises(TrainfleetInputError, match="over 1,000,000 bytes"):
        load_yaml_file("/dev/zero")
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000])
def test_deep_nesting_is_refused(tmp_path, depth):
    _refused(tmp_path, "a: " + "[" * depth + "]" * depth + "\n", "nested deeper than")


def test_an_anchor_bomb_is_refused_before_it_expands(tmp_path):
    _refused(tmp_path, BOMB, "aliases expand to more than 100,000 values")


def test_a_recursive_alias_is_refused(tmp_path):
    _refused(tmp_path, "a: &a [1, *a]\n", "recursive alias")


def test_the_cli_says_it_in_one_line_and_exits_2(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump(spec_dict(), sort_keys=False) + "budget_usd: 1000\n")
    done = subprocess.run([sys.executable, "-c", "from instance_benchmarks.cli import main; main()", "campaign",
                           "validate", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: ") and "duplicate key 'budget_usd'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_load_spec_reads_through_the_strict_loader(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    with pytest.raises(TrainfleetInputError, match="anchor bomb"):
        load_spec(path)
