"""Aggregate a campaign's run results into a report that answers "which instance type should I use":
the recommendation first (cheapest and fastest configuration to reach the campaign's target, best
$/1M samples, the spot saving), then the table (CSV, Parquet, Markdown, a self-contained HTML page)
and charts (PNG).

Only runs with a `result.json` are results; runs without one are listed as incomplete (failed), never
priced or ranked, and runs that missed the target (or never printed it: `no metric`) are listed apart, never
recommended. Every metric the runs printed (JSON lines or `metric_definitions`) gets its last and its best
value per run (best by direction: `harness.higher_is_better`) and their medians per configuration. Prices are the
ones stored with each run, never re-read. Repeats of one configuration (`repeats: N`, run ids ending
`-r<n>`) are summarised by their median and coefficient of variation (see `report_stats`).

Loading (S3 reads) and assembling (pure, `assemble_report`) are separate so that `bench_report.py` can
time the reporting of many synthetic results without S3.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from instance_benchmarks.campaigns.report_charts import render_charts
from instance_benchmarks.campaigns.report_format import (
    COST_COLUMNS, EARLIER_HEADING, METRIC_CONFIG_COLUMNS, METRIC_RUN_COLUMNS, METRIC_SOURCES, METRICS_NOTE,
    PREDICTION_COLUMNS, PRICE_COLUMNS, earlier_line, format_value, metric_columns, price_rows,
)
from instance_benchmarks.campaigns.report_html import to_html
from instance_benchmarks.campaigns.report_stats import (
    CONFIG_COLUMNS, SCALING_NOTE, aggregate, config_cells, recommend, recommendation_lines, scaling_efficiency,
)
from instance_benchmarks.campaigns.store import (
    campaign_document, campaign_prefix, current_run_ids, load_run_records, run_location,
)
from instance_benchmarks.catalog import load_catalog
from instance_benchmarks.core.safe_output import csv_cell
from instance_benchmarks.measure.harness import higher_is_better
from instance_benchmarks.measure.record import migrate_result
from instance_benchmarks.measure.record_model import metric_lines
from training_scripts.storage import S3Location

COLUMNS = [
    ("run_id", "run"), ("config_id", "configuration"), ("repeat", "repeat"), ("label", "hyperparameters"),
    ("instance_type", "instance"), ("market", "market"), ("status", "status"),
    ("usd_per_hour", "$/h"), ("on_demand_usd_per_hour", "on-demand $/h"), ("samples_per_s", "samples/s"),
    ("sec_per_step", "sec/step"), ("step_time_cv", "step time CV"), ("usd_per_epoch", "$/epoch"),
    ("usd_per_1m_samples", "$/1M samples"),
    ("time_to_accuracy_s", "time to target (s)"), ("cost_to_accuracy_usd", "cost to target ($)"),
    ("final_metric", "final metric"), ("mfu", "MFU"), ("world_size", "processes"),
    ("samples_per_s_per_device", "samples/s per GPU"), ("scaling_efficiency", "scaling efficiency"),
    ("boot_seconds", "boot (s)"), ("setup_seconds", "setup (s)"), ("train_seconds", "train (s)"),
    ("idle_seconds", "idle (s)"), ("billable_seconds", "billed (s)"), ("ebs_usd", "EBS ($)"),
    ("interrupted_usd", "interrupted attempts ($)"), ("cost_usd", "run cost ($)"), ("attempts", "attempts"),
    ("spot_savings", "spot savings"), ("backend", "backend"), ("measured_on", "measured on"),
    ("host_other_cpus", "other processes (CPUs)"), ("code", "code"),
    ("price_source", "price source"), ("quoted_at", "priced at"),
    # benchmark slices: the whole job predicted from the slice (SkyPilot Benchmark's columns)
    ("slice_units", "slice steps"), ("pred_sec_per_unit", "sec/step (slice)"), ("pred_cv", "step time CV (slice)"),
    ("usd_per_unit", "$/step"),
    ("est_hours", "est time (h)"), ("est_usd", "est cost ($)"), ("est_usd_low", "est cost low ($)"),
    ("est_usd_high", "est cost high ($)"), ("est_on_demand_usd", "est cost on-demand ($)"),
]
TEXT_COLUMNS = {"run_id", "config_id", "label", "instance_type", "market", "status", "measured_on", "backend", "code",
                "price_source", "quoted_at"}
INTEGER_COLUMNS = {"attempts", "repeat", "world_size"}
# Keys of a metric record that count or time the run (throughput is reported apart): not the user's metrics.
COUNTERS = frozenset({"t", "train_t", "attempt", "step", "epoch", "samples", "interval_s", "samples_per_s",
                      "sec_per_step", "train_seconds", "tokens_per_s", "mfu"})
MAX_METRICS = 12  # the user's metrics reported: the first this many names the runs printed
_METRIC_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # a name from the script's own lines is shown only if plain


@dataclass
class Report:
    campaign: str
    rows: list[dict]
    incomplete: list[dict]
    primary_metric: str | None
    histories: dict[str, list[dict]]
    higher_is_better: bool = True
    target: dict | None = None                          # {metric, value} of the campaign
    specs: list[dict] = field(default_factory=list)     # the campaign spec(s), as launched
    quotes: dict = field(default_factory=dict)          # prices quoted at launch ("type market" -> quote)
    catalog_as_of: str | None = None
    configs: list[dict] = field(default_factory=list)   # one per configuration: medians and spread of repeats
    recommendation: dict = field(default_factory=dict)  # see report_stats.recommend
    metrics: list[str] = field(default_factory=list)    # the user's metrics the runs printed (see metric_names)
    metric_higher: dict = field(default_factory=dict)   # metric -> whether its best value is its highest
    earlier: list[dict] = field(default_factory=list)   # runs of earlier code or settings: kept, never current


def config_id(run_id: str) -> str:
    """The configuration a run belongs to: its id without the repeat suffix (`-r2`; hashes are hex)."""
    head, _, tail = run_id.rpartition("-r")
    return head if head and tail.isdigit() else run_id


def repeat_of(run_id: str) -> int:
    head, _, tail = run_id.rpartition("-r")
    return int(tail) if head and tail.isdigit() else 1


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def cost_breakdown(result: dict, launch: dict) -> dict:
    """Where a run's billed seconds and dollars went, from its result and its attempts in launch.json:
    boot, setup and training seconds, idle = billed minus those (the 60 s minimum, checkpoint pushes,
    uploads before the attempt settled), the root volume's (EBS) share and what attempts that did not
    complete cost."""
    attempts = [a for a in launch.get("attempts") or [] if isinstance(a, dict)]
    billed = _number(result.get("billable_seconds"))
    boot, setup = _number(result.get("boot_seconds")), _number(result.get("setup_seconds"))
    script = sum(_number(a.get("script_seconds")) or 0.0 for a in attempts) or _number(result.get("train_seconds"))
    idle = max(billed - (boot or 0.0) - (setup or 0.0) - (script or 0.0), 0.0) if billed is not None else None
    storage = _number((result.get("price") or {}).get("storage_usd_per_hour")) or 0.0
    if attempts and any("billed_seconds" in a for a in attempts):
        ebs = sum((_number(a.get("billed_seconds")) or 0.0) * (_number((a.get("price") or {}).get("storage_usd_per_hour"))
                                                                 or storage) / 3600 for a in attempts)
    else:
        ebs = (billed or 0.0) * storage / 3600
    ended = [a for a in attempts if a.get("outcome") not in ("completed", "launching", "launched")]
    return {"boot_seconds": boot, "setup_seconds": setup, "idle_seconds": idle, "ebs_usd": ebs,
            "interrupted_usd": sum(_number(a.get("cost_usd")) or 0.0 for a in ended),
            "interrupted_attempts": len(ended)}


def row_from_result(result: dict, label: str, launch: dict | None = None, target: dict | None = None) -> dict:
    result = migrate_result(result)  # a record of an earlier schema reads as today's
    price = result.get("price") or {}
    host = result.get("host") or {}
    tta = result.get("time_to_accuracy_s")
    target = target or result.get("target")
    # a benchmark slice trains part of the job: it is ranked by its prediction, not by the target; a run that
    # never printed the target metric did not miss it: its metric lines are not what the campaign expects
    status = ("slice" if result.get("prediction") else "complete" if not target
              else "reached" if tta is not None else "no metric" if result.get("final_metric") is None else "missed")
    return {
        "run_id": result["run_id"], "config_id": config_id(result["run_id"]), "repeat": repeat_of(result["run_id"]),
        "label": label, "instance_type": result["instance_type"], "status": status,
        "market": result["market"], "usd_per_hour": price["usd_per_hour"],
        "on_demand_usd_per_hour": price.get("on_demand_usd_per_hour"),
        "storage_usd_per_hour": price.get("storage_usd_per_hour"),
        "price_source": price.get("source"), "quoted_at": price.get("quoted_at"),
        "samples_per_s": result.get("samples_per_s"), "sec_per_step": result.get("sec_per_step"),
        "step_time_cv": result.get("step_time_cv"),  # the spread of the run's step times (harness.step_time_cv)
        "usd_per_epoch": result.get("usd_per_epoch"), "usd_per_1m_samples": result.get("usd_per_1m_samples"),
        "time_to_accuracy_s": tta, "cost_to_accuracy_usd": result.get("cost_to_accuracy_usd"),
        "final_metric": result.get("final_metric"), "mfu": result.get("mfu"), "train_seconds": result.get("train_seconds"),
        "cost_usd": result.get("cost_usd"), "attempts": result.get("attempts"),
        "backend": (result.get("backend") or {}).get("name"),
        "measured_on": host.get("label"),  # where the run executed: the type it names, or a stand-in host for it
        "stand_in": bool(host.get("stand_in")),
        # SageMaker: billable vs training seconds; EC2: billed instance seconds and the spot discount
        "billable_seconds": result.get("billable_seconds"),
        "spot_savings": result.get("spot_savings"),
        "code": result.get("code"),  # the commit the instance checked out
        "host_other_cpus": _host_other_cpus(launch or {}),
        "world_size": result.get("world_size"),  # processes under torchrun, over all nodes (1: one process)
        "workload": result.get("workload"), "hyperparameters": result.get("hyperparameters"),
        "gpu_model": _gpu_model(result.get("instance_type")),  # scaling efficiency compares runs on one GPU model
        **cost_breakdown(result, launch or {}),
        **_prediction(result.get("prediction")),
    }


def _host_other_cpus(launch: dict) -> float | None:
    """CPUs other processes used on average while the run's last measured attempt ran (the embedded default
    records `host_load`; None elsewhere)."""
    loads = [a.get("host_load") for a in launch.get("attempts") or [] if isinstance(a, dict)]
    loads = [load for load in loads if isinstance(load, dict)]
    return _number(loads[-1].get("other_cpus")) if loads else None


def _gpu_model(instance_type) -> str | None:
    """The catalog's GPU model of an instance type (None: a CPU type or one the catalog does not know)."""
    spec = load_catalog().instances.get(str(instance_type))  # an unknown type: no GPU model, no scaling figure
    return spec.gpu_model if spec is not None and spec.gpu_count else None


