"""The `trainfleet` command: thin Typer commands over library functions.

Bad input of any kind (campaign files, instance types, paths, credentials) ends in one line on stderr,
`error: ...`, and exit status 2, before anything is launched.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from instance_benchmarks.cli_jobs import jobs_app
from instance_benchmarks.core.errors import TrainfleetInputError, did_you_mean
from instance_benchmarks.core.safe_output import safe_text
from instance_benchmarks.campaigns.report import format_value

app = typer.Typer(no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
                  help="Train PyTorch models on AWS spot instances; benchmark EC2 instance types for cost and throughput.")
campaign_app = typer.Typer(no_args_is_help=True, help="Benchmark campaigns: instance types x hyperparameters.")
models_app = typer.Typer(no_args_is_help=True, help="Trained models in S3.")
catalog_app = typer.Typer(no_args_is_help=True, help="The dated instance/price catalog.")
local_app = typer.Typer(no_args_is_help=True, help="The embedded default: moto's server on 127.0.0.1.")
app.add_typer(campaign_app, name="campaign")
app.add_typer(models_app, name="models")
app.add_typer(catalog_app, name="catalog")
app.add_typer(local_app, name="local")
app.add_typer(jobs_app, name="jobs")  # instance_benchmarks/cli_jobs.py
# a terminal's width, or COLUMNS when set (Rich reads it); 160 when piped without COLUMNS
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit() else 160)


def _no_flag_types() -> None:
    """Typer's Rich help prints a type beside every option, `<bool>` beside flags (which take no value):
    flags get no type column; every other option keeps its `<path>`, `<str>`, ... ."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_trainfleet", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._trainfleet = True
    TyperOption.display_type_rich = display_type_rich


_no_flag_types()

REGION_OPTION = typer.Option(None, help="AWS region (default: the campaign's, else your AWS config).")
PREFIX_OPTION = typer.Option("/trainfleet", help="SSM prefix the Compute stack exported to.")


def build_table(title: str, rows: list[dict], columns: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_lines=False)
    for _, heading in columns:
        table.add_column(heading, overflow="fold")
    for row in rows:
        table.add_row(*(Text(format_value(row.get(key))) for key, _ in columns))
    return table


def print_table(title: str, rows: list[dict], columns: list[tuple[str, str]]) -> None:
    console.print(build_table(title, rows, columns))


FIT_WIDTH = 100  # the report and status tables fit this many columns unless --wide
# text columns that may be cut (…) to fit, first cut first, and the narrowest they get
CUTTABLE = {"label": 8, "resource": 8, "state": 7, "status": 7, "instance_type": 9, "market": 6, "runs_text": 4}


def fit_table(title: str, rows: list[dict], columns: list[tuple[str, str]], *, wide: bool = False,
              width: int | None = None) -> Table:
    """The style of `campaign collect` and `campaign status`: one space between columns, a rule under the
    headings (which carry the units), one line per row, numbers right-aligned. Without `wide` the table
    fits `width` (FIT_WIDTH, or the terminal when narrower): hyperparameters and other text are cut with
    an ellipsis, never wrapped; run ids and numbers are never cut."""
    from rich import box

    cells = [[format_value(row.get(key)) for key, _ in columns] for row in rows]
    natural = [max([len(heading)] + [len(line[i]) for line in cells]) for i, (_, heading) in enumerate(columns)]
    limit = width or min(console.width, FIT_WIDTH)
    widths = list(natural)
    for key in CUTTABLE:  # cut text columns, in CUTTABLE's order, until the table fits
        excess = sum(widths) + len(widths) - 1 - limit
        if excess <= 0 or wide:
            break
        for i, (name, _) in enumerate(columns):
            if name == key:
                widths[i] = max(CUTTABLE[key], widths[i] - excess)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  padding=(0, 0))
    for i, (key, heading) in enumerate(columns):
        values = [row.get(key) for row in rows if row.get(key) is not None]
        numeric = bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        table.add_column(heading, no_wrap=True, overflow="ellipsis", justify="right" if numeric else "left",
                         max_width=None if wide or widths[i] == natural[i] else widths[i])
    for line in cells:
        table.add_row(*map(Text, line))  # a cell is text, never Rich markup ([link=...])
    return table


def print_fit(table: Table, *, wide: bool = False) -> None:
    """At most FIT_WIDTH columns (fewer on a narrower terminal); with `wide`, as wide as the table is."""
    if wide:
        from rich.measure import Measurement

        needed = Measurement.get(console, console.options.update(width=100_000), table).maximum
        # Console.print never renders wider than its console: a console as wide as the table, same output
        Console(file=console.file, width=max(console.width, needed), force_terminal=console.is_terminal,
                color_system=console.color_system).print(table, crop=False)
    else:
        console.print(table, width=min(console.width, FIT_WIDTH))


def plain_log(message: str) -> None:
    """A message as text: no markup, and no control or bidi character of an untrusted part acts on the terminal."""
    console.print(safe_text(message, multiline=True), markup=False, highlight=False)


