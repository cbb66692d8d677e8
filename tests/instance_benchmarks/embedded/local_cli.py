"""Helpers for tests that run `trainfleet ... --local` as a user would: its own process, its own local state
folder (`TRAINFLEET_STATE`), a tiny two-run campaign whose second run can be held until a file goes."""
from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from tests.instance_benchmarks.conftest import make_git_repo, spec_dict

ROOT = Path(__file__).resolve().parents[3]
# lr 0.3 (the second run: the worker runs instances in run-id order) waits while the --hold file exists
TRAIN = """\
import argparse, json, os, time
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--hold", default="")
args = parser.parse_args()
print("training started", flush=True)
while args.lr > 0.2 and args.hold and os.path.exists(args.hold):
    time.sleep(0.1)
loss = 1.0
for step in range(1, 4):
    loss *= 1 - args.lr
    print(json.dumps({"step": step, "loss": loss}), flush=True)
with open(os.path.join(os.environ["TRAINFLEET_OUTPUT_DIR"], "model.pt"), "w") as out:
    out.write(str(loss))
"""
SERVER = re.compile(r"moto's server at http://127\.0\.0\.1:(\d+) \(pid (\d+)\)")
EXECUTING = re.compile(r"^\[(i-[0-9a-f]+)\] (\S+) on \S+: executing its user data in (\S+) \(local worker\)")
ENDED = re.compile(r"^\[(i-[0-9a-f]+)\] (\S+): instance ended \(user data exit (-?\d+)\)")


def write_campaign(tmp_path: Path, campaign: str, hold: Path | None = None) -> Path:
    repo = tmp_path / "repo"
    if not repo.exists():
        make_git_repo(repo, {"train.py": TRAIN})
    hyper = {"hold": str(hold)} if hold else {}
    data = spec_dict(campaign=campaign, workload=None, repo=str(repo), script="train.py", hyperparameters=hyper,
                     target={"metric": "loss", "value": 0.5}, max_attempts=2,
                     matrix={"instance_type": ["c5.large"], "lr": [0.1, 0.3]})
    path = tmp_path / f"{campaign}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Command:
    """`trainfleet ARGS` in its own process; stdout read line by line on a thread, so a test can wait for a
    line (an event), not for a time."""

    def __init__(self, state: Path | None, *args: str, cwd: Path = ROOT, env: dict | None = None) -> None:
        """`state`: the TRAINFLEET_STATE folder (None: unset, `env` says where); `env`: variables added."""
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TRAINFLEET_"))}, **(env or {})}
        if state is not None:
            env["TRAINFLEET_STATE"] = str(state)
        self.process = subprocess.Popen([sys.executable, "-c", "from instance_benchmarks.cli import main; main()", *args],
                                        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern, timeout: float = 300) -> re.Match:
        """The first line (from the start) matching `pattern`; fails if the command ends first."""
        for line in self.lines:
            if match := pattern.search(line):
                return match
        deadline = time.monotonic() + timeout
        while True:
            line = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"command ended before {pattern.pattern!r}:\n" + "\n".join(self.lines)
                                     + "\n" + self.process.stderr.read())
            self.lines.append(line)
            if match := pattern.search(line):
                return match

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=30)
        while (line := self._queue.get_nowait() if not self._queue.empty() else None) is not None:
            self.lines.append(line)
        return code, "\n".join(self.lines), self.process.stderr.read()


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    """True while any thread of `pid` runs (a process whose threads are all zombies has ended)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] != "Z":
                    return True
        except OSError:
            continue
    return False


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes whose command line or working directory contains `text`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or not alive(int(entry)):
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if text in cmdline or cwd.startswith(text):
            found.append(f"{entry}: {cmdline[:200]}")
    return found


def wait_until(condition, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def saved_json(state: Path, key: str) -> dict | None:
    """An object of the local state, read through its manifest (as the next --local command would)."""
    from instance_benchmarks.embedded.state import LocalState

    data = LocalState(state, writable=False).open()
    try:
        raw = data.read(key)
    finally:
        data.close()
    return None if raw is None else json.loads(raw)
