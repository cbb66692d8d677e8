"""How close is a slice benchmark's predicted training time to the real one? (a benchmark: figures, no pass/fail)

    .venv/bin/python -m instance_benchmarks.campaigns.bench_slice
    .venv/bin/python -m instance_benchmarks.campaigns.bench_slice --workload cnn_digits --slice-fraction 0.3 --args --epochs=10 --log_every=5
    .venv/bin/python -m instance_benchmarks.campaigns.bench_slice --source plain-text

Runs a job to the end, timing each stdout line as the trainfleet agent does (MetricParser, t = monotonic
seconds since the process started), on two sources (`--source`, default both): a bundled workload
(`python -m training_scripts.<workload>`, JSON metric lines) and a plain-text repository (a git repository,
cloned as the agent clones one, whose script prints PyTorch word-language-model logs such as
`| epoch   1 |    20/  160 batches | ... | loss  6.10 | ppl 445.75`, read with the regexes of
examples/word-language-model/campaign.yaml; its `step` restarts every epoch, as the real one's does). It
then keeps only the records a slice benchmark of `slice_fraction` x the real training time would have seen,
asks `estimate_slice` for the whole job's training time, and compares it with the real one (t of the last
record with a "step"). The slice's clock starts with the process, so interpreter start and imports are
part of it, as in a real `max_minutes` slice. `prediction error` = (predicted - actual) / actual: positive
means the slice overestimates. Contention for the CPU (other jobs on a shared machine) moves the step time,
so the figure moves from run to run; it is a measurement, not a test, and has no threshold.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from instance_benchmarks.core.git import clone
from instance_benchmarks.measure.hostload import HostLoadMeter
from instance_benchmarks.measure.metrics import MetricParser, parse_definitions
from instance_benchmarks.measure.slices import estimate_slice

# ~1000 steps of ~20 ms (63 steps/epoch, a line every 10 steps): ~25 s on 2 idle CPU cores, so that a 20% slice
# holds ~10 log intervals after the ~3 s of interpreter start and torch import. Wide layers make each step
# heavy enough to time; no early stopping, so the step count is fixed.
DEFAULT_ARGS = {"tabular_mlp": ["--epochs=16", "--batch_size=256", "--hidden_layers=1024,1024", "--log_every=10",
                                "--patience=0"]}


# The plain-text repository: a miniature of PyTorch's word_language_model/main.py (same flags, same log lines,
# `step` = the batch within its epoch), in a subdirectory, reading its data from a relative path; `--delay`
# (seconds slept per batch) makes steps slow on purpose. The embedded default's end-to-end tests run it too.
PLAIN_TEXT_MAIN = '''import argparse, math, time
import torch
from torch import nn

parser = argparse.ArgumentParser(description="word-level language model (a miniature)")
parser.add_argument("--data", default="./data/tiny")
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--batch_size", type=int, default=8)
parser.add_argument("--emsize", type=int, default=16)
parser.add_argument("--lr", type=float, default=0.5)
parser.add_argument("--log-interval", type=int, default=10)
parser.add_argument("--delay", type=float, default=0.0)
parser.add_argument("--save", default="model.pt")
args = parser.parse_args()
torch.manual_seed(0)
words = open(f"{args.data}/train.txt").read().split()
vocab = {w: i for i, w in enumerate(sorted(set(words)))}
ids = torch.tensor([vocab[w] for w in words])
model = nn.Sequential(nn.Embedding(len(vocab), args.emsize), nn.Linear(args.emsize, args.emsize), nn.Tanh(),
                      nn.Linear(args.emsize, len(vocab)))
optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
batches = (len(ids) - 1) // args.batch_size
for epoch in range(1, args.epochs + 1):
    start = time.time()
    for batch in range(1, batches + 1):
        i = (batch - 1) * args.batch_size
        loss = nn.functional.cross_entropy(model(ids[i:i + args.batch_size]), ids[i + 1:i + 1 + args.batch_size])
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        time.sleep(args.delay)
        if batch % args.log_interval == 0:
            print("| epoch {:3d} | {:5d}/{:5d} batches | lr {:02.2f} | ms/batch {:5.2f} | loss {:5.2f} | ppl {:8.2f}".format(
                epoch, batch, batches, args.lr, 1000 * (time.time() - start) / batch, loss.item(),
                math.exp(min(loss.item(), 50))), flush=True)
    print("| end of epoch {:3d} | time: {:5.2f}s | valid loss {:5.2f} | valid ppl {:8.2f}".format(
        epoch, time.time() - start, loss.item(), math.exp(min(loss.item(), 50))), flush=True)
    with open(args.save, "wb") as f:
        torch.save(model.state_dict(), f)
'''
PLAIN_TEXT_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "word-language-model" / "campaign.yaml"
# 3,200 steps (20 epochs of 160 batches, a line every 10) of ~100 MFLOP each (emsize 512): about 30 s on 2 idle
# CPU cores with interpreter start and imports, so that a 20% slice holds a few dozen log intervals
PLAIN_TEXT_ARGS = ["--epochs=20", "--batch_size=64", "--emsize=512", "--log-interval=10"]


def run_command(command: list[str], parser: MetricParser, *, cwd: Path | None = None, what: str,
                load: dict | None = None) -> list[dict]:
    """Run a job to the end; its metric records (`parser` reads each stdout line), "t" = seconds since launch.
    `load`, when given, receives the machine's load while it ran (measure.hostload: other processes' CPUs)."""
    records: list[dict] = []
    meter = HostLoadMeter().start()
    with tempfile.TemporaryFile("w+") as stderr:
        start = time.monotonic()
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1)
        for line in process.stdout:
            record = parser.parse(line, time.monotonic() - start)
            if record is not None:
                records.append(record)
        if process.wait() != 0:
            stderr.seek(0)
            raise RuntimeError(f"{what} exited {process.returncode}: {stderr.read()[-2000:]}")
    if load is not None:
        load.update(meter.stop() or {})
    return records


def run_workload(workload: str, args: list[str], load: dict | None = None) -> list[dict]:
    """Run the bundled workload to the end; its metric records, each with "t" = seconds since launch."""
    with tempfile.TemporaryDirectory() as output:
        return run_command([sys.executable, "-m", f"training_scripts.{workload}", f"--output={output}", *args],
                           MetricParser(), what=workload, load=load)


def plain_text_repository(into: Path) -> Path:
    """A git repository holding the plain-text miniature in word_language_model/, with its data; its path."""
    workdir = into / "word_language_model"
    (workdir / "data" / "tiny").mkdir(parents=True)
    (workdir / "main.py").write_text(PLAIN_TEXT_MAIN)
    words = [f"w{(i * 7919) % 997}" for i in range(10_241)]  # 997 words, 160 batches of 64
    (workdir / "data" / "tiny" / "train.txt").write_text(" ".join(words) + "\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "init.defaultBranch=main"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "word language model (miniature)"]):
        subprocess.run([*git, *command], cwd=into, check=True, capture_output=True)
    return into


def run_plain_text(args: list[str], load: dict | None = None) -> list[dict]:
    """Clone the plain-text repository as the agent does and run its script to the end from its subdirectory;
    its records, read with the word-language-model example's metric definitions."""
    definitions = parse_definitions(yaml.safe_load(PLAIN_TEXT_EXAMPLE.read_text())["metric_definitions"])
    with tempfile.TemporaryDirectory() as tmp:
        repo = plain_text_repository(Path(tmp) / "repo")
        clone(str(repo), "main", Path(tmp) / "src")
        workdir = Path(tmp) / "src" / "word_language_model"
        return run_command([sys.executable, "main.py", "--save", os.devnull, *args], MetricParser(definitions),
                           cwd=workdir, what="the plain-text repository's main.py", load=load)