def print_estimate(spec, plan) -> None:
    expected = f", expected ${plan.expected_usd:.4f}" if plan.expected_usd is not None else ""
    console.print(f"[bold]{spec.campaign}[/]: {plan.runs} runs, worst case ${plan.worst_case_usd:.4f}"
                  f"{expected}, budget ${spec.budget_usd:.2f}")


# ----------------------------------------------------------------------------- catalog
@catalog_app.command("list")
def catalog_list(region: str = typer.Option("us-east-1", help="Region for on-demand prices.")) -> None:
    """Instance types in the catalog with hardware and on-demand $/h."""
    from instance_benchmarks.catalog import load_catalog

    catalog = load_catalog()
    catalog.require_region(region)
    rows = [{"name": s.name, "vcpus": s.vcpus, "memory": s.memory_gib, "gpu": f"{s.gpu_count}x {s.gpu_model}" if s.gpu_count else "-",
             "fp32": s.peak_fp32_tflops, "fp16": s.peak_fp16_tflops, "price": s.on_demand_usd_per_hour.get(region),
             "image": s.image or "refused"}
            for s in catalog.instances.values()]
    print_table(f"catalog as of {catalog.as_of} ({region})", rows, [
        ("name", "instance"), ("vcpus", "vCPU"), ("memory", "GiB"), ("gpu", "GPU"),
        ("fp32", "peak FP32 TFLOPS"), ("fp16", "peak FP16 TFLOPS"), ("price", "on-demand $/h"), ("image", "EC2 image")])
    refused = [s for s in catalog.instances.values() if s.refused]
    for spec in refused:
        console.print(f"  {spec.name}: {spec.refused}", markup=False, highlight=False)


# ----------------------------------------------------------------------------- campaigns
def aws_environment(region: str | None, ssm_prefix: str = "/trainfleet"):
    from instance_benchmarks.environment import Environment

    return Environment(region, ssm_prefix)


LOCAL_OPTION = typer.Option(False, "--local", help="The embedded default: the results earlier `--local` commands "
                            "kept in the local state folder (see --state).")
STATE_OPTION = typer.Option(None, "--state", help="With --local: the local state folder (default: $TRAINFLEET_STATE, "
                            "else $XDG_STATE_HOME/trainfleet, else ~/.local/state/trainfleet), whatever the current "
                            "directory.")


def note(message: str) -> None:
    """A line on stderr that may quote an instance's console (untrusted output): control characters escaped."""
    print(safe_text(message, multiline=True), file=sys.stderr)


def local_state(local: bool, state: Path | None, *, writes: bool = False, log=None):
    """The `--local` state folder (embedded/state.py: --state, $TRAINFLEET_STATE or the XDG state directory),
    printed; None without --local, where --state is refused."""
    if not local:
        if state is not None:
            raise TrainfleetInputError("--state names the --local state folder: add --local")
        return None
    from instance_benchmarks.embedded.state import LocalState

    log = log or note  # stdout stays the command's output
    chosen = LocalState(state, writable=writes, log=log)
    log(f"local state: {chosen.root}")
    return chosen


def report_folder(out: Path | None, state) -> Path:
    """--out, else reports/ in the local state folder with --local (nothing is written where the command
    runs), else reports/ in the current directory."""
    from instance_benchmarks.embedded.state import REPORTS

    return out if out is not None else state.root / REPORTS if state is not None else Path("reports")


def environment(local: bool, region: str | None, ssm_prefix: str = "/trainfleet", *, writes: bool = False,
                state: Path | None = None):
    """AWS, or with --local the embedded default with the saved local state restored (the same code runs
    over boto3 against moto's server), stopped when the command ends; `writes`: saved back at the end."""
    saved = local_state(local, state, writes=writes)
    if saved is None:
        return aws_environment(region, ssm_prefix)
    try:  # Typer 0.2x runs on its own copy of click
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - older Typer on click itself
        from click import get_current_context

    from instance_benchmarks.embedded.environment import EmbeddedEnvironment

    env = EmbeddedEnvironment.start(region=region or "us-east-1", state=saved, log=saved.log)
    get_current_context().call_on_close(env.close)
    return env


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM during `campaign run`: handled as Ctrl-C (stop launching, tear down or detach)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.exit_status = 128 + signum


def interruptible():
    """SIGINT and SIGTERM raise Interrupted once (even where SIGINT was ignored, as in a background job);
    a second signal while the first is handled (tearing down) is reported, not obeyed."""
    import contextlib
    import signal

    @contextlib.contextmanager
    def handlers():
        received: list[int] = []

        def handle(signum, frame):
            if received:
                print(f"trainfleet: signal {signum} ignored: already stopping (tearing down)", file=sys.stderr)
                return
            received.append(signum)
            raise Interrupted(signum)

        saved = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, previous in saved.items():
                signal.signal(sig, previous)

    return handlers()


def warn_log(message: str) -> None:
    print(message, file=sys.stderr)


def checked_spec(spec_file: Path, *, offline: bool = False):
    """A campaign file read, validated and preflighted (campaigns/preflight.py): bound to the commit its ref
    names now, or one input-error line before anything starts."""
    from instance_benchmarks.campaigns.preflight import preflight
    from instance_benchmarks.campaigns.spec import load_spec

    spec = preflight(load_spec(spec_file), source=str(spec_file), offline=offline, warn=warn_log)
    code = f"commit {spec.commit[:12]} ({spec.ref})" if spec.commit else f"ref {spec.ref} not resolved (--offline)"
    plain_log(f"{spec.campaign}: code {code}; run ids name the code and hyperparameters (new code, new runs)")
    return spec


