"""Names shared by the stacks, the launcher, the instance agent and the training scripts.

One place for the tags resources are found by, the SSM parameters the Compute stack exports, the S3
layout of campaigns, the environment variables a training script is given, and the exit codes.
Pure data: no AWS SDK, importable on a bare instance and at synth time.

    campaigns/<campaign>/campaign.json                 spec + estimate per backend, written at launch
    campaigns/<campaign>/agent/<wheel>                 the trainfleet wheel the instances install
    campaigns/<campaign>/runs/<run>/launch.json        attempts: instance/job, type, market, price, times, outcome
    campaigns/<campaign>/runs/<run>/agent/attempt-<n>.json   the agent's configuration (task included) for one
                                                       EC2 attempt; its user data carries only key and SHA-256
    campaigns/<campaign>/runs/<run>/checkpoints/       TRAINFLEET_CHECKPOINT_DIR, restored before each attempt
    campaigns/<campaign>/runs/<run>/train/             TRAINFLEET_OUTPUT_DIR (model, metrics.jsonl, checksums)
    campaigns/<campaign>/runs/<run>/logs/              bootstrap and script output per attempt
    campaigns/<campaign>/runs/<run>/result.json        the benchmark result: written last, marks a complete run
    campaigns/<campaign>/report/                       report.csv, report.parquet, report.md, *.png
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone

# The version the stacks are built from: each of Storage, Network and Compute outputs it (VERSION_OUTPUT), and
# `trainfleet doctor` compares it with its own. A constant, so synth reads no package metadata; pyproject.toml's
# version is kept equal to it (tests/stacks/test_app_synth.py).
TRAINFLEET_VERSION = "0.1.0"
VERSION_OUTPUT = "TrainfleetVersion"
# The stacks every backend needs (`cdk deploy Storage Network Compute`), by their CloudFormation names.
STACKS = ("Storage", "Network", "Compute")

CAMPAIGN_TAG = "trainfleet:campaign"
RUN_TAG = "trainfleet:run"
ATTEMPT_TAG = "trainfleet:attempt"
JOB_TAG = "trainfleet:job"

# How a run is bought: the spec's `market`, a price quote's, and the Compute stack's launch templates per image.
MARKETS = ("spot", "on-demand")

# Where a campaign runs when its spec names no `backend:` (backends/registry.py's DEFAULT is this name), and the
# capabilities a campaign may ask of its backend (a backend's CAPABILITIES; the campaign file's parse checks them).
DEFAULT_BACKEND = "ec2"
FALLBACK = "fallback"          # relaunch an interrupted run with another instance type / market
ANY_REPO = "any_repo"          # clone the campaign's own repository and run any script in it
MULTI_NODE = "multi_node"      # one run on several instances (torchrun across them)

SSM_PREFIX = "/trainfleet"
# Infrastructure field -> SSM parameter name below the prefix (written by the Compute stack).
SSM_EXPORTS = {
    "bucket": "bucket-name",
    # JSON: {"gpu": {"spot": "lt-...", "on-demand": "lt-...", "root_volume_gib": 100}, "cpu": {...}}
    "launch_templates": "launch-templates",
    "subnet_ids": "subnet-ids",
    "security_group_id": "security-group-id",
    "instance_profile_arn": "instance-profile-arn",
}

# The IAM actions of the launcher's calls on the EC2 backend (listed in stacks/constructs/launcher_policy.py), by
# the launcher policy's statement that grants them: the policy is built from this, and `trainfleet doctor`
# simulates each of them for the caller.
# The service-linked role a spot RunInstances needs (the launcher policy may create it; doctor checks it).
SPOT_SERVICE = "spot.amazonaws.com"
SPOT_SERVICE_LINKED_ROLE = f"aws-service-role/{SPOT_SERVICE}/AWSServiceRoleForEC2Spot"
LAUNCHER_ACTIONS = {
    "RunFromTrainfleetTemplates": ("ec2:RunInstances",),
    "RunCampaignTaggedInstances": ("ec2:RunInstances",),
    "TagOnlyAtLaunch": ("ec2:CreateTags",),
    "EndCampaignTaggedOnly": ("ec2:TerminateInstances", "ec2:CancelSpotInstanceRequests"),
    # EC2's Describe* actions support no resource-level permissions: they are granted on "*".
    "DescribeInstancesAndSpot": ("ec2:DescribeInstances", "ec2:DescribeSpotInstanceRequests",
                                 "ec2:DescribeSpotPriceHistory", "ec2:DescribeSubnets"),
    "CreateSpotServiceLinkedRole": ("iam:CreateServiceLinkedRole",),
    "PassInstanceRoleToEc2": ("iam:PassRole",),
    "ListArtifactBucket": ("s3:ListBucket",),
    "ReadWriteCampaigns": ("s3:GetObject", "s3:PutObject"),
    "ReadExports": ("ssm:GetParameter", "ssm:GetParameters"),
}


def launch_template_version_parameter(ssm_prefix: str, kind: str, market: str) -> str:
    """The SSM parameter holding one launch template's latest version, written by the Compute stack and read by
    job stacks at deploy. Not a CloudFormation export: the version changes whenever the image's AMI does, and
    CloudFormation refuses to change an exported value that another stack imports."""
    return f"{ssm_prefix}/launch-template-versions/{kind}-{market}"


# What a training script is given (see README "Bring your own script").
OUTPUT_DIR_VAR = "TRAINFLEET_OUTPUT_DIR"          # everything written here is uploaded as the run's artifacts
SAGEMAKER_MODEL_DIR_VAR = "SM_MODEL_DIR"          # alias of the output dir, as SageMaker names it
CHECKPOINT_DIR_VAR = "TRAINFLEET_CHECKPOINT_DIR"  # restored before an attempt, synced to S3 during and after it
RUN_ID_VAR = "TRAINFLEET_RUN_ID"
INSTANCE_TYPE_VAR = "TRAINFLEET_INSTANCE_TYPE"
# JSON {"device": "cuda"|"cpu", "gpu_count": n, "fp32": TFLOP/s, "tf32": .., "fp16": .., "bf16": ..}: the catalog's
# dense peaks (totals over the instance's GPUs) for MFU; training_scripts/loop.py reads the one of the precision
# that ran (bf16 = fp16 dense on Ampere and newer).
PEAK_TFLOPS_VAR = "TRAINFLEET_PEAK_TFLOPS"

EXIT_INPUT_ERROR = 2
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: checkpointed on request (spot notice / SIGTERM); relaunch to resume
# the task a SageMaker job's code channel carries for agent/container.py (written by backends/sagemaker/jobs.py)
TASK_FILE = "trainfleet_task.json"
NO_METRICS = "no metrics"  # an attempt's outcome: its script printed no metric line where one was expected


def now_iso() -> str:
    """The timestamp format of every record (launch.json, result.json, quotes): UTC, whole seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def campaign_prefix(campaign: str) -> str:
    return f"campaigns/{campaign}"


