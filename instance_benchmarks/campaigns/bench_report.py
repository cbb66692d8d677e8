"""How long does reporting a large campaign take? (a benchmark: figures, no pass/fail)

    .venv/bin/python -m instance_benchmarks.campaigns.bench_report                 # 1,000 results
    .venv/bin/python -m instance_benchmarks.campaigns.bench_report --results 200 --repeats 4

Builds `--results` synthetic run results in memory (instance types x batch sizes x repeats, each with
its launch record, a price with source and date, and a 60-point metric history; a fifth of the
configurations never reach the target), then times what `write_report` does after reading the bucket:
`assemble_report` (rows, configurations with median and CV, Pareto front, recommendation) and every
file (CSV, Parquet, Markdown, HTML, the three PNG charts). The first pass includes importing matplotlib
and pyarrow ("cold"); the second is the same work again ("warm"). Reading the records from S3 is not
included: on AWS it is one GET per record and depends on the network. The target is under 2 s. CPU
seconds are printed beside wall seconds: on a shared machine the difference is time spent waiting.
"""
from __future__ import annotations

import argparse
import random
import sys
import time

from instance_benchmarks.campaigns import report as report_module
from instance_benchmarks.campaigns.report import config_id
from instance_benchmarks.campaigns.report_charts import curves_chart, pareto_chart, throughput_chart
from instance_benchmarks.campaigns.report_html import to_html

INSTANCE_TYPES = ["c5.xlarge", "c5.2xlarge", "c5.4xlarge", "m5.large", "m5.xlarge", "m5.2xlarge", "t3.large",
                  "g4dn.xlarge", "g5.xlarge", "g6.xlarge", "g5.2xlarge", "g6e.xlarge"]
TARGET = {"metric": "final10_reward", "value": 195}


def synthetic_campaign(results: int = 1000, repeats: int = 2, seed: int = 0, campaign: str = "synthetic"):
    """(records as `store.load_run_records` returns them, campaign.json, metric histories) of a made-up
    batch-size sweep with `results` complete runs."""
    rng = random.Random(seed)
    configs = max(1, results // repeats)
    types = INSTANCE_TYPES[:max(1, min(len(INSTANCE_TYPES), round(configs ** 0.5 / 2)))]
    batches = list(range(2, 2 + -(-configs // len(types))))
    records, histories, made = [], {}, 0
    for itype in types:
        on_demand = round(rng.uniform(0.08, 1.5), 4)
        price = {"instance_type": itype, "market": "spot", "usd_per_hour": round(on_demand * rng.uniform(0.3, 0.7), 4),
                 "on_demand_usd_per_hour": on_demand, "storage_usd_per_hour": 0.0033,
                 "source": "describe_spot_price_history (us-east-1a) + 30 GiB gp3", "quoted_at": "2025-06-01T12:00:00+00:00"}
        speed = rng.uniform(0.5, 4.0)
        for batch in batches:
            if made >= results:
                break
            digest = f"{rng.getrandbits(32):08x}"
            reaches = batch % 5 != 2  # a fifth of the configurations never reach the target
            for repeat in range(1, repeats + 1):
                if made >= results:
                    break
                made += 1
                run_id = f"{itype.replace('.', '-')}-bs{batch}-{digest}" + (f"-r{repeat}" if repeat > 1 else "")
                noise = rng.uniform(0.93, 1.07)
                samples_per_s = 400 * speed * batch / (1 + batch / 16) * noise
                tta = 3000.0 / samples_per_s * 40 if reaches else None
                train = (tta or 3000.0 / samples_per_s * 60) * 1.2
                billed = train + 45
                usd = price["usd_per_hour"]
                result = {"status": "complete", "run_id": run_id, "instance_type": itype, "market": "spot", "price": price,
                          "samples_per_s": samples_per_s, "sec_per_step": batch / samples_per_s,
                          "usd_per_epoch": usd / 3600 * train / 60, "usd_per_1m_samples": usd / 3600 * 1e6 / samples_per_s,
                          "time_to_accuracy_s": tta, "cost_to_accuracy_usd": tta * usd / 3600 if tta else None,
                          "final_metric": 200.0 if reaches else 90.0 + batch, "primary_metric": TARGET["metric"],
                          "higher_is_better": True, "mfu": 1e-4 * noise, "train_seconds": train, "cost_usd": billed * usd / 3600,
                          "billable_seconds": billed, "boot_seconds": 12.0, "setup_seconds": 25.0, "attempts": 1,
                          "spot_savings": 1 - usd / on_demand, "backend": "ec2", "measured_on": "ec2",
                          "target": TARGET, "code": "0" * 40}
                launch = {"run_id": run_id, "instance_type": itype, "hyperparameters": {"epochs": 60, "batch_size": batch},
                          "attempts": [{"attempt": 1, "outcome": "completed", "price": price, "billed_seconds": billed,
                                        "script_seconds": train, "cost_usd": billed * usd / 3600}]}
                records.append({"run_id": run_id, "launch": launch, "result": result, "status": "complete"})
                histories[run_id] = [{"step": step, "loss": 1.0 / (1 + step * batch / 50), "train_t": train * step / 59,
                                      TARGET["metric"]: min(200.0, step * batch * 0.8) if reaches else step * 90 / 59}
                                     for step in range(60)]
    document = {"campaign": campaign, "backends": {"ec2": {
        "spec": {"campaign": campaign, "workload": "cartpole_pg", "market": "spot", "repeats": repeats,
                 "matrix": {"instance_type": types, "batch_size": batches}, "hyperparameters": {"epochs": 60},
                 "target": TARGET},
        "catalog_as_of": "2025-06-01", "quotes": {f"{p['instance_type']} spot": p for p in
                                                   {r["result"]["instance_type"]: r["result"]["price"] for r in records}.values()}}}}
    return records, document, histories


def time_report(records, document, histories) -> dict[str, float]:
    times: dict[str, float] = {}
    start, cpu = time.perf_counter(), time.process_time()
    built = report_module.assemble_report(document["campaign"], records, document, histories)
    times["assemble"] = time.perf_counter() - start
    images = {}
    for name, render in (("pareto.png", pareto_chart), ("throughput.png", throughput_chart), ("curves.png", curves_chart)):
        began = time.perf_counter()
        images[name] = render(built)
        times[name] = time.perf_counter() - began
    for name, render in (("report.csv", report_module.to_csv), ("report.parquet", report_module.to_parquet),
                         ("report.md", report_module.to_markdown), ("report.html", lambda r: to_html(r, images))):
        began = time.perf_counter()
        render(built)
        times[name] = time.perf_counter() - began
    times["total"] = time.perf_counter() - start
    times["cpu"] = time.process_time() - cpu
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=int, default=1000, help="synthetic complete runs (default 1000)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per configuration (default 2)")
    ns = parser.parse_args(argv)
    if ns.results < 1 or ns.repeats < 1:
        parser.error("--results and --repeats must be at least 1")
    records, document, histories = synthetic_campaign(ns.results, ns.repeats)
    configs = len({config_id(r["run_id"]) for r in records})
    print(f"reporting {len(records)} synthetic results ({configs} configurations x up to {ns.repeats} repeats)")
    for label in ("cold", "warm"):
        times = time_report(records, document, histories)
        parts = ", ".join(f"{name} {seconds:.2f}" for name, seconds in times.items() if name not in ("total", "cpu"))
        print(f"{label}: {times['total']:.2f} s wall, {times['cpu']:.2f} s CPU ({parts})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
