"""The agent that runs on a training instance, installed from trainfleet's own wheel (stdlib, boto3 and google-re2 only).

    python -m instance_benchmarks.agent run --root /opt/trainfleet --config <agent configuration JSON>
    python -m instance_benchmarks.agent upload-log --root /opt/trainfleet --config <...>

One attempt of one run, end to end:
1. clone the campaign's repository at its ref into ROOT/src (the commit checked out is recorded);
2. set up: a virtual environment that sees the image's packages (torch), then the campaign's `setup`
   commands, or else the repo's requirements.txt; its time is recorded and billed as setup;
3. restore ROOT/checkpoints from the run's `checkpoints/` prefix;
4. in `workdir`, run the script with its hyperparameters as `--key=value` (or the `run` commands under
   bash), each hyperparameter also an environment variable of its name, with TRAINFLEET_OUTPUT_DIR (alias
   SM_MODEL_DIR), TRAINFLEET_CHECKPOINT_DIR, TRAINFLEET_RUN_ID and TRAINFLEET_INSTANCE_TYPE; read every output line for
   metrics (JSON objects, and `metric_definitions` regexes); push the checkpoint folder to S3 every
   `checkpoint_sync_seconds`; on a spot notice or at the deadline send SIGTERM, wait a grace period, then
   SIGKILL (also at the end of a `benchmark` slice); push the checkpoints once more after the script exits;
   a script expected to print metrics (see CampaignSpec.expects_metrics) that printed none by the task's
   `metrics_grace_seconds` (or by its end, or the end of its slice) ends as `no metrics`, never retried,
   with a note naming the regexes and a line they did not match;
5. upload the output folder (each file with its SHA-256), the metric records and the logs; settle the
   attempt in launch.json (outcome, exit status, seconds, cost at the recorded price) and, for a
   script that exited 0, write result.json last.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import signal
import site
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from instance_benchmarks.agent.host import UtilizationSampler, fingerprint
from instance_benchmarks.agent.imds import InterruptionWatcher, imds_endpoint, instance_identity
from instance_benchmarks.agent.progress import PROGRESS_SECONDS, ProgressPush
from instance_benchmarks.agent.sync import Mirror, PeriodicPush, restore, upload
from instance_benchmarks.core import contract
from instance_benchmarks.core.billing import billed_seconds, cost_usd
from instance_benchmarks.core.contract import NO_METRICS
from instance_benchmarks.core.git import SetupError, clone, run as _run
from instance_benchmarks.measure.harness import summarize
from instance_benchmarks.measure.metrics import MetricParser, parse_definitions
from instance_benchmarks.measure.record import HOST_FILE, build_result, catalog_peak, host_facts, read_host_file
from instance_benchmarks.measure.slices import estimate_slice
from training_scripts.storage import S3Location

STOP_GRACE_SECONDS = 60.0      # SIGTERM -> SIGKILL (a spot notice comes 2 minutes ahead: time left to settle)
CHECKPOINT_SYNC_SECONDS = 60.0
UPLOAD_RESERVE_SECONDS = 120.0  # the agent stops the script this long before the watchdog fires
WATCHDOG_FILE = "watchdog-armed-at"  # written by the user data (core/bootstrap.py) when it arms the watchdog
# torchrun's failure summary (torch.distributed.elastic ChildFailedError) names each failed worker's own exit
# status ("  exitcode  : 2 (pid: 4242) "), the first observed after "Root Cause (first observed failure):".
TORCHRUN_EXITCODE = re.compile(r"^\s*exitcode\s*:\s*(-?\d+) \(pid: \d+\)")
TORCHRUN_ROOT_CAUSE = "Root Cause (first observed failure):"
UNMATCHED_LINES = 50       # the script's last lines that carried no metric, kept for the note
MAX_LINE_BYTES = 1 << 20   # a longer output line is read (logged, parsed) in pieces of this size
KEPT_LINE_CHARS = 1000     # what the note may quote of a line
_LINE_END = re.compile(rb"[\r\n]")


def log(message: str) -> None:
    print(f"trainfleet agent: {message}", flush=True)


def now() -> datetime:
    return datetime.now(timezone.utc)


def make_environment(root: Path) -> Path:
    """A venv that also sees this interpreter's packages (the image's torch; `--system-site-packages`
    would see only the base interpreter's, and the image's PyTorch is itself a venv). Returns its python."""
    env_dir = root / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], what="creating the run's virtualenv")
    python = env_dir / "bin" / "python"
    target = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], what="venv"))
    inherited = [p for p in site.getsitepackages() if Path(p).is_dir() and not str(p).startswith(str(root))]
    (target / "_trainfleet_image.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in inherited))
    for name in ("pip", "pip3"):  # the image's pip, installing into this environment
        shim = env_dir / "bin" / name
        shim.write_text(f'#!/bin/sh\nexec "{python}" -m pip "$@"\n')
        shim.chmod(0o755)
    return python


def set_up(task: dict, python: Path, src: Path, cwd: Path, env: dict, log_path: Path) -> None:
    """The campaign's `setup` commands (bash, in the workdir), or else the requirements file the task
    names (a bundled workload's), or else the repo's requirements.txt (workdir first, then the root)."""
    if task.get("setup"):
        log("running the campaign's setup commands")
        with log_path.open("w") as out:
            done = subprocess.run(["bash", "-c", task["setup"]], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        print(log_path.read_text(errors="replace"), end="", flush=True)
        if done.returncode != 0:
            raise SetupError(f"setup commands failed (exit {done.returncode}); see setup.log")
        return
    if task.get("requirements"):
        requirements = src / task["requirements"]
        if not requirements.is_file():
            raise SetupError(f"{task['requirements']} is not in the repository at this ref")
    else:
        requirements = next((d / "requirements.txt" for d in (cwd, src) if (d / "requirements.txt").is_file()), None)
    if requirements is not None:
        log(f"installing {requirements.relative_to(src)}")
        _run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)], cwd=requirements.parent,
             env=env, what=f"pip install -r {requirements.relative_to(src)}")


_CUDA_CHECK = ("import sys, torch; n = torch.cuda.device_count() if torch.cuda.is_available() else 0; "
               "print(n, torch.__version__, torch.version.cuda); sys.exit(0 if n else 3)")


def agent_host(config: dict, root: Path, endpoint: str | None = None) -> dict:
    """Where this attempt executes: the facts the environment supplied beside the task (ROOT/HOST_FILE: a
    stand-in host, its label, peak and boot time), else this instance as its metadata service describes it
    (`endpoint`: its type, and its launch time `pendingTime`, from which EC2 bills), else the type the
    configuration names, launched when the launcher recorded (its peak is the catalog's, chosen by precision in
    write_result)."""
    supplied = read_host_file(root / HOST_FILE)
    if supplied is not None:
        return {"stand_in": True, "launched_at": config["launched_at"], **supplied}
    identity = instance_identity(endpoint) or {}
    launched_at = config["launched_at"]
    try:
        pending = datetime.fromisoformat(identity["pendingTime"].replace("Z", "+00:00"))
        if pending.tzinfo is not None:
            launched_at = pending.isoformat()
    except (KeyError, ValueError):
        pass  # no metadata service (or a malformed time): the launcher's record stands
    return {**host_facts(f"ec2 {identity.get('instanceType') or config['instance_type']}"), "launched_at": launched_at}


def check_cuda(config: dict, python: Path, cwd: Path, env: dict, host: dict | None = None) -> str:
    """On a GPU instance type, the run's python must see its GPUs: otherwise the run would train on the
    CPU at GPU prices (e.g. a driver that does not support the GPU). Fails the attempt loudly."""
    if not config.get("gpu_count"):
        return "not a GPU type"
    if host and host.get("stand_in"):  # a stand-in host has none of the type's GPUs (the environment says so)
        log(f"CUDA check skipped: runs execute on the stand-in host {host['label']}")
        return "skipped on a stand-in host"
    done = subprocess.run([str(python), "-c", _CUDA_CHECK], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        detail = done.stdout.strip() or (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SetupError(f"{config['instance_type']} has {config['gpu_count']} GPU(s) but the run's python sees no "
                         f"CUDA device ({detail}); not training on the CPU at GPU prices")
    log(f"CUDA check: {done.stdout.strip()} (devices, torch, CUDA)")
    return done.stdout.strip()


def output_lines(stream, limit: int = MAX_LINE_BYTES):
    """(text, terminator) for each piece of a script's output as soon as it arrives: a line ends at "\n"
    or at "\r" (a progress bar redrawing itself, which may never print "\n"), and a line longer than
    `limit` bytes comes in pieces of `limit`; memory stays bounded whatever the script prints."""
    pending = bytearray()
    while chunk := stream.read1(65536):
        searched = len(pending)
        pending += chunk
        while True:
            end = _LINE_END.search(pending, searched, limit + 1)
            if end is not None:
                cut, terminator = end.start(), pending[end.start():end.start() + 1]
            elif len(pending) >= limit:
                cut, terminator = limit, b""
            else:
                break
            yield bytes(pending[:cut]).decode("utf-8", errors="replace"), terminator.decode()
            del pending[:cut + len(terminator)]
            searched = 0
    if pending:
        yield bytes(pending).decode("utf-8", errors="replace"), ""


def watchdog_armed_at(root: Path) -> datetime | None:
    """When the user data armed the watchdog (`shutdown -h +N`), by this machine's own clock."""
    try:
        return datetime.fromtimestamp(int((root / WATCHDOG_FILE).read_text().strip()), timezone.utc)
    except (OSError, ValueError):
        return None


class ScriptRun:
    """The training script as a process group, its output read line by line for metrics. Under torchrun
    (`launcher`), the failed workers' own exit statuses are read from torchrun's failure summary."""

    def __init__(self, command: list[str], *, cwd: Path, env: dict, parser: MetricParser, log_path: Path,
                 grace: float, on_record=None, launcher: bool = False) -> None:
        self.parser, self.grace, self.records, self.on_record = parser, grace, [], on_record
        self.launcher = launcher
        self.worker_exit_codes: list[int] = []   # every failed worker torchrun reported, in its order
        self.root_cause_exit_code: int | None = None
        self._root_next = False
        self.started = time.monotonic()
        self.stop_reason: str | None = None
        self._kill_timer: threading.Timer | None = None
        self._silence_timer: threading.Timer | None = None
        self.unmatched: collections.deque[str] = collections.deque(maxlen=UNMATCHED_LINES)
        self.measured = False  # a record with a number came (an event tag alone is no metric)
        self._log = log_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line, terminator in output_lines(self.process.stdout):
            self._log.write(line + terminator)
            self._log.flush()
            print(line, end=terminator, flush=True)
            if self.launcher:
                self._launcher_line(line)
            record = self.parser.parse(line, time.monotonic() - self.started)
            if record is None and line.strip():
                self.unmatched.append(line.strip()[:KEPT_LINE_CHARS])
            if record is not None:
                self.measured = self.measured or any(k != "t" and not isinstance(v, str) for k, v in record.items())
                self.records.append(record)
                if self.on_record:
                    self.on_record(self, record)

    def _launcher_line(self, line: str) -> None:
        if TORCHRUN_ROOT_CAUSE in line:
            self._root_next = True
        elif found := TORCHRUN_EXITCODE.match(line):
            self.worker_exit_codes.append(int(found.group(1)))
            if self._root_next:
                self.root_cause_exit_code, self._root_next = int(found.group(1)), False

    def script_exit_code(self, code: int) -> int:
        """The training script's own exit status. A plain script's is `code`. torchrun reports its own: 1
        when a worker failed (its summary names the worker's status: the root cause's is the script's, so
        that 2 = bad input and 75 = checkpointed still mean what they say) and 1 when the agent's SIGTERM
        stopped torchrun itself (no summary: the workers' 75 is lost, and `outcome` relies on the stop the
        agent asked for instead)."""
        if not self.launcher or code == 0:
            return code
        if self.root_cause_exit_code is not None:
            return self.root_cause_exit_code
        return self.worker_exit_codes[0] if self.worker_exit_codes else code

    def watch_silence(self, seconds: float) -> None:
        """Stop the script as `no metrics` if it has printed no metric record `seconds` after it started."""
        def check() -> None:
            if not self.measured:
                self.stop(f"{NO_METRICS} in {seconds:.0f}s")

        self._silence_timer = threading.Timer(seconds, check)
        self._silence_timer.daemon = True
        self._silence_timer.start()

    def stop(self, reason: str) -> None:
        """SIGTERM to the script's process group, then SIGKILL after the grace period."""
        if self.stop_reason is None:
            self.stop_reason = reason
            log(f"{reason}: sending SIGTERM (SIGKILL in {self.grace:.0f}s)")
            self._signal(signal.SIGTERM)
            self._kill_timer = threading.Timer(self.grace, self._signal, args=(signal.SIGKILL,))
            self._kill_timer.daemon = True
            self._kill_timer.start()

    def _signal(self, sig) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, deadline_s: float, reason: str) -> int:
        try:
            code = self.process.wait(timeout=max(1.0, deadline_s))
        except subprocess.TimeoutExpired:
            self.stop(reason)
            code = self.process.wait()
        for timer in (self._kill_timer, self._silence_timer):
            if timer:
                timer.cancel()
        self._signal(signal.SIGKILL)  # nothing of the script outlives it
        self._reader.join(timeout=30)
        self._log.close()
        return code

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


