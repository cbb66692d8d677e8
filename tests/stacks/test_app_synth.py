"""`cdk synth` as users run it: the real app.py, no credentials, templates linted with cfn-lint."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JOB = ["-c", "instance_type=g5.xlarge", "-c", "repo=https://github.com/acme/train.git", "-c", "ref=main",
       "-c", "script=train.py", "-c", "job_id=train-1"]


def _synth(tmp_path, *context):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20", CDK_OUTDIR=str(tmp_path))
    ctx = {}
    for flag, kv in zip(context[::2], context[1::2]):
        key, value = kv.split("=", 1)
        ctx[key] = value
    env["CDK_CONTEXT_JSON"] = json.dumps({**json.loads((ROOT / "cdk.json").read_text())["context"], **ctx})
    return subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_synth_without_credentials_and_cfn_lint_is_clean(tmp_path):
    result = _synth(tmp_path, *JOB)
    assert result.returncode == 0, result.stderr[-2000:]
    templates = sorted(str(p) for p in tmp_path.glob("*.template.json"))
    assert [Path(t).name for t in templates] == [
        "Compute.template.json", "Network.template.json", "Storage.template.json", "TrainingJob-train-1.template.json"]
    lint = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), *templates], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout


@pytest.mark.parametrize("bad, message", [
    ("instance_type=x9.huge", "unknown instance type"),
    ("instance_type=p3.2xlarge", "p3.2xlarge cannot run trainfleet on EC2: NVIDIA V100"),
    ("cpu_root_volume_gib=-1", "cpu_root_volume_gib"),
    ("repo=http://insecure.example/repo.git", "must be an https:// URL"),
    ("script=../escape.py", "escapes the repository"),
    pytest.param("setup=" + "pip install -r requirements.txt\n" * 600, "over EC2's limit of 16384 (16 KB)",
                 id="user-data-over-16KB"),
])
def test_bad_context_exits_2_with_one_line_and_synthesizes_nothing(tmp_path, bad, message):
    context = [*JOB, "-c", bad]
    result = _synth(tmp_path, *context)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.template.json"))
