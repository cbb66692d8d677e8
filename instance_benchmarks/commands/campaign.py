"""`trainfleet campaign ...`: benchmark campaigns (validate, launch, status, teardown, collect, logs, run).

Thin commands over `instance_benchmarks.runner`; what they print is in campaign_view.py. Every command
that talks to AWS takes --local and --state (shared.py) and gets its environment from `shared.environment`.
"""
from __future__ import annotations

import codecs
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.live import Live

from instance_benchmarks import runner
from instance_benchmarks.backends.registry import backend_class
from instance_benchmarks.campaign_file import load_spec
from instance_benchmarks.campaigns.plan import estimate
from instance_benchmarks.campaigns.preflight import preflight
from instance_benchmarks.campaigns.spec import schema_command
from instance_benchmarks.campaigns.store import list_runs, read_log, read_record, run_location
from instance_benchmarks.catalog import load_catalog
from instance_benchmarks.catalog.pricing import PriceQuote
from instance_benchmarks.commands import output
from instance_benchmarks.commands.campaign_view import (
    StatusDisplay, print_estimate, print_failures, print_summary, status_table, write_and_print_report,
)
from instance_benchmarks.commands.output import plain_log, print_fit, warn_log
from instance_benchmarks.commands.shared import (
    LOCAL_OPTION, PREFIX_OPTION, REGION_OPTION, STATE_OPTION, environment, report_folder,
)
from instance_benchmarks.core.errors import TrainfleetInputError, did_you_mean
from instance_benchmarks.core.safe_output import safe_text
from instance_benchmarks.core.validation import validate_identifier

campaign_app = typer.Typer(no_args_is_help=True, help="Benchmark campaigns: instance types x hyperparameters.")

WIDE_OPTION = typer.Option(False, "--wide", help="Every column (wider than a terminal); default: fits 100 columns.")
OUT_OPTION = typer.Option(None, help="Local folder for the report (default: reports/ here; with --local: reports/ in "
                          "the local state folder).")
LOG_FILES = {"bootstrap": "bootstrap.log", "script": "script.log"}


def checked_spec(spec_file: Path, *, offline: bool = False):
    """A campaign file read, validated and preflighted (campaigns/preflight.py): bound to the commit its ref
    names now, or one input-error line before anything starts."""
    spec = preflight(load_spec(spec_file), source=str(spec_file), offline=offline, warn=warn_log)
    code = f"commit {spec.commit[:12]} ({spec.ref})" if spec.commit else f"ref {spec.ref} not resolved (--offline)"
    plain_log(f"{spec.campaign}: code {code}; run ids name the code and hyperparameters (new code, new runs)")
    return spec


@campaign_app.command("schema")
def campaign_schema(out: Optional[Path] = typer.Option(None, "--out", help="Write it to this file instead of "
                                                        "printing it.")) -> None:
    """Print the campaign file's JSON Schema (for editors: `# yaml-language-server: $schema=<path>`)."""
    text = schema_command(out)
    if out is None:
        sys.stdout.write(text)


@campaign_app.command("validate")
def campaign_validate(spec_file: Path = typer.Argument(..., help="Campaign YAML."),
                      offline: bool = typer.Option(False, "--offline", help="Skip the network check (a remote "
                                                   "repository reachable, its ref resolving).")) -> None:
    """Validate a campaign file, check it before launch (repository, ref, script, metrics) and price it at
    catalog prices (no AWS call)."""
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


