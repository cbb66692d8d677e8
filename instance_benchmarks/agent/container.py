"""The SageMaker entry point of a campaign that runs a repository's own script or commands.

The launcher stages the job's code channel as: `repo/` (the repository, cloned at the campaign's ref),
`_trainfleet/` (trainfleet's wheel, unpacked), `trainfleet_task.json` (the task, as the EC2 agent gets
it) and `trainfleet_entry.py` (which calls `main` below). SageMaker itself restores and syncs
/opt/ml/checkpoints (TRAINFLEET_CHECKPOINT_DIR here too) and uploads SM_MODEL_DIR as model.tar.gz; this
entry point sets up, runs the task with the same contract as on EC2, reads its metric lines, and leaves
`trainfleet/metrics.jsonl` and `trainfleet/task-result.json` beside the script's outputs for `collect`.
SageMaker passes hyperparameters as `--key value`; they are ignored here (the task carries them).

Setup is installed here, not by the SDK: `set_up` runs the campaign's `setup` commands or else pip-installs
the repository's requirements.txt (the task's workdir first, then the repository root), exactly as the EC2
agent does. The launcher therefore passes no SourceCode(requirements=...) for these jobs (see
backends/sagemaker/jobs.build_trainer): that would install a fixed file before this entry starts, could
not give way to `setup`, and would leave the install out of setup_seconds and this entry's logs.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from instance_benchmarks.agent.main import (
    SetupError, attempt_outcome, log, set_up, silence_note, silent, start_task, wait_task,
)
from instance_benchmarks.core import contract
from instance_benchmarks.core.contract import NO_METRICS, TASK_FILE

RESULT_DIR = "trainfleet"  # inside the model directory: read by collect, not one of the run's artifacts


def main(code_dir: Path) -> int:
    task = json.loads((code_dir / TASK_FILE).read_text())
    output = Path(os.environ.get(contract.SAGEMAKER_MODEL_DIR_VAR, "/opt/ml/model"))
    # CheckpointConfig.LocalPath is /opt/ml/checkpoints, beside SM_MODEL_DIR (/opt/ml/model); the job's
    # environment names it too, where the service keeps it (moto drops a job's Environment)
    checkpoints = Path(os.environ.get(contract.CHECKPOINT_DIR_VAR) or output.parent / "checkpoints")
    results = output / RESULT_DIR
    for folder in (output, checkpoints, results):
        folder.mkdir(parents=True, exist_ok=True)
    src = code_dir / "repo"
    cwd = (src / (task.get("workdir") or ".")).resolve()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(contract.task_environment(task))
    env.update({contract.OUTPUT_DIR_VAR: str(output), contract.CHECKPOINT_DIR_VAR: str(checkpoints),
                contract.RUN_ID_VAR: task["run_id"], contract.INSTANCE_TYPE_VAR: task["instance_type"],
                "PYTHONPATH": str(src), "PYTHONUNBUFFERED": "1"})
    started = time.monotonic()
    try:
        set_up(task, Path(sys.executable), src, cwd, env, results / "setup.log")
    except SetupError as error:
        log(f"setup failed: {error}")
        return 1
    setup_seconds = time.monotonic() - started
    run = start_task(task, Path(sys.executable), cwd=cwd, env=env, log_path=results / "script.log")
    # SageMaker stops a job (spot reclaim, StopTrainingJob, max runtime) with SIGTERM: pass it on.
    signal.signal(signal.SIGTERM, lambda *_: run.stop("SIGTERM from SageMaker"))
    exit_code, sliced = wait_task(run, task, float(task["max_runtime_minutes"]) * 60 - 60)
    # no metric line where one was expected: the job still completes (its logs reach collect), as `no metrics`
    no_metrics = attempt_outcome(exit_code, stop_reason=run.stop_reason, sliced=sliced,
                                 silent=silent(task, run)) == NO_METRICS
    note = silence_note(task, run) if no_metrics else None
    records = [{**r, "attempt": 1, "train_t": r["t"]} for r in run.records]
    (results / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (results / "task-result.json").write_text(json.dumps({
        "exit_code": exit_code, "benchmark_slice": sliced, "stop_reason": run.stop_reason,
        "setup_seconds": setup_seconds, "script_seconds": run.seconds, "no_metrics": note}))
    log(f"script exited {exit_code} after {run.seconds:.1f}s{' (benchmark slice)' if sliced else ''}")
    if note:
        log(note)
    return 0 if exit_code == 0 or sliced or no_metrics else exit_code
