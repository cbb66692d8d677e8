"""Builds the bash user data that bootstraps a training instance.

Two kinds, one prologue (watchdog, log, shutdown on exit). Every value is validated, then shell-quoted
with `shlex.quote`, so no value can run a command of its own. Paths live under `$TRAINFLEET_ROOT`
(default /opt/trainfleet), which lets the embedded default execute the very same script in a sandbox.

* A campaign run (`AgentBootstrap`): download trainfleet's own wheel and the attempt's agent configuration
  (the task with its `setup` and `run` text, which the launcher put in the bucket) with the instance role
  (boto3), verify both SHA-256s, install the wheel into its own directory and run the agent
  (`python -m instance_benchmarks.agent`),
  which clones the user's repository, sets it up, runs and measures the script and uploads the results.
  The user's repository never needs to contain trainfleet.
* A one-shot job (`Bootstrap`, the CDK stack `TrainingJob-<job-id>`): clone the repo, set up and run the
  script or the `run` commands (in a virtualenv on a system python), upload its output folder to
  s3://<bucket>/jobs/<job-id>/ with boto3 (its bootstrap.log every minute while it runs).

Both end by shutting the instance down; the launch template's shutdown behaviour is *terminate*.

EC2 takes at most 16 KB of user data (before base64). A campaign run's user data has a constant size whatever
its task: the task travels in S3. A job's `setup` and `run` are part of its user data (the CloudFormation
template holds it), so a job whose user data would pass the limit is refused with an input error.
"""
from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass

from instance_benchmarks.core.contract import agent_config_key, run_prefix
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.core.validation import (
    validate_directory,
    validate_git_ref,
    validate_identifier,
    validate_positive,
    validate_repo_url,
    validate_script_args,
    validate_script_path,
    validate_snippet,
)

ROOT = "/opt/trainfleet"
# One-shot jobs: one CloudFormation stack each, outputs under one S3 prefix each (read by instance_benchmarks.jobs).
JOB_STACK_PREFIX = "TrainingJob-"
JOBS_PREFIX = "jobs"
JOB_LOG_PUSH_SECONDS = 60  # a running job's bootstrap.log reaches S3 this often (`trainfleet jobs logs --follow`)
REQUIREMENT_FILES = ("requirements.txt", "requirements-instance.txt")
LOGFILE = "$TRAINFLEET_ROOT/bootstrap.log"
AGENT_CONFIG_VAR = "TRAINFLEET_AGENT_CONFIG"  # the path of the downloaded agent configuration
USER_DATA_LIMIT = 16 * 1024  # bytes EC2 accepts, in raw form before base64 (EC2 User Guide, "Instance user data")
# The longest names a job's user data may hold where synth sees only tokens: S3 bucket names have at most 63
# characters, region names far fewer than 25.
LONGEST_BUCKET, LONGEST_REGION = "b" * 63, "r" * 25
_AGENT_CONFIG_LINE = re.compile(r"^# agent configuration: s3 key (\S+) sha256 ([0-9a-f]{64})$", re.MULTILINE)
# what the agent needs beyond the standard library and boto3 (pinned as in requirements.txt): RE2 matches the
# campaign's metric regexes in linear time (measure/metrics.py); its manylinux wheels cover CPython 3.10-3.14 on
# x86_64 and aarch64, the instances' Python 3.12 and the SageMaker images' 3.13 included
AGENT_REQUIREMENTS = ("google-re2==1.1.20251105",)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_WHEEL = re.compile(r"^[A-Za-z0-9_.]+-[A-Za-z0-9_.+]+-py3-none-any\.whl$")


def check_user_data_size(user_data: str, what: str) -> str:
    """`user_data`, or a one-line input error when EC2 would refuse it (over 16 KB before base64)."""
    size = len(user_data.encode())
    if size > USER_DATA_LIMIT:
        raise TrainfleetInputError(
            f"{what}: its user data would be {size} bytes, over EC2's limit of {USER_DATA_LIMIT} (16 KB); "
            "put long setup or run commands in a script in the repository and call that")
    return user_data


def job_stack_name(job_id: str) -> str:
    """The CloudFormation stack of one one-shot job: `TrainingJob-<job-id>`, so several run at once."""
    return JOB_STACK_PREFIX + validate_identifier(job_id, "job_id")


def job_prefix(job_id: str) -> str:
    """Where a job's outputs, bootstrap.log and job-status.json go in the bucket (no trailing '/')."""
    return f"{JOBS_PREFIX}/{validate_identifier(job_id, 'job_id')}"


