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

from instance_benchmarks.errors import TrainfleetInputError
from instance_benchmarks.report import format_value

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


def aws_client(service: str, region: str | None):
    import boto3

    return boto3.client(service, region_name=region)


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


def print_estimate_summary(summary) -> None:
    expected = f", expected ${summary.estimate_expected_usd:.4f}" if summary.estimate_expected_usd is not None else ""
    console.print(f"[bold]{summary.campaign}[/]: worst case ${summary.estimate_worst_usd:.4f}{expected}")


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
             "fp32": s.peak_fp32_tflops, "fp16": s.peak_fp16_tflops, "price": s.on_demand_usd_per_hour.get(region)}
            for s in catalog.instances.values()]
    print_table(f"catalog as of {catalog.as_of} ({region})", rows, [
        ("name", "instance"), ("vcpus", "vCPU"), ("memory", "GiB"), ("gpu", "GPU"),
        ("fp32", "peak FP32 TFLOPS"), ("fp16", "peak FP16 TFLOPS"), ("price", "on-demand $/h")])


# ----------------------------------------------------------------------------- campaigns
@campaign_app.command("validate")
def campaign_validate(spec_file: Path = typer.Argument(..., help="Campaign YAML.")) -> None:
    """Validate a campaign file and price it at on-demand catalog prices (no AWS call)."""
    from instance_benchmarks.campaign import estimate, load_spec
    from instance_benchmarks.catalog import load_catalog
    from instance_benchmarks.pricing import quote

    spec = load_spec(spec_file)
    catalog = load_catalog()
    quotes = {t: quote(None, catalog.get(t), region=spec.region, market="on-demand", catalog_as_of=catalog.as_of)
              for t in spec.matrix["instance_type"]}
    plan = estimate(spec, quotes)
    print_estimate(spec, plan)
    for run in spec.runs():
        console.print(f"  {run.run_id}  {run.label}")
    if not plan.within(spec.budget_usd):
        raise TrainfleetInputError(f"worst case ${plan.worst_case_usd:.2f} exceeds the budget ${spec.budget_usd:.2f}")


