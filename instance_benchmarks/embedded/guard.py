"""Nothing the embedded default starts outlives the command that started it.

moto's server and the local worker's "instances" are child processes of `trainfleet`; if `trainfleet` is
killed (SIGKILL, a closed terminal, an OOM kill) they must end too, as they would if the cloud account went
away. Two mechanisms, either of which suffices:

* Linux's parent-death signal (`prctl(PR_SET_PDEATHSIG)`, set by the child on itself through ctypes): the
  kernel signals the child the moment the thread that started it exits;
* a watchdog thread in the child that polls its parent pid (`os.getppid()` changes once the parent has
  gone and the child was re-parented), for other systems and as a backstop.

`python -m instance_benchmarks.embedded.guard --parent PID -- COMMAND...` runs COMMAND as an "instance":
the guard is a child subreaper (Linux), so every process COMMAND starts, even one in its own session
(the agent runs the training script in its own), stays its descendant; when COMMAND ends, when the guard
gets SIGTERM/SIGINT/SIGHUP (the worker's watchdog or teardown) or when the parent dies, the guard ends the
whole tree: SIGTERM, then SIGKILL after a grace period, as a shutting-down machine would.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE_SECONDS = 5.0


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def arm(parent_pid: int, on_parent_death, *, death_signal: int = signal.SIGKILL, interval: float = 0.5) -> None:
    """Call in the child: the kernel sends `death_signal` when the parent dies (Linux), and a daemon thread
    calls `on_parent_death()` once the parent pid is gone (every system). Calls it at once if the parent
    died before this was armed."""
    _prctl(PR_SET_PDEATHSIG, int(death_signal))
    if os.getppid() != parent_pid:  # the parent died between fork and prctl
        on_parent_death()
        return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        on_parent_death()

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (Linux /proc; elsewhere an empty list)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()  # after "pid (comm) ": state ppid ...
        if fields and fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def end_tree(process: subprocess.Popen, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM to the command's process group and to every descendant of this process, SIGKILL to what is
    left after `grace` seconds; reaps what it can (as a subreaper, orphans are this process's children)."""
    me = os.getpid()
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        _signal_all(descendants(me), sig)
        deadline = time.monotonic() + wait
        while True:
            _reap()
            if not descendants(me) and process.poll() is not None:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
    process.poll()


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m instance_benchmarks.embedded.guard")
    parser.add_argument("--parent", type=int, required=True, help="end everything when this pid is gone")
    parser.add_argument("--grace", type=float, default=GRACE_SECONDS)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    stop = threading.Event()
    reason: list[int] = []

    def request(sig: int = signal.SIGTERM, *_) -> None:
        reason.append(sig)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, request)
    arm(args.parent, lambda: request(signal.SIGHUP), death_signal=signal.SIGTERM)
    process = subprocess.Popen(command, start_new_session=True)
    while not stop.is_set() and process.poll() is None:
        stop.wait(0.2)
    end_tree(process, args.grace)  # a machine that shuts down ends everything on it
    if reason:
        return 128 + reason[0]
    return process.returncode if process.returncode is not None else 1


if __name__ == "__main__":
    sys.exit(main())
