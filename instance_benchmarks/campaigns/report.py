"""Aggregate a campaign's run results into a table (CSV, Parquet, Markdown) and charts (PNG).

Only runs with a `result.json` are results; runs without one are listed as incomplete, never priced
or ranked. Prices are the ones stored with each run, never re-read.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

from instance_benchmarks.campaigns.store import campaign_prefix, campaign_specs, load_run_records, run_location
from training_scripts.storage import S3Location

COLUMNS = [
    ("run_id", "run"), ("label", "hyperparameters"), ("instance_type", "instance"), ("market", "market"),
    ("usd_per_hour", "$/h"), ("samples_per_s", "samples/s"), ("sec_per_step", "sec/step"),
    ("usd_per_epoch", "$/epoch"), ("usd_per_1m_samples", "$/1M samples"), ("time_to_accuracy_s", "time-to-acc (s)"),
    ("cost_to_accuracy_usd", "cost-to-acc ($)"), ("final_metric", "final metric"), ("mfu", "MFU"),
    ("train_seconds", "train s"), ("billable_seconds", "billable s"), ("spot_savings", "spot savings"),
    ("setup_seconds", "setup s"), ("cost_usd", "run cost ($)"), ("attempts", "attempts"), ("backend", "backend"),
    ("measured_on", "measured on"), ("code", "code"),
    # benchmark slices: the whole job predicted from the slice (SkyPilot Benchmark's columns)
    ("slice_units", "slice steps"), ("pred_sec_per_unit", "sec/step (slice)"), ("usd_per_unit", "$/step"),
    ("est_hours", "est time (h)"), ("est_usd", "est cost ($)"), ("est_usd_low", "est cost low ($)"),
    ("est_usd_high", "est cost high ($)"), ("est_on_demand_usd", "est cost on-demand ($)"),
]
PREDICTION_COLUMNS = [("run_id", "run"), ("label", "hyperparameters"), ("instance_type", "instance"),
                      ("slice_units", "STEPS"), ("pred_sec_per_unit", "SEC/STEP"), ("usd_per_unit", "$/STEP"),
                      ("est_hours", "EST TIME (h)"), ("est_usd", "EST COST ($)"), ("est_range", "EST COST range ($)"),
                      ("est_on_demand_usd", "on-demand ($)")]


@dataclass
class Report:
    campaign: str
    rows: list[dict]
    incomplete: list[dict]
    primary_metric: str | None
    histories: dict[str, list[dict]]
    higher_is_better: bool = True


def row_from_result(result: dict, label: str) -> dict:
    return {
        "run_id": result["run_id"], "label": label, "instance_type": result["instance_type"],
        "market": result["market"], "usd_per_hour": result["price"]["usd_per_hour"],
        "samples_per_s": result.get("samples_per_s"), "sec_per_step": result.get("sec_per_step"),
        "usd_per_epoch": result.get("usd_per_epoch"), "usd_per_1m_samples": result.get("usd_per_1m_samples"),
        "time_to_accuracy_s": result.get("time_to_accuracy_s"), "cost_to_accuracy_usd": result.get("cost_to_accuracy_usd"),
        "final_metric": result.get("final_metric"), "mfu": result.get("mfu"), "train_seconds": result.get("train_seconds"),
        "cost_usd": result.get("cost_usd"), "attempts": result.get("attempts"),
        "backend": result.get("backend", "ec2"),
        "measured_on": result.get("host") if result.get("measured_on") == "local" else result.get("backend", "ec2"),
        # SageMaker: billable vs training seconds; EC2: billed instance seconds and the spot discount
        "billable_seconds": result.get("billable_seconds"),
        "spot_savings": result.get("spot_savings"),
        "setup_seconds": result.get("setup_seconds"),
        "code": result.get("code"),  # the commit the instance checked out
        **_prediction(result.get("prediction")),
    }


def _prediction(prediction: dict | None) -> dict:
    """A benchmark slice's prediction of the whole job (None everywhere for a run trained to the end)."""
    p = prediction or {}
    return {"slice_units": p.get("measured_units"), "pred_sec_per_unit": p.get("sec_per_unit"),
            "usd_per_unit": p.get("usd_per_unit"), "est_hours": p["est_seconds"] / 3600 if p else None,
            "est_usd": p.get("est_usd"), "est_usd_low": p.get("est_usd_low"), "est_usd_high": p.get("est_usd_high"),
            "est_on_demand_usd": p.get("est_on_demand_usd"),
            "est_range": f"{format_value(p['est_usd_low'])}-{format_value(p['est_usd_high'])}" if p else None}


