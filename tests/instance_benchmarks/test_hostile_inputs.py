"""A hostile-input corpus: campaign files and command-line arguments that must each end in exit status 2,
exactly one line `error: ...` on stderr, no traceback, and nothing launched or written.

Every case runs `trainfleet` in-process (cli.main) against one in-process moto (mock_aws) holding the
stack's SSM exports and bucket, so commands that would reach AWS get that far if validation let them;
after each case the account must still hold no instance, no spot request and no object. Two cases run
as real subprocesses to show the process's own exit status. Each case takes well under 2 s (see
`pytest --durations`); the size and alias caps keep even the huge and bomb files fast.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml
from moto import mock_aws

from instance_benchmarks import cli
from tests.instance_benchmarks.conftest import spec_dict

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
BUCKET = "trainfleet-hostile"


def _yaml(**changes) -> str:
    return yaml.safe_dump(spec_dict(**changes), sort_keys=False)


def _with(text: str) -> str:
    """The base campaign with `text` appended (raw YAML, for what safe_dump cannot write)."""
    return _yaml() + text


def _sagemaker(role) -> str:
    return _yaml(backend="sagemaker", sagemaker={"role_arn": role})


NUMERIC_FIELDS = {  # a field -> how to put a number into it
    "max_runtime_minutes": lambda v: _yaml(max_runtime_minutes=v),
    "budget_usd": lambda v: _yaml(budget_usd=v),
    "estimated_minutes": lambda v: _yaml(estimated_minutes=v),
    "max_attempts": lambda v: _yaml(max_attempts=v),
    "repeats": lambda v: _yaml(repeats=v),
    "target.value": lambda v: _yaml(target={"metric": "final10_reward", "value": v}),
    "hyperparameters.epochs": lambda v: _yaml(hyperparameters={"epochs": v}),
    "hyperparameters.gamma": lambda v: _yaml(hyperparameters={"gamma": v}),
    "matrix.batch_size": lambda v: _yaml(matrix={"instance_type": ["c5.xlarge"], "batch_size": [3, v]}),
    "script hyperparameter lr": lambda v: _yaml(workload=None, script="train.py", hyperparameters={"lr": v}),
    "benchmark.max_minutes": lambda v: _yaml(benchmark={"max_minutes": v, "total_steps": 1000}),
    "benchmark.total_steps": lambda v: _yaml(benchmark={"max_minutes": 1, "total_steps": v}),
    "sagemaker.max_wait_minutes": lambda v: _yaml(backend="sagemaker", sagemaker={"max_wait_minutes": v}),
}
NON_FINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}

DEEP = "campaign: x\nhyperparameters: " + "[" * 200 + "]" * 200 + "\n"
BOMB = "a: &a [" + ",".join(["x"] * 10) + "]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(8))

FILES = {  # case id -> campaign file content (str or bytes)
    # YAML and file-level attacks
    "duplicate key": _with("budget_usd: 500\n"),
    "duplicate nested key": _yaml().replace("epochs: 3", "epochs: 3\n  epochs: 300"),
    "non-utf8": _yaml().encode() + b"# \xff\xfe\xfa\n",
    "utf16 bom": _yaml().encode("utf-16"),
    "huge": "# " + "x" * (2 << 20) + "\n" + _yaml(),
    "deep nesting": DEEP,
    "anchor bomb": BOMB,
    "recursive alias": "a: &a [*a]\n",
    "many merge aliases": "a: &a {x: 1}\nb: &b {<<: [*a, *a, *a]}\n" + "c: [" + ",".join(["*b"] * 1000) + "]\n",
    "a list, not a mapping": "- campaign: x\n",
    "a scalar": "just text\n",
    "empty": "",
    "invalid yaml": "campaign: [unclosed\n",
    "tab indent": "campaign: x\nmatrix:\n\tinstance_type: [c5.xlarge]\n",
    "python object tag": _with("evil: !!python/object/apply:os.system ['id']\n"),
    "binary garbage": bytes(range(256)) * 4,
    # names
    "campaign uppercase": _yaml(campaign="Sweep"),
    "campaign glob": _yaml(campaign="sweep*"),
    "campaign slash": _yaml(campaign="a/b"),
    "campaign dotdot": _yaml(campaign=".."),
    "campaign too long": _yaml(campaign="a" * 64),
    "campaign shell": _yaml(campaign="x;reboot"),
    "campaign empty": _yaml(campaign=""),
    "campaign number": _yaml(campaign=7),
    # instance types
    "unknown instance type": _yaml(matrix={"instance_type": ["p9.mega"], "batch_size": [3]}),
    "instance type injection": _yaml(matrix={"instance_type": ["c5.xlarge; rm -rf /"], "batch_size": [3]}),
    "instance type empty": _yaml(matrix={"instance_type": [""], "batch_size": [3]}),
    "instance types empty list": _yaml(matrix={"instance_type": [], "batch_size": [3]}),
    "no instance type": _yaml(matrix={"batch_size": [3]}),
    "too little memory": _yaml(matrix={"instance_type": ["t3.micro"], "batch_size": [3]}),
    "fallback unknown type": _yaml(fallback={"instance_type": "x1.nope"}),
    # repositories, refs, scripts
    "repo http": _yaml(repo="http://github.com/a/b.git"),
    "repo semicolon": _yaml(repo="https://github.com/a/b.git;reboot"),
    "repo command substitution": _yaml(repo="https://github.com/$(reboot)/b.git"),
    "repo backticks": _yaml(repo="https://github.com/`id`/b.git"),
    "repo ssh": _yaml(repo="git@github.com:a/b.git"),
    "repo ext transport": _yaml(repo="ext::sh -c reboot"),
    "repo newline": _yaml(repo="https://github.com/a/b.git\nreboot"),
    "repo not a repository": _yaml(repo="/etc"),
    "ref option": _yaml(ref="--upload-pack=reboot"),
    "ref semicolon": _yaml(ref="main;reboot"),
    "ref command substitution": _yaml(ref="$(reboot)"),
    "ref space": _yaml(ref="main reboot"),
    "ref dotdot": _yaml(ref="a..b"),
    "script traversal": _yaml(script="../../etc/passwd.py"),
    "script absolute": _yaml(script="/abs/train.py"),
    "script semicolon": _yaml(script="train.py;reboot"),
    "script command substitution": _yaml(script="$(reboot).py"),
    "script option": _yaml(workload=None, script="--help"),
    "workdir traversal": _yaml(workload=None, script=None, workdir="../x", run="python x.py"),
    "setup control char": _yaml(workload=None, script=None, setup="pip install x\x07", run="python x.py"),
    # keys, regions, workloads, markets
    "unknown key": _with("budget: 5\n"),
    "misspelt key": _with("hyperparameter: {epochs: 3}\n"),
    "unknown region": _yaml(region="us-east-9"),
    "region injection": _yaml(region="us-east-1; reboot"),
    "misspelt workload": _yaml(workload="cartpole"),
    "workload case": _yaml(workload="CartPole_pg"),
    "unknown market": _yaml(market="spotty"),
    "unknown backend": _yaml(backend="lambda"),
    # hyperparameters
    "hyperparameter unknown to workload": _yaml(hyperparameters={"epochz": 3}),
    "hyperparameter reserved": _yaml(hyperparameters={"output": "/tmp/x"}),
    "hyperparameter PATH": _yaml(workload=None, script="train.py", hyperparameters={"PATH": "/tmp"}),
    "hyperparameter name shell": _yaml(workload=None, script="train.py", hyperparameters={"a;b": 1}),
    "hyperparameter value newline": _yaml(workload=None, script="train.py", hyperparameters={"x": "a\nb"}),
    "hyperparameter value mapping": _yaml(workload=None, script="train.py", hyperparameters={"x": {"y": 1}}),
    "epochs negative": _yaml(hyperparameters={"epochs": -1}),
    "epochs not a number": _yaml(hyperparameters={"epochs": "many"}),
    "epochs boolean": _yaml(hyperparameters={"epochs": True}),
    "device not a choice": _yaml(hyperparameters={"epochs": 3, "device": "tpu"}),
    "dropout out of range": _yaml(hyperparameters={"epochs": 3, "dropout": 1.5}),
    "learning rate negative": _yaml(hyperparameters={"epochs": 3, "learning_rate": -0.1}),
    "hidden layers zero": _yaml(hyperparameters={"epochs": 3, "hidden_layers": [0]}),
    "batch size zero": _yaml(matrix={"instance_type": ["c5.xlarge"], "batch_size": [0]}),
    "matrix value twice": _yaml(matrix={"instance_type": ["c5.xlarge"], "batch_size": [3, 3]}),
    "matrix too big": _yaml(workload=None, script="train.py", matrix={"instance_type": ["c5.xlarge"],
                                                                      "a": list(range(30)), "b": list(range(30))}),
    "target metric never emitted": _yaml(target={"metric": "val_accuracy", "value": 0.9}),
    "target shape": _yaml(target={"metric": "final10_reward"}),
    # metric regexes run under RE2 (linear time): what it cannot run is refused at validate, naming the field
    "metric regex backreference": _yaml(metric_definitions=[{"name": "loss", "regex": r"(\d)\1"}]),
    "metric regex lookbehind": _yaml(metric_definitions=[{"name": "loss", "regex": r"(?<=loss=)([0-9.]+)"}]),
    "metric regex huge repeat": _yaml(metric_definitions=[{"name": "loss", "regex": "((x{1000}){1000})"}]),
    "max runtime over a week": _yaml(max_runtime_minutes=7 * 24 * 60 + 1),
    "budget negative": _yaml(budget_usd=-1),
    "budget text": _yaml(budget_usd="ten"),
    "repeats too many": _yaml(repeats=21),
    # YAML 1.1's number surprises and integers no campaign holds: refused at validate, naming the field
    "epochs octal": _yaml().replace("epochs: 3", "epochs: 010"),
    "epochs negative octal": _yaml().replace("epochs: 3", "epochs: -07"),
    "epochs sexagesimal": _yaml().replace("epochs: 3", "epochs: 1:30"),
    "budget sexagesimal float": _yaml().replace("budget_usd: 10.0", "budget_usd: 1:30.5"),
    "matrix octal in a list": _yaml().replace("- 15\n", "- 017\n"),
    "max_attempts octal via alias": _with("x-base: &n 0_10\nmax_attempts: *n\n"),
    "epochs 5000 digits": _yaml().replace("epochs: 3", "epochs: " + "9" * 5000),
    "budget 5000 digits negative": _yaml().replace("budget_usd: 10.0", "budget_usd: -" + "1" * 5000),
    "seed just over 2**53": _yaml(hyperparameters={"epochs": 3, "seed": 2**53 + 1}),
    "hex beyond 2**53": _yaml().replace("epochs: 3", "epochs: 0x" + "f" * 15),
    "binary beyond 2**53": _yaml().replace("epochs: 3", "epochs: 0b1" + "0" * 60),
    "script hyperparameter 4000 digits": _yaml(workload=None, script="train.py").replace(
        "matrix:", "hyperparameters: {n: " + "7" * 4000 + "}\nmatrix:"),
    # hyperparameter names: an allowlist (lowercase identifiers) keeps the tools' own variables out
    **{f"hyperparameter {name}": _yaml(workload=None, script="train.py", hyperparameters={name: "x"})
       for name in ("HTTPS_PROXY", "https_proxy", "no_proxy", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_OPTIONS",
                    "LD_PRELOAD", "PYTHONPATH", "GIT_SSH_COMMAND", "_private", "Lr")},
    "matrix name CURL_CA_BUNDLE": _yaml(workload=None, script="train.py",
                                        matrix={"instance_type": ["c5.xlarge"], "CURL_CA_BUNDLE": ["/tmp/ca"]}),
    "matrix name all_proxy": _yaml(workload=None, script="train.py",
                                   matrix={"instance_type": ["c5.xlarge"], "all_proxy": ["socks5://x:1"]}),
    # sagemaker.role_arn: a full IAM role ARN only
    "role arn user": _sagemaker("arn:aws:iam::123456789012:user/sm"),
    "role arn short account": _sagemaker("arn:aws:iam::12345:role/sm"),
    "role arn no name": _sagemaker("arn:aws:iam::123456789012:role/"),
    "role arn sts": _sagemaker("arn:aws:sts::123456789012:assumed-role/sm/x"),
    "role arn prefix only": _sagemaker("arn:aws:iam::123456789012:role/x y"),
    "role arn not an arn": _sagemaker("sm-role"),
    "role arn wrong partition": _sagemaker("arn:azure:iam::123456789012:role/sm"),
    "role arn injection": _sagemaker("arn:aws:iam::123456789012:role/sm;reboot"),
}
for field, put in NUMERIC_FIELDS.items():
    for label, value in NON_FINITE.items():
        FILES[f"{field} {label}"] = put(value)

COMMANDS = {  # case id -> argv after `trainfleet` (no campaign file)
    **{f"{command} {label}": ["campaign", command, value]
       for command in ("status", "teardown", "collect")
       for label, value in {"star": "*", "prefix glob": "sweep*", "question mark": "swee?", "bracket": "[ab]c",
                            "slash": "a/b", "dotdot": "..", "empty": "", "uppercase": "Sweep", "space": "a b",
                            "newline": "a\nb"}.items()},
    **{f"models download {label}": ["models", "download", ref, "--out", "OUT"]
       for label, ref in {"traversal run": "sweep/../r1", "traversal campaign": "../sweep/r1",
                          "absolute": "/sweep/r1", "glob campaign": "*/r1", "glob run": "sweep/r*",
                          "three parts": "a/b/c", "empty": "", "no run": "sweep/", "nul": "sweep/r\x001"}.items()},
    "models list glob": ["models", "list", "--campaign", "swe*"],
    "models list empty": ["models", "list", "--campaign", ""],
    "validate missing file": ["campaign", "validate", "MISSING"],
    "validate a directory": ["campaign", "validate", "DIR"],
    "validate dev zero": ["campaign", "validate", "/dev/zero"],
    "run no file": ["campaign", "run"],
    "unknown option": ["campaign", "status", "sweep", "--bogus"],
    "poll seconds nan": ["campaign", "run", "SPEC", "--poll-seconds", "nan"],
}


@pytest.fixture(scope="module")
def account():
    """One in-process moto for the module: the stack's SSM exports and an empty bucket."""
    import importlib

    from instance_benchmarks.core.contract import SSM_EXPORTS, SSM_PREFIX

    for module in ("training_scripts.cartpole_pg", "instance_benchmarks.campaigns.spec", "instance_benchmarks.runner"):
        importlib.import_module(module)  # torch's and the CLI's imports, once, outside any case's time
    importlib.import_module("instance_benchmarks.catalog").load_catalog()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
            patch.delenv(name, raising=False)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
            patch.setenv(name, "testing")
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        with mock_aws():
            ssm, s3 = boto3.client("ssm", region_name=REGION), boto3.client("s3", region_name=REGION)
            s3.create_bucket(Bucket=BUCKET)
            values = {"bucket": BUCKET, "subnet_ids": "subnet-1", "security_group_id": "sg-1",
                      "instance_profile_arn": "arn:aws:iam::123456789012:instance-profile/x",
                      "launch_templates": '{"cpu": {"spot": "lt-1", "on-demand": "lt-2", "root_volume_gib": 30}}'}
            for key, suffix in SSM_EXPORTS.items():
                ssm.put_parameter(Name=f"{SSM_PREFIX}/{suffix}", Value=values[key], Type="String")
            yield {"ec2": boto3.client("ec2", region_name=REGION), "s3": s3,
                   "sagemaker": boto3.client("sagemaker", region_name=REGION)}