def start_task(task: dict, python: Path, *, cwd: Path, env: dict, log_path: Path, processes: int = 1) -> ScriptRun:
    """Start the task's script (or `run` commands), its output read for metrics; with `benchmark:
    {max_steps}` the script is stopped once its `step` metric reaches that many. A script that supports
    DistributedDataParallel (`distributed` in the task) runs under torchrun, one process per GPU."""
    command = ["bash", "-c", task["run"]] if task.get("run") else contract.script_command(
        str(python), task["script"], task["args"], processes if task.get("distributed") else 1)
    log(f"running {task['run'].strip() if task.get('run') else ' '.join(command[1:])}")
    max_steps = (task.get("benchmark") or {}).get("max_steps")
    launcher = not task.get("run") and bool(task.get("distributed")) and processes > 1

    def slice_done(script: ScriptRun, record: dict) -> None:
        if isinstance(record.get("step"), (int, float)) and record["step"] >= max_steps:
            script.stop(f"benchmark slice complete ({max_steps} steps)")

    run = ScriptRun(command, cwd=cwd, env=env, parser=MetricParser(parse_definitions(task.get("metric_definitions") or [])),
                    log_path=log_path, grace=float(os.environ.get("TRAINFLEET_STOP_GRACE_SECONDS", STOP_GRACE_SECONDS)),
                    on_record=slice_done if max_steps else None, launcher=launcher)
    if task.get("metrics_grace_seconds"):
        run.watch_silence(float(task["metrics_grace_seconds"]))
    return run


