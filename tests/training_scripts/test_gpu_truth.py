"""training_scripts/gpu_truth.py, the first GPU run's one command, end to end on a CPU at --smoke sizes."""
from __future__ import annotations

import json

import pytest

from training_scripts import gpu_truth


def test_smoke_runs_every_part_and_writes_figures(tmp_path, capsys):
    out = tmp_path / "truth.jsonl"
    assert gpu_truth.main(["--device=cpu", "--smoke", f"--out={out}", "--budget-s=3600"]) == 0  # no deadline hit
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    parts = [r["part"] for r in rows]
    assert parts == ["machine"] + ["bench_loop"] * 4 + ["cifar10_resnet", "gpt_tokens"]
    assert rows[0]["load_average"] and rows[0]["device"] == "cpu"
    bench = rows[1:5]
    assert {(r["workload"], r["mode"]) for r in bench} == {
        (w, m) for w in ("cifar10_resnet", "gpt_tokens") for m in ("eager", "eager (compile: GPU only)")}
    assert all(r["loop"] > 0 and r["ceiling"] > 0 and r["mfu"] is None for r in bench)  # no peak on a CPU
    cifar, gpt = rows[5], rows[6]
    assert cifar["data"].startswith("synthetic") and cifar["epochs_done"] == 1 and cifar["samples_per_s"] > 0
    assert gpt["complete"] and gpt["tokens_per_s"] > 0 and gpt["precision"] == "fp32"
    assert "gpt_tokens" in capsys.readouterr().out.splitlines()[-2]  # the summary table's last row


@pytest.mark.parametrize("argv", [["--budget-s=5"], ["--device=tpu"]])
def test_bad_arguments_exit_2(tmp_path, argv):
    with pytest.raises(SystemExit) as exit_:
        gpu_truth.main([f"--out={tmp_path / 'x.jsonl'}", "--smoke", *argv])
    assert exit_.value.code == 2


def test_a_part_past_its_deadline_stops_and_reports_what_it_measured(tmp_path):
    from dataclasses import replace
    from training_scripts import gpt_tokens
    config = replace(gpt_tokens.Config(), device="cpu", output=str(tmp_path), data="synthetic",
                     **gpu_truth.SMOKE["gpt_tokens"])
    history, result = gpu_truth.run_until(gpt_tokens, config, deadline=0.0)  # stop requested at the first step
    assert result is None and [r.get("event") for r in history] == ["preempted"]