def _prediction(prediction: dict | None) -> dict:
    """A benchmark slice's prediction of the whole job (None everywhere for a run trained to the end)."""
    p = prediction or {}
    return {"slice_units": p.get("measured_units"), "pred_sec_per_unit": p.get("sec_per_unit"), "pred_cv": p.get("cv"),
            "usd_per_unit": p.get("usd_per_unit"), "est_hours": p["est_seconds"] / 3600 if p else None,
            "est_usd": p.get("est_usd"), "est_usd_low": p.get("est_usd_low"), "est_usd_high": p.get("est_usd_high"),
            "est_on_demand_usd": p.get("est_on_demand_usd"),
            "est_range": f"{format_value(p['est_usd_low'])}-{format_value(p['est_usd_high'])}" if p else None}


def _history(s3, bucket: str, campaign: str, run_id: str) -> list[dict]:
    """The run's metric lines: the agent's (every attempt, with `train_t`), else the script's own file."""
    location = run_location(s3, bucket, campaign, run_id)
    data = location.read_bytes("metrics.jsonl") or location.child("train").read_bytes("metrics.jsonl") or b""
    return metric_lines(data)  # untrusted (the script's): typed lines, the unreadable ones skipped


def build_report(s3, bucket: str, campaign: str) -> Report:
    """Read the campaign's records, results and metric lines from S3 and assemble the report."""
    document = campaign_document(s3, bucket, campaign) or {}  # read through its model; unreadable: no specs
    records = load_run_records(s3, bucket, campaign)
    histories = {r["run_id"]: _history(s3, bucket, campaign, r["run_id"]) for r in records if r["result"] is not None}
    return assemble_report(campaign, records, document, histories)


