"""How busy this machine is, and how much of that is this process's children (stdlib only, Linux's /proc).

`HostLoadMeter` brackets a run on the launcher's own machine (the embedded default's stand-in instances,
`campaigns/bench_slice.py`) and splits the machine's busy CPU time (/proc/stat) into the run's own (every
process under it, counted as each is reaped: RUSAGE_CHILDREN of this process), trainfleet's own (this process
and `own_pids`) and the rest, which other processes used. `embedded/hostload.py` records it on the attempt.
"""
from __future__ import annotations

import os
import resource
import time

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def busy_cpu_seconds(stat: str = "/proc/stat") -> float | None:
    """CPU seconds the whole machine spent busy since boot: all but idle and iowait (guest time is already
    part of user time, so it is not added twice)."""
    try:
        with open(stat) as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 4:
        return None
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return (total - fields[3] - (fields[4] if len(fields) > 4 else 0)) / TICKS


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one live process (0 when it is gone or unreadable)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime: fields 14 and 15 of stat(5)
    except (OSError, ValueError, IndexError):
        return 0.0


def _children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _own_seconds(pids: tuple[int, ...]) -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime + sum(process_cpu_seconds(pid) for pid in pids)


class HostLoadMeter:
    """`start()` before an instance runs, `stop()` once its guard has been reaped: the load while it ran.
    `own_pids`: trainfleet's other processes (moto's server), whose CPU time is ours, not a competitor's."""

    def __init__(self, own_pids: tuple[int, ...] = ()) -> None:
        self.own_pids = own_pids
        self._start: tuple | None = None

    def start(self) -> "HostLoadMeter":
        busy = busy_cpu_seconds()
        self._start = None if busy is None else (time.monotonic(), busy, _children_seconds(), _own_seconds(self.own_pids))
        return self

    def stop(self) -> dict | None:
        """{cpus, seconds, busy_cpus, run_cpus, other_cpus, load_avg_1m}: CPUs used on average (busy = the
        run's + trainfleet's + other processes'); None where /proc/stat cannot be read or no time passed."""
        busy = busy_cpu_seconds()
        if self._start is None or busy is None:
            return None
        started, busy0, children0, own0 = self._start
        seconds = time.monotonic() - started
        if seconds <= 0:
            return None
        busy -= busy0
        run = _children_seconds() - children0
        own = _own_seconds(self.own_pids) - own0
        return {"cpus": os.cpu_count(), "seconds": round(seconds, 3), "busy_cpus": round(busy / seconds, 3),
                "run_cpus": round(run / seconds, 3), "other_cpus": round(max(busy - run - own, 0.0) / seconds, 3),
                "load_avg_1m": round(os.getloadavg()[0], 2)}