@campaign_app.command("launch")
def campaign_launch(
    spec_file: Path = typer.Argument(..., help="Campaign YAML."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Launch without asking after the estimate."),
    region: Optional[str] = REGION_OPTION,
    ssm_prefix: str = PREFIX_OPTION,
) -> None:
    """Launch a campaign on AWS: price it, refuse it over budget, start one instance per pending run."""
    from instance_benchmarks.campaign import load_spec
    from instance_benchmarks.launcher import launch_campaign, resolve_infrastructure

    spec = load_spec(spec_file)
    region = region or spec.region
    ec2, s3, ssm = (aws_client(s, region) for s in ("ec2", "s3", "ssm"))
    infra = resolve_infrastructure(ssm, ssm_prefix)
    if spec.backend == "sagemaker":
        import boto3

        from instance_benchmarks import sagemaker_backend

        summary = sagemaker_backend.launch_campaign(aws_client("sagemaker", region), s3, boto3.Session(region_name=region),
                                                    spec, infra.bucket)
        print_estimate_summary(summary)
        console.print(f"created {len(summary.launched)} SageMaker training jobs, complete {len(summary.skipped_complete)}, "
                      f"in progress {len(summary.skipped_live)}")
        return

    def confirm(plan, pending) -> bool:
        print_estimate(spec, plan)
        return yes or typer.confirm(f"launch {len(pending)} instances?")

    summary = launch_campaign(ec2, s3, spec, infra, confirm_estimate=confirm)
    console.print(f"launched {len(summary.launched)}, complete {len(summary.skipped_complete)}, "
                  f"already running {len(summary.skipped_live)}")


@campaign_app.command("status")
def campaign_status(campaign: str, region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION,
                    watch: float = typer.Option(0, help="Refresh every WATCH seconds until no instance is live.")) -> None:
    """A table of the campaign's runs: state, instance, price, attempts, cost so far."""
    import time

    from rich.live import Live

    from instance_benchmarks.launcher import LIVE_STATES, resolve_infrastructure, status_rows

    ec2, s3, ssm = (aws_client(s, region) for s in ("ec2", "s3", "ssm"))
    infra = resolve_infrastructure(ssm, ssm_prefix)

    def render():
        rows = status_rows(ec2, s3, infra.bucket, campaign)
        table = build_table(f"campaign {campaign}: cost so far ${sum(r['cost_usd'] for r in rows):.4f}",
                            rows, STATUS_COLUMNS)
        return table, any(r["instance_state"] in LIVE_STATES for r in rows)

    table, live = render()
    if watch <= 0:
        console.print(table)
        return
    with Live(table, console=console, refresh_per_second=1) as screen:
        while live:
            time.sleep(watch)
            table, live = render()
            screen.update(table)


STATUS_COLUMNS = [("run_id", "run"), ("label", "run label"), ("status", "status"), ("instance_id", "instance"),
                  ("instance_state", "state"), ("market", "market"), ("usd_per_hour", "$/h"),
                  ("attempts", "attempts"), ("cost_usd", "cost $")]
REPORT_COLUMNS = [("instance_type", "instance"), ("label", "hyperparameters"), ("usd_per_hour", "$/h"),
                  ("samples_per_s", "samples/s"), ("sec_per_step", "sec/step"), ("usd_per_epoch", "$/epoch"),
                  ("usd_per_1m_samples", "$/1M samples"), ("time_to_accuracy_s", "TTA s"),
                  ("cost_to_accuracy_usd", "CTA $"), ("final_metric", "final"), ("mfu", "MFU"),
                  ("billable_seconds", "billable s"), ("spot_savings", "spot savings"), ("backend", "backend")]


@campaign_app.command("teardown")
def campaign_teardown(campaign: str, region: Optional[str] = REGION_OPTION) -> None:
    """Terminate every instance of the campaign and cancel its open spot requests (found by tag)."""
    from instance_benchmarks.launcher import teardown

    summary = teardown(aws_client("ec2", region), campaign)
    console.print(f"terminated {len(summary.terminated)} instances, cancelled {len(summary.cancelled_spot_requests)} spot requests")


@campaign_app.command("collect")
def campaign_collect(campaign: str, out: Path = typer.Option(Path("reports"), help="Local folder for the report."),
                     region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION) -> None:
    """Aggregate results into the report (CSV, Parquet, Markdown, PNG) in S3 and in OUT/<campaign>/."""
    from instance_benchmarks.launcher import resolve_infrastructure

    s3, ssm = aws_client("s3", region), aws_client("ssm", region)
    infra = resolve_infrastructure(ssm, ssm_prefix)
    collect_sagemaker_jobs(s3, infra.bucket, campaign, region)
    _report(s3, infra.bucket, campaign, out / campaign)


def collect_sagemaker_jobs(s3, bucket: str, campaign: str, region: str | None) -> None:
    """Turn finished SageMaker jobs of the campaign into result.json files (EC2 agents write their own)."""
    from instance_benchmarks.catalog import load_catalog
    from instance_benchmarks.results import load_run_records

    records = [r for r in load_run_records(s3, bucket, campaign)
               if r["result"] is None and any(a.get("backend") == "sagemaker" for a in r["launch"].get("attempts", []))]
    if not records:
        return
    from instance_benchmarks.sagemaker_backend import collect_run

    sagemaker, catalog = aws_client("sagemaker", region), load_catalog()
    for record in records:
        itype = record["launch"]["attempts"][-1]["instance_type"]
        collect_run(sagemaker, s3, bucket, campaign, record["run_id"], peak_tflops=catalog.get(itype).peak_fp32_tflops)


def _report(s3, bucket: str, campaign: str, out: Path):
    from instance_benchmarks.report import write_report

    report, checksums = write_report(s3, bucket, campaign, out)
    print_table(f"campaign {campaign}: {len(report.rows)} complete, {len(report.incomplete)} incomplete",
                report.rows, REPORT_COLUMNS)
    for row in report.incomplete:
        console.print(f"  incomplete: {row['run_id']} {row['label']} ({row['last_outcome']})")
    console.print(f"report: {out}/ and s3://{bucket}/campaigns/{campaign}/report/ ({', '.join(sorted(checksums))})")
    return report


@campaign_app.command("run")
def campaign_run(
    spec_files: list[Path] = typer.Argument(..., help="Campaign YAML file(s) of one campaign (e.g. EC2 and SageMaker)."),
    local: bool = typer.Option(False, "--local", help="Run on the embedded default (moto's server + local workers)."),
    out: Path = typer.Option(Path("reports"), help="Local folder for the report and the best model."),
) -> None:
    """Launch, run, collect and report a campaign end to end. With --local no AWS account is needed."""
    if not local:
        raise TrainfleetInputError("`campaign run` drives the embedded default: add --local (on AWS use launch/status/collect)")
    from instance_benchmarks.campaign import load_spec
    from instance_benchmarks.local import run_local_campaign

    specs = [load_spec(path) for path in spec_files]
    if len({s.campaign for s in specs}) > 1:
        raise TrainfleetInputError("all campaign files given to one run must name the same campaign")
    if any(s.backend == "sagemaker" for s in specs):
        from instance_benchmarks.sagemaker_backend import require_sdk

        require_sdk()
    run_local_campaign(specs[0], more_specs=tuple(specs[1:]), out=out / specs[0].campaign, log=plain_log,
                       report=_report)


# ----------------------------------------------------------------------------- models
@models_app.command("list")
def models_list(campaign: Optional[str] = typer.Option(None, help="Only this campaign."),
                region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION) -> None:
    """Models of complete runs, with their final metric and SHA-256."""
    from instance_benchmarks.launcher import resolve_infrastructure
    from instance_benchmarks.models import list_models

    s3, ssm = aws_client("s3", region), aws_client("ssm", region)
    rows = list_models(s3, resolve_infrastructure(ssm, ssm_prefix).bucket, campaign)
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
    from instance_benchmarks.launcher import resolve_infrastructure
    from instance_benchmarks.models import parse_run_ref

    campaign, run_id = parse_run_ref(run)
    s3, ssm = aws_client("s3", region), aws_client("ssm", region)
    download_with_progress(s3, resolve_infrastructure(ssm, ssm_prefix).bucket, campaign, run_id, out)


def download_with_progress(s3, bucket: str, campaign: str, run_id: str, out: Path) -> dict:
    from instance_benchmarks.models import download_run

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
    from instance_benchmarks.local import start_local_cloud

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
        app(standalone_mode=False)
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
    except typer.Abort:
        _die("aborted")
    except typer.TyperException as error:  # usage errors (unknown command, bad option) with standalone_mode=False
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        _die(message.replace("\n", " "))


def _die(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