def assemble_report(campaign: str, records: list[dict], document: dict, histories: dict[str, list[dict]]) -> Report:
    """The report from loaded records (`store.load_run_records`), campaign.json and metric histories."""
    entries = list((document.get("backends") or {}).values())
    specs = [entry.get("spec") or {} for entry in entries]
    quotes = {key: quote for entry in entries for key, quote in (entry.get("quotes") or {}).items()}
    catalog_as_of = next((entry.get("catalog_as_of") for entry in entries if entry.get("catalog_as_of")), None)
    target = next((spec["target"] for spec in specs if spec.get("target")), None)
    rows, incomplete, primary, higher, earlier = [], [], None, True, []
    current = current_run_ids(document)
    varied = sorted({k for spec in specs for k in spec.get("matrix", {})} - {"instance_type"})
    order: dict[str, tuple] = {}
    for record in records:
        launch = record["launch"] if isinstance(record.get("launch"), dict) else {}
        hyper = launch.get("hyperparameters") or {}
        shown = {k: v for k, v in hyper.items() if k in varied} if varied else hyper
        label = " ".join(f"{k}={v}" for k, v in shown.items())
        order[record["run_id"]] = tuple(str(v).zfill(12) for v in shown.values())
        if current is not None and record["run_id"] not in current:
            earlier.append(earlier_row(record, label))
            continue
        if record["result"] is None:
            attempts = launch.get("attempts", [])
            outcome = (f"unreadable: {record['unreadable']}" if record.get("unreadable")
                       else attempts[-1].get("outcome") if attempts else "never launched")
            incomplete.append({"run_id": record["run_id"], "label": label, "attempts": len(attempts),
                               "last_outcome": outcome, "config_id": config_id(record["run_id"]),
                               "instance_type": launch.get("instance_type"),
                               "cost_usd": sum(_number(a.get("cost_usd")) or 0.0 for a in attempts
                                               if isinstance(a, dict))})
            continue
        result = record["result"]
        target = target or result.get("target")
        primary = primary or result.get("primary_metric")
        higher = result.get("higher_is_better", higher)
        rows.append(row_from_result(result, label, launch, target))
    rows.sort(key=lambda r: (r["instance_type"], order[r["run_id"]], r["repeat"]))
    scaling_efficiency(rows)
    report = Report(campaign, rows, incomplete, primary or (target or {}).get("metric"),
                    {r["run_id"]: histories.get(r["run_id"], []) for r in rows}, higher, target=target, specs=specs,
                    quotes=quotes, catalog_as_of=catalog_as_of, earlier=earlier)
    report.metrics = metric_names(report.histories[r["run_id"]] for r in rows)
    report.metric_higher = {name: higher if name == report.primary_metric else higher_is_better(name)
                            for name in report.metrics}
    for row in rows:
        row.update(metric_cells(report.histories[row["run_id"]], report.metric_higher))
    report.configs = aggregate(report)
    report.recommendation = recommend(report)
    return report