def silent(task: dict, run: ScriptRun) -> bool:
    """The task expected metric lines (it has a grace period for them) and the script printed none."""
    return bool(task.get("metrics_grace_seconds")) and not run.measured


def silence_note(task: dict, run: ScriptRun) -> str:
    """One line: which regexes matched nothing, and a line of the script's they did not match (the last one
    that names a metric, else its last line)."""
    definitions = task.get("metric_definitions") or []
    if definitions:
        wanted = "; ".join(f"{d['name']}: regex {d['regex']!r}" for d in definitions)
        what = f"no output line matched metric_definitions ({wanted}) and none was a JSON metric line"
    else:
        what = "no output line was a JSON metric line (add metric_definitions for plain-text output)"
    names = [d["name"].lower() for d in definitions]
    lines = list(run.unmatched)
    line = next((x for x in reversed(lines) if any(n in x.lower() for n in names)), lines[-1] if lines else None)
    shown = f"e.g. {line[:200]!r} did not match" if line is not None else "the script printed nothing"
    return f"{NO_METRICS}: {what} in {run.seconds:.0f}s; {shown}; not retried"


def wait_task(run: ScriptRun, task: dict, deadline_s: float) -> tuple[int, bool]:
    """Wait for the script until the deadline or, with `benchmark: {max_minutes}`, the end of the slice.
    Returns (exit status, whether it was stopped as a completed benchmark slice)."""
    minutes = (task.get("benchmark") or {}).get("max_minutes")
    if minutes and minutes * 60 < deadline_s:
        code = run.wait(minutes * 60, f"benchmark slice complete ({minutes} min)")
    else:
        code = run.wait(deadline_s, "deadline reached (max_runtime_minutes)")
    return code, bool(run.stop_reason and run.stop_reason.startswith("benchmark slice"))


