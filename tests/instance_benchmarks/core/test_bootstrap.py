"""The user data builder: validated, shell-quoted values; property tests run the generated script
under bash with every external command replaced by a stub that records its argv, proving that no
value ever runs a command of its own or changes another command's arguments."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import string
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from instance_benchmarks.campaign_file import parse_spec
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.core.bootstrap import (
    USER_DATA_LIMIT, AgentBootstrap, Bootstrap, agent_config_pointer, build_agent_user_data, build_user_data,
)
from tests.instance_benchmarks.conftest import spec_dict

STUBBED = ["shutdown", "tee", "git", "aws", "python3", "bash", "sha256sum"]
SEP, END = "\x1e", "\x1f"  # field and record separators (values may hold newlines)
HOSTILE = string.ascii_letters + string.digits + " ;|&$`'\"\\(){}<>*?!#~=%@:/.,+-_\n\t"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    root = tmp_path_factory.mktemp("sandbox")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name in STUBBED:
        # stubs fed by a pipe read it all: one that exits first makes the writer fail with SIGPIPE (pipefail)
        body = ("while IFS= read -r _line; do :; done\n" if name in ("tee", "sha256sum") else "")
        (bin_dir / name).write_text(
            "#!/bin/bash\n" + body +
            f'{{ printf "%s" "${{0##*/}}"; for a in "$@"; do printf "{SEP}%s" "$a"; done; printf "{END}"; }} >> "$STUB_LOG"\n'
            "exit 0\n")
        (bin_dir / name).chmod(0o755)
    for tool in ("mkdir", "date"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    return root


def run_in_sandbox(sandbox: Path, script: str, tag: str, workdir: str | None = None) -> list[list[str]]:
    base = sandbox / tag
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    if workdir:  # what the (stubbed) clone would have checked out
        (base / "src" / workdir).mkdir(parents=True)
    log = base / "calls"
    log.write_text("")
    subprocess.run(["/bin/bash", "-c", script], env={"PATH": str(sandbox / "bin"), "STUB_LOG": str(log),
                                                     "TRAINFLEET_ROOT": str(base)}, capture_output=True, timeout=30)
    calls = [record.split(SEP) for record in log.read_text().split(END) if record]
    return [c for c in calls if c[0] != "tee"]


def check_job(sandbox: Path, spec: Bootstrap) -> None:
    calls = run_in_sandbox(sandbox, build_user_data(spec), "job")
    base = sandbox / "job"
    prefix = spec.prefix.strip("/")
    runner = "python3" if spec.script.endswith(".py") else "bash"
    region = spec.region or ""
    # the stubbed python3 "is" a virtualenv with pip and boto3 (the DLAMI's case): nothing is installed
    assert [c[:2] for c in calls[1:5]] == [["python3", "-c"], ["python3", "-m"], ["python3", "-c"], ["python3", "-c"]]
    sync, log_upload = calls[-3], calls[-2]
    assert calls[:1] + calls[5:-3] + calls[-1:] == [
        ["shutdown", "-h", f"+{spec.max_runtime_minutes}", "trainfleet watchdog: max runtime reached"],
        ["git", "init", "-q", "."],
        ["git", "remote", "add", "origin", "--", spec.repo],
        ["git", "fetch", "-q", "--depth", "1", "origin", "--", spec.ref],
        ["git", "checkout", "-q", "FETCH_HEAD"],
        [runner, spec.script, *spec.script_args],
        ["shutdown", "-h", "now", "trainfleet: done"],
    ]
    assert sync[:2] == ["python3", "-c"] and sync[3:] == [region, spec.bucket, prefix, str(base / "out")]
    assert log_upload[3:] == [region, str(base / "bootstrap.log"), spec.bucket, f"{prefix}/bootstrap.log"]


VALID = Bootstrap(repo="https://github.com/acme/train.git", ref="main", bucket="my-bucket", prefix="jobs/job-1",
                  max_runtime_minutes=45, script="train/run.py", script_args=("--epochs=3", "--lr=0.1"))
AGENT = AgentBootstrap(max_runtime_minutes=10, region="eu-west-1", bucket="b-1",
                       wheel_key="campaigns/c/agent/abc/trainfleet-0.1.0-py3-none-any.whl", wheel_sha256="ab" * 32,
                       agent_config={"campaign": "c", "run_id": "r1", "attempt": 2,
                                     "task": {"args": ["--x=$(reboot)", "; rm -rf /"]}, "note": "'\"`"})


def test_generated_script_runs_exactly_the_expected_commands(sandbox):
    check_job(sandbox, VALID)


def test_a_job_with_task_commands_runs_them_in_its_workdir_as_given(sandbox):
    setup, run = "pip install -r requirements.txt\n", 'python main.py --save "$TRAINFLEET_OUTPUT_DIR/m.pt" $(echo x)\n'
    spec = Bootstrap(repo=VALID.repo, ref="main", bucket="b", prefix="jobs/j", max_runtime_minutes=30,
                     workdir="word_language_model", setup=setup, run=run)
    calls = run_in_sandbox(sandbox, build_user_data(spec), "task", workdir="word_language_model")
    assert ["bash", "-c", setup] in calls and ["bash", "-c", run] in calls  # literal text, for bash to run
    assert calls.index(["bash", "-c", setup]) < calls.index(["bash", "-c", run])
    with pytest.raises(TrainfleetInputError, match="either a script or run commands"):
        Bootstrap(repo=VALID.repo, ref="main", bucket="b", prefix="jobs/j", max_runtime_minutes=30,
                  script="train.py", run=run)


def test_agent_user_data_fetches_verifies_installs_and_runs_the_agent(sandbox):
    script = build_agent_user_data(AGENT)
    key, sha256 = agent_config_pointer(script)
    assert key == AGENT.config_key == "campaigns/c/runs/r1/agent/attempt-2.json"
    assert sha256 == hashlib.sha256(AGENT.config_bytes).hexdigest()
    assert json.loads(AGENT.config_bytes) == AGENT.agent_config and "reboot" not in script  # none of it inline
    calls = run_in_sandbox(sandbox, script, "agent")
    base = sandbox / "agent"
    wheel, config = str(base / AGENT.wheel_name), str(base / "agent-config.json")
    assert calls[0] == ["shutdown", "-h", "+10", "trainfleet watchdog: max runtime reached"]
    downloads = [c for c in calls if c[:2] == ["python3", "-c"] and "download_file" in c[2]]
    assert [d[3:] for d in downloads] == [["eu-west-1", "b-1", AGENT.wheel_key, wheel],  # the instance role, no URL
                                          ["eu-west-1", "b-1", key, config]]
    assert calls.count(["sha256sum", "-c", "--quiet", "-"]) == 2  # the wheel and the configuration
    assert ["python3", "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(base / "agent"), wheel] in calls
    [run] = [c for c in calls if c[:4] == ["python3", "-m", "instance_benchmarks.agent", "run"]]
    assert run[4:] == ["--root", str(base), "--config", config]
    assert ["aws", "s3", "cp", str(base / "bootstrap.log"), "s3://b-1/campaigns/c/runs/r1/logs/attempt-2/bootstrap.log",
            "--only-show-errors"] in calls  # the agent never ran (stubs): the AMI's CLI uploads the log
    assert calls[-1] == ["shutdown", "-h", "now", "trainfleet: done"]


def test_a_job_on_a_system_python_runs_in_its_own_virtualenv_and_uploads_with_boto3(tmp_path):
    """The CPU image's python3 is the system's (pip may not install into it): the job makes a virtualenv
    that sees the system packages, installs requirements.txt there and runs the script with it. Real bash,
    real python (this machine's, standing in for the image's), stubbed git/shutdown; boto3's uploads go to
    a stub module that records them."""
    import sys

    bin_dir, stubs = tmp_path / "bin", tmp_path / "stubs"
    bin_dir.mkdir()
    stubs.mkdir()
    system_python = Path(getattr(sys, "_base_executable", sys.executable))
    (bin_dir / "python3").symlink_to(system_python)
    for tool in ("mkdir", "date", "cat", "tee"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    root = tmp_path / "root"
    git = f'#!/bin/bash\nif [ "$1" = checkout ]; then printf "print(\\"trained\\")\\n" > train.py; fi\n'
    for name, body in {"shutdown": "#!/bin/bash\n", "git": git}.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    (stubs / "boto3.py").write_text(
        "import json, os\n"
        "class _S3:\n"
        "    def upload_file(self, *args):\n"
        "        with open(os.environ['UPLOADS'], 'a') as out: out.write(json.dumps(args) + '\\n')\n"
        "def client(name, region_name=None):\n    return _S3()\n")
    spec = Bootstrap(repo=VALID.repo, ref="main", bucket="b", prefix="jobs/j", max_runtime_minutes=30,
                     script="train.py", region="eu-west-1")
    uploads = tmp_path / "uploads"
    done = subprocess.run(["/bin/bash", "-c", build_user_data(spec)], capture_output=True, text=True, timeout=120,
                          env={"PATH": str(bin_dir), "TRAINFLEET_ROOT": str(root), "UPLOADS": str(uploads),
                               "PYTHONPATH": str(stubs), "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (root / "venv" / "bin" / "python").exists()  # its own virtualenv, not the system python
    assert "trained" in (root / "bootstrap.log").read_text()
    keys = sorted(json.loads(line)[2] for line in uploads.read_text().splitlines())
    assert keys == ["jobs/j/bootstrap.log", "jobs/j/job-status.json"]


def test_a_wrong_wheel_checksum_stops_the_bootstrap_before_install(tmp_path):
    """Real sha256sum, a stubbed download that 'fetches' other bytes: nothing is installed or run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    python3 = 'if [ "$1" = -c ] && [ -n "$6" ]; then echo tampered > "$6"; fi\necho "python3 $*" >> "$LOG"'
    for name, body in {"shutdown": "", "python3": python3}.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    for tool in ("sha256sum", "tee", "mkdir", "cat", "date"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    done = subprocess.run(["/bin/bash", "-c", build_agent_user_data(AGENT)], capture_output=True, text=True, timeout=30,
                          env={"PATH": str(bin_dir), "TRAINFLEET_ROOT": str(tmp_path / "root"), "LOG": str(log)})
    assert done.returncode != 0
    assert not log.exists() or "pip install" not in log.read_text()


@pytest.mark.parametrize("script", [build_user_data(VALID), build_agent_user_data(AGENT)], ids=["job", "agent"])
def test_user_data_passes_bash_n_and_shellcheck(tmp_path, script):
    path = tmp_path / "user-data.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    assert shutil.which("shellcheck"), "shellcheck is missing: bash .ci/setup installs it (Debian package)"
    check = subprocess.run(["shellcheck", "--shell=bash", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


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


@pytest.mark.parametrize("build", [lambda: build_user_data(VALID), lambda: build_agent_user_data(AGENT)],
                         ids=["job", "agent"])
def test_apt_waits_for_the_images_first_boot_updates(tmp_path, build):
    """The CPU image's first-boot apt runs hold apt's locks; apt-get then fails at once with "Could not get
    lock". The bootstrap waits for the dpkg lock and tries again, instead of ending before its log is
    uploaded. Real bash; apt-get is a stub that finds the lock taken twice; python3 lacks venv/pip."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    state, log = tmp_path / "apt-tries", tmp_path / "apt-calls"
    apt = (f'echo "$*" >> {log}\nn=$(( $(cat {state} 2>/dev/null || echo 0) + 1 )); echo $n > {state}\n'
           'if [ $n -le 2 ]; then echo "E: Could not get lock /var/lib/apt/lists/lock" >&2; exit 100; fi\n')
    stubs = {"apt-get": apt, "shutdown": "", "git": "", "sha256sum": "", "aws": "",
             "python3": 'case "$*" in *"import venv"*|*"pip --version"*) exit 1 ;; *"import boto3"*) exit 1 ;; esac\n'
                        'if [ "$1" = -c ]; then exit 1; fi  # stop the bootstrap right after the prelude'}
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    for tool in ("mkdir", "date", "tee", "seq", "cat"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    (bin_dir / "sleep").write_text("#!/bin/bash\n")  # no real waiting in the test
    (bin_dir / "sleep").chmod(0o755)
    subprocess.run(["/bin/bash", "-c", build()], capture_output=True, text=True, timeout=60,
                   env={"PATH": str(bin_dir), "TRAINFLEET_ROOT": str(tmp_path / "root")})
    calls = log.read_text().splitlines()
    assert len(calls) == 4 and all("-o DPkg::Lock::Timeout=" in call for call in calls)
    assert [c.split()[-1] for c in calls[:3]] == ["update"] * 3 and "install -y python3-venv" in calls[3]


def test_a_runs_user_data_has_one_size_whatever_its_task():
    """EC2 takes 16 KB of user data; setup and run may have 20,000 characters each. The task travels in S3
    (checksummed): the user data names it, so its size does not grow with the task."""
    largest = {**AGENT.agent_config, "task": {"setup": "x" * 20_000, "run": "y" * 20_000, "args": ["--a=1"] * 200}}
    small, large = build_agent_user_data(AGENT), build_agent_user_data(
        AgentBootstrap(**{**AGENT.__dict__, "agent_config": largest}))
    assert len(large.encode()) == len(small.encode()) < USER_DATA_LIMIT // 2
    assert "xxxxxxxxxx" not in large


def test_a_job_whose_user_data_would_pass_16_kb_is_refused_before_deploy():
    """A job's setup and run are in its user data (the CloudFormation template holds it): the largest ones
    validation allows would make EC2 refuse the instance at deploy. Refused at config with a one-line input
    error instead; every job config accepts builds user data under the limit with the longest bucket name."""
    from stacks.config import config_from_context

    context = {"instance_type": "c5.xlarge", "repo": VALID.repo, "ref": "main", "setup": "pip install x\n" * 1400,
               "run": "python train.py --epochs 3\n" * 700}
    assert len(context["setup"]) <= 20_000 and len(context["run"]) <= 20_000  # what validate_snippet allows
    with pytest.raises(TrainfleetInputError, match=r"over EC2's limit of 16384 \(16 KB\)") as refused:
        config_from_context(context.get)
    assert "\n" not in str(refused.value)
    fits = {**context, "setup": "pip install x\n" * 500, "run": "python train.py\n" * 300}
    job = config_from_context(fits.get).job
    assert len(build_user_data(job.bootstrap(bucket="b" * 63, region="ap-southeast-5", python="python3")).encode()) \
        <= USER_DATA_LIMIT


@pytest.mark.parametrize("field, value", [("campaign", "c\nreboot"), ("run_id", "r1 #"), ("attempt", "2; reboot")])
def test_the_configurations_key_is_built_from_validated_ids_only(field, value):
    with pytest.raises(TrainfleetInputError):
        AgentBootstrap(**{**AGENT.__dict__, "agent_config": {**AGENT.agent_config, field: value}})


def test_an_instance_without_re2_installs_the_pinned_wheel_beside_the_agent(sandbox, tmp_path):
    """The agent matches metric regexes with RE2: an image without it gets requirements.txt's pin, next to the
    agent (the pin is the one the launcher and the embedded default use)."""
    from instance_benchmarks.backends.sagemaker.jobs import ENTRY
    from instance_benchmarks.core.bootstrap import AGENT_REQUIREMENTS

    pinned = Path(__file__).resolve().parents[3].joinpath("requirements.txt").read_text().splitlines()
    assert AGENT_REQUIREMENTS == ("google-re2==1.1.20251105",) and set(AGENT_REQUIREMENTS) <= set(pinned)
    shutil.copytree(sandbox / "bin", tmp_path / "bin", symlinks=True)
    stub = (tmp_path / "bin" / "python3")
    stub.write_text(stub.read_text().replace("exit 0\n", 'if [ "$2" = "import re2" ]; then exit 1; fi\nexit 0\n'))
    calls = run_in_sandbox(tmp_path, build_agent_user_data(AGENT), "no-re2")
    base = tmp_path / "no-re2"
    install = ["python3", "-m", "pip", "install", "-q", "--target", str(base / "agent"), *AGENT_REQUIREMENTS]
    assert install in calls and calls.index(install) < calls.index(
        next(c for c in calls if c[:4] == ["python3", "-m", "instance_benchmarks.agent", "run"]))
    assert repr(list(AGENT_REQUIREMENTS)) in ENTRY  # a SageMaker image without it installs the same pin