def metric_names(histories) -> list[str]:
    """The user's metrics: every numeric key of the runs' metric lines but the counters, in the order first
    printed, at most MAX_METRICS (names that are not plain identifiers are left out: the script is untrusted)."""
    names: dict[str, None] = {}
    for history in histories:
        for record in history:
            for key, value in record.items():
                if key not in names and key not in COUNTERS and _number(value) is not None \
                        and _METRIC_NAME.fullmatch(key):
                    names[key] = None
                    if len(names) == MAX_METRICS:
                        return list(names)
    return list(names)


def metric_cells(history: list[dict], higher: dict[str, bool]) -> dict:
    """`<name>_last` and `<name>_best` (its highest if higher[name], else its lowest) of each metric in one
    run's history; None for a metric this run never printed."""
    cells = {}
    for name, up in higher.items():
        values = [float(r[name]) for r in history if _number(r.get(name)) is not None]
        cells[f"{name}_last"] = values[-1] if values else None
        cells[f"{name}_best"] = (max(values) if up else min(values)) if values else None
    return cells


def earlier_row(record: dict, label: str) -> dict:
    """A run that is not one of the campaign's current runs (other code, or settings no longer asked for):
    its commit, outcome and final metric, shown apart and never ranked."""
    launch = record["launch"] if isinstance(record.get("launch"), dict) else {}
    result = record["result"] if isinstance(record.get("result"), dict) else {}
    attempts = [a for a in launch.get("attempts") or [] if isinstance(a, dict)]
    bound = launch.get("code") if isinstance(launch.get("code"), dict) else {}
    commit = result.get("code") or bound.get("commit") or next((a["commit"] for a in reversed(attempts)
                                                                 if a.get("commit")), None)
    outcome = ("complete" if result else attempts[-1].get("outcome") if attempts else "never launched")
    return {"run_id": record["run_id"], "label": label, "instance_type": launch.get("instance_type"),
            "code": str(commit)[:12] if commit else "unknown", "outcome": outcome,
            "final_metric": result.get("final_metric")}