def _prologue(max_runtime_minutes: int, upload_log: list[str]) -> list[str]:
    return [
        "#!/bin/bash",
        "# trainfleet bootstrap - generated; every value below is shell-quoted.",
        "set -euo pipefail",
        f'TRAINFLEET_ROOT="${{TRAINFLEET_ROOT:-{ROOT}}}"',
        f"shutdown -h +{int(max_runtime_minutes)} 'trainfleet watchdog: max runtime reached'",
        'mkdir -p "$TRAINFLEET_ROOT"',
        'date -u +%s > "$TRAINFLEET_ROOT/watchdog-armed-at"  # the agent ends its run before the watchdog fires',
        'export HOME="${HOME:-/root}"  # cloud-init may leave it unset; pip and git want one',
        f'exec > >(tee -a "{LOGFILE}") 2>&1',
        "# shellcheck disable=SC2317  # finish runs from the EXIT trap",
        "finish() {",
        "  rc=$?",
        '  echo "trainfleet: bootstrap finished with status $rc"',
        *(f"  {line}" for line in upload_log),
        "  shutdown -h now 'trainfleet: done'",
        "}",
        "trap finish EXIT",
        "# shellcheck source=/dev/null  # the Deep Learning AMI's PyTorch environment, where present",
        "if [ -f /opt/pytorch/bin/activate ]; then . /opt/pytorch/bin/activate; fi",
    ]


@dataclass(frozen=True)
class AgentBootstrap:
    """A campaign run: fetch and verify the agent wheel and the attempt's configuration, run the agent.

    `agent_config` stays out of the user data: the launcher uploads `encode_agent_config(agent_config)` to
    `config_key` before the launch, and the user data carries only that key and its SHA-256."""

    max_runtime_minutes: int
    region: str
    bucket: str
    wheel_key: str
    wheel_sha256: str
    agent_config: dict
    python: str = "python3"

    def __post_init__(self) -> None:
        validate_positive(self.max_runtime_minutes, "max runtime (minutes)")
        if not _SHA256.fullmatch(self.wheel_sha256):
            raise ValueError(f"bad SHA-256 {self.wheel_sha256!r}")
        if not _WHEEL.fullmatch(self.wheel_key.rsplit("/", 1)[-1]):
            raise ValueError(f"bad wheel file name {self.wheel_key!r}")
        # they name the configuration's S3 key, written into the user data
        validate_identifier(self.agent_config["campaign"], "campaign")
        validate_identifier(self.agent_config["run_id"], "run_id")
        validate_positive(self.agent_config["attempt"], "attempt")

    @property
    def wheel_name(self) -> str:
        return self.wheel_key.rsplit("/", 1)[-1]

    @property
    def config_key(self) -> str:
        cfg = self.agent_config
        return agent_config_key(cfg["campaign"], cfg["run_id"], cfg["attempt"])

    @property
    def config_bytes(self) -> bytes:
        return encode_agent_config(self.agent_config)


def encode_agent_config(config: dict) -> bytes:
    """The agent configuration as the launcher uploads it and the instance checks it (canonical JSON)."""
    return json.dumps(config, sort_keys=True).encode()


def agent_config_pointer(user_data: str) -> tuple[str, str]:
    """(S3 key, SHA-256) of the agent configuration a campaign run's user data fetches."""
    match = _AGENT_CONFIG_LINE.search(user_data)
    if not match:
        raise ValueError("user data carries no trainfleet agent configuration")
    return match.group(1), match.group(2)


_S3_DOWNLOAD = "import sys, boto3; boto3.client('s3', region_name=sys.argv[1]).download_file(*sys.argv[2:])"
_S3_UPLOAD = "import sys, boto3; boto3.client('s3', region_name=sys.argv[1] or None).upload_file(*sys.argv[2:])"
_S3_SYNC = (  # region bucket prefix folder: every file under folder to s3://bucket/prefix/<relative path>
    "import os, sys, boto3\n"
    "region, bucket, prefix, folder = sys.argv[1:5]\n"
    "s3 = boto3.client('s3', region_name=region or None)\n"
    "for base, _, names in os.walk(folder):\n"
    "    for name in names:\n"
    "        path = os.path.join(base, name)\n"
    "        s3.upload_file(path, bucket, prefix + '/' + os.path.relpath(path, folder).replace(os.sep, '/'))\n"
)


APT_LOCK_WAIT_SECONDS = 120  # apt-get waits this long for the dpkg lock (DPkg::Lock::Timeout), per try
APT_TRIES = 10                # then tries again, 10 s apart: about 20 minutes at most in all


