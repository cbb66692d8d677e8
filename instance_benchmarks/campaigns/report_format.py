"""The report's bottom: the table columns and text helpers every renderer shares (Markdown and terminal in
`report.py` and the CLI, HTML in `report_html.py`, charts in `report_charts.py`, figures in `report_stats.py`).

It imports none of them, so the report family imports one way: report_format < report_stats < report_charts,
report_html < report (which assembles the report and writes every file) < bench_report.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from instance_benchmarks.core.safe_output import safe_text

if TYPE_CHECKING:
    from instance_benchmarks.campaigns.report import Report

# What a run's money went to (the "cost honesty" table): seconds billed by phase, the root volume's share,
# and what attempts that did not complete (interrupted, lost, failed) cost on the way.
COST_COLUMNS = [("run_id", "run"), ("instance_type", "instance"), ("boot_seconds", "boot (s)"),
                ("setup_seconds", "setup (s)"), ("train_seconds", "train (s)"), ("idle_seconds", "idle (s)"),
                ("billable_seconds", "billed (s)"), ("ebs_usd", "EBS ($)"), ("attempts", "attempts"),
                ("interrupted_usd", "interrupted attempts ($)"), ("cost_usd", "run cost ($)")]
PREDICTION_COLUMNS = [("run_id", "run"), ("label", "hyperparameters"), ("instance_type", "instance"),
                      ("slice_units", "STEPS"), ("pred_sec_per_unit", "SEC/STEP"), ("pred_cv", "CV"),
                      ("usd_per_unit", "$/STEP"),
                      ("est_hours", "EST TIME (h)"), ("est_usd", "EST COST ($)"), ("est_range", "EST COST range ($)"),
                      ("est_on_demand_usd", "on-demand ($)")]


def metric_columns(report: Report, names: list[str] | None = None) -> list[tuple[str, str]]:
    """Columns of the user's metrics (all, or `names`): last and best, best saying max or min."""
    columns = []
    for name in report.metrics if names is None else names:
        best = "max" if report.metric_higher.get(name, True) else "min"
        columns += [(f"{name}_last", f"{name} last"), (f"{name}_best", f"{name} best ({best})")]
    return columns


def shown_metric(report: Report) -> str | None:
    """The one metric a narrow table shows: the target's, else the script's primary one, else the first printed."""
    for name in ((report.target or {}).get("metric"), report.primary_metric):
        if name in report.metrics:
            return name
    return report.metrics[0] if report.metrics else None


def earlier_line(row: dict) -> str:
    """One line for a run of earlier code, as the Markdown, HTML and terminal reports show it."""
    final = f", final {format_value(row['final_metric'])}" if row.get("final_metric") is not None else ""
    return (f"{row['run_id']} {row['instance_type'] or ''} {row['label']}: commit {row['code']}, "
            f"{row['outcome']}{final}").replace("  ", " ")


EARLIER_HEADING = "Earlier code or settings ({n} run(s)): kept, not current, never ranked"


def format_value(value) -> str:
    """A value as table text (terminal, Markdown): numbers rounded, text with its control and bidi characters
    escaped (core/safe_output.py)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0 or math.isnan(value):
            return f"{value:g}"
        magnitude = abs(value)
        return f"{value:.3e}" if magnitude < 1e-3 else f"{value:.4f}" if magnitude < 10 else f"{value:,.1f}"
    return safe_text(value)


METRICS_NOTE = ("Each metric the runs printed (JSON lines, or `metric_definitions` regexes): its last value and its "
                "best (the highest, or the lowest for a name like loss, error or time).")
METRIC_SOURCES = ("Metrics come from the script's JSON lines and the campaign's `metric_definitions` regexes; a run's "
                  "`metrics.jsonl` shows what was read.")
METRIC_RUN_COLUMNS = [("run_id", "run"), ("instance_type", "instance"), ("label", "hyperparameters")]
METRIC_CONFIG_COLUMNS = [("key", "#"), ("instance_type", "instance"), ("label", "hyperparameters"),
                         ("runs_text", "runs")]


PRICE_COLUMNS = [("instance_type", "instance"), ("market", "market"), ("usd_per_hour", "$/h"),
                 ("on_demand_usd_per_hour", "on-demand $/h"), ("storage_usd_per_hour", "of which EBS $/h"),
                 ("source", "source"), ("quoted_at", "quoted at"), ("used_by", "runs")]


def price_rows(report: Report) -> list[dict]:
    """Every distinct price the report uses (stored with the runs) or was quoted at launch, with its source
    and date."""
    found: dict[tuple, dict] = {}
    for row in report.rows:
        key = (row["instance_type"], row["market"], row["usd_per_hour"], row.get("price_source"), row.get("quoted_at"))
        entry = found.setdefault(key, {"instance_type": row["instance_type"], "market": row["market"],
                                       "usd_per_hour": row["usd_per_hour"],
                                       "on_demand_usd_per_hour": row.get("on_demand_usd_per_hour"),
                                       "storage_usd_per_hour": row.get("storage_usd_per_hour"),
                                       "source": row.get("price_source"), "quoted_at": row.get("quoted_at"),
                                       "used_by": 0})
        entry["used_by"] += 1
    for quote in report.quotes.values():
        key = (quote.get("instance_type"), quote.get("market"), quote.get("usd_per_hour"), quote.get("source"),
               quote.get("quoted_at"))
        found.setdefault(key, {"instance_type": quote.get("instance_type"), "market": quote.get("market"),
                               "usd_per_hour": quote.get("usd_per_hour"),
                               "on_demand_usd_per_hour": quote.get("on_demand_usd_per_hour"),
                               "storage_usd_per_hour": quote.get("storage_usd_per_hour"),
                               "source": quote.get("source"), "quoted_at": quote.get("quoted_at"), "used_by": 0})
    return sorted(found.values(), key=lambda p: (str(p["instance_type"]), str(p["market"]), str(p["quoted_at"])))


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated in (time, cost), both minimised (sorted by time; O(n log n))."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best_cost = [], math.inf
    for i in order:
        t, c = points[i]
        if c < best_cost:
            front.append(i)
            best_cost = c
        elif c == best_cost and front and points[front[-1]] == (t, c):
            front.append(i)  # an exact duplicate of a point on the front is on it too
    return front