def to_csv(report: Report) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[key for key, _ in COLUMNS + metric_columns(report)],
                            extrasaction="ignore")
    writer.writerow({key: csv_cell(key) for key in writer.fieldnames})  # a metric's name comes from the script
    writer.writerows({key: csv_cell(value) for key, value in row.items()} for row in report.rows)  # no formulas
    return buffer.getvalue().encode()


def to_parquet(report: Report) -> bytes:
    import pyarrow as pa  # optional and heavy: only the Parquet file needs it
    import pyarrow.parquet as pq  # (with pyarrow)

    def kind(key):
        return pa.string() if key in TEXT_COLUMNS else pa.int64() if key in INTEGER_COLUMNS else pa.float64()

    columns = COLUMNS + metric_columns(report)
    table = pa.Table.from_pylist([{key: row.get(key) for key, _ in columns} for row in report.rows],
                                 schema=pa.schema([(key, kind(key)) for key, _ in columns]))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def metrics_markdown(report: Report) -> list[str]:
    """The user's metrics: per configuration (median of the repeats) when repeated, and per run."""
    if not report.metrics:
        return []
    columns = metric_columns(report)
    lines = ["## Metrics: last and best", "", METRICS_NOTE, ""]
    if any(c["runs"] > 1 for c in report.configs):
        lines += ["Per configuration (median of the repeats, CV between them):", ""]
        cells = [config_cells(c, tuple(key for key, _ in columns)) for c in report.configs if c["runs"]]
        lines += _markdown_table(cells, METRIC_CONFIG_COLUMNS + columns) + ["", "Per run:", ""]
    return lines + _markdown_table(report.rows, METRIC_RUN_COLUMNS + columns) + [""]


def _markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> list[str]:
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format_value(row.get(key)).replace("|", "\\|") for key, _ in columns) + " |")
    return lines