def attempt_outcome(exit_code: int, *, stop_reason: str | None, sliced: bool, notice=None, silent: bool = False) -> str:
    """How an attempt ended, from the script's exit status and what the agent itself did: a stop it asked
    for (deadline, spot notice, the end of a benchmark slice) classifies the attempt whatever the status the
    process reports - torchrun, stopped with its workers, exits 1 even though each worker checkpointed and
    exited 75 (EXIT_PREEMPTED). A `silent` script (no metric line where one was expected) that was stopped
    for it, or that would otherwise have completed or timed out, ends as `no metrics`."""
    if stop_reason and stop_reason.startswith(NO_METRICS):
        return NO_METRICS
    if stop_reason and stop_reason.startswith("deadline"):
        return NO_METRICS if silent else "timeout"
    if exit_code == 0 or sliced:
        return NO_METRICS if silent else "completed"
    if exit_code == contract.EXIT_PREEMPTED or notice or (stop_reason and stop_reason.startswith("spot")):
        return "interrupted"
    return "failed"


def update_attempt(location: S3Location, attempt: int, **fields) -> dict:
    record = json.loads(location.read_bytes("launch.json") or b'{"attempts": []}')
    for entry in record["attempts"]:
        if entry["attempt"] == attempt:
            entry.update(fields)
    location.write_bytes("launch.json", json.dumps(record, indent=2, sort_keys=True).encode())
    return record


