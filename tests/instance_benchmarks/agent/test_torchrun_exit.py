"""A distributed workload runs under torchrun, which reports its own exit status, not its workers': stopped by
the agent (spot notice, deadline) it exits 1 although every worker checkpointed and exited 75, and a worker's
2 (bad input) becomes 1 too. The attempt must still be classified by what happened. A fake torchrun (the
launcher's behaviour, no torch) runs two worker processes in the agent's process group."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from instance_benchmarks.agent.main import ScriptRun, attempt_outcome, start_task, wait_task

FAKE_TORCHRUN = r'''
import os, signal, subprocess, sys, time
args = sys.argv[1:]
assert args[:3] == ["-m", "torch.distributed.run", "--standalone"], args
n, script, rest = int(args[3].split("=")[1]), args[4], args[5:]
workers = [subprocess.Popen([sys.executable, script, *rest],
                            env={**os.environ, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(n)})
           for r in range(n)]

def stopped(signum, frame):  # torchrun: SignalException -> close the workers, wait for them, exit 1
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
    for w in workers:
        w.wait()
    print(f"torch.distributed.elastic.multiprocessing.api.SignalException: Process {os.getpid()} got signal: 15",
          flush=True)
    sys.exit(1)

signal.signal(signal.SIGTERM, stopped)
while True:
    codes = [w.poll() for w in workers]
    failed = [(rank, code) for rank, code in enumerate(codes) if code not in (None, 0)]
    if failed:  # ChildFailedError: the first failure is the root cause, the others are listed before it
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        root, others = failed[0], failed[1:]
        lines = ["=" * 40, f"{script} FAILED", "-" * 40, "Failures:"]
        lines += [f"[{i + 1}]:\n  rank      : {r} (local_rank: {r})\n  exitcode  : {c} (pid: {workers[r].pid}) "
                  for i, (r, c) in enumerate(others)] or ["  <NO_OTHER_FAILURES>"]
        lines += ["-" * 40, "Root Cause (first observed failure):",
                  f"[0]:\n  rank      : {root[0]} (local_rank: {root[0]})\n  exitcode  : {root[1]} (pid: 1) ", "=" * 40]
        print("\n".join(lines), flush=True)
        sys.exit(1)
    if all(code == 0 for code in codes):
        sys.exit(0)
    time.sleep(0.02)
'''

# a worker of the shared loop, reduced to its contract: metric lines, on SIGTERM a checkpoint and exit 75
WORKER = r'''
import json, os, pathlib, signal, sys, time
rank, mode = int(os.environ["RANK"]), sys.argv[1]
out = pathlib.Path(sys.argv[2])

def preempted(signum, frame):
    (out / f"checkpoint-rank{rank}").write_text("saved")
    sys.exit(75)

signal.signal(signal.SIGTERM, preempted)
print(json.dumps({"step": 1, "loss": 1.0, "rank": rank}), flush=True)
if mode == "bad-input" and rank == 1:
    print("error: --batch_size=1 is smaller than the 2 DDP ranks", file=sys.stderr, flush=True)
    sys.exit(2)
if mode == "done":
    sys.exit(0)
time.sleep(60)
'''


@pytest.fixture
def torchrun(tmp_path):
    """(python, worker): `python` runs the fake torchrun for `python -m torch.distributed.run ...`."""
    (tmp_path / "fake_torchrun.py").write_text(FAKE_TORCHRUN)
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{tmp_path / "fake_torchrun.py"}" "$@"\n')
    python.chmod(0o755)
    (tmp_path / "worker.py").write_text(WORKER)
    return python, tmp_path / "worker.py"


def _start(tmp_path, torchrun, mode: str, benchmark: dict | None = None) -> ScriptRun:
    python, worker = torchrun
    task = {"script": str(worker), "args": [mode, str(tmp_path)], "distributed": True, "benchmark": benchmark}
    return start_task(task, python, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, log_path=tmp_path / "script.log",
                      processes=2)


def _both_ranks_running(run: ScriptRun) -> None:
    deadline = time.monotonic() + 30
    while len(run.records) < 2:
        assert time.monotonic() < deadline, "the fake torchrun's workers did not start"
        time.sleep(0.02)


def test_a_spot_stop_under_torchrun_is_an_interruption_though_torchrun_exits_1(tmp_path, torchrun):
    run = _start(tmp_path, torchrun, "train")
    _both_ranks_running(run)
    run.stop("spot interruption notice {'action': 'terminate'}")
    code, sliced = wait_task(run, {}, 30)
    assert code == 1 and not sliced  # torchrun's own status, not its workers' 75
    assert sorted(p.name for p in tmp_path.glob("checkpoint-rank*")) == ["checkpoint-rank0", "checkpoint-rank1"]
    assert run.script_exit_code(code) == 1  # no failure summary: the workers' status is not known
    # no notice object is passed: the agent's own stop reason alone classifies the attempt
    assert attempt_outcome(run.script_exit_code(code), stop_reason=run.stop_reason, sliced=sliced) == "interrupted"


def test_the_deadline_under_torchrun_is_a_timeout(tmp_path, torchrun):
    run = _start(tmp_path, torchrun, "train")
    _both_ranks_running(run)
    code, sliced = wait_task(run, {}, 1.0)  # the deadline passes: the agent stops torchrun and its workers
    assert code == 1 and run.stop_reason.startswith("deadline")
    assert attempt_outcome(run.script_exit_code(code), stop_reason=run.stop_reason, sliced=sliced) == "timeout"


def test_a_benchmark_slice_under_torchrun_completes(tmp_path, torchrun):
    run = _start(tmp_path, torchrun, "train", benchmark={"max_steps": 1})
    code, sliced = wait_task(run, {"benchmark": {"max_steps": 1}}, 30)
    assert code == 1 and sliced
    assert attempt_outcome(run.script_exit_code(code), stop_reason=run.stop_reason, sliced=sliced) == "completed"


def test_a_workers_bad_input_keeps_its_exit_2_through_torchrun(tmp_path, torchrun):
    """Not stopped by the agent: rank 1 exits 2 (bad input, never retried by the runner); torchrun exits 1
    and names rank 1's status in its failure summary, which the agent reads."""
    run = _start(tmp_path, torchrun, "bad-input")
    code, _ = wait_task(run, {}, 30)
    assert code == 1 and run.stop_reason is None
    assert run.script_exit_code(code) == 2
    assert attempt_outcome(2, stop_reason=None, sliced=False) == "failed"


