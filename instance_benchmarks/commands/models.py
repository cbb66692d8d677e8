"""`trainfleet models ...`: trained models in S3 (list, download with SHA-256 checks)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from instance_benchmarks import runner
from instance_benchmarks.campaigns.models import check_target, download_run, list_models, parse_run_ref
from instance_benchmarks.campaigns.report import format_value
from instance_benchmarks.commands import output
from instance_benchmarks.commands.shared import LOCAL_OPTION, PREFIX_OPTION, REGION_OPTION, STATE_OPTION, environment
from instance_benchmarks.core.safe_output import safe_text

models_app = typer.Typer(no_args_is_help=True, help="Trained models in S3.")

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
    output.console.print(table)


@models_app.command("download")
def models_download(run: str = typer.Argument(..., help="CAMPAIGN/RUN_ID"),
                    out: Path = typer.Option(..., help="Folder to write the model and its files to."),
                    region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION,
                    local: bool = LOCAL_OPTION, state: Optional[Path] = STATE_OPTION) -> None:
    """Download a run's model and training artifacts, verifying each SHA-256; the files are moved into OUT
    only when every checksum matches, so a refused or failed download leaves nothing behind."""
    campaign, run_id = parse_run_ref(run)
    check_target(out)  # before any AWS call
    env = environment(local, region, ssm_prefix, state=state)
    runner.require_campaign(env, campaign)  # a misspelt campaign names the ones that exist
    download_with_progress(env.client("s3"), env.infra.bucket, campaign, run_id, out)
    from training_scripts.inference import usage_snippet  # imported here: it imports torch (seconds), only this needs it

    snippet = usage_snippet(out)  # a bundled workload's model (its preprocessing.json): how to load it
    if snippet:
        output.console.print(f"load it in Python (README: Inference with a downloaded model):\n{snippet}",
                             markup=False, highlight=False, soft_wrap=True)


def download_with_progress(s3, bucket: str, campaign: str, run_id: str, out: Path) -> dict:
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=output.console) as progress:
        tasks: dict[str, int] = {}

        def tick(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total)
            progress.update(tasks[name], completed=done)

        written = download_run(s3, bucket, campaign, run_id, out, progress=tick)
    output.console.print(f"downloaded {len(written)} files to {out} (SHA-256 verified)")
    return written