def _previous_metrics(location: S3Location) -> list[dict]:
    data = location.read_bytes("metrics.jsonl") or b""
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def run_agent(config: dict, root: Path, s3) -> int:
    task, attempt = config["task"], config["attempt"]
    host_error = None
    try:
        host = agent_host(config, root, imds_endpoint())
    except ValueError as error:  # facts the environment supplied but that cannot be read: the attempt fails
        host, host_error = {**host_facts(f"ec2 {config['instance_type']}"), "launched_at": config["launched_at"]}, error
    # billed from the launch the launcher recorded, or from when a stand-in host says this one booted
    launched_at = datetime.fromisoformat(host["launched_at"])
    boot_seconds = (now() - launched_at).total_seconds()
    location = S3Location(config["bucket"], contract.run_prefix(config["campaign"], config["run_id"]), s3)
    logs = location.child(f"logs/attempt-{attempt}")
    src, output, checkpoints = root / "src", root / "output", root / "checkpoints"
    for folder in (output, checkpoints):
        folder.mkdir(parents=True, exist_ok=True)
    log(f"{config['run_id']} attempt {attempt} on {config['instance_type']} ({config['market']})")
    setup_started = time.monotonic()
    commit = None
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(contract.task_environment(task))  # each hyperparameter, by its (allowed) name
    env.update({
        contract.OUTPUT_DIR_VAR: str(output), contract.SAGEMAKER_MODEL_DIR_VAR: str(output),
        contract.CHECKPOINT_DIR_VAR: str(checkpoints), contract.RUN_ID_VAR: config["run_id"],
        contract.INSTANCE_TYPE_VAR: config["instance_type"], "PYTHONPATH": str(src), "PYTHONUNBUFFERED": "1",
    })
    try:
        if host_error is not None:
            raise SetupError(f"cannot read the host facts: {host_error}")
        commit = clone(task["repo"], task["ref"], src, task.get("commit"), log=log)
        log(f"cloned {task['repo']} at {task['ref']} = {commit}")
        cwd = (src / (task.get("workdir") or ".")).resolve()
        if not cwd.is_dir() or (cwd != src.resolve() and src.resolve() not in cwd.parents):
            raise SetupError(f"workdir {task.get('workdir')!r} is not a directory of the repository")
        python = make_environment(root)
        env.update(PATH=f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(python.parent.parent))
        if config.get("pip_extra_index_url"):  # e.g. PyTorch's CPU wheels on the CPU image
            env["PIP_EXTRA_INDEX_URL"] = config["pip_extra_index_url"]
        set_up(task, python, src, cwd, env, root / "setup.log")
        check_cuda(config, python, cwd, env, host)
        mirror = Mirror(checkpoints, location.child("checkpoints"))
        restored = restore(location.child("checkpoints"), checkpoints)
        mirror.mark_restored()
        if restored:
            log(f"restored {len(restored)} checkpoint file(s) into {contract.CHECKPOINT_DIR_VAR}")
    except (SetupError, OSError, ValueError) as error:
        log(f"setup failed: {error}")
        return settle(config, location, launched_at, outcome="failed", exit_code=None, note=str(error),
                      commit=commit, setup_seconds=time.monotonic() - setup_started, host=host["label"])
    setup_seconds = time.monotonic() - setup_started

    sampler = UtilizationSampler()
    sampler.start()
    # one process per GPU on multi-GPU types, and the catalog's peaks for MFU; not on a stand-in host,
    # which has neither this type's GPUs nor its peak
    stand_in = bool(host["stand_in"])
    if not stand_in and config.get("peak_tflops"):
        env[contract.PEAK_TFLOPS_VAR] = contract.peak_tflops_env(config["peak_tflops"], config.get("gpu_count") or 0)
    run = start_task(task, python, cwd=cwd, env=env, log_path=root / "script.log",
                     processes=1 if stand_in else max(1, config.get("gpu_count") or 0))
    pusher = PeriodicPush(mirror, float(os.environ.get("TRAINFLEET_CHECKPOINT_SYNC_SECONDS", CHECKPOINT_SYNC_SECONDS)))
    pusher.start()
    progress = ProgressPush(logs, run.records, root / "bootstrap.log",  # what `campaign run`/`logs` show live
                            float(os.environ.get("TRAINFLEET_PROGRESS_SECONDS", PROGRESS_SECONDS)))
    progress.start()
    watcher = None
    if endpoint := imds_endpoint():
        interval = float(os.environ.get("TRAINFLEET_SPOT_POLL_SECONDS", 5.0))
        watcher = InterruptionWatcher(endpoint, lambda notice: run.stop(f"spot interruption notice {notice}"), interval)
        watcher.start()
    max_seconds = config["max_runtime_minutes"] * 60
    reserve = min(UPLOAD_RESERVE_SECONDS, 0.2 * max_seconds)
    # the watchdog counts from when the user data armed it (this clock), the bound from the launch (the
    # launcher's clock): stop `reserve` before the earlier, so the attempt is always settled and priced
    started = min(launched_at, watchdog_armed_at(root) or launched_at)
    launcher_code, sliced = wait_task(run, task, (started - now()).total_seconds() + max_seconds - reserve)
    exit_code = run.script_exit_code(launcher_code)
    script_seconds = run.seconds
    if watcher:
        watcher.stop()
    pusher.stop()
    progress.stop()
    utilization = sampler.stop()
    mirror.push()  # the checkpoint the script wrote on SIGTERM, or its last one

    outcome = attempt_outcome(exit_code, stop_reason=run.stop_reason, sliced=sliced,
                              notice=watcher.notice if watcher else None, silent=silent(task, run))
    note = {"note": silence_note(task, run)} if outcome == NO_METRICS else {}
    if note:
        log(note["note"])
    launcher = {"launcher_exit_code": launcher_code} if launcher_code != exit_code else {}
    log(f"script exited {exit_code}{f' (torchrun {launcher_code})' if launcher else ''} after "
        f"{script_seconds:.1f}s: {outcome}{' (benchmark slice)' if sliced else ''}")
    # settle first: after a spot notice the instance may be gone before the uploads end
    code = settle(config, location, launched_at, outcome=outcome, exit_code=exit_code, commit=commit,
                  setup_seconds=setup_seconds, script_seconds=script_seconds, boot_seconds=boot_seconds,
                  benchmark_slice=sliced, interruption_notice=watcher.notice if watcher else None,
                  stop_reason=run.stop_reason, host=host["label"], **launcher, **note)
    previous = _previous_metrics(location)
    offset = max((r.get("train_t", 0.0) for r in previous), default=0.0)
    records = [{**r, "attempt": attempt, "train_t": round(offset + r["t"], 6)} for r in run.records]
    location.write_bytes("metrics.jsonl", "".join(json.dumps(r) + "\n" for r in previous + records).encode())
    logs.write_bytes("script.log", (root / "script.log").read_bytes())
    if outcome != "completed":
        return code
    artifacts = upload(output, location.child("train"))
    write_result(config, location, commit=commit, artifacts=artifacts, history=previous + records,
                 setup_seconds=setup_seconds, boot_seconds=boot_seconds, script_seconds=script_seconds,
                 utilization=utilization, output=output, sliced=sliced, host=host)
    return 0


