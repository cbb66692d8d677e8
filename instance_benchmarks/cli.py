"""The `trainfleet` command: thin Typer commands over library functions.

Bad input of any kind (campaign files, instance types, paths, credentials) ends in one line on stderr,
`error: ...`, and exit status 2, before anything is launched.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.campaigns.report import format_value

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Train PyTorch models on AWS spot instances; benchmark EC2 instance types for cost and throughput.")
campaign_app = typer.Typer(no_args_is_help=True, help="Benchmark campaigns: instance types x hyperparameters.")
models_app = typer.Typer(no_args_is_help=True, help="Trained models in S3.")
catalog_app = typer.Typer(no_args_is_help=True, help="The dated instance/price catalog.")
local_app = typer.Typer(no_args_is_help=True, help="The embedded default: moto's server on 127.0.0.1.")
app.add_typer(campaign_app, name="campaign")
app.add_typer(models_app, name="models")
app.add_typer(catalog_app, name="catalog")
app.add_typer(local_app, name="local")
console = Console(width=None if sys.stdout.isatty() else 160)

REGION_OPTION = typer.Option(None, help="AWS region (default: the campaign's, else your AWS config).")
PREFIX_OPTION = typer.Option("/trainfleet", help="SSM prefix the Compute stack exported to.")


def build_table(title: str, rows: list[dict], columns: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_lines=False)
    for _, heading in columns:
        table.add_column(heading, overflow="fold")
    for row in rows:
        table.add_row(*(format_value(row.get(key)) for key, _ in columns))
    return table


def print_table(title: str, rows: list[dict], columns: list[tuple[str, str]]) -> None:
    console.print(build_table(title, rows, columns))


def plain_log(message: str) -> None:
    console.print(message, markup=False, highlight=False)


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


@campaign_app.command("validate")
def campaign_validate(spec_file: Path = typer.Argument(..., help="Campaign YAML.")) -> None:
    """Validate a campaign file and price it at catalog prices (no AWS call)."""
    from instance_benchmarks.backends.registry import backend_class
    from instance_benchmarks.campaigns.plan import estimate
    from instance_benchmarks.campaigns.spec import load_spec
    from instance_benchmarks.catalog import load_catalog
    from instance_benchmarks.catalog.pricing import PriceQuote

    spec = load_spec(spec_file)
    catalog = load_catalog()
    backend = backend_class(spec.backend)
    quotes = {t: PriceQuote(t, spec.region, spec.market, price, price, f"catalog {catalog.as_of}", "")
              for t in spec.matrix["instance_type"]
              for price in [backend.list_price(catalog.get(t), spec.region)]}
    plan = estimate(spec, quotes)
    print_estimate(spec, plan)
    for run in spec.runs():
        console.print(f"  {run.run_id}  {run.label}", markup=False, highlight=False)
    if not plan.within(spec.budget_usd):
        raise TrainfleetInputError(f"worst case ${plan.worst_case_usd:.2f} exceeds the budget ${spec.budget_usd:.2f}")


@campaign_app.command("launch")
def campaign_launch(
    spec_file: Path = typer.Argument(..., help="Campaign YAML."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Launch without asking after the estimate."),
    region: Optional[str] = REGION_OPTION,
    ssm_prefix: str = PREFIX_OPTION,
) -> None:
    """Launch a campaign on AWS: price it, refuse it over budget, start one instance or job per pending run."""
    from instance_benchmarks import runner
    from instance_benchmarks.campaigns.spec import load_spec

    spec = load_spec(spec_file)
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


STATUS_COLUMNS = [("run_id", "run"), ("label", "run label"), ("status", "status"), ("backend", "backend"),
                  ("resource", "instance/job"), ("state", "state"), ("market", "market"), ("usd_per_hour", "$/h"),
                  ("attempts", "attempts"), ("cost_usd", "cost $")]
REPORT_COLUMNS = [("instance_type", "instance"), ("label", "hyperparameters"), ("usd_per_hour", "$/h"),
                  ("samples_per_s", "samples/s"), ("sec_per_step", "sec/step"), ("usd_per_epoch", "$/epoch"),
                  ("usd_per_1m_samples", "$/1M samples"), ("time_to_accuracy_s", "TTA s"),
                  ("cost_to_accuracy_usd", "CTA $"), ("final_metric", "final"), ("mfu", "MFU"),
                  ("billable_seconds", "billable s"), ("spot_savings", "spot savings"), ("backend", "backend")]


@campaign_app.command("status")
def campaign_status(campaign: str, region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION,
                    watch: float = typer.Option(0, help="Refresh every WATCH seconds until nothing is live.")) -> None:
    """A table of the campaign's runs on every backend: state, instance or job, price, attempts, cost so far."""
    import time

    from rich.live import Live

    from instance_benchmarks import runner

    env = aws_environment(region, ssm_prefix)
    runner.require_campaign(env, campaign)

    def render():
        rows = runner.status_rows(env, campaign)
        table = build_table(f"campaign {campaign}: cost so far ${sum(r['cost_usd'] for r in rows):.4f}",
                            rows, STATUS_COLUMNS)
        return table, any(r["live"] for r in rows)

    table, live = render()
    if watch <= 0:
        console.print(table)
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
    summaries = runner.teardown(env, validate_identifier(campaign, "campaign"))  # by exact tag, even if S3 forgot it
    for summary in summaries:
        extra = f", cancelled {len(summary.cancelled)} spot requests" if summary.cancelled else ""
        console.print(f"{summary.backend}: ended {len(summary.stopped)}{extra}")
    if not any(s.stopped or s.cancelled for s in summaries):
        runner.require_campaign(env, campaign)  # nothing ended: a typo is an error, not "ended 0"


