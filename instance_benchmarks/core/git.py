"""A repository checked out at exactly the commit a run was launched for: by the agent on an instance, and on
the launcher where a backend packs the code itself (SageMaker's code channel) or a benchmark runs it here.

Plain `git` in a subprocess, never a shell; `GIT_TERMINAL_PROMPT=0` so that a private repository fails at once
instead of waiting for a password. A failed step raises `SetupError`, one line with git's last words.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable


class SetupError(RuntimeError):
    """A step of setting a run up failed (clone, virtualenv, requirements): one line, the run's note."""


def _note(message: str) -> None:
    print(f"trainfleet: {message}", file=sys.stderr, flush=True)


def run(command: list[str], *, cwd: Path | None = None, env: dict | None = None, what: str) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise SetupError(f"{what} failed (exit {done.returncode}): {' | '.join(tail)}")
    return done.stdout.strip()


def clone(repo: str, ref: str, into: Path, commit: str | None = None, log: Callable[[str], None] | None = None) -> str:
    """Fetch exactly `commit` (what `ref` resolved to at launch), else `ref`, shallow, and check it out;
    returns the commit SHA. A commit that cannot be fetched by its id is fetched through `ref`, and must
    be what `ref` names now: a run never trains other code than the one it is recorded for."""
    into.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    run(["git", "init", "-q", "."], cwd=into, env=env, what="git init")
    run(["git", "remote", "add", "origin", "--", repo], cwd=into, env=env, what="git remote add")
    fetched = False
    if commit is not None:
        try:
            run(["git", "fetch", "-q", "--depth", "1", "origin", "--", commit], cwd=into, env=env, what="git fetch")
            fetched = True
        except SetupError:  # a server that serves no commit by its id, only at a ref
            (log or _note)(f"{commit} cannot be fetched by its id; fetching {ref}")
    if not fetched:
        run(["git", "fetch", "-q", "--depth", "1", "origin", "--", ref], cwd=into, env=env, what=f"git fetch {ref}")
    run(["git", "checkout", "-q", "FETCH_HEAD"], cwd=into, env=env, what="git checkout")
    found = run(["git", "rev-parse", "HEAD"], cwd=into, env=env, what="git rev-parse")
    if commit is not None and found != commit:
        raise SetupError(f"{ref} is now {found}, not {commit} (the commit this run was launched for), which "
                         "cannot be fetched by its id")
    return found