def settle(config: dict, location: S3Location, launched_at: datetime, *, outcome: str, exit_code, **fields) -> int:
    """Record the attempt's end and cost (billed from launch, at the recorded price) in launch.json."""
    ended = now()
    seconds = (ended - launched_at).total_seconds()
    update_attempt(location, config["attempt"], outcome=outcome, exit_code=exit_code,
                   ended_at=ended.isoformat(timespec="seconds"), run_seconds=round(seconds, 3),
                   billed_seconds=billed_seconds(seconds), cost_usd=cost_usd(seconds, config["price"]["usd_per_hour"]),
                   **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in fields.items()})
    return 0 if outcome == "completed" else contract.EXIT_PREEMPTED if outcome == "interrupted" else 1


def write_result(config: dict, location: S3Location, *, commit: str, artifacts: dict, history: list[dict],
                 setup_seconds: float, boot_seconds: float, script_seconds: float, utilization: dict,
                 output: Path, sliced: bool = False, host: dict | None = None) -> dict:
    """result.json (measure.record.build_result), written last."""
    attempts = json.loads(location.read_bytes("launch.json"))["attempts"]
    script_result = None
    if (output / "result.json").is_file():  # the bundled workloads describe themselves (metric, FLOPs, precision)
        try:
            script_result = json.loads((output / "result.json").read_text())
        except ValueError:
            script_result = None
    script_result = script_result if isinstance(script_result, dict) else {}
    precision = script_result.get("precision", "fp32")
    host = host or host_facts(f"ec2 {config['instance_type']}")
    if host.get("stand_in") and host.get("peak_tflops"):
        peak, peak_source = float(host["peak_tflops"]), host.get("peak_source") or "stand-in host"
    else:
        peak = catalog_peak(config["peak_tflops"], precision)
        peak_source = f"catalog {config['instance_type']} {precision}"
    figures = summarize(history, script_result=script_result, usd_per_hour=config["price"]["usd_per_hour"],
                        peak_tflops=peak, target=config.get("target"),
                        train_seconds=sum(a.get("script_seconds") or 0.0 for a in attempts))
    result = build_result(
        campaign=config["campaign"], run_id=config["run_id"], backend={"name": "ec2"}, attempts=attempts,
        host=host_facts(host["label"], stand_in=host.get("stand_in", False), peak_tflops=peak, peak_source=peak_source),
        figures=figures, hyperparameters=config["hyperparameters"], train_artifacts=artifacts,
        final=script_result.get("final") or _last_values(history), price=config["price"],
        instance_type=config["instance_type"], market=config["market"], precision=precision,
        workload=script_result.get("workload"), repo=config["task"]["repo"], ref=config["task"]["ref"],
        script=config["task"]["script"], code=commit,
        fingerprint={**fingerprint(), **(script_result.get("fingerprint") or {})},
        world_size=script_result.get("world_size"),  # processes under torchrun (1: a plain script)
        target=config.get("target"), utilization=utilization, benchmark_slice=sliced,
        prediction=predict_job(config, history, overhead_seconds=setup_seconds + boot_seconds)
        if config["task"].get("benchmark") else None)
    location.write_bytes("result.json", json.dumps(result, indent=2, sort_keys=True, default=str).encode())
    return result