def cumulative_steps(records: list[dict]) -> list[dict]:
    """The records with a `step` counter that never goes back: a step below the one before (a script that
    counts batches within each epoch) continues from the previous epoch's last count."""
    done, last, out = 0.0, None, []
    for record in records:
        step = record.get("step")
        if isinstance(step, (int, float)) and not isinstance(step, bool):
            if last is not None and step < last:
                done += last
            last = step
            record = {**record, "step": done + step}
        out.append(record)
    return out


def predict(records: list[dict], slice_fraction: float, warmup_steps: int, warmup_seconds: float) -> dict:
    """A job's records -> the figures: its slice's prediction against the actual training time."""
    stepped = [r for r in cumulative_steps(records) if isinstance(r.get("step"), (int, float))]
    if not stepped:
        raise RuntimeError("the job logged no step records")
    actual, total_steps = stepped[-1]["t"], max(r["step"] for r in stepped)
    cutoff = slice_fraction * actual
    part = [r for r in records if r["t"] <= cutoff]  # as the slice saw them: per-epoch counters included
    est = estimate_slice(part, total_steps=total_steps, warmup_steps=warmup_steps, warmup_seconds=warmup_seconds)
    slice_steps = max((r["step"] for r in stepped if r["t"] <= cutoff), default=0)
    figures = {"total_steps": total_steps, "slice_fraction": slice_fraction, "slice_steps": slice_steps,
               "slice_seconds": cutoff, "actual_seconds": actual, "estimate": est}
    if est is not None:
        figures["error_pct"] = 100.0 * (est.est_train_seconds - actual) / actual
    return figures