@campaign_app.command("validate")
def campaign_validate(spec_file: Path = typer.Argument(..., help="Campaign YAML."),
                      offline: bool = typer.Option(False, "--offline", help="Skip the network check (a remote "
                                                   "repository reachable, its ref resolving).")) -> None:
    """Validate a campaign file, check it before launch (repository, ref, script, metrics) and price it at
    catalog prices (no AWS call)."""
    from instance_benchmarks.backends.registry import backend_class
    from instance_benchmarks.campaigns.plan import estimate
    from instance_benchmarks.catalog import load_catalog
    from instance_benchmarks.catalog.pricing import PriceQuote

    spec = checked_spec(spec_file, offline=offline)
    catalog = load_catalog()
    backend = backend_class(spec.backend)
    quotes = {t: PriceQuote(t, spec.region, spec.market, price, price, f"catalog {catalog.as_of}", "")
              for t in spec.matrix["instance_type"]
              for price in [backend.list_price(catalog.get(t), spec.region)]}
    plan = estimate(spec, quotes)
    print_estimate(spec, plan)
    for run in spec.runs():
        plain_log(f"  {run.run_id}  {safe_text(run.label)}")
    if not plan.within(spec.budget_usd):
        raise TrainfleetInputError(f"worst case ${plan.worst_case_usd:.2f} exceeds the budget ${spec.budget_usd:.2f}")


@campaign_app.command("schema")
def campaign_schema(out: Optional[Path] = typer.Option(None, "--out", help="Write it to this file instead of "
                                                        "printing it.")) -> None:
    """Print the campaign file's JSON Schema (for editors: `# yaml-language-server: $schema=<path>`)."""
    from instance_benchmarks.campaigns.spec import schema_command

    text = schema_command(out)
    if out is None:
        sys.stdout.write(text)


