"""What the command groups share: the options every AWS command takes, and the one environment factory.

Every command that talks to AWS takes `REGION_OPTION`, `PREFIX_OPTION`, `LOCAL_OPTION` and `STATE_OPTION`
and calls `environment(...)`: AWS itself, or with `--local` the embedded default (moto's server on
127.0.0.1 with the stacks deployed) restored from the local state folder. Nothing else builds one.
"""
from __future__ import annotations

from pathlib import Path

import typer

from instance_benchmarks.commands.output import note
from instance_benchmarks.core.contract import SSM_PREFIX
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.embedded.environment import EmbeddedEnvironment
from instance_benchmarks.embedded.state import REPORTS, LocalState
from instance_benchmarks.environment import Environment

try:  # Typer 0.2x runs on its own copy of click
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - older Typer on click itself
    from click import get_current_context

REGION_OPTION = typer.Option(None, help="AWS region (default: the campaign's, else your AWS config).")
PREFIX_OPTION = typer.Option(SSM_PREFIX, help="SSM prefix the Compute stack exported to.")
LOCAL_OPTION = typer.Option(False, "--local", help="The embedded default instead of AWS: moto's server on 127.0.0.1 "
                            "with the stacks deployed and the results of earlier `--local` commands restored from the "
                            "local state folder (see --state); commands that write save back into it.")
STATE_OPTION = typer.Option(None, "--state", help="With --local: the local state folder (default: $TRAINFLEET_STATE, "
                            "else $XDG_STATE_HOME/trainfleet, else ~/.local/state/trainfleet), whatever the current "
                            "directory.")


def local_state(local: bool, state: Path | None, *, writes: bool = False, log=None) -> LocalState | None:
    """The `--local` state folder (embedded/state.py: --state, $TRAINFLEET_STATE or the XDG state directory),
    printed; None without --local, where --state is refused."""
    if not local:
        if state is not None:
            raise TrainfleetInputError("--state names the --local state folder: add --local")
        return None
    log = log or note  # stdout stays the command's output
    chosen = LocalState(state, writable=writes, log=log)
    log(f"local state: {chosen.root}")
    return chosen


def report_folder(out: Path | None, state: LocalState | None) -> Path:
    """--out, else reports/ in the local state folder with --local (nothing is written where the command
    runs), else reports/ in the current directory."""
    return out if out is not None else state.root / REPORTS if state is not None else Path("reports")


def environment(local: bool, region: str | None, ssm_prefix: str = SSM_PREFIX, *, state: Path | None = None,
                writes: bool = False, log=None, announce: bool = False, closes_itself: bool = True) -> Environment:
    """Where the command's AWS calls go: AWS (`Environment`), or with `local` the embedded default with the
    local state restored (the same code runs over boto3 against moto's server).

    `writes`: the local state is locked for writing and saved back when the environment closes. `log`: where
    the local state's messages go (stderr unless given). `announce`: say that moto's server starts, and
    where it answers (for commands whose runs execute inside them). The embedded environment closes when
    the command ends (click's context) unless `closes_itself` is False: then the caller closes it."""
    saved = local_state(local, state, writes=writes, log=log)
    if saved is None:
        return Environment(region, ssm_prefix)
    if announce:
        saved.log("starting moto's server on 127.0.0.1 and deploying the Storage, Network and Compute stacks ...")
    env = EmbeddedEnvironment.start(region=region or "us-east-1", state=saved, log=saved.log)
    if announce:
        saved.log(f"moto's server at {env.cloud.server.endpoint} (pid {env.cloud.server.pid}); results kept in "
                  f"{saved.root}/ (a rerun resumes from there)")
    if closes_itself:
        get_current_context().call_on_close(env.close)
    return env
