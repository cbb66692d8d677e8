"""What the campaign commands print: the estimate, the status and report tables, `campaign run`'s live
progress and summary, and the failures with their log tails."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.live import Live

from instance_benchmarks import runner
from instance_benchmarks.campaigns.report import COLUMNS, write_report
from instance_benchmarks.campaigns.report_format import (
    EARLIER_HEADING, PREDICTION_COLUMNS, earlier_line, metric_columns, shown_metric,
)
from instance_benchmarks.campaigns.report_stats import (
    recommendation_lines, terminal_cells, terminal_run_cells, uses_target,
)
from instance_benchmarks.commands import output
from instance_benchmarks.commands.output import build_table, fit_table, format_duration, plain_log, print_fit
from instance_benchmarks.core.safe_output import safe_text

# `campaign status` and `collect` fit 100 columns; --wide shows the *_WIDE_COLUMNS
STATUS_COLUMNS = [("run_id", "run"), ("instance_type", "instance"), ("status", "status"), ("state", "state"),
                  ("attempts", "attempts"), ("usd_per_hour", "$/h"), ("cost_usd", "cost so far ($)")]
STATUS_WIDE_COLUMNS = [("run_id", "run"), ("label", "run label"), ("status", "status"), ("backend", "backend"),
                       ("instance_type", "instance"), ("resource", "instance/job"), ("state", "state"),
                       ("market", "market"), ("usd_per_hour", "$/h"), ("attempts", "attempts"),
                       ("cost_usd", "cost so far ($)")]
# the runs table at 100 columns: $/h is in the configurations table and --wide; sec/step carries its step-time CV
REPORT_COLUMNS = [("run_id", "run"), ("instance_type", "instance"), ("label", "hyperparameters"),
                  ("sec_per_step_text", "sec/step (CV)")]
# configurations with repeats: median, and the CV in brackets (! above 5 %)
CONFIG_TERMINAL_COLUMNS = [("key", "#"), ("instance_type", "instance"), ("label", "hyperparameters"),
                           ("runs_text", "runs"), ("samples_per_s_text", "samples/s (CV)")]
# `campaign run`'s live table (`campaign status` shows STATUS_COLUMNS)
PROGRESS_COLUMNS = [("run_id", "run"), ("status", "status"), ("attempt", "attempt"), ("state", "state"),
                    ("progress", "progress"), ("metric", "metric"), ("elapsed", "elapsed"), ("cost_usd", "cost $")]


def print_estimate(spec, plan) -> None:
    expected = f", expected ${plan.expected_usd:.4f}" if plan.expected_usd is not None else ""
    output.console.print(f"[bold]{spec.campaign}[/]: {plan.runs} runs, worst case ${plan.worst_case_usd:.4f}"
                         f"{expected}, budget ${spec.budget_usd:.2f}")


def status_table(env, campaign: str, *, wide: bool = False):
    """`campaign status`'s table, and whether any run is still live."""
    rows = runner.status_rows(env, campaign)
    table = fit_table(f"campaign {campaign}: cost so far ${sum(r['cost_usd'] for r in rows):.4f}",
                      rows, STATUS_WIDE_COLUMNS if wide else STATUS_COLUMNS, wide=wide)
    return table, any(r["live"] for r in rows)


def report_columns(report) -> list[tuple[str, str]]:
    """The runs table that fits: REPORT_COLUMNS, time and cost (to the target, else the run's training time and
    cost), the target metric or else the first metric the runs printed (its last value, and its best: the
    table's title says which metric and whether best is its max or min), and the status."""
    timing = ([("time_to_accuracy_s", "time (s)"), ("cost_to_accuracy_usd", "cost ($)")] if uses_target(report)
              else [("train_seconds", "train (s)"), ("cost_usd", "cost ($)")])
    metric = shown_metric(report)
    shown = [(f"{metric}_last", "last"), (f"{metric}_best", "best")] if metric else [("final_metric", "final")]
    return REPORT_COLUMNS + timing + shown + [("status", "status")]


def config_terminal_columns(report) -> list[tuple[str, str]]:
    """CONFIG_TERMINAL_COLUMNS, time and cost (to the target, else of a run) and the metric of the runs table."""
    timing = ([("time_to_accuracy_s_text", "time s (CV)"), ("cost_to_accuracy_usd_text", "cost $ (CV)")]
              if uses_target(report) else [("train_seconds_text", "train s (CV)"), ("cost_usd_text", "cost $ (CV)")])
    metric = shown_metric(report)
    shown = [(f"{metric}_last_text", "last (CV)"), (f"{metric}_best_text", "best (CV)")] if metric else []
    return CONFIG_TERMINAL_COLUMNS + timing + shown + [("status", "status")]


def print_failures(env, campaign: str) -> None:
    """Each run without a result, with the last lines of its log from S3, in red on a terminal."""
    failures = runner.failure_report(env, campaign)
    output.console.print(f"[red]{len(failures)} run(s) did not complete[/]")
    for failure in failures:
        for line in runner.failure_lines(failure):
            plain_log(safe_text(line))  # a note or log line is one line, whatever it holds


