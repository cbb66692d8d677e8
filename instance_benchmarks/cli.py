"""The `trainfleet` command: thin Typer commands over library functions."""
from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from instance_benchmarks.errors import TrainfleetInputError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Train on AWS spot instances; benchmark instance types.")
local_app = typer.Typer(no_args_is_help=True, help="The embedded default: moto's server on 127.0.0.1.")
app.add_typer(local_app, name="local")


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@local_app.command("deploy")
def local_deploy() -> None:
    """Synthesize the stacks, deploy them into an embedded moto server and print the outputs."""
    from instance_benchmarks.local import start_local_cloud

    cloud = start_local_cloud()
    try:
        typer.echo(f"deployed into moto at {cloud.server.endpoint}")
        typer.echo(json.dumps(cloud.outputs, indent=2, sort_keys=True))
    finally:
        cloud.server.stop()


def main() -> None:  # pragma: no cover - console entry
    try:
        app()
    except TrainfleetInputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
