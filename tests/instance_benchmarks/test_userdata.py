"""The user data builder: validated, shell-quoted values; property tests run the generated script
under bash with every external command replaced by a stub that records its argv, proving that no
value ever runs a command of its own or changes another command's arguments."""
from __future__ import annotations

import os
import shutil
import string
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from instance_benchmarks.campaigns.spec import parse_spec
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.core.bootstrap import LOGFILE, OUTDIR, WORKDIR, Bootstrap, build_user_data, decode_agent_config
from tests.instance_benchmarks.conftest import spec_dict

STUBBED = ["shutdown", "tee", "git", "aws", "python3", "bash"]
SEP, END = "\x1e", "\x1f"  # field and record separators (values may hold newlines)
HOSTILE = string.ascii_letters + string.digits + " ;|&$`'\"\\(){}<>*?!#~=%@:/.,+-_\n\t"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    root = tmp_path_factory.mktemp("sandbox")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name in STUBBED:
        body = ("while IFS= read -r _line; do :; done\n" if name == "tee" else "")
        (bin_dir / name).write_text(
            "#!/bin/bash\n" + body +
            f'{{ printf "%s" "${{0##*/}}"; for a in "$@"; do printf "{SEP}%s" "$a"; done; printf "{END}"; }} >> "$STUB_LOG"\n'
            "exit 0\n")
        (bin_dir / name).chmod(0o755)
    os.symlink(shutil.which("mkdir"), bin_dir / "mkdir")
    return root


def run_in_sandbox(sandbox: Path, script: str, tag: str) -> list[list[str]]:
    base = sandbox / tag
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    script = (script.replace(WORKDIR, str(base / "src")).replace(OUTDIR, str(base / "out"))
              .replace(LOGFILE, str(base / "bootstrap.log")))
    log = base / "calls"
    log.write_text("")
    subprocess.run(["/bin/bash", "-c", script], env={"PATH": str(sandbox / "bin"), "STUB_LOG": str(log)},
                   capture_output=True, timeout=30)
    calls = [record.split(SEP) for record in log.read_text().split(END) if record]
    return [c for c in calls if c[0] != "tee"]


def expected_calls(spec: Bootstrap, base: Path, tail: list[list[str]]) -> list[list[str]]:
    s3 = f"s3://{spec.bucket}/{spec.prefix.strip('/')}"
    return [
        ["shutdown", "-h", f"+{spec.max_runtime_minutes}", "trainfleet watchdog: max runtime reached"],
        ["git", "init", "-q", "."],
        ["git", "remote", "add", "origin", "--", spec.repo],
        ["git", "fetch", "-q", "--depth", "1", "origin", "--", spec.ref],
        ["git", "checkout", "-q", "FETCH_HEAD"],
        *tail,
        ["aws", "s3", "cp", str(base / "bootstrap.log"), f"{s3}/bootstrap.log", "--only-show-errors"],
        ["shutdown", "-h", "now", "trainfleet: done"],
    ]


def check_job(sandbox: Path, spec: Bootstrap) -> None:
    calls = run_in_sandbox(sandbox, build_user_data(spec), "job")
    base = sandbox / "job"
    s3 = f"s3://{spec.bucket}/{spec.prefix.strip('/')}"
    runner = "python3" if spec.script.endswith(".py") else "bash"
    tail = [[runner, spec.script, *spec.script_args],
            ["aws", "s3", "sync", str(base / "out"), f"{s3}/", "--only-show-errors"]]
    assert calls == expected_calls(spec, base, tail)


VALID = Bootstrap(repo="https://github.com/acme/train.git", ref="main", bucket="my-bucket", prefix="jobs/job-1",
                  max_runtime_minutes=45, script="train/run.py", script_args=("--epochs=3", "--lr=0.1"))


def test_generated_script_runs_exactly_the_expected_commands(sandbox):
    check_job(sandbox, VALID)


def test_agent_mode_passes_config_intact(sandbox):
    config = {"run_id": "r1", "args": ["--x=$(reboot)", "; rm -rf /"], "note": "'\"`"}
    spec = Bootstrap(repo=VALID.repo, ref="v1.0", bucket="b", prefix="campaigns/c/runs/r1",
                     max_runtime_minutes=10, agent_config=config)
    script = build_user_data(spec)
    assert decode_agent_config(script) == config
    calls = run_in_sandbox(sandbox, script, "agent")
    agent_call = [c for c in calls if c[0] == "python3"]
    assert len(agent_call) == 1 and agent_call[0][1:3] == ["-m", "instance_benchmarks.agent.main"]
    assert decode_agent_config(f"TRAINFLEET_AGENT_CONFIG='{agent_call[0][4]}'") == config