@campaign_app.command("launch")
def campaign_launch(
    spec_file: Path = typer.Argument(..., help="Campaign YAML."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Launch without asking after the estimate."),
    region: Optional[str] = REGION_OPTION,
    ssm_prefix: str = PREFIX_OPTION,
    local: bool = LOCAL_OPTION,
    state: Optional[Path] = STATE_OPTION,
) -> None:
    """Launch a campaign: price it, refuse it over budget, start one instance or job per pending run. With
    --local the launched runs execute inside this command (moto cannot run them after it stops); then
    `campaign status/collect --local` read them from the local state."""
    spec = checked_spec(spec_file)
    env = environment(local, region or spec.region, ssm_prefix, state=state, writes=True, log=plain_log,
                      announce=True)  # with --local, like `campaign run`: the runs execute here

    def confirm(plan, pending) -> bool:
        print_estimate(spec, plan)
        return yes or typer.confirm(f"launch {len(pending)} {spec.backend} runs?")

    summary = runner.launch(env, spec, confirm=confirm)
    output.console.print(f"launched {len(summary.launched)}, complete {len(summary.skipped_complete)}, "
                         f"already running {len(summary.skipped_live)}, given up {len(summary.gave_up)}")
    for line in runner.refusal_lines(summary):
        plain_log(line)
    if summary.stopped:
        hint = (f"; the {len(summary.launched)} launched run(s) keep running (`trainfleet campaign teardown "
                f"{spec.campaign}` ends them)" if summary.launched else "")
        raise TrainfleetInputError(runner.stop_message(summary) + hint)
    if local and summary.launched:
        env.advance(spec.campaign)  # the embedded default runs them here; the state is saved as they end


@campaign_app.command("status")
def campaign_status(campaign: str, region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION,
                    watch: float = typer.Option(0, help="Refresh every WATCH seconds until nothing is live."),
                    local: bool = LOCAL_OPTION, wide: bool = WIDE_OPTION, state: Optional[Path] = STATE_OPTION) -> None:
    """A table of the campaign's runs on every backend: state, instance or job, price, attempts, cost so far."""
    env = environment(local, region, ssm_prefix, state=state)
    env = runner.campaign_environment(env, campaign, region)  # exists? then its own region, unless --region
    table, live = status_table(env, campaign, wide=wide)
    if watch <= 0:
        print_fit(table, wide=wide)
        return
    with Live(table, console=output.console, refresh_per_second=1) as screen:
        while live:
            time.sleep(watch)
            table, live = status_table(env, campaign, wide=wide)
            screen.update(table)


@campaign_app.command("teardown")
def campaign_teardown(campaign: str, region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION,
                      local: bool = LOCAL_OPTION, state: Optional[Path] = STATE_OPTION) -> None:
    """End every instance, spot request and training job of the campaign (found by tag, on every backend)."""
    validate_identifier(campaign, "campaign")  # before moto's server starts with --local
    env = environment(local, region, ssm_prefix, state=state, writes=True)
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
        output.console.print(f"{summary.backend}: ended {len(summary.stopped)}{extra}{recorded}")


@campaign_app.command("collect")
def campaign_collect(campaign: str, out: Optional[Path] = OUT_OPTION,
                     region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION,
                     local: bool = LOCAL_OPTION, wide: bool = WIDE_OPTION, state: Optional[Path] = STATE_OPTION) -> None:
    """Settle finished runs and write the report (the recommendation, CSV, Parquet, Markdown, a self-contained
    report.html, PNG charts) to S3 and OUT/<campaign>/."""
    env = environment(local, region, ssm_prefix, writes=True, state=state)
    env = runner.campaign_environment(env, campaign, region)  # nothing is written for an unknown campaign
    runner.settle(env, campaign)
    out = report_folder(out, env.state if local else None)
    report = write_and_print_report(env.client("s3"), env.infra.bucket, campaign, out / campaign, wide=wide)
    if report.incomplete:
        print_failures(env, campaign)
        raise typer.Exit(1)


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
        attempts = (read_record(location, "launch.json", run) or {}).get("attempts") or []
    except ValueError as error:  # the record's model says in one line what is wrong
        raise TrainfleetInputError(f"{campaign}/{run}: launch.json cannot be read: {error}") from None
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
        try:
            attempts = (read_record(location, "launch.json", run) or {}).get("attempts") or []
        except ValueError:  # broken since the first read: nothing more will settle it
            return True
        entry = next((a for a in attempts if a.get("attempt") == attempt), {})
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


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM during `campaign run`: handled as Ctrl-C (stop launching, tear down or detach)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.exit_status = 128 + signum


@contextlib.contextmanager
def interruptible():
    """SIGINT and SIGTERM raise Interrupted once (even where SIGINT was ignored, as in a background job);
    a second signal while the first is handled (tearing down) is reported, not obeyed."""
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


@campaign_app.command("run")
def campaign_run(
    spec_files: list[Path] = typer.Argument(..., help="Campaign YAML file(s) of one campaign (e.g. EC2 and SageMaker)."),
    local: bool = LOCAL_OPTION,
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


def _campaign_run(spec_files, local, yes, out, detach, poll_seconds, region, ssm_prefix, state=None) -> None:
    specs = [checked_spec(path) for path in spec_files]
    if len({s.campaign for s in specs}) > 1:
        raise TrainfleetInputError("all campaign files given to one run must name the same campaign")
    if local and detach:
        raise TrainfleetInputError("--detach needs AWS: with --local the runs execute inside this command; interrupt "
                                   "it and run the same command again to resume (completed runs are kept)")
    # closed below, before the exit status: the local state is saved before a Ctrl-C's exit
    env = environment(local, region or specs[0].region, ssm_prefix, state=state, writes=True, log=plain_log,
                      announce=True, closes_itself=False)
    out = report_folder(out, env.state if local else None)
    confirm = None  # the embedded default launches without asking
    if not local:
        env.poll_seconds = poll_seconds

        def confirm(plan, pending) -> bool:
            return yes or typer.confirm(f"launch {len(pending)} runs (worst case ${plan.worst_case_usd:.2f})?")
    display = StatusDisplay(specs[0].campaign)
    started = time.monotonic()
    try:
        outcome = runner.run_to_report(env, specs, out=out / specs[0].campaign, log=display.log,
                                       report=write_and_print_report, confirm=confirm, progress=display.update,
                                       detach=detach)
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