@campaign_app.command("launch")
def campaign_launch(
    spec_file: Path = typer.Argument(..., help="Campaign YAML."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Launch without asking after the estimate."),
    region: Optional[str] = REGION_OPTION,
    ssm_prefix: str = PREFIX_OPTION,
) -> None:
    """Launch a campaign on AWS: price it, refuse it over budget, start one instance or job per pending run."""
    from instance_benchmarks import runner

    spec = checked_spec(spec_file)
    env = aws_environment(region or spec.region, ssm_prefix)

    def confirm(plan, pending) -> bool:
        print_estimate(spec, plan)
        return yes or typer.confirm(f"launch {len(pending)} {spec.backend} runs?")

    summary = runner.launch(env, spec, confirm=confirm)
    console.print(f"launched {len(summary.launched)}, complete {len(summary.skipped_complete)}, "
                  f"already running {len(summary.skipped_live)}, given up {len(summary.gave_up)}")
    for line in runner.refusal_lines(summary):
        plain_log(line)
    if summary.stopped:
        hint = (f"; the {len(summary.launched)} launched run(s) keep running (`trainfleet campaign teardown "
                f"{spec.campaign}` ends them)" if summary.launched else "")
        raise TrainfleetInputError(runner.stop_message(summary) + hint)


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


def report_columns(report) -> list[tuple[str, str]]:
    """The runs table that fits: REPORT_COLUMNS, time and cost (to the target, else the run's training time and
    cost), the target metric or else the first metric the runs printed (its last value, and its best: the
    table's title says which metric and whether best is its max or min), and the status."""
    from instance_benchmarks.campaigns.report import shown_metric
    from instance_benchmarks.campaigns.report_stats import uses_target

    timing = ([("time_to_accuracy_s", "time (s)"), ("cost_to_accuracy_usd", "cost ($)")] if uses_target(report)
              else [("train_seconds", "train (s)"), ("cost_usd", "cost ($)")])
    metric = shown_metric(report)
    shown = [(f"{metric}_last", "last"), (f"{metric}_best", "best")] if metric else [("final_metric", "final")]
    return REPORT_COLUMNS + timing + shown + [("status", "status")]
# configurations with repeats: median, and the CV in brackets (! above 5 %)
CONFIG_TERMINAL_COLUMNS = [("key", "#"), ("instance_type", "instance"), ("label", "hyperparameters"),
                           ("runs_text", "runs"), ("samples_per_s_text", "samples/s (CV)")]


def config_terminal_columns(report) -> list[tuple[str, str]]:
    """CONFIG_TERMINAL_COLUMNS, time and cost (to the target, else of a run) and the metric of the runs table."""
    from instance_benchmarks.campaigns.report import shown_metric
    from instance_benchmarks.campaigns.report_stats import uses_target

    timing = ([("time_to_accuracy_s_text", "time s (CV)"), ("cost_to_accuracy_usd_text", "cost $ (CV)")]
              if uses_target(report) else [("train_seconds_text", "train s (CV)"), ("cost_usd_text", "cost $ (CV)")])
    metric = shown_metric(report)
    shown = [(f"{metric}_last_text", "last (CV)"), (f"{metric}_best_text", "best (CV)")] if metric else []
    return CONFIG_TERMINAL_COLUMNS + timing + shown + [("status", "status")]
WIDE_OPTION = typer.Option(False, "--wide", help="Every column (wider than a terminal); default: fits 100 columns.")
OUT_OPTION = typer.Option(None, help="Local folder for the report (default: reports/ here; with --local: reports/ in "
                          "the local state folder).")


@campaign_app.command("status")
def campaign_status(campaign: str, region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION,
                    watch: float = typer.Option(0, help="Refresh every WATCH seconds until nothing is live."),
                    local: bool = LOCAL_OPTION, wide: bool = WIDE_OPTION, state: Optional[Path] = STATE_OPTION) -> None:
    """A table of the campaign's runs on every backend: state, instance or job, price, attempts, cost so far."""
    import time

    from rich.live import Live

    from instance_benchmarks import runner

    env = environment(local, region, ssm_prefix, state=state)
    env = runner.campaign_environment(env, campaign, region)  # exists? then its own region, unless --region

    def render():
        rows = runner.status_rows(env, campaign)
        table = fit_table(f"campaign {campaign}: cost so far ${sum(r['cost_usd'] for r in rows):.4f}",
                          rows, STATUS_WIDE_COLUMNS if wide else STATUS_COLUMNS, wide=wide)
        return table, any(r["live"] for r in rows)

    table, live = render()
    if watch <= 0:
        print_fit(table, wide=wide)
        return
    with Live(table, console=console, refresh_per_second=1) as screen:
        while live:
            time.sleep(watch)
            table, live = render()
            screen.update(table)


@campaign_app.command("teardown")
def campaign_teardown(campaign: str, region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION) -> None:
    """End every instance, spot request and training job of the campaign (found by tag, on every backend)."""
    from instance_benchmarks import runner
    from instance_benchmarks.core.validation import validate_identifier

    env = aws_environment(region, ssm_prefix)
    validate_identifier(campaign, "campaign")
    try:
        env = runner.campaign_environment(env, campaign, region)  # in the region it was launched in
        unknown = None
    except TrainfleetInputError as error:  # not in S3: still end what carries its exact tag here, if anything does
        unknown = error
    summaries = runner.teardown(env, campaign)
    if unknown is not None and not any(s.stopped or s.cancelled for s in summaries):
        raise unknown  # nothing ended: a typo or the wrong region is an error, not "ended 0"
    for summary in summaries:
        extra = f", cancelled {len(summary.cancelled)} spot requests" if summary.cancelled else ""
        recorded = f" ({len(summary.ended)} attempt(s) recorded as torn down, cost kept)" if summary.ended else ""
        console.print(f"{summary.backend}: ended {len(summary.stopped)}{extra}{recorded}")


@campaign_app.command("collect")
def campaign_collect(campaign: str, out: Optional[Path] = OUT_OPTION,
                     region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION,
                     local: bool = LOCAL_OPTION, wide: bool = WIDE_OPTION, state: Optional[Path] = STATE_OPTION) -> None:
    """Settle finished runs and write the report (the recommendation, CSV, Parquet, Markdown, a self-contained
    report.html, PNG charts) to S3 and OUT/<campaign>/."""
    from instance_benchmarks import runner

    env = environment(local, region, ssm_prefix, writes=True, state=state)
    env = runner.campaign_environment(env, campaign, region)  # nothing is written for an unknown campaign
    runner.settle(env, campaign)
    out = report_folder(out, env.state if local else None)
    report = _report(env.client("s3"), env.infra.bucket, campaign, out / campaign, wide=wide)
    if report.incomplete:
        print_failures(env, campaign)
        raise typer.Exit(1)


LOG_FILES = {"bootstrap": "bootstrap.log", "script": "script.log"}


@campaign_app.command("logs")
def campaign_logs(
    campaign: str = typer.Argument(..., help="Campaign id."),
    run: str = typer.Argument(..., help="Run id (see `trainfleet campaign status`)."),
    attempt: Optional[int] = typer.Option(None, min=1, help="Attempt number (default: the run's last)."),
    file: str = typer.Option("bootstrap", help="bootstrap: the instance's whole log (user data, agent and the "
                             "script's output); script: the script's output alone (written when the attempt ends)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines until the attempt settles."),
    poll_seconds: float = typer.Option(5.0, min=0.1, help="With --follow: seconds between reads."),
    region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION,
    local: bool = LOCAL_OPTION, state: Optional[Path] = STATE_OPTION,
) -> None:
    """Print a run's log from S3 (logs/attempt-N/ of the run); the agent pushes it while the script runs."""
    import codecs

    from instance_benchmarks import runner
    from instance_benchmarks.campaigns.store import list_runs, read_json, read_log, run_location

    if file not in LOG_FILES:
        raise TrainfleetInputError(f"--file {file!r} must be one of {', '.join(LOG_FILES)}")
    env = environment(local, region, ssm_prefix, state=state)
    env = runner.campaign_environment(env, campaign, region)
    s3, bucket = env.client("s3"), env.infra.bucket
    runs = list_runs(s3, bucket, campaign)
    if run not in runs:
        raise TrainfleetInputError(f"no run {run} in campaign {campaign}; runs: {', '.join(runs) or 'none'}"
                                   + did_you_mean(run, runs))
    location = run_location(s3, bucket, campaign, run)
    try:
        attempts = (read_json(location, "launch.json") or {}).get("attempts") or []
    except (ValueError, AttributeError):
        raise TrainfleetInputError(f"{campaign}/{run}: launch.json cannot be read") from None
    numbers = [a.get("attempt") for a in attempts if isinstance(a, dict) and isinstance(a.get("attempt"), int)]
    if not numbers:
        raise TrainfleetInputError(f"{campaign}/{run} has no attempts yet")
    attempt = attempt or numbers[-1]
    if attempt not in numbers:
        raise TrainfleetInputError(f"{campaign}/{run} has no attempt {attempt} (attempts: {', '.join(map(str, numbers))})")
    name = LOG_FILES[file]
    decoder, offset = codecs.getincrementaldecoder("utf-8")(errors="replace"), 0

    def show() -> bool:
        nonlocal offset
        data = read_log(s3, bucket, campaign, run, attempt, name, start=offset)
        if data:
            offset += len(data)
            sys.stdout.write(safe_text(decoder.decode(data), multiline=True))  # the script's bytes, defused
            sys.stdout.flush()
        return data is not None

    def settled() -> bool:
        entry = next((a for a in (read_json(location, "launch.json") or {}).get("attempts", [])
                      if a.get("attempt") == attempt), {})
        return entry.get("outcome") not in ("launched", "launching") and run not in runner.live_runs(env, campaign)

    found = show()
    if follow:
        while not settled():
            time.sleep(poll_seconds)
            found = show() or found
        found = show() or found  # what was uploaded as it ended
    if not found:
        print(f"no {name} for {campaign}/{run} attempt {attempt} in s3://{bucket} (yet)", file=sys.stderr)
        raise typer.Exit(1)


def print_failures(env, campaign: str) -> None:
    """Each run without a result, with the last lines of its log from S3, in red on a terminal."""
    from instance_benchmarks import runner

    failures = runner.failure_report(env, campaign)
    console.print(f"[red]{len(failures)} run(s) did not complete[/]")
    for failure in failures:
        for line in runner.failure_lines(failure):
            plain_log(safe_text(line))  # a note or log line is one line, whatever it holds


def _report(s3, bucket: str, campaign: str, out: Path, *, wide: bool = False):
    from instance_benchmarks.campaigns.report import write_report

    report, checksums = write_report(s3, bucket, campaign, out)
    print_report(report, wide=wide)
    console.print(f"report: {out}/ and s3://{bucket}/campaigns/{campaign}/report/ ({', '.join(sorted(checksums))})",
                  markup=False, highlight=False)
    return report


def print_report(report, *, wide: bool = False) -> None:
    """The recommendation first, then one line per run (and per configuration when repeated)."""
    from instance_benchmarks.campaigns.report import COLUMNS, PREDICTION_COLUMNS, metric_columns, shown_metric
    from instance_benchmarks.campaigns.report_stats import recommendation_lines, terminal_cells, terminal_run_cells, uses_target

    lines = recommendation_lines(report)
    console.print(safe_text(lines[0]), style="bold", markup=False, highlight=False)
    for line in lines[1:]:
        plain_log(f"  {safe_text(line)}")  # a choice's own notes indent further
    metric = shown_metric(report)
    title = ("; time and cost to target" if uses_target(report) else "; training time and run cost") + (
        f"; {metric}: last, best ({'max' if report.metric_higher[metric] else 'min'})" if metric else "")
    print_fit(fit_table(f"runs: {len(report.rows)} complete, {len(report.incomplete)} incomplete{'' if wide else title}",
                        [terminal_run_cells(r) for r in report.rows], COLUMNS + metric_columns(report) if wide else report_columns(report), wide=wide),
              wide=wide)
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
        from instance_benchmarks.campaigns.report import EARLIER_HEADING, earlier_line

        plain_log(EARLIER_HEADING.format(n=len(report.earlier)))
        for row in report.earlier:
            plain_log(f"  {safe_text(earlier_line(row))}")


@campaign_app.command("run")
def campaign_run(
    spec_files: list[Path] = typer.Argument(..., help="Campaign YAML file(s) of one campaign (e.g. EC2 and SageMaker)."),
    local: bool = typer.Option(False, "--local", help="Run on the embedded default (moto's server + local workers)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="On AWS: launch without asking after the estimate."),
    out: Optional[Path] = typer.Option(None, help="Local folder for the report and the best model (default: reports/ "
                                       "here; with --local: reports/ in the local state folder)."),
    detach: bool = typer.Option(False, "--detach", help="On AWS: on Ctrl-C/SIGTERM leave the runs going (default: "
                                "tear them down)."),
    poll_seconds: float = typer.Option(30.0, min=0.1, help="On AWS: seconds between status polls."),
    region: Optional[str] = REGION_OPTION,
    ssm_prefix: str = PREFIX_OPTION,
    state: Optional[Path] = STATE_OPTION,
) -> None:
    """Launch, run, collect, report and tear down a campaign end to end, with a live status table; Ctrl-C
    (or SIGTERM) stops launching and tears everything down unless --detach, exit 130 (143). With --local no
    AWS account is needed, and results are kept in the local state folder (see --state): a rerun resumes."""
    with interruptible():
        try:
            _campaign_run(spec_files, local, yes, out, detach, poll_seconds, region, ssm_prefix, state)
        except Interrupted as stop:  # after the runner tore down (or detached) and the local state was saved
            raise typer.Exit(stop.exit_status) from None


def _campaign_run(spec_files, local, yes, out, detach, poll_seconds, region, ssm_prefix, state_dir=None) -> None:
    from instance_benchmarks import runner

    specs = [checked_spec(path) for path in spec_files]
    if len({s.campaign for s in specs}) > 1:
        raise TrainfleetInputError("all campaign files given to one run must name the same campaign")
    if local and detach:
        raise TrainfleetInputError("--detach needs AWS: with --local the runs execute inside this command; interrupt "
                                   "it and run the same command again to resume (completed runs are kept)")
    state = local_state(local, state_dir, writes=True, log=plain_log)
    out = report_folder(out, state)
    if local:
        from instance_benchmarks.embedded.environment import EmbeddedEnvironment

        plain_log("starting moto's server on 127.0.0.1 and deploying the Storage, Network and Compute stacks ...")
        env = EmbeddedEnvironment.start(region=region or specs[0].region, state=state, log=plain_log)
        plain_log(f"moto's server at {env.cloud.server.endpoint} (pid {env.cloud.server.pid}); results kept in "
                  f"{state.root}/ (a rerun resumes from there)")
        confirm = None
    else:
        env = aws_environment(region or specs[0].region, ssm_prefix)
        env.poll_seconds = poll_seconds

        def confirm(plan, pending) -> bool:
            return yes or typer.confirm(f"launch {len(pending)} runs (worst case ${plan.worst_case_usd:.2f})?")
    display = StatusDisplay(specs[0].campaign)
    started = time.monotonic()
    try:
        outcome = runner.run_to_report(env, specs, out=out / specs[0].campaign, log=display.log, report=_report,
                                       confirm=confirm, progress=display.update, detach=detach)
        display.close()
        print_summary(runner.status_rows(env, specs[0].campaign), time.monotonic() - started)
        if outcome["report"].incomplete:  # before the embedded default's server (and its logs) go away
            print_failures(env, specs[0].campaign)
    except runner.Detached as detached:
        display.close()
        plain_log(str(detached))
        raise typer.Exit(130) from None
    finally:
        display.close()
        if local:
            env.close()  # saves the local state (a rerun resumes), then stops moto's server and the workers
    if outcome["report"].incomplete:
        raise typer.Exit(1)


def print_summary(rows: list[dict], seconds: float) -> None:
    """The end of `campaign run`: runs by outcome, attempts, cost and wall time."""
    from collections import Counter

    current = [row for row in rows if not row["status"].startswith("earlier code")]  # earlier: kept apart
    kept = f"; {len(rows) - len(current)} run(s) of earlier code kept apart" if len(current) < len(rows) else ""
    rows = current
    outcomes = Counter(row["status"] for row in rows)
    parts = ", ".join(f"{count} {status}" for status, count in sorted(outcomes.items(), key=lambda kv: -kv[1]))
    plain_log(f"summary: {outcomes.get('complete', 0)}/{len(rows)} complete ({parts or 'no runs'}); "
              f"{sum(row['attempts'] for row in rows)} attempt(s); cost ${sum(row['cost_usd'] for row in rows):.4f}; "
              f"{format_duration(seconds)}{kept}")


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


# `campaign run`'s live table (`campaign status` shows STATUS_COLUMNS)
PROGRESS_COLUMNS = [("run_id", "run"), ("status", "status"), ("attempt", "attempt"), ("state", "state"),
                    ("progress", "progress"), ("metric", "metric"), ("elapsed", "elapsed"), ("cost_usd", "cost $")]


class StatusDisplay:
    """`campaign run`'s progress: a live table of the runs on a terminal (Rich), one line per change of a
    run's status otherwise (logs, CI); other messages print above the table."""

    def __init__(self, campaign: str) -> None:
        self.campaign, self.live, self.seen = campaign, None, {}

    def log(self, message: str) -> None:
        (self.live.console if self.live else console).print(safe_text(message, multiline=True), markup=False,
                                                            highlight=False)

    def update(self, rows: list[dict]) -> None:
        title = (f"campaign {self.campaign}: {sum(r['live'] for r in rows)} running, "
                 f"{sum(r['status'] == 'complete' for r in rows)}/{len(rows)} complete, cost so far "
                 f"${sum(r['cost_usd'] for r in rows):.4f}")
        rows = [{**row, "elapsed": format_duration(row.get("elapsed_s"))} for row in rows]
        if console.is_terminal:
            from rich.live import Live

            table = build_table(title, rows, PROGRESS_COLUMNS)
            if self.live is None:
                self.live = Live(table, console=console, refresh_per_second=2)
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


# ----------------------------------------------------------------------------- models
MODEL_COLUMNS = [("ref", "run"), ("instance_type", "instance"), ("hyperparameters", "hyperparameters"),
                 ("primary_metric", "metric"), ("final_metric", "final"), ("size_bytes", "bytes"), ("sha256", "sha256")]


@models_app.command("list")
def models_list(campaign: Optional[str] = typer.Option(None, help="Only this campaign."),
                plain: bool = typer.Option(False, "--plain", help="Tab-separated lines, no table or heading "
                                           "(run, instance, metric, final, bytes, sha256, hyperparameters as JSON)."),
                region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION,
                local: bool = LOCAL_OPTION, state: Optional[Path] = STATE_OPTION) -> None:
    """Models of complete runs, with their final metric and SHA-256; the run column is what `models
    download` takes."""
    from instance_benchmarks.campaigns.models import list_models

    from instance_benchmarks import runner

    env = environment(local, region, ssm_prefix, state=state)
    if campaign is not None:
        runner.require_campaign(env, campaign)
    rows = list_models(env.client("s3"), env.infra.bucket, campaign)
    for row in rows:
        row["ref"] = f"{row['campaign']}/{row['run_id']}"
    if plain:
        for row in rows:
            fields = [row["ref"], row["instance_type"], row["primary_metric"], row["final_metric"], row["size_bytes"],
                      row["sha256"], json.dumps(row["hyperparameters"], sort_keys=True, separators=(",", ":"))]
            print("\t".join("" if value is None else safe_text(value) for value in fields))  # tabs escaped
        return
    table = Table(title=f"models in s3://{env.infra.bucket}")
    for key, heading in MODEL_COLUMNS:  # the run reference is never wrapped: it is copied into `models download`
        table.add_column(heading, no_wrap=key == "ref", overflow="ignore" if key == "ref" else "fold",
                         min_width=max((len(r["ref"]) for r in rows), default=3) if key == "ref" else None)
    for row in rows:
        table.add_row(*(Text(format_value(row.get(key))) for key, _ in MODEL_COLUMNS))
    console.print(table)


@models_app.command("download")
def models_download(run: str = typer.Argument(..., help="CAMPAIGN/RUN_ID"),
                    out: Path = typer.Option(..., help="Folder to write the model and its files to."),
                    region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION,
                    local: bool = LOCAL_OPTION, state: Optional[Path] = STATE_OPTION) -> None:
    """Download a run's model and training artifacts, verifying each SHA-256; the files are moved into OUT
    only when every checksum matches, so a refused or failed download leaves nothing behind."""
    from instance_benchmarks.campaigns.models import check_target, parse_run_ref

    campaign, run_id = parse_run_ref(run)
    check_target(out)  # before any AWS call
    env = environment(local, region, ssm_prefix, state=state)
    from instance_benchmarks.runner import require_campaign

    require_campaign(env, campaign)  # a misspelt campaign names the ones that exist
    download_with_progress(env.client("s3"), env.infra.bucket, campaign, run_id, out)
    from training_scripts.inference import usage_snippet

    snippet = usage_snippet(out)  # a bundled workload's model (its preprocessing.json): how to load it
    if snippet:
        console.print(f"load it in Python (README: Inference with a downloaded model):\n{snippet}",
                      markup=False, highlight=False, soft_wrap=True)


def download_with_progress(s3, bucket: str, campaign: str, run_id: str, out: Path) -> dict:
    from instance_benchmarks.campaigns.models import download_run

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=console) as progress:
        tasks: dict[str, int] = {}

        def tick(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done)

        written = download_run(s3, bucket, campaign, run_id, out, progress=tick)
    console.print(f"downloaded {len(written)} files to {out} (SHA-256 verified)")
    return written


# ----------------------------------------------------------------------------- info
from instance_benchmarks.core.contract import STACKS  # noqa: E402 (`info` and `doctor` read them)


@app.command("info")
def info(region: Optional[str] = typer.Option(None, help="AWS region (default: your AWS config)."),
         ssm_prefix: str = PREFIX_OPTION, local: bool = LOCAL_OPTION, state: Optional[Path] = STATE_OPTION) -> None:
    """Where trainfleet points: region, caller identity, bucket, the stacks and their status, the launch
    templates the Compute stack exported, and the campaigns in the bucket (with --local: the embedded
    default's, restored from the local state folder)."""
    from instance_benchmarks import runner
    from instance_benchmarks.campaigns.store import list_campaigns

    env = environment(local, region, ssm_prefix, state=state)
    identity = env.client("sts").get_caller_identity()
    infra = env.infra  # a one-line error (exit 2) when the stacks are not deployed here
    stacks, unreadable = [], None
    cloudformation = env.client("cloudformation")
    try:
        for page in cloudformation.get_paginator("describe_stacks").paginate():
            stacks += [s for s in page["Stacks"] if s["StackName"] in STACKS or s["StackName"].startswith("TrainingJob")]
    except cloudformation.exceptions.ClientError as error:  # the launcher policy need not allow DescribeStacks
        unreadable = f"cannot read ({error.response.get('Error', {}).get('Code', error)})"
    lines = [("local state", str(env.state.root))] if local else []
    lines += [("region", runner.env_region(env)), ("account", identity.get("Account")), ("caller", identity.get("Arn")),
             ("bucket", f"s3://{infra.bucket}"), ("ssm exports", f"{ssm_prefix}/*"),
             ("subnets", ", ".join(infra.subnet_ids)), ("security group", infra.security_group_id)]
    for name in STACKS + tuple(sorted(s["StackName"] for s in stacks if s["StackName"] not in STACKS)):
        found = next((s for s in stacks if s["StackName"] == name), None)
        lines.append((f"stack {name}", unreadable or (found["StackStatus"] if found else "not deployed")))
    for image, entry in sorted(infra.launch_templates.items()):
        lines.append((f"launch templates {image}", f"spot {entry['spot']}, on-demand {entry['on-demand']}, "
                                                   f"root volume {entry['root_volume_gib']} GiB"))
    campaigns = list_campaigns(env.client("s3"), infra.bucket)
    lines.append(("campaigns", f"{len(campaigns)}: {', '.join(campaigns)}" if campaigns else "none"))
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        plain_log(f"{key:<{width}}  {value}")


@app.command("doctor")
def doctor(region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION, local: bool = LOCAL_OPTION,
           campaign: Optional[Path] = typer.Option(None, help="Campaign YAML whose runs the vCPU quotas must fit.")) -> None:
    """Check an account and region before a first campaign, changing nothing: credentials, CDK bootstrap, the
    stacks and their version, the spot service-linked role, vCPU quotas, the launcher policy, the images'
    SSM parameters, the bucket. One table with a fix per failure; exit 1 when a check fails."""
    from instance_benchmarks.doctor import doctor as run_doctor

    raise typer.Exit(run_doctor(lambda where: environment(local, where, ssm_prefix), region, campaign, console))


# ----------------------------------------------------------------------------- local
@local_app.command("deploy")
def local_deploy() -> None:
    """Synthesize the stacks, deploy them into a throwaway moto server, print the outputs and stop it (a
    check that the templates deploy; `trainfleet local up` keeps a server running)."""
    from instance_benchmarks.embedded.cloud import start_local_cloud

    cloud = start_local_cloud()
    try:
        console.print_json(json.dumps(cloud.outputs, sort_keys=True))
        console.print(f"deployed into moto's server at {cloud.server.endpoint}, which stops with this command; "
                      "`trainfleet local up` keeps one running", markup=False, highlight=False)
    finally:
        cloud.server.stop()


@local_app.command("up")
def local_up(region: str = typer.Option("us-east-1", help="The region moto's server answers for."),
             state_dir: Optional[Path] = typer.Option(None, "--state", help=STATE_OPTION.help)) -> None:
    """Run moto's server with the stacks deployed and the results of earlier `--local` commands restored,
    print how to point trainfleet or the AWS CLI at it, and keep it up until Ctrl-C or SIGTERM (read-only:
    nothing is saved back into the local state)."""
    import signal
    import threading

    from instance_benchmarks.embedded.environment import EmbeddedEnvironment

    state = local_state(True, state_dir, log=plain_log)
    env = EmbeddedEnvironment.start(region=region, state=state, log=plain_log)
    stop = threading.Event()
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        server = env.cloud.server
        plain_log(f"moto's server at {server.endpoint} (pid {server.pid}), bucket s3://{env.infra.bucket}, with the "
                  f"results kept in {state.root}/; from another shell:")
        for key, value in server.env.items():
            plain_log(f"  export {key}={value}")
        plain_log("  trainfleet models list   # or any command without --local; Ctrl-C here stops the server")
        while not stop.wait(1.0):
            pass
    finally:
        env.close(save=False)
    plain_log("moto's server stopped")


def main() -> None:
    """Console entry point: map input, credential and connection errors to one line and exit 2."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

    try:
        # non-standalone Typer returns the status of a `typer.Exit` (and 130 for Ctrl-C) instead of exiting
        status = app(standalone_mode=False)
        if status == 130:
            print("error: interrupted", file=sys.stderr)
        elif status == 143:
            print("error: terminated (SIGTERM)", file=sys.stderr)
        sys.exit(status if isinstance(status, int) else 0)
    except TrainfleetInputError as error:
        _die(str(error))
    except NoCredentialsError:
        _die("no AWS credentials found: configure a profile or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    except NoRegionError:
        _die("no AWS region: pass --region or set AWS_DEFAULT_REGION")
    except EndpointConnectionError as error:
        _die(f"cannot reach AWS endpoint: {error}")
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired", "InvalidClientTokenId",
                    "UnrecognizedClientException", "AuthFailure", "SignatureDoesNotMatch"):
            _die(f"AWS rejected the credentials ({code}): refresh them and try again")
        raise
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:  # end of input at a prompt (Typer turns Ctrl-C into status 130, handled above)
        _die("aborted")
    except typer.TyperException as error:  # usage errors (unknown command, bad option) with standalone_mode=False
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        _die(message.replace("\n", " "))


def _die(message: str) -> None:
    print(f"error: {safe_text(message)}", file=sys.stderr)  # one line, whatever a name from the bucket holds
    sys.exit(2)
