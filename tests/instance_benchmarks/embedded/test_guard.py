"""The guard: an "instance" (the user data and everything it starts) ends with the process that started it."""
import subprocess
import sys
import time

from instance_benchmarks.embedded.guard import descendants

PARENT = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-m", "instance_benchmarks.embedded.guard", "--parent", str(__import__("os").getpid()),
                  "--", "/bin/bash", "-c", "setsid sleep 300 & echo $! > {pidfile}; wait"])
time.sleep(300)
"""


def test_the_guard_ends_a_whole_instance_when_its_parent_is_killed(tmp_path):
    """A process started in its own session by the "instance" (as the agent starts the training script)
    still ends when the process that started the guard is SIGKILLed."""
    pidfile = tmp_path / "grandchild.pid"
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(pidfile=pidfile)])
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    guard = [pid for pid in descendants(parent.pid) if pid != grandchild]
    assert guard and grandchild in descendants(guard[0])  # re-parented to the guard (subreaper)?
    parent.kill()
    parent.wait()
    while any(_running(pid) for pid in [grandchild, *guard]):
        assert time.monotonic() < deadline, "the guard's tree outlived its parent"
        time.sleep(0.05)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