def _refused(account, monkeypatch, capsys, argv: list[str]) -> str:
    """Run `trainfleet argv` in-process; assert exit 2, one line on stderr, no traceback, nothing launched."""
    monkeypatch.setattr(sys, "argv", ["trainfleet", *argv])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2, (out, err)
    assert err.startswith("error: ") and err.endswith("\n") and len(err.splitlines()) == 1, err
    assert "Traceback" not in out + err
    assert account["ec2"].describe_instances()["Reservations"] == []
    assert account["ec2"].describe_spot_instance_requests()["SpotInstanceRequests"] == []
    assert account["s3"].list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    assert account["sagemaker"].list_training_jobs()["TrainingJobSummaries"] == []
    return err


def test_the_corpus_is_large_enough():
    assert len(FILES) + len(COMMANDS) >= 80


# Cases also fed to `campaign launch` and `campaign run` (on AWS, --yes): refused before any launch there too.
LAUNCHED = ["duplicate key", "budget_usd nan", "budget_usd inf", "repo semicolon", "ref option", "script traversal",
            "anchor bomb", "role arn user", "unknown instance type", "max_attempts inf"]


def _file_case(case: str, command: str):
    return pytest.param(case, command, id=f"{case}-{command}")


@pytest.mark.parametrize("case, command", [_file_case(case, "validate") for case in sorted(FILES)]
                         + [_file_case(case, command) for case in LAUNCHED for command in ("launch", "run")])