def build_report(s3, bucket: str, campaign: str) -> Report:
    rows, incomplete, histories, primary, higher = [], [], {}, None, True
    varied = sorted({k for spec in campaign_specs(s3, bucket, campaign) for k in spec.get("matrix", {})} - {"instance_type"})
    order: dict[str, tuple] = {}
    for record in load_run_records(s3, bucket, campaign):
        hyper = record["launch"].get("hyperparameters") or {}
        shown = {k: v for k, v in hyper.items() if k in varied} if varied else hyper
        label = " ".join(f"{k}={v}" for k, v in shown.items())
        order[record["run_id"]] = tuple(str(v).zfill(12) for v in shown.values())
        if record["result"] is None:
            attempts = record["launch"].get("attempts", [])
            outcome = (f"unreadable: {record['unreadable']}" if record.get("unreadable")
                       else attempts[-1].get("outcome") if attempts else "never launched")
            incomplete.append({"run_id": record["run_id"], "label": label, "attempts": len(attempts),
                               "last_outcome": outcome})
            continue
        result = record["result"]
        primary = primary or result.get("primary_metric")
        higher = result.get("higher_is_better", higher)
        rows.append(row_from_result(result, label))
        metrics = run_location(s3, bucket, campaign, record["run_id"]).child("train").read_bytes("metrics.jsonl") or b""
        histories[record["run_id"]] = [json.loads(line) for line in metrics.splitlines() if line.strip()]
    rows.sort(key=lambda r: (r["instance_type"], order[r["run_id"]]))
    return Report(campaign, rows, incomplete, primary, histories, higher)


def format_value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0 or math.isnan(value):
            return f"{value:g}"
        magnitude = abs(value)
        return f"{value:.3e}" if magnitude < 1e-3 else f"{value:.4f}" if magnitude < 10 else f"{value:,.1f}"
    return str(value)


def to_csv(report: Report) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[key for key, _ in COLUMNS], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(report.rows)
    return buffer.getvalue().encode()


