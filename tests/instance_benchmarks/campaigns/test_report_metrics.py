"""The user's own metrics in every report: a plain-text repository without a `target` (metrics read by
`metric_definitions`, no `step`) shows each metric's last and best value per run and per configuration in
report.csv, report.parquet, report.md, report.html and the terminal table, and its curves against epoch."""
from __future__ import annotations

import csv
import io
import re

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from instance_benchmarks.campaigns import report_charts
from instance_benchmarks.campaigns.report import MAX_METRICS, assemble_report, render_files
from instance_benchmarks.campaigns.report_stats import recommendation_lines


def _history(valid_losses: list[float], accuracies: list[float]) -> list[dict]:
    """What the agent records from `| end of epoch N | valid loss X | acc Y` lines: no step, no samples."""
    return [{"epoch": epoch, "valid_loss": loss, "val_acc": acc, "t": 10.0 * epoch, "train_t": 10.0 * epoch,
             "attempt": 1} for epoch, (loss, acc) in enumerate(zip(valid_losses, accuracies), start=1)]


def _result(run_id: str, instance_type: str, target: dict | None = None) -> dict:
    # as agent.main.write_result writes it for a foreign script: no primary metric, no throughput figures
    return {"status": "complete", "run_id": run_id, "instance_type": instance_type, "market": "spot",
            "price": {"usd_per_hour": 0.36, "on_demand_usd_per_hour": 0.5}, "samples_per_s": None,
            "sec_per_step": None, "train_seconds": 30.0, "cost_usd": 0.003, "attempts": 1, "primary_metric":
            (target or {}).get("metric"), "final_metric": None, "time_to_accuracy_s": None, "higher_is_better": True,
            "target": target, "measured_on": "ec2", "backend": "ec2"}


HISTORIES = {  # two configurations, two repeats each; the loss is lowest before the end (overfitting)
    "c5-xlarge-aa": _history([5.0, 4.0, 4.5], [0.50, 0.70, 0.60]),
    "c5-xlarge-aa-r2": _history([5.0, 3.0, 3.5], [0.60, 0.80, 0.75]),
    "m5-large-bb": _history([6.0, 5.0, 5.5], [0.40, 0.45, 0.42]),
    "m5-large-bb-r2": _history([6.0, 5.5, 5.8], [0.40, 0.44, 0.41]),
}


def _report(target: dict | None = None, histories: dict | None = None):
    histories = histories or HISTORIES
    records = [{"run_id": run_id, "launch": {"hyperparameters": {}, "attempts": [{"outcome": "completed"}]},
                "result": _result(run_id, "c5.xlarge" if run_id.startswith("c5") else "m5.large", target)}
               for run_id in histories]
    spec = {"matrix": {"instance_type": ["c5.xlarge", "m5.large"]}, "target": target}
    return assemble_report("wlm", records, {"backends": {"ec2": {"spec": spec}}}, histories)


def test_each_metric_gets_its_last_and_best_value_by_its_direction():
    report = _report()
    assert report.metrics == ["valid_loss", "val_acc"]  # epoch, t, train_t and attempt are counters
    assert report.metric_higher == {"valid_loss": False, "val_acc": True}
    first = report.rows[0]
    assert (first["valid_loss_last"], first["valid_loss_best"]) == (4.5, 4.0)  # lowest loss
    assert (first["val_acc_last"], first["val_acc_best"]) == (0.60, 0.70)      # highest accuracy
    c5 = next(c for c in report.configs if c["instance_type"] == "c5.xlarge")
    assert c5["valid_loss_last"] == pytest.approx(4.0) and c5["valid_loss_best"] == pytest.approx(3.5)  # medians
    assert c5["val_acc_best_cv"] is not None