def predict_job(config: dict, history: list[dict], *, overhead_seconds: float) -> dict | None:
    """The whole job's training time and cost on this instance type, from the slice's step timings."""
    benchmark = config["task"]["benchmark"]
    estimate = estimate_slice(history, total_steps=benchmark.get("total_steps"),
                              total_samples=benchmark.get("total_samples"),
                              warmup_steps=benchmark.get("warmup_steps", 0),
                              warmup_seconds=benchmark.get("warmup_seconds", 0.0))
    if estimate is None:
        return None
    price = config["price"]
    cost = estimate.cost(price["usd_per_hour"], overhead_seconds)
    on_demand = estimate.cost(price["on_demand_usd_per_hour"], overhead_seconds)
    return {
        "unit": estimate.unit, "measured_units": estimate.measured_units, "measured_seconds": estimate.measured_seconds,
        "sec_per_unit": estimate.sec_per_unit, "sec_per_unit_low": estimate.sec_per_unit_low,
        "sec_per_unit_high": estimate.sec_per_unit_high, "cv": estimate.cv, "total_units": estimate.total_units,
        "usd_per_unit": estimate.sec_per_unit * price["usd_per_hour"] / 3600,
        "est_train_seconds": estimate.est_train_seconds, "est_train_seconds_low": estimate.est_train_seconds_low,
        "est_train_seconds_high": estimate.est_train_seconds_high, "overhead_seconds": overhead_seconds,
        "est_seconds": estimate.est_train_seconds + overhead_seconds,
        "est_usd": cost[0], "est_usd_low": cost[1], "est_usd_high": cost[2],
        "est_on_demand_usd": on_demand[0], "price_market": price["market"],
    }


def _last_values(history: list[dict]) -> dict:
    """The last value of every numeric metric the script printed."""
    final: dict = {}
    for record in history:
        final.update({k: v for k, v in record.items() if isinstance(v, (int, float)) and k not in ("t", "train_t", "attempt")})
    return final


def upload_log(config: dict, root: Path, s3) -> None:
    log_path = root / "bootstrap.log"
    if log_path.is_file():
        location = S3Location(config["bucket"], contract.run_prefix(config["campaign"], config["run_id"]), s3)
        location.child(f"logs/attempt-{config['attempt']}").write_bytes("bootstrap.log", log_path.read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m instance_benchmarks.agent", description="trainfleet instance agent")
    parser.add_argument("command", choices=["run", "upload-log"])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True,
                        help="the attempt's configuration, fetched from S3 and checked against its SHA-256 by the user data")
    args = parser.parse_args(argv)
    config = json.loads(args.config.read_text())
    import boto3  # optional: only these S3 commands need it; agent/container.py imports this module without it

    s3 = boto3.client("s3", region_name=config["region"])
    if args.command == "upload-log":
        upload_log(config, args.root, s3)
        return 0
    try:
        return run_agent(config, args.root, s3)
    finally:
        upload_log(config, args.root, s3)