def to_parquet(report: Report) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{key: row.get(key) for key, _ in COLUMNS} for row in report.rows], schema=pa.schema([
        (key, pa.string() if key in ("run_id", "label", "instance_type", "market", "measured_on", "backend", "code")
         else pa.int64() if key == "attempts" else pa.float64()) for key, _ in COLUMNS]))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def to_markdown(report: Report) -> str:
    lines = [f"# Campaign {report.campaign}", ""]
    if report.primary_metric:
        lines += [f"Final metric: `{report.primary_metric}`. Prices are those recorded at launch.", ""]
    lines.append("| " + " | ".join(title for _, title in COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for row in report.rows:
        lines.append("| " + " | ".join(format_value(row[key]) for key, _ in COLUMNS) + " |")
    predicted = [r for r in report.rows if r.get("est_usd") is not None]
    if predicted:
        lines += ["", "## Predicted full job (from benchmark slices)", "",
                  "Each run trained a slice of the job; its step time after warm-up predicts the whole job's "
                  "training time and cost at the run's price, plus its setup and boot time. The range comes "
                  "from the spread of the slice's step times.", ""]
        lines.append("| " + " | ".join(title for _, title in PREDICTION_COLUMNS) + " |")
        lines.append("|" + "---|" * len(PREDICTION_COLUMNS))
        for row in sorted(predicted, key=lambda r: r["est_usd"]):
            lines.append("| " + " | ".join(format_value(row[key]) for key, _ in PREDICTION_COLUMNS) + " |")
        cheapest = min(predicted, key=lambda r: r["est_usd"])
        fastest = min(predicted, key=lambda r: r["est_hours"])
        lines += ["", f"Cheapest predicted: {cheapest['instance_type']} {cheapest['label']} "
                      f"(${format_value(cheapest['est_usd'])}, {cheapest['est_hours']:.2f} h). "
                      f"Fastest predicted: {fastest['instance_type']} {fastest['label']} "
                      f"({fastest['est_hours']:.2f} h, ${format_value(fastest['est_usd'])})."]
    if report.incomplete:
        lines += ["", f"## Incomplete runs ({len(report.incomplete)}): no result.json, not reported as results", ""]
        lines += [f"- `{r['run_id']}` {r['label']}: {r['attempts']} attempt(s), last: {r['last_outcome']}"
                  for r in report.incomplete]
    if any(str(r["measured_on"]).startswith("local") for r in report.rows):
        lines += ["", "Runs marked `local` ran on this machine (the embedded default), not on the EC2 type "
                  "named; their cost applies that type's recorded price to the local run time."]
    return "\n".join(lines) + "\n"


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated in (time, cost), both minimised."""
    front = []
    for i, (t, c) in enumerate(points):
        if not any((t2 <= t and c2 <= c) and (t2 < t or c2 < c) for j, (t2, c2) in enumerate(points) if j != i):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def charts(report: Report) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, bytes] = {}
    rows = [r for r in report.rows if r["train_seconds"] is not None and r["cost_usd"] is not None]
    if rows:
        use_tta = all(r["time_to_accuracy_s"] is not None for r in rows)
        xs = [r["time_to_accuracy_s"] if use_tta else r["train_seconds"] for r in rows]
        # training cost at the run's price (billing minimums would flatten short runs onto one line)
        ys = [r["cost_to_accuracy_usd"] if use_tta else r["train_seconds"] * r["usd_per_hour"] / 3600 for r in rows]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.scatter(xs, ys, color="tab:blue")
        for x, y, r in zip(xs, ys, rows):
            ax.annotate(f"{r['instance_type']} {r['label']}", (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
        front = pareto_front(list(zip(xs, ys)))
        ax.plot([xs[i] for i in front], [ys[i] for i in front], color="tab:red", marker="o", label="Pareto front")
        ax.set_xlabel("time to target (s)" if use_tta else "training time (s)")
        ax.set_ylabel("cost to target ($)" if use_tta else "training cost at run price ($)")
        ax.set_title(f"{report.campaign}: cost vs time")
        ax.legend()
        fig.tight_layout()
        out["pareto.png"] = _png(fig)
    if report.histories:
        fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
        labels = {r["run_id"]: f"{r['instance_type']} {r['label']}" for r in report.rows}
        for run_id, history in report.histories.items():
            steps = [h for h in history if "loss" in h]
            loss_ax.plot([h["step"] for h in steps], [h["loss"] for h in steps], label=labels.get(run_id, run_id), linewidth=1)
            metric = [h for h in history if report.primary_metric in h]
            metric_ax.plot([h["step"] for h in metric], [h[report.primary_metric] for h in metric], linewidth=1)
        loss_ax.set_xlabel("step")
        loss_ax.set_ylabel("training loss")
        loss_ax.legend(fontsize=7)
        metric_ax.set_xlabel("step")
        metric_ax.set_ylabel(report.primary_metric or "metric")
        fig.suptitle(f"{report.campaign}: training curves per run")
        fig.tight_layout()
        out["curves.png"] = _png(fig)
    return out


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def write_report(s3, bucket: str, campaign: str, local_dir: Path | None) -> tuple[Report, dict[str, str]]:
    """Write report files to s3://bucket/campaigns/<id>/report/ and to `local_dir`; returns their checksums."""
    report = build_report(s3, bucket, campaign)
    files = {"report.csv": to_csv(report), "report.parquet": to_parquet(report),
             "report.md": to_markdown(report).encode(), **charts(report)}
    remote = S3Location(bucket, f"{campaign_prefix(campaign)}/report", s3)
    checksums = {name: remote.write_bytes(name, data) for name, data in files.items()}
    if local_dir is not None:
        local_dir.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (local_dir / name).write_bytes(data)
    return report, checksums