@campaign_app.command("collect")
def campaign_collect(campaign: str, out: Path = typer.Option(Path("reports"), help="Local folder for the report."),
                     region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION) -> None:
    """Settle finished runs and write the report (CSV, Parquet, Markdown, PNG) to S3 and OUT/<campaign>/."""
    from instance_benchmarks import runner

    env = aws_environment(region, ssm_prefix)
    runner.require_campaign(env, campaign)
    runner.settle(env, campaign)
    _report(env.client("s3"), env.infra.bucket, campaign, out / campaign)


def _report(s3, bucket: str, campaign: str, out: Path):
    from instance_benchmarks.campaigns.report import PREDICTION_COLUMNS, write_report

    report, checksums = write_report(s3, bucket, campaign, out)
    print_table(f"campaign {campaign}: {len(report.rows)} complete, {len(report.incomplete)} incomplete",
                report.rows, REPORT_COLUMNS)
    predicted = sorted((r for r in report.rows if r.get("est_usd") is not None), key=lambda r: r["est_usd"])
    if predicted:
        print_table("predicted full job from benchmark slices (cheapest first)", predicted, PREDICTION_COLUMNS)
    for row in report.incomplete:
        console.print(f"  incomplete: {row['run_id']} {row['label']} ({row['last_outcome']})", markup=False)
    console.print(f"report: {out}/ and s3://{bucket}/campaigns/{campaign}/report/ ({', '.join(sorted(checksums))})")
    return report