def test_a_run_that_ends_well_under_torchrun_is_complete(tmp_path, torchrun):
    run = _start(tmp_path, torchrun, "done")
    code, sliced = wait_task(run, {}, 30)
    assert (code, run.script_exit_code(code)) == (0, 0)
    assert attempt_outcome(0, stop_reason=None, sliced=sliced) == "completed"


def test_torchruns_own_failure_summary_is_read_root_cause_first():
    """The summary as torch itself formats it (ChildFailedError.format_msg): rank 3 failed first with 75
    (it checkpointed on its own SIGTERM), rank 0 later with 2; the root cause's status stands for the script."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    failures = {0: ProcessFailure(local_rank=0, pid=101, exitcode=2, error_file="/nonexistent"),
                3: ProcessFailure(local_rank=3, pid=104, exitcode=75, error_file="/nonexistent")}
    failures[0].timestamp, failures[3].timestamp = 20, 10  # rank 3 first
    message = ChildFailedError("train.py", failures).format_msg()
    run = ScriptRun.__new__(ScriptRun)
    run.launcher, run.worker_exit_codes, run.root_cause_exit_code, run._root_next = True, [], None, False
    for line in message.splitlines():
        run._launcher_line(line)
    assert run.worker_exit_codes == [2, 75] and run.root_cause_exit_code == 75
    assert run.script_exit_code(1) == 75
    assert attempt_outcome(run.script_exit_code(1), stop_reason=None, sliced=False) == "interrupted"
    run.launcher = False  # a plain script's status is its own, whatever it prints
    assert run.script_exit_code(1) == 1


def test_a_plain_script_is_not_read_for_a_torchrun_summary(tmp_path):
    (tmp_path / "script.py").write_text("print('  exitcode  : 2 (pid: 7) ')\nraise SystemExit(1)\n")
    run = start_task({"script": "script.py", "args": [], "distributed": True}, Path(sys.executable), cwd=tmp_path,
                     env={"PATH": "/usr/bin:/bin"}, log_path=tmp_path / "script.log", processes=1)
    code, _ = wait_task(run, {}, 30)
    assert (code, run.script_exit_code(code), run.worker_exit_codes) == (1, 1, [])