def _python_prelude(py: str) -> list[str]:
    """The CPU image (plain Ubuntu 24.04) has python3 but neither venv nor pip: install them where missing.

    At first boot the image's own apt runs (cloud-init's package update, apt-daily, unattended-upgrades) hold
    apt's locks for minutes; an apt-get that finds them taken fails at once ("Could not get lock"), and the
    bootstrap would end before it could upload its log. So apt-get waits for the dpkg lock
    (DPkg::Lock::Timeout, apt >= 1.9.11) and every apt-get is tried again while it fails (the lists lock of
    `apt-get update` has no timeout option)."""
    return [
        "apt_retry() {  # apt-get with patience: the image's first-boot updates may hold apt's locks",
        f"  for try in $(seq 1 {APT_TRIES}); do",
        f'    apt-get -qq -o DPkg::Lock::Timeout={APT_LOCK_WAIT_SECONDS} "$@" && return 0',
        '    echo "trainfleet: apt-get $1 failed (try $try): apt may be busy with the image\'s first-boot updates"',
        "    sleep 10",
        "  done",
        "  return 1",
        "}",
        f"if ! {py} -c 'import venv, ensurepip' 2>/dev/null || ! {py} -m pip --version >/dev/null 2>&1; then",
        "  export DEBIAN_FRONTEND=noninteractive",
        "  apt_retry update && apt_retry install -y python3-venv python3-pip git >/dev/null",
        "fi",
    ]


def build_agent_user_data(spec: AgentBootstrap) -> str:
    q = shlex.quote
    py = q(spec.python)
    agent = f'PYTHONPATH="$TRAINFLEET_ROOT/agent" {py} -m instance_benchmarks.agent'
    config = f'--root "$TRAINFLEET_ROOT" --config "${AGENT_CONFIG_VAR}"'
    cfg = spec.agent_config
    config_sha256 = hashlib.sha256(spec.config_bytes).hexdigest()
    download = f'PYTHONPATH="$TRAINFLEET_ROOT/agent" {py} -c {q(_S3_DOWNLOAD)} {q(spec.region)} {q(spec.bucket)}'
    log_uri = q(f"s3://{spec.bucket}/{run_prefix(cfg['campaign'], cfg['run_id'])}/logs/attempt-{cfg['attempt']}/bootstrap.log")
    lines = _prologue(spec.max_runtime_minutes, [
        # the agent uploads this log itself; these cover a bootstrap that failed before the agent ran
        f'if [ -d "$TRAINFLEET_ROOT/agent" ]; then {agent} upload-log {config} || true',
        f'elif command -v aws >/dev/null; then aws s3 cp "{LOGFILE}" {log_uri} --only-show-errors || true; fi',
    ])
    lines += [
        f"# agent configuration: s3 key {spec.config_key} sha256 {config_sha256}",
        f'{AGENT_CONFIG_VAR}="$TRAINFLEET_ROOT/agent-config.json"',
        f"TRAINFLEET_WHEEL=\"$TRAINFLEET_ROOT\"/{q(spec.wheel_name)}",
        *_python_prelude(py),
        f"{py} -c 'import boto3' 2>/dev/null || {py} -m pip install -q --target \"$TRAINFLEET_ROOT/agent\" boto3",
        f"{py} -c 'import re2' 2>/dev/null || {py} -m pip install -q --target \"$TRAINFLEET_ROOT/agent\" "
        f"{' '.join(q(r) for r in AGENT_REQUIREMENTS)}",
        f'{download} {q(spec.wheel_key)} "$TRAINFLEET_WHEEL"',
        f'echo {q(spec.wheel_sha256)}"  $TRAINFLEET_WHEEL" | sha256sum -c --quiet -',
        f'{download} {q(spec.config_key)} "${AGENT_CONFIG_VAR}"',
        f'echo {q(config_sha256)}"  ${AGENT_CONFIG_VAR}" | sha256sum -c --quiet -',
        f'{py} -m pip install -q --no-deps --no-index --target "$TRAINFLEET_ROOT/agent" "$TRAINFLEET_WHEEL"',
        f"{agent} run {config}",
    ]
    return check_user_data_size("\n".join(lines) + "\n", f"run {cfg['run_id']}")


