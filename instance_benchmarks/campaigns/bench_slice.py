"""How close is a slice benchmark's predicted training time to the real one? (a benchmark: figures, no pass/fail)

    .venv/bin/python -m instance_benchmarks.campaigns.bench_slice
    .venv/bin/python -m instance_benchmarks.campaigns.bench_slice --workload cnn_digits --slice-fraction 0.3 --args --epochs=10 --log_every=5

Runs a bundled workload (`python -m training_scripts.<workload>`) to the end, timing each stdout line as
the trainfleet agent does (MetricParser, t = monotonic seconds since the process started). It then keeps
only the records a slice benchmark of `slice_fraction` x the real training time would have seen, asks
`estimate_slice` for the whole job's training time, and compares it with the real one (t of the last
record with a "step"). The slice's clock starts with the process, so interpreter start and imports are
part of it, as in a real `max_minutes` slice. `prediction error` = (predicted - actual) / actual: positive
means the slice overestimates. Contention for the CPU (other jobs on a shared machine) moves the step time,
so the figure moves from run to run; it is a measurement, not a test, and has no threshold.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

from instance_benchmarks.agent.metrics import MetricParser
from instance_benchmarks.campaigns.slices import estimate_slice

# ~1000 steps of ~20 ms (63 steps/epoch, a line every 10 steps): ~25 s on 2 idle CPU cores, so that a 20% slice
# holds ~10 log intervals after the ~3 s of interpreter start and torch import. Wide layers make each step
# heavy enough to time; no early stopping, so the step count is fixed.
DEFAULT_ARGS = {"tabular_mlp": ["--epochs=16", "--batch_size=256", "--hidden_layers=1024,1024", "--log_every=10",
                                "--patience=0"]}


def run_workload(workload: str, args: list[str]) -> list[dict]:
    """Run the workload to the end; its metric records, each with "t" = seconds since launch."""
    parser = MetricParser()
    records: list[dict] = []
    with tempfile.TemporaryDirectory() as output, tempfile.TemporaryFile("w+") as stderr:
        start = time.monotonic()
        process = subprocess.Popen([sys.executable, "-m", f"training_scripts.{workload}", f"--output={output}", *args],
                                   stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1)
        for line in process.stdout:
            record = parser.parse(line, time.monotonic() - start)
            if record is not None:
                records.append(record)
        if process.wait() != 0:
            stderr.seek(0)
            raise RuntimeError(f"{workload} exited {process.returncode}: {stderr.read()[-2000:]}")
    return records


def bench(workload: str = "tabular_mlp", args: list[str] | None = None, slice_fraction: float = 0.2,
          warmup_steps: int = 0, warmup_seconds: float = 0.0) -> dict:
    """Run the workload, predict it from its first slice_fraction of training time; the figures as a dict."""
    given = {arg.split("=", 1)[0] for arg in args or []}  # an option given replaces its default
    args = [arg for arg in DEFAULT_ARGS.get(workload, []) if arg.split("=", 1)[0] not in given] + list(args or [])
    records = run_workload(workload, args)
    stepped = [r for r in records if isinstance(r.get("step"), (int, float))]
    if not stepped:
        raise RuntimeError(f"{workload} logged no step records")
    actual, total_steps = stepped[-1]["t"], max(r["step"] for r in stepped)
    cutoff = slice_fraction * actual
    part = [r for r in records if r["t"] <= cutoff]
    est = estimate_slice(part, total_steps=total_steps, warmup_steps=warmup_steps, warmup_seconds=warmup_seconds)
    slice_steps = max((r["step"] for r in part if isinstance(r.get("step"), (int, float))), default=0)
    figures = {"workload": workload, "args": args, "total_steps": total_steps, "slice_fraction": slice_fraction,
               "slice_steps": slice_steps, "slice_seconds": cutoff, "actual_seconds": actual, "estimate": est}
    if est is not None:
        figures["error_pct"] = 100.0 * (est.est_train_seconds - actual) / actual
    return figures


def report(f: dict) -> str:
    """The figures as a small table, ending with the plain `prediction error:` line."""
    est = f["estimate"]
    rows = [("workload", f["workload"]), ("args", " ".join(f["args"]) or "-"),
            ("total steps", f"{f['total_steps']:.0f}"),
            ("slice", f"{f['slice_steps']:.0f} steps in {f['slice_seconds']:.1f} s ({f['slice_fraction']:.0%} of actual)")]
    if est is None:
        return "\n".join(f"{k:<24}{v}" for k, v in rows) + "\nprediction error: n/a (no interval after warm-up in the slice)"
    cv = "n/a" if est.cv is None else f"{est.cv:.2f}"
    rows += [("measured (post warm-up)", f"{est.measured_units:.0f} steps in {est.measured_seconds:.2f} s"),
             ("sec/step", f"{est.sec_per_unit * 1000:.2f} ms [{est.sec_per_unit_low * 1000:.2f}-"
                          f"{est.sec_per_unit_high * 1000:.2f}] CV {cv}"),
             ("predicted train s", f"{est.est_train_seconds:.1f} [{est.est_train_seconds_low:.1f}-"
                                   f"{est.est_train_seconds_high:.1f}]"),
             ("actual train s", f"{f['actual_seconds']:.1f}"),
             ("error", f"{f['error_pct']:+.1f}%")]
    return "\n".join(f"{k:<24}{v}" for k, v in rows) + f"\nprediction error: {f['error_pct']:+.1f}%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", default="tabular_mlp", help="training_scripts module (default tabular_mlp)")
    parser.add_argument("--slice-fraction", type=float, default=0.2, help="slice = this share of the real time")
    parser.add_argument("--warmup-steps", type=int, default=0,
                        help="steps ignored as warm-up (default 0: with no warm-up seconds either, the first interval)")
    parser.add_argument("--warmup-seconds", type=float, default=0.0, help="seconds ignored as warm-up (default 0)")
    parser.add_argument("--args", nargs=argparse.REMAINDER, default=[],
                        help="workload --key=value overrides, replacing the built-in defaults (e.g. --args --epochs=4)")
    ns = parser.parse_args(argv)
    if not 0.0 < ns.slice_fraction <= 1.0:
        parser.error("--slice-fraction must be in (0, 1]")
    figures = bench(ns.workload, ns.args, ns.slice_fraction, ns.warmup_steps, ns.warmup_seconds)
    print(report(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