def write_and_print_report(s3, bucket: str, campaign: str, out: Path, *, wide: bool = False):
    """Write the report to `out` and S3 (campaigns/report.py), then print it; the report."""
    report, checksums = write_report(s3, bucket, campaign, out)
    print_report(report, wide=wide)
    output.console.print(f"report: {out}/ and s3://{bucket}/campaigns/{campaign}/report/ "
                         f"({', '.join(sorted(checksums))})", markup=False, highlight=False)
    return report


def print_report(report, *, wide: bool = False) -> None:
    """The recommendation first, then one line per run (and per configuration when repeated)."""
    lines = recommendation_lines(report)
    output.console.print(safe_text(lines[0]), style="bold", markup=False, highlight=False)
    for line in lines[1:]:
        plain_log(f"  {safe_text(line)}")  # a choice's own notes indent further
    metric = shown_metric(report)
    title = ("; time and cost to target" if uses_target(report) else "; training time and run cost") + (
        f"; {metric}: last, best ({'max' if report.metric_higher[metric] else 'min'})" if metric else "")
    print_fit(fit_table(f"runs: {len(report.rows)} complete, {len(report.incomplete)} incomplete{'' if wide else title}",
                        [terminal_run_cells(r) for r in report.rows],
                        COLUMNS + metric_columns(report) if wide else report_columns(report), wide=wide), wide=wide)
    if any(c["runs"] > 1 for c in report.configs):
        shown = tuple(key[:-len("_text")] for key, _ in config_terminal_columns(report) if key.endswith("_text"))
        print_fit(fit_table(f"configurations: median of the repeats (CV, ! above 5 %){title}",
                            [terminal_cells(c, shown) for c in report.configs], config_terminal_columns(report),
                            wide=wide), wide=wide)
    predicted = sorted((r for r in report.rows if r.get("est_usd") is not None), key=lambda r: r["est_usd"])
    if predicted:
        print_fit(fit_table("predicted full job from benchmark slices (cheapest first)", predicted, PREDICTION_COLUMNS,
                            wide=wide), wide=wide)
    for row in report.incomplete:
        plain_log(safe_text(f"  incomplete: {row['run_id']} {row['label']} ({row['last_outcome']})"))
    if report.earlier:
        plain_log(EARLIER_HEADING.format(n=len(report.earlier)))
        for row in report.earlier:
            plain_log(f"  {safe_text(earlier_line(row))}")


class StatusDisplay:
    """`campaign run`'s progress: a live table of the runs on a terminal (Rich), one line per change of a
    run's status otherwise (logs, CI); other messages print above the table."""

    def __init__(self, campaign: str) -> None:
        self.campaign, self.live, self.seen = campaign, None, {}

    def log(self, message: str) -> None:
        (self.live.console if self.live else output.console).print(safe_text(message, multiline=True), markup=False,
                                                                   highlight=False)

    def update(self, rows: list[dict]) -> None:
        title = (f"campaign {self.campaign}: {sum(r['live'] for r in rows)} running, "
                 f"{sum(r['status'] == 'complete' for r in rows)}/{len(rows)} complete, cost so far "
                 f"${sum(r['cost_usd'] for r in rows):.4f}")
        rows = [{**row, "elapsed": format_duration(row.get("elapsed_s"))} for row in rows]
        if output.console.is_terminal:
            table = build_table(title, rows, PROGRESS_COLUMNS)
            if self.live is None:
                self.live = Live(table, console=output.console, refresh_per_second=2)
                self.live.start()
            self.live.update(table)
            return
        for row in rows:
            state = (row["status"], row["state"], row["attempts"], row.get("progress"), row.get("metric"))
            if self.seen.get(row["run_id"]) != state:
                self.seen[row["run_id"]] = state
                progress = ", ".join(p for p in (row.get("progress"), row.get("metric")) if p)
                plain_log(safe_text(f"  {row['run_id']}: {row['status']} ({row['resource'] or '-'} {row['state']}, "
                                    f"attempt {row['attempts']}{', ' + progress if progress else ''}, {row['elapsed']}, "
                                    f"${row['cost_usd']:.4f} so far)"))

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def print_summary(rows: list[dict], seconds: float) -> None:
    """The end of `campaign run`: runs by outcome, attempts, cost and wall time."""
    current = [row for row in rows if not row["status"].startswith("earlier code")]  # earlier: kept apart
    kept = f"; {len(rows) - len(current)} run(s) of earlier code kept apart" if len(current) < len(rows) else ""
    rows = current
    outcomes = Counter(row["status"] for row in rows)
    parts = ", ".join(f"{count} {status}" for status, count in sorted(outcomes.items(), key=lambda kv: -kv[1]))
    plain_log(f"summary: {outcomes.get('complete', 0)}/{len(rows)} complete ({parts or 'no runs'}); "
              f"{sum(row['attempts'] for row in rows)} attempt(s); cost ${sum(row['cost_usd'] for row in rows):.4f}; "
              f"{format_duration(seconds)}{kept}")