def test_hostile_campaign_files(account, monkeypatch, capsys, tmp_path, case, command):
    path = tmp_path / "campaign.yaml"
    content = FILES[case]
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    extra = ["--yes"] if command in ("launch", "run") else []
    _refused(account, monkeypatch, capsys, ["campaign", command, str(path), *extra])


# Cases refused for one reason that an earlier check would not give: the error must say that reason.
REASONS = {"octal": "is octal in YAML 1.1", "sexagesimal": "sexagesimal number in YAML 1.1", "digits": "beyond +-2**53",
           "2**53": "beyond +-2**53", "_proxy": "is a proxy variable", "hyperparameter ": "must be lowercase letters",
           "matrix name CURL": "must be lowercase letters"}


@pytest.mark.parametrize("case, reason", [(case, reason) for case in sorted(FILES) for word, reason in REASONS.items()
                                          if word in case and (word != "hyperparameter " or case.split()[-1].isupper()
                                                               or case.split()[-1] in ("_private", "Lr"))])
def test_numbers_and_names_are_refused_for_their_own_reason(account, monkeypatch, capsys, tmp_path, case, reason):
    path = tmp_path / "campaign.yaml"
    path.write_text(FILES[case])
    err = _refused(account, monkeypatch, capsys, ["campaign", "validate", str(path)])
    assert reason in err and "Traceback" not in err