def agent_config_key(campaign: str, run_id: str, attempt: int) -> str:
    """Where the launcher puts one EC2 attempt's agent configuration (the instance role reads campaigns/)."""
    return f"{run_prefix(campaign, run_id)}/agent/attempt-{int(attempt)}.json"


def run_prefix(campaign: str, run_id: str) -> str:
    return f"{campaign_prefix(campaign)}/runs/{run_id}"


def agent_prefix(campaign: str) -> str:
    return f"{campaign_prefix(campaign)}/agent"


# A hyperparameter is an environment variable of its name in the run, so names are an allowlist: lowercase
# identifiers (the variables programs read are upper case: PATH, HTTPS_PROXY, SSL_CERT_FILE, REQUESTS_CA_BUNDLE,
# NODE_OPTIONS, LD_PRELOAD, PYTHONPATH, ...), never a `*proxy` (curl, pip and requests read `https_proxy` too).
HYPERPARAMETER_NAME = re.compile(r"[a-z][a-z0-9_]*")
PROXY_VARIABLE = re.compile(r"\w*proxy")


def task_environment(task: dict) -> dict[str, str]:
    """The variables a task's hyperparameters add to its run's environment: only text under allowed names
    (validated at `campaign validate`; checked again where the task is read, on the instance)."""
    env = task.get("env") if isinstance(task, dict) else None
    return {name: value for name, value in (env.items() if isinstance(env, dict) else ())
            if isinstance(name, str) and isinstance(value, str) and HYPERPARAMETER_NAME.fullmatch(name)
            and not PROXY_VARIABLE.fullmatch(name)}


def hyperparameter_text(hyperparameters: dict) -> dict[str, str]:
    """Hyperparameters as the text a training script parses: lists become comma-separated tuples,
    booleans lowercase. Shared by EC2 (`--name=value`) and SageMaker (`--name value`)."""
    out = {}
    for name, value in hyperparameters.items():
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = str(value).lower()
        out[name] = str(value)
    return out


def override_args(hyperparameters: dict) -> list[str]:
    """`--name=value` arguments for a training script."""
    return [f"--{name}={value}" for name, value in hyperparameter_text(hyperparameters).items()]


def peak_tflops_env(peaks: dict, gpu_count: int) -> str:
    """The value of PEAK_TFLOPS_VAR for an instance type's catalog peaks."""
    device = {"device": "cuda", "gpu_count": gpu_count} if gpu_count else {"device": "cpu"}
    return json.dumps({**device, **{k: v for k, v in peaks.items() if v}}, sort_keys=True)


def script_command(python: str, script: str, args: list[str], processes: int = 1) -> list[str]:
    """How a script is started: plainly, or with one process per GPU under torchrun (standalone: one node)."""
    if processes > 1:
        return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", script, *args]
    return [python, script, *args]

# trainfleet's bundled workloads (`workload:` in a campaign file), and those on the shared loop's
# DistributedDataParallel path: torchrun, one process per GPU, on multi-GPU types (EC2 agent and SageMaker alike).
WORKLOADS = ("tabular_mlp", "cnn_digits", "lstm_regressor", "cartpole_pg", "cifar10_resnet", "gpt_tokens")
DISTRIBUTED_WORKLOADS = ("tabular_mlp", "cnn_digits", "lstm_regressor", "cifar10_resnet", "gpt_tokens")