def to_markdown(report: Report) -> str:
    rec = report.recommendation
    lines = [f"# {report.campaign}: {rec.get('headline', 'report')}", ""]
    lines += [f"  - {line.strip()}" if line.startswith(" ") else f"- {line}" for line in recommendation_lines(report)[1:]]
    lines.append("")
    if report.primary_metric:
        lines += [f"Final metric: `{report.primary_metric}`. Prices are those recorded at launch "
                  "(sources at the end).", ""]
    if any(c["runs"] > 1 for c in report.configs):
        lines += ["## Configurations (median of the repeats, CV = coefficient of variation)", "",
                  "Figures marked `!` spread more than 5 % between repeats.", ""]
        lines += _markdown_table([config_cells(c) for c in report.configs], CONFIG_COLUMNS)
        lines.append("")
    lines += metrics_markdown(report)
    lines += ["## Runs", ""]
    lines += _markdown_table(report.rows, COLUMNS)
    scaled = [r for r in report.rows if r.get("scaling_efficiency") is not None]
    if scaled:
        lines += ["", "### Scaling efficiency", "", SCALING_NOTE, ""]
        lines += [f"- `{r['run_id']}` {r['instance_type']} ({r['world_size']} processes): "
                  f"{format_value(r['samples_per_s_per_device'])} samples/s per GPU, "
                  f"efficiency {r['scaling_efficiency']:.0%}" for r in scaled]
    lines += ["", "## What each run was billed for", "",
              "Idle = billed seconds minus boot, setup and training (the 60 s minimum, checkpoint pushes, "
              "uploads); EBS = the root volume's share of the price; interrupted attempts = what attempts "
              "that did not complete cost before the one that did.", ""]
    lines += _markdown_table(report.rows, COST_COLUMNS)
    predicted = [r for r in report.rows if r.get("est_usd") is not None]
    if predicted:
        lines += ["", "## Predicted full job (from benchmark slices)", "",
                  "Each run trained a slice of the job; its step time after warm-up predicts the whole job's "
                  "training time and cost at the run's price, plus its setup and boot time. The range comes "
                  "from the spread of the slice's step times.", ""]
        lines += _markdown_table(sorted(predicted, key=lambda r: r["est_usd"]), PREDICTION_COLUMNS)
        cheapest = min(predicted, key=lambda r: r["est_usd"])
        fastest = min(predicted, key=lambda r: r["est_hours"])
        lines += ["", f"Cheapest predicted: {cheapest['instance_type']} {cheapest['label']} "
                      f"(${format_value(cheapest['est_usd'])}, {cheapest['est_hours']:.2f} h). "
                      f"Fastest predicted: {fastest['instance_type']} {fastest['label']} "
                      f"({fastest['est_hours']:.2f} h, ${format_value(fastest['est_usd'])})."]
    missed = [r for r in report.rows if r["status"] == "missed"]
    if missed:
        lines += ["", f"## Missed the target ({len(missed)}): complete, never recommended", ""]
        lines += [f"- `{r['run_id']}` {r['instance_type']} {r['label']}: final {format_value(r['final_metric'])}"
                  for r in missed]
    silent = [r for r in report.rows if r["status"] == "no metric"]
    if silent:
        lines += ["", f"## Never printed the target metric `{(report.target or {}).get('metric')}` ({len(silent)}): "
                      "never recommended", "", METRIC_SOURCES, ""]
        lines += [f"- `{r['run_id']}` {r['instance_type']} {r['label']}" for r in silent]
    if report.incomplete:
        lines += ["", f"## Incomplete runs ({len(report.incomplete)}): no result.json, not reported as results", ""]
        lines += [f"- `{r['run_id']}` {r['label']}: {r['attempts']} attempt(s), last: {r['last_outcome']}"
                  for r in report.incomplete]
    if report.earlier:
        lines += ["", f"## {EARLIER_HEADING.format(n=len(report.earlier))}", ""]
        lines += [f"- {earlier_line(r)}" for r in report.earlier]
    lines += ["", "## Charts", "", "![Pareto front: time against cost to target](pareto.png)", "",
              "![Throughput per dollar](throughput.png)", "", "![Training curves](curves.png)", ""]
    lines += ["## Prices", ""] + _markdown_table(price_rows(report), PRICE_COLUMNS)
    if any(r.get("stand_in") for r in report.rows):
        lines += ["", "Runs measured on a stand-in host (the embedded default: this machine) did not run on the "
                  "type named; their cost applies that type's recorded price to the stand-in's run time."]
    return "\n".join(lines) + "\n"


def charts(report: Report) -> dict[str, bytes]:
    return render_charts(report)


def render_files(report: Report) -> dict[str, bytes]:
    """Every report file, by name: tables, the Markdown and HTML reports, and the charts."""
    images = charts(report)
    return {"report.csv": to_csv(report), "report.parquet": to_parquet(report),
            "report.md": to_markdown(report).encode(), "report.html": to_html(report, images).encode(), **images}


def write_report(s3, bucket: str, campaign: str, local_dir: Path | None) -> tuple[Report, dict[str, str]]:
    """Write report files to s3://bucket/campaigns/<id>/report/ and to `local_dir`; returns their checksums."""
    report = build_report(s3, bucket, campaign)
    files = render_files(report)
    remote = S3Location(bucket, f"{campaign_prefix(campaign)}/report", s3)
    checksums = {name: remote.write_bytes(name, data) for name, data in files.items()}
    if local_dir is not None:
        local_dir.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (local_dir / name).write_bytes(data)
    return report, checksums