def _maybe_valid_url():
    host = st.from_regex(r"[a-z]{1,8}\.(com|org)", fullmatch=True)
    path = st.from_regex(r"[a-z0-9]{1,8}/[a-z0-9._-]{1,12}", fullmatch=True)
    valid = st.builds(lambda h, p: f"https://{h}/{p}", host, path)
    return st.one_of(valid, st.builds(lambda v, junk: v + junk, valid, st.text(HOSTILE, max_size=8)), st.text(HOSTILE, max_size=30))


VALID_REF = st.from_regex(r"[a-z][a-z0-9._/-]{0,12}", fullmatch=True)
VALID_SCRIPT = st.from_regex(r"[a-z]{1,6}(/[a-z_]{1,6})?\.(py|sh)", fullmatch=True)
VALID_ARG = st.from_regex(r"--[a-z_]{1,6}=[a-z0-9.,]{0,6}", fullmatch=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(repo=_maybe_valid_url(),
       ref=st.one_of(VALID_REF, VALID_REF, st.text(HOSTILE, max_size=15)),
       script=st.one_of(VALID_SCRIPT, VALID_SCRIPT, st.text(HOSTILE, max_size=20)),
       args=st.lists(st.one_of(VALID_ARG, VALID_ARG, st.text(HOSTILE, max_size=12)), max_size=3),
       minutes=st.integers(-5, 10_000))
def test_no_value_can_inject_a_command(sandbox, repo, ref, script, args, minutes):
    try:
        spec = Bootstrap(repo=repo, ref=ref, bucket="bucket-1", prefix="jobs/j", max_runtime_minutes=minutes,
                         script=script, script_args=tuple(args))
    except (TrainfleetInputError, ValueError):
        event("refused")
        return
    event("accepted and executed")
    check_job(sandbox, spec)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(repo=st.text(HOSTILE, min_size=1, max_size=30), ref=st.text(HOSTILE, min_size=1, max_size=15),
       script=st.text(HOSTILE, min_size=1, max_size=20), args=st.lists(st.text(HOSTILE, max_size=12), max_size=3))
def test_quoting_alone_stops_injection_even_without_validation(sandbox, repo, ref, script, args):
    """Defence in depth: hostile values forced past validation still reach each command intact."""
    spec = Bootstrap(**{**VALID.__dict__})
    for name, value in (("repo", repo), ("ref", ref), ("script", script), ("script_args", tuple(args))):
        object.__setattr__(spec, name, value)
    check_job(sandbox, spec)


JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-10, 100) | st.floats(allow_nan=True) | st.text(HOSTILE, max_size=12),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(HOSTILE, max_size=8), inner, max_size=3),
                       max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(changes=st.dictionaries(
    st.sampled_from(["campaign", "workload", "repo", "ref", "script", "region", "market", "max_runtime_minutes",
                     "budget_usd", "estimated_minutes", "target", "hyperparameters", "matrix", "max_attempts", "fallback"]),
    JSONISH, max_size=4))
def test_any_campaign_document_is_accepted_or_refused_with_input_error(changes):
    try:
        spec = parse_spec(spec_dict(**changes))
    except TrainfleetInputError as error:
        assert "\n" not in str(error)
        return
    for run in spec.runs():
        assert run.run_id.replace("-", "").isalnum()


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(["batch_size", "learning_rate", "hidden_layers", "gamma", "device", "epochs"]),
       values=st.lists(JSONISH, min_size=1, max_size=3))
def test_hostile_hyperparameters_are_refused_or_travel_as_data(name, values):
    try:
        spec = parse_spec(spec_dict(matrix={"instance_type": ["c5.xlarge"], name: values}))
    except TrainfleetInputError:
        return
    from instance_benchmarks.campaigns.spec import override_args

    for run in spec.runs():
        for arg in override_args(run.hyperparameters):
            assert arg.startswith("--") and "\n" not in arg
