"""Builds the bash user data that bootstraps a training instance.

One builder serves the CDK TrainingJob stack and the campaign launcher. Every value is validated and
then shell-quoted with `shlex.quote`, so no value can run a command of its own. The instance:

1. arms a watchdog (`shutdown -h +N`; the launch template's shutdown behaviour is *terminate*),
2. clones `repo` at `ref` into /opt/trainfleet/src,
3. runs either the script (one-shot job; outputs synced to s3://bucket/prefix/) or the trainfleet
   agent (campaign run; the agent uploads checksummed results itself),
4. uploads its bootstrap log and shuts down (= terminates) whatever happened.
"""
from __future__ import annotations

import base64
import json
import re
import shlex
from dataclasses import dataclass, field

from instance_benchmarks.validation import (
    validate_git_ref,
    validate_positive,
    validate_repo_url,
    validate_script_args,
    validate_script_path,
)

WORKDIR = "/opt/trainfleet/src"
OUTDIR = "/opt/trainfleet/out"
LOGFILE = "/var/log/trainfleet-bootstrap.log"
AGENT_CONFIG_VAR = "TRAINFLEET_AGENT_CONFIG"
_AGENT_CONFIG_LINE = re.compile(rf"^{AGENT_CONFIG_VAR}='?([A-Za-z0-9+/=]+)'?$", re.MULTILINE)


@dataclass(frozen=True)
class Bootstrap:
    """What one instance must do. `agent_config` set = campaign run; unset = one-shot script job."""

    repo: str
    ref: str
    bucket: str
    prefix: str
    max_runtime_minutes: int
    script: str | None = None
    script_args: tuple[str, ...] = ()
    agent_config: dict | None = None
    python: str = "python3"
    extra_env: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        validate_repo_url(self.repo)
        validate_git_ref(self.ref)
        validate_positive(self.max_runtime_minutes, "max runtime (minutes)")
        if self.agent_config is None:
            if self.script is None:
                raise ValueError("a one-shot job needs a script")
            validate_script_path(self.script)
            validate_script_args(self.script_args)
        for name, _ in self.extra_env:
            if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
                raise ValueError(f"bad environment variable name {name!r}")


def encode_agent_config(config: dict) -> str:
    return base64.b64encode(json.dumps(config, sort_keys=True).encode()).decode()


def decode_agent_config(user_data: str) -> dict:
    """The agent configuration embedded in a campaign run's user data (used by the local worker)."""
    match = _AGENT_CONFIG_LINE.search(user_data)
    if not match:
        raise ValueError("user data carries no trainfleet agent configuration")
    return json.loads(base64.b64decode(match.group(1)))


def build_user_data(spec: Bootstrap) -> str:
    q = shlex.quote
    s3_prefix = f"s3://{spec.bucket}/{spec.prefix.strip('/')}"
    lines = [
        "#!/bin/bash",
        "# trainfleet bootstrap - generated; every value below is shell-quoted.",
        "set -euo pipefail",
        f"shutdown -h +{int(spec.max_runtime_minutes)} 'trainfleet watchdog: max runtime reached'",
        f"exec > >(tee -a {LOGFILE}) 2>&1",
        f"TRAINFLEET_REPO={q(spec.repo)}",
        f"TRAINFLEET_REF={q(spec.ref)}",
        f"TRAINFLEET_S3_PREFIX={q(s3_prefix)}",
        "finish() {",
        "  rc=$?",
        '  echo "trainfleet: bootstrap finished with status $rc"',
        f'  aws s3 cp {LOGFILE} "$TRAINFLEET_S3_PREFIX/bootstrap.log" --only-show-errors || true',
        "  shutdown -h now 'trainfleet: done'",
        "}",
        "trap finish EXIT",
        f"mkdir -p {WORKDIR} {OUTDIR}",
        f"cd {WORKDIR}",
        "git init -q .",
        'git remote add origin -- "$TRAINFLEET_REPO"',
        'git fetch -q --depth 1 origin -- "$TRAINFLEET_REF"',
        "git checkout -q FETCH_HEAD",
        "if [ -f /opt/pytorch/bin/activate ]; then . /opt/pytorch/bin/activate; fi",
        'export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"',
        f"if [ -f requirements-instance.txt ]; then {q(spec.python)} -m pip install -q -r requirements-instance.txt; fi",
    ]
    for name, value in spec.extra_env:
        lines.append(f"export {name}={q(value)}")
    if spec.agent_config is not None:
        lines += [
            f"{AGENT_CONFIG_VAR}={q(encode_agent_config(spec.agent_config))}",
            f'{q(spec.python)} -m instance_benchmarks.agent --config-b64 "${AGENT_CONFIG_VAR}"',
        ]
    else:
        runner = q(spec.python) if spec.script.endswith(".py") else "bash"
        args = " ".join(q(a) for a in spec.script_args)
        lines += [
            f"export TRAINFLEET_OUTPUT_DIR={OUTDIR} SM_MODEL_DIR={OUTDIR}",
            "status=0",
            f"{runner} {q(spec.script)} {args}".rstrip() + " || status=$?",
            f'echo "{{\\"exit_code\\": $status}}" > {OUTDIR}/job-status.json',
            f'aws s3 sync {OUTDIR} "$TRAINFLEET_S3_PREFIX/" --only-show-errors',
            'exit "$status"',
        ]
    return "\n".join(lines) + "\n"