def test_the_metrics_reach_csv_parquet_markdown_and_html():
    files = render_files(_report())
    rows = list(csv.DictReader(io.StringIO(files["report.csv"].decode())))
    assert {"valid_loss_last", "valid_loss_best", "val_acc_last", "val_acc_best"} <= set(rows[0])
    assert (rows[0]["valid_loss_last"], rows[0]["valid_loss_best"]) == ("4.5", "4.0")
    table = pq.read_table(io.BytesIO(files["report.parquet"])).to_pylist()
    assert [r["val_acc_best"] for r in table] == [0.70, 0.80, 0.45, 0.44]
    markdown = files["report.md"].decode()
    assert "## Metrics: last and best" in markdown
    assert "| valid_loss last | valid_loss best (min) | val_acc last | val_acc best (max) |" in markdown
    assert re.search(r"\| c5-xlarge-aa \| c5\.xlarge \|  \| 4\.5000 \| 4\.0000 \| 0\.6000 \| 0\.7000 \|", markdown)
    assert "Per configuration (median of the repeats" in markdown
    html = files["report.html"].decode()
    section = html[html.index('<section id="metrics-section">'):]
    section = section[:section.index("</section>")]
    assert "valid_loss best (min)" in section and 'data-value="4.0">4.0000</td>' in section


def test_the_terminal_table_shows_the_first_metric_beside_sec_per_step_time_and_cost(monkeypatch):
    from instance_benchmarks.commands import campaign_view, output

    out = io.StringIO()
    monkeypatch.setattr(output, "console", Console(file=out, width=100, force_terminal=False))
    campaign_view.print_report(_report())
    text = out.getvalue()
    assert "training time and run cost; valid_loss: last, best (min)" in text
    header = next(line for line in text.splitlines() if line.startswith("run "))
    assert header.split()[-9:] == ["sec/step", "(CV)", "train", "(s)", "cost", "($)", "last", "best", "status"]
    line = next(line for line in text.splitlines() if line.startswith("c5-xlarge-aa "))
    assert line.split()[-5:] == ["30.0", "0.0030", "4.5000", "4.0000", "complete"]
    out.seek(0), out.truncate()
    campaign_view.print_report(_report(), wide=True)
    assert "val_acc best (max)" in out.getvalue()  # --wide: every metric


def test_a_run_that_never_printed_the_target_metric_is_no_metric_not_missed():
    report = _report(target={"metric": "val_mse", "value": 0.1})
    assert {r["status"] for r in report.rows} == {"no metric"}
    assert {c["status"] for c in report.configs} == {"no metric"}
    assert report.recommendation["cheapest"] is None and report.recommendation["missed"] == []
    lines = "\n".join(recommendation_lines(report))
    assert "never printed the target metric val_mse" in lines and "missed the target" not in lines
    markdown = render_files(report)["report.md"].decode()
    assert "## Never printed the target metric `val_mse` (4)" in markdown and "Missed the target" not in markdown


def test_curves_are_drawn_against_epoch_when_no_run_printed_a_step(monkeypatch):
    monkeypatch.setattr(report_charts, "_png", lambda fig: fig)
    fig = report_charts.curves_chart(_report())
    axes = fig.axes
    assert [ax.get_xlabel() for ax in axes] == ["epoch", "wall time (s of training)"]
    assert axes[0].get_ylabel() == "valid_loss"
    assert all(ax.collections and len(ax.collections[0].get_segments()) == 4 for ax in axes)  # every run drawn
    import matplotlib.pyplot as plt

    plt.close(fig)
    only_time = {run_id: [{k: v for k, v in r.items() if k != "epoch"} for r in h] for run_id, h in HISTORIES.items()}
    fig = report_charts.curves_chart(_report(histories=only_time))
    assert [ax.get_xlabel() for ax in fig.axes] == ["wall time (s of training)"]
    plt.close(fig)


def test_metric_names_from_the_scripts_lines_are_shown_only_when_plain_and_few():
    history = [{"<img src=x onerror=alert(1)>": 1.0, "a|b": 2.0, **{f"m{i}": float(i) for i in range(30)}}]
    report = _report(histories={"c5-xlarge-aa": history})
    assert report.metrics == [f"m{i}" for i in range(MAX_METRICS)]
