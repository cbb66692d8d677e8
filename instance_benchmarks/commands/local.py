"""`trainfleet local ...`: the embedded default on its own (deploy check, a server that stays up)."""
from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Optional

import typer

from instance_benchmarks.commands import output
from instance_benchmarks.commands.output import plain_log
from instance_benchmarks.commands.shared import STATE_OPTION, environment
from instance_benchmarks.embedded.cloud import start_local_cloud

local_app = typer.Typer(no_args_is_help=True, help="The embedded default: moto's server on 127.0.0.1.")


@local_app.command("deploy")
def local_deploy() -> None:
    """Synthesize the stacks, deploy them into a throwaway moto server, print the outputs and stop it (a
    check that the templates deploy; `trainfleet local up` keeps a server running)."""
    cloud = start_local_cloud()
    try:
        output.console.print_json(json.dumps(cloud.outputs, sort_keys=True))
        output.console.print(f"deployed into moto's server at {cloud.server.endpoint}, which stops with this command; "
                             "`trainfleet local up` keeps one running", markup=False, highlight=False)
    finally:
        cloud.server.stop()


@local_app.command("up")
def local_up(region: str = typer.Option("us-east-1", help="The region moto's server answers for."),
             state_dir: Optional[Path] = STATE_OPTION) -> None:
    """Run moto's server with the stacks deployed and the results of earlier `--local` commands restored,
    print how to point trainfleet or the AWS CLI at it, and keep it up until Ctrl-C or SIGTERM (read-only:
    nothing is saved back into the local state)."""
    env = environment(True, region, state=state_dir, log=plain_log, closes_itself=False)
    stop = threading.Event()
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        server = env.cloud.server
        plain_log(f"moto's server at {server.endpoint} (pid {server.pid}), bucket s3://{env.infra.bucket}, with the "
                  f"results kept in {env.state.root}/; from another shell:")
        for key, value in server.env.items():
            plain_log(f"  export {key}={value}")
        plain_log("  trainfleet models list   # or any command without --local; Ctrl-C here stops the server")
        while not stop.wait(1.0):
            pass
    finally:
        env.close(save=False)
    plain_log("moto's server stopped")
