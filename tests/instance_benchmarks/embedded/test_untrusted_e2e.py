"""Untrusted code end to end on the embedded default (EC2 stand-in and SageMaker executor): a script that
prints megabytes of lines made to stall a backtracking regex, a progress bar and its whole environment,
under a campaign whose metric regex is `(a+)+$`, completes normally with its metric; no host secret reaches
anything in the bucket (bootstrap.log, script.log, metrics)."""
from __future__ import annotations

import pytest

from instance_benchmarks import runner
from instance_benchmarks.campaign_file import parse_spec
from instance_benchmarks.embedded.environment import EmbeddedEnvironment
from tests.instance_benchmarks.conftest import make_git_repo, spec_dict

SECRETS = {"GITHUB_TOKEN": "ghp_e2ehostsecret000000000000000000000001", "HF_TOKEN": "hf_e2ehostsecret2",
           "AWS_SESSION_TOKEN": "e2ehostsecret-session-3"}
SCRIPT = """import os, sys
print("\\x1b]0;pwned\\x07 starting", flush=True)
for _ in range(40):
    print("a" * 50000 + "!", flush=True)  # `(a+)+$` over this line: 2**50000 steps for Python's re
sys.stdout.write("".join(f"\\r{i}it" for i in range(100)) + "\\rloss=0.25\\n")
print("ENV " + repr(sorted(os.environ.items())), flush=True)
open(os.path.join(os.environ["TRAINFLEET_OUTPUT_DIR"], "model.pt"), "w").write("w")
"""


@pytest.fixture(scope="module")
def embedded():
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SECRETS.items():
            patch.setenv(name, value)
        with EmbeddedEnvironment.start(log=lambda *_: None) as env:
            yield env


def test_a_catastrophic_regex_and_a_script_dumping_its_environment(embedded, tmp_path):
    make_git_repo(tmp_path / "evil", {"train.py": SCRIPT})
    common = dict(campaign="untrusted", workload=None, repo=str(tmp_path / "evil"), ref="main", script="train.py",
                  hyperparameters={}, target=None, matrix={"instance_type": ["c5.xlarge"]},
                  metric_definitions=[{"name": "x", "regex": "(a+)+$"}, {"name": "loss", "regex": r"loss=([0-9.]+)"}])
    specs = [parse_spec(spec_dict(**common))]
    try:
        import sagemaker.train  # noqa: F401
        specs.append(parse_spec(spec_dict(**common, backend="sagemaker")))
    except ImportError:
        pass
    outcome = runner.run_to_report(embedded, specs, out=tmp_path / "out", log=lambda *_: None)
    report = outcome["report"]
    assert report.incomplete == [] and len(report.rows) == len(specs)
    assert all(row["loss_last"] == 0.25 for row in report.rows)
    s3, bucket = embedded.client("s3"), embedded.infra.bucket
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="campaigns/untrusted/")
            for o in page.get("Contents", [])]
    bodies = {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}
    assert any(b"ENV [(" in body for body in bodies.values())  # the script did print its environment
    leaked = [(key, name) for key, body in bodies.items() for name, value in SECRETS.items() if value.encode() in body]
    assert leaked == []
