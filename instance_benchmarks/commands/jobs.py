"""`trainfleet jobs ...`: the one-shot TrainingJob-<job-id> stacks (thin commands over instance_benchmarks.jobs).

Errors end as cli.main maps them (one line, exit 2 for bad input such as an unknown job or a refused
object key).
"""
from __future__ import annotations

import codecs
import sys
from pathlib import Path
from typing import Optional

import typer

from instance_benchmarks import jobs
from instance_benchmarks.commands import output
from instance_benchmarks.commands.shared import LOCAL_OPTION, PREFIX_OPTION, STATE_OPTION, environment
from instance_benchmarks.core.safe_output import safe_text

jobs_app = typer.Typer(no_args_is_help=True, help="One-shot jobs (`cdk deploy TrainingJob-<job-id>`): list, logs, download.")

REGION_OPTION = typer.Option(None, help="AWS region the job stacks were deployed to (default: your AWS config).")


def _region(env) -> str | None:
    return env.region or env.client("s3").meta.region_name


def _require(env, job_id: str) -> dict:
    return jobs.require_job(env.client("cloudformation"), env.client("s3"), env.infra.bucket, job_id,
                            region=_region(env), ec2=env.client("ec2"))


@jobs_app.command("list")
def jobs_list(region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION,
              local: bool = LOCAL_OPTION, state: Optional[Path] = STATE_OPTION) -> None:
    """Every job: its stack, instance, state (running, succeeded, failed with its exit code) and output."""
    env = environment(local, region, ssm_prefix, state=state)
    rows = jobs.list_jobs(env.client("cloudformation"), env.client("s3"), env.infra.bucket, env.client("ec2"))
    output.print_table(f"jobs (s3://{env.infra.bucket}/jobs/, stacks in {_region(env)})", rows, [
        ("job_id", "job"), ("state", "state"), ("stack", "stack"), ("instance_id", "instance"),
        ("files", "files"), ("bytes", "bytes"), ("updated", "updated")])


@jobs_app.command("logs")
def jobs_logs(job: str = typer.Argument(..., help="The job id (see `trainfleet jobs list`)."),
              follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the job ends."),
              poll_seconds: float = typer.Option(15.0, min=1.0, help="With --follow: seconds between reads."),
              region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION,
              local: bool = LOCAL_OPTION, state: Optional[Path] = STATE_OPTION) -> None:
    """The job's bootstrap.log (setup, the script's output, the upload), as last pushed to S3 (every minute
    while it runs). With --follow, exits with the job's own status when it ends."""
    env = environment(local, region, ssm_prefix, state=state)
    row = _require(env, job)
    s3, bucket = env.client("s3"), env.infra.bucket

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def write(chunk: bytes) -> None:  # the job's output, its control and bidi characters escaped
        sys.stdout.write(safe_text(decoder.decode(chunk), multiline=True))
        sys.stdout.flush()

    if not follow:
        log = jobs.read_log(s3, bucket, job)
        if log is None:
            print(f"job {job} ({row['state']}) has no bootstrap.log in s3://{bucket}/jobs/{job}/ yet: "
                  "it is pushed a minute after boot; try --follow", file=sys.stderr)
            raise typer.Exit(1)
        write(log)
        return

    def ended() -> bool:
        state = _require(env, job)["state"]
        return not state.startswith(("pending", "running", "create_in_progress"))

    status = jobs.follow_log(s3, bucket, job, write, ended=ended, poll_seconds=poll_seconds)
    if status is None:
        print(f"job {job} ended without finishing its bootstrap: {_require(env, job)['state']}", file=sys.stderr)
        raise typer.Exit(1)
    raise typer.Exit(status)


@jobs_app.command("download")
def jobs_download(job: str = typer.Argument(..., help="The job id (see `trainfleet jobs list`)."),
                  out: Path = typer.Option(..., help="Folder to write the job's output to (keys keep their paths)."),
                  region: Optional[str] = REGION_OPTION, ssm_prefix: str = PREFIX_OPTION,
                  local: bool = LOCAL_OPTION, state: Optional[Path] = STATE_OPTION) -> None:
    """Download everything the job uploaded (its output folder, job-status.json, bootstrap.log). Every key
    is checked first: one that is absolute, holds `..` or control characters, or would land outside OUT
    is refused (exit 2) before anything is written."""
    if out.exists() and not out.is_dir():
        raise jobs.TrainfleetInputError(f"--out {out} exists and is not a directory")
    env = environment(local, region, ssm_prefix, state=state)
    row = _require(env, job)
    written = jobs.download_job(env.client("s3"), env.infra.bucket, job, out)
    output.console.print(f"downloaded {len(written)} files of job {job} ({row['state']}) to {out}",
                         markup=False, highlight=False)
