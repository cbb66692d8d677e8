"""What the agent knows of the machine it runs on: a hardware fingerprint and utilisation samples.

Standard library only: /proc for the CPU and memory, `nvidia-smi` (where present) for GPUs.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import threading
import time

from training_scripts.machine import cpu_model


def _nvidia_smi(query: str) -> list[list[str]]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    return [[part.strip() for part in line.split(",")] for line in out.stdout.splitlines() if line.strip()]


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def fingerprint() -> dict:
    gpus = [{"name": name, "memory_mib": memory, "driver": driver}
            for name, memory, driver in _nvidia_smi("name,memory.total,driver_version")]
    return {"cpu": cpu_model(), "cpus": os.cpu_count(), "memory_gib": _memory_gib(), "gpus": gpus,
            "kernel": platform.release(), "python": platform.python_version()}


def _cpu_times() -> tuple[int, int] | None:
    try:
        with open("/proc/stat") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields), idle


class UtilizationSampler(threading.Thread):
    """Every `interval` seconds: CPU busy fraction since the last sample, each GPU's utilisation (%)."""

    def __init__(self, interval: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.interval, self.samples = interval, []
        self._halt = threading.Event()
        self._t0 = time.monotonic()

    def run(self) -> None:
        last = _cpu_times()
        while not self._halt.wait(self.interval):
            now = _cpu_times()
            cpu = None
            if last and now and now[0] > last[0]:
                cpu = round(1 - (now[1] - last[1]) / (now[0] - last[0]), 4)
            last = now
            gpus = [float(row[0]) for row in _nvidia_smi("utilization.gpu") if row and row[0].replace(".", "").isdigit()]
            self.samples.append({"t": round(time.monotonic() - self._t0, 1), "cpu": cpu, "gpu": gpus})

    def stop(self) -> dict:
        self._halt.set()
        cpu = [s["cpu"] for s in self.samples if s["cpu"] is not None]
        gpu = [g for s in self.samples for g in s["gpu"]]
        return {"interval_s": self.interval, "samples": self.samples,
                "cpu_mean": sum(cpu) / len(cpu) if cpu else None, "cpu_max": max(cpu) if cpu else None,
                "gpu_mean_percent": sum(gpu) / len(gpu) if gpu else None, "gpu_max_percent": max(gpu) if gpu else None}