def bench(workload: str = "tabular_mlp", args: list[str] | None = None, slice_fraction: float = 0.2,
          warmup_steps: int = 0, warmup_seconds: float = 0.0) -> dict:
    """Run the workload, predict it from its first slice_fraction of training time; the figures as a dict."""
    given = {arg.split("=", 1)[0] for arg in args or []}  # an option given replaces its default
    args = [arg for arg in DEFAULT_ARGS.get(workload, []) if arg.split("=", 1)[0] not in given] + list(args or [])
    load: dict = {}
    records = run_workload(workload, args, load)
    return {"workload": workload, "args": args, "host_load": load,
            **predict(records, slice_fraction, warmup_steps, warmup_seconds)}


def bench_plain_text(args: list[str] | None = None, slice_fraction: float = 0.2, warmup_steps: int = 0,
                     warmup_seconds: float = 0.0) -> dict:
    """The same measurement on the plain-text repository (its script's flags in `args` replace the defaults)."""
    given = {arg.split("=", 1)[0] for arg in args or []}
    args = [arg for arg in PLAIN_TEXT_ARGS if arg.split("=", 1)[0] not in given] + list(args or [])
    load: dict = {}
    records = run_plain_text(args, load)
    return {"workload": "plain-text repository (word_language_model/main.py, regexes)", "args": args, "host_load": load,
            **predict(records, slice_fraction, warmup_steps, warmup_seconds)}


def report(f: dict) -> str:
    """The figures as a small table, ending with the plain `prediction error:` line."""
    est = f["estimate"]
    rows = [("workload", f["workload"]), ("args", " ".join(f["args"]) or "-"),
            ("total steps", f"{f['total_steps']:.0f}"),
            ("slice", f"{f['slice_steps']:.0f} steps in {f['slice_seconds']:.1f} s ({f['slice_fraction']:.0%} of actual)")]
    load = f.get("host_load") or {}
    if load:  # contention moves the figures: say how much there was
        rows.append(("other processes", f"{load['other_cpus']:.1f} of {load['cpus']} CPUs on average (the job "
                                        f"{load['run_cpus']:.1f}; load average {load['load_avg_1m']:.1f})"))
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
    parser.add_argument("--source", choices=("both", "workload", "plain-text"), default="both",
                        help="the bundled workload (JSON lines), the plain-text repository (regexes), or both (default)")
    parser.add_argument("--workload", default="tabular_mlp", help="training_scripts module (default tabular_mlp)")
    parser.add_argument("--slice-fraction", type=float, default=0.2, help="slice = this share of the real time")
    parser.add_argument("--warmup-steps", type=int, default=0,
                        help="steps ignored as warm-up (default 0: with no warm-up seconds either, the first interval)")
    parser.add_argument("--warmup-seconds", type=float, default=0.0, help="seconds ignored as warm-up (default 0)")
    parser.add_argument("--args", nargs=argparse.REMAINDER, default=[],
                        help="--key=value overrides of the job's flags, replacing the built-in defaults (e.g. --args "
                        "--epochs=4); with --source both, the workload's")
    ns = parser.parse_args(argv)
    if not 0.0 < ns.slice_fraction <= 1.0:
        parser.error("--slice-fraction must be in (0, 1]")
    timing = (ns.slice_fraction, ns.warmup_steps, ns.warmup_seconds)
    if ns.source in ("both", "workload"):
        print(report(bench(ns.workload, ns.args, *timing)))
    if ns.source in ("both", "plain-text"):
        if ns.source == "both":
            print()
        print(report(bench_plain_text(ns.args if ns.source == "plain-text" else None, *timing)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