@dataclass(frozen=True)
class Bootstrap:
    """A one-shot job: clone `repo` at `ref`; in `workdir`, run `setup` (else install requirements.txt),
    then `script` with `script_args` or the `run` commands; sync the output folder to s3://bucket/prefix/."""

    repo: str
    ref: str
    bucket: str
    prefix: str
    max_runtime_minutes: int
    script: str | None = None
    script_args: tuple[str, ...] = ()
    python: str = "python3"
    workdir: str | None = None
    setup: str | None = None
    run: str | None = None
    region: str | None = None  # the bucket's region (the stack passes its own); None: boto3's default chain

    def __post_init__(self) -> None:
        validate_repo_url(self.repo)
        validate_git_ref(self.ref)
        validate_positive(self.max_runtime_minutes, "max runtime (minutes)")
        if (self.script is None) == (self.run is None):
            raise TrainfleetInputError("a job runs either a script or run commands (one of them)")
        if self.script is not None:
            validate_script_path(self.script)
        validate_script_args(self.script_args)
        if self.workdir is not None:
            validate_directory(self.workdir)
        for name in ("setup", "run"):
            if getattr(self, name) is not None:
                validate_snippet(getattr(self, name), name)


def build_user_data(spec: Bootstrap) -> str:
    """The job's user data. It needs only python3 and git from the image: the script runs in the image's
    Python environment (the DLAMI's PyTorch venv) or, on a system python (the CPU image, where pip may not
    install into the system), in a virtualenv that sees the system's packages; uploads use boto3."""
    q = shlex.quote
    region, prefix = q(spec.region or ""), spec.prefix.strip("/")
    upload_log = f'-c {q(_S3_UPLOAD)} {region} "{LOGFILE}" {q(spec.bucket)} {q(prefix + "/bootstrap.log")}'
    lines = _prologue(spec.max_runtime_minutes, [
        'if [ -n "${LOG_PUSHER:-}" ]; then kill "$LOG_PUSHER" 2>/dev/null || true; fi',
        f'"${{PY:-python3}}" {upload_log} || true',
    ])
    lines += [
        *_python_prelude(q(spec.python)),
        f"PY={q(spec.python)}",
        "# not in a virtualenv (a system python): make one, so that pip may install",
        """if "$PY" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then :; else""",
        '  "$PY" -m venv --system-site-packages "$TRAINFLEET_ROOT/venv" && PY="$TRAINFLEET_ROOT/venv/bin/python"',
        "fi",
        """"$PY" -c 'import boto3' 2>/dev/null || "$PY" -m pip install -q boto3""",
        "# the log so far reaches S3 every minute while the job runs (`trainfleet jobs logs JOB --follow`)",
        f'( while sleep {JOB_LOG_PUSH_SECONDS}; do "$PY" {upload_log} >/dev/null 2>&1 || true; done ) &',
        "LOG_PUSHER=$!",
        'mkdir -p "$TRAINFLEET_ROOT/src" "$TRAINFLEET_ROOT/out"',
        'cd "$TRAINFLEET_ROOT/src"',
        "git init -q .",
        f"git remote add origin -- {q(spec.repo)}",
        f"git fetch -q --depth 1 origin -- {q(spec.ref)}",
        "git checkout -q FETCH_HEAD",
        'export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"',
        'export TRAINFLEET_OUTPUT_DIR="$TRAINFLEET_ROOT/out" SM_MODEL_DIR="$TRAINFLEET_ROOT/out"',
        'case "$PY" in */*) PATH="${PY%/*}:$PATH" ;; esac  # `python`, `pip` in setup/run: the job environment\'s',
    ]
    if spec.workdir:
        lines.append(f"cd {q(spec.workdir)}")
    if spec.setup:
        lines.append(f"bash -c {q(spec.setup)}")
    else:
        # requirements.txt, then requirements-instance.txt (extra packages for the instance only), each
        # from the workdir if it has one, else from the repository's root
        lines += [
            f"for file in {' '.join(REQUIREMENT_FILES)}; do",
            '  for dir in . "$TRAINFLEET_ROOT/src"; do',
            '    if [ -f "$dir/$file" ]; then echo "trainfleet: installing $dir/$file"; '
            '"$PY" -m pip install -q -r "$dir/$file"; break; fi',
            "  done",
            "done",
        ]
    if spec.run:
        command = f"bash -c {q(spec.run)}"
    else:
        runner = '"$PY"' if spec.script.endswith(".py") else "bash"
        command = f"{runner} {q(spec.script)} {' '.join(q(a) for a in spec.script_args)}".rstrip()
    lines += [
        "status=0",
        f"{command} || status=$?",
        'echo "{\\"exit_code\\": $status}" > "$TRAINFLEET_ROOT/out/job-status.json"',
        f'"$PY" -c {q(_S3_SYNC)} {region} {q(spec.bucket)} {q(prefix)} "$TRAINFLEET_ROOT/out"',
        'exit "$status"',
    ]
    return check_user_data_size("\n".join(lines) + "\n", "the training job")