def test_yaml_1_2_readings_and_lowercase_names_still_validate(account, monkeypatch, capsys, tmp_path):
    """What the refusals leave alone: a quoted '010', 00, 1_000, hex within bounds, lowercase names."""
    path = tmp_path / "campaign.yaml"
    text = _yaml(workload=None, script="train.py", hyperparameters={"lr_max": 1})
    path.write_text(text.replace("lr_max: 1", "lr_max: '010'\n  steps: 1_000\n  zero: 00\n  mask: 0xff"))
    monkeypatch.setattr(sys, "argv", ["trainfleet", "campaign", "validate", str(path)])
    try:
        cli.main()
    except SystemExit as exit_info:
        assert exit_info.code in (0, None), capsys.readouterr()
    out = capsys.readouterr().out
    assert "lr_max=010" in out and "steps=1000" in out and "zero=0" in out and "mask=255" in out, out


@pytest.mark.parametrize("case", sorted(COMMANDS))
def test_hostile_command_lines(account, monkeypatch, capsys, tmp_path, case):
    spec = tmp_path / "spec.yaml"
    spec.write_text(_yaml())
    (tmp_path / "dir").mkdir()
    substitute = {"OUT": str(tmp_path / "out"), "MISSING": str(tmp_path / "missing.yaml"), "DIR": str(tmp_path / "dir"),
                  "SPEC": str(spec)}
    _refused(account, monkeypatch, capsys, [substitute.get(arg, arg) for arg in COMMANDS[case]])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [["campaign", "teardown", "*"], ["campaign", "validate", "/dev/zero"]])
def test_a_real_process_exits_2_with_one_line(tmp_path, argv):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_DEFAULT_REGION": REGION,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # a call would fail to connect: validation comes first
    result = subprocess.run([sys.executable, "-c", "from instance_benchmarks.cli import main; main()", *argv],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.stdout + result.stderr