@campaign_app.command("run")
def campaign_run(
    spec_files: list[Path] = typer.Argument(..., help="Campaign YAML file(s) of one campaign (e.g. EC2 and SageMaker)."),
    local: bool = typer.Option(False, "--local", help="Run on the embedded default (moto's server + local workers)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="On AWS: launch without asking after the estimate."),
    out: Path = typer.Option(Path("reports"), help="Local folder for the report and the best model."),
    detach: bool = typer.Option(False, "--detach", help="On Ctrl-C leave the runs going (default: tear them down)."),
    poll_seconds: float = typer.Option(30.0, min=0.1, help="On AWS: seconds between status polls."),
    region: Optional[str] = REGION_OPTION,
    ssm_prefix: str = PREFIX_OPTION,
) -> None:
    """Launch, run, collect, report and tear down a campaign end to end, with a live status table; Ctrl-C
    tears everything down unless --detach. With --local no AWS account is needed."""
    from instance_benchmarks import runner
    from instance_benchmarks.campaigns.spec import load_spec

    specs = [load_spec(path) for path in spec_files]
    if len({s.campaign for s in specs}) > 1:
        raise TrainfleetInputError("all campaign files given to one run must name the same campaign")
    if local:
        from instance_benchmarks.embedded.environment import EmbeddedEnvironment

        plain_log("starting moto's server on 127.0.0.1 and deploying the Storage, Network and Compute stacks ...")
        env = EmbeddedEnvironment.start(region=region or specs[0].region, log=plain_log)
        confirm = None
    else:
        env = aws_environment(region or specs[0].region, ssm_prefix)
        env.poll_seconds = poll_seconds

        def confirm(plan, pending) -> bool:
            return yes or typer.confirm(f"launch {len(pending)} runs (worst case ${plan.worst_case_usd:.2f})?")
    display = StatusDisplay(specs[0].campaign)
    try:
        outcome = runner.run_to_report(env, specs, out=out / specs[0].campaign, log=display.log, report=_report,
                                       confirm=confirm, progress=display.update, detach=detach)
    except runner.Detached as detached:
        display.close()
        plain_log(str(detached))
        raise typer.Exit(130) from None
    finally:
        display.close()
        if local:
            env.close()
    incomplete = outcome["report"].incomplete
    if incomplete:
        console.print(f"[red]{len(incomplete)} run(s) did not complete[/]")
        raise typer.Exit(1)


class StatusDisplay:
    """`campaign run`'s progress: a live table of the runs on a terminal (Rich), one line per change of a
    run's status otherwise (logs, CI); other messages print above the table."""

    def __init__(self, campaign: str) -> None:
        self.campaign, self.live, self.seen = campaign, None, {}

    def log(self, message: str) -> None:
        (self.live.console if self.live else console).print(message, markup=False, highlight=False)

    def update(self, rows: list[dict]) -> None:
        title = (f"campaign {self.campaign}: {sum(r['live'] for r in rows)} running, "
                 f"{sum(r['status'] == 'complete' for r in rows)}/{len(rows)} complete, cost so far "
                 f"${sum(r['cost_usd'] for r in rows):.4f}")
        if console.is_terminal:
            from rich.live import Live

            table = build_table(title, rows, STATUS_COLUMNS)
            if self.live is None:
                self.live = Live(table, console=console, refresh_per_second=2)
                self.live.start()
            self.live.update(table)
            return
        for row in rows:
            state = (row["status"], row["state"], row["attempts"])
            if self.seen.get(row["run_id"]) != state:
                self.seen[row["run_id"]] = state
                plain_log(f"  {row['run_id']}: {row['status']} ({row['resource'] or '-'} {row['state']}, attempt "
                          f"{row['attempts']}, ${row['cost_usd']:.4f} so far)")

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


# ----------------------------------------------------------------------------- models
@models_app.command("list")
def models_list(campaign: Optional[str] = typer.Option(None, help="Only this campaign."),
                region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION) -> None:
    """Models of complete runs, with their final metric and SHA-256."""
    from instance_benchmarks.campaigns.models import list_models

    from instance_benchmarks import runner

    env = aws_environment(region, ssm_prefix)
    if campaign is not None:
        runner.require_campaign(env, campaign)
    rows = list_models(env.client("s3"), env.infra.bucket, campaign)
    for row in rows:
        row["ref"] = f"{row['campaign']}/{row['run_id']}"
    print_table("models", rows, [("ref", "run"), ("instance_type", "instance"), ("hyperparameters", "hyperparameters"),
                                 ("primary_metric", "metric"), ("final_metric", "final"), ("size_bytes", "bytes"),
                                 ("sha256", "sha256")])


@models_app.command("download")
def models_download(run: str = typer.Argument(..., help="CAMPAIGN/RUN_ID"),
                    out: Path = typer.Option(..., help="Folder to write the model and its files to."),
                    region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION) -> None:
    """Download a run's model and training artifacts, verifying each SHA-256."""
    from instance_benchmarks.campaigns.models import parse_run_ref

    campaign, run_id = parse_run_ref(run)
    env = aws_environment(region, ssm_prefix)
    download_with_progress(env.client("s3"), env.infra.bucket, campaign, run_id, out)


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


# ----------------------------------------------------------------------------- local
@local_app.command("deploy")
def local_deploy() -> None:
    """Synthesize the stacks, deploy them into an embedded moto server and print the outputs."""
    from instance_benchmarks.embedded.cloud import start_local_cloud

    cloud = start_local_cloud()
    try:
        console.print(f"deployed into moto at {cloud.server.endpoint}")
        console.print_json(json.dumps(cloud.outputs, sort_keys=True))
    finally:
        cloud.server.stop()


def main() -> None:
    """Console entry point: map input, credential and connection errors to one line and exit 2."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

    try:
        # non-standalone Typer returns the status of a `typer.Exit` (and 130 for Ctrl-C) instead of exiting
        status = app(standalone_mode=False)
        if status == 130:
            print("error: interrupted", file=sys.stderr)
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
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
