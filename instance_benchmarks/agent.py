"""The agent that runs on a training instance (or as a local worker process in the embedded default).

    python -m instance_benchmarks.agent --config-b64 <base64 JSON written by the launcher>

It runs the campaign's training script with checkpoints and outputs in the run's S3 prefix, watches
for a spot interruption notice (IMDSv2, every 5 s) and forwards it as SIGTERM so the script
checkpoints and exits with status 75, records the attempt (time, cost at the recorded price) in
launch.json, and for a finished run writes `result.json` last: the benchmark figures, the price used,
the hardware/software fingerprint and the code hash.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from instance_benchmarks.harness import local_peak_tflops, summarize
from instance_benchmarks.pricing import billed_seconds, cost_usd
from instance_benchmarks.results import read_json, run_prefix, write_json
from training_scripts.loop import EXIT_PREEMPTED
from training_scripts.storage import S3Location

IMDS_DEFAULT = "http://169.254.169.254"
POLL_SECONDS = 5.0


def imds_endpoint() -> str | None:
    """IMDS base URL, or None where metadata is disabled (botocore's AWS_EC2_METADATA_DISABLED)."""
    if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() == "true":
        return None
    return os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT", IMDS_DEFAULT).rstrip("/")


def spot_interruption_notice(endpoint: str, timeout: float = 2.0) -> dict | None:
    """IMDSv2: a session token, then spot/instance-action (404 = no notice)."""
    token_request = urllib.request.Request(f"{endpoint}/latest/api/token", method="PUT",
                                           headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    with urllib.request.urlopen(token_request, timeout=timeout) as response:
        token = response.read().decode()
    action_request = urllib.request.Request(f"{endpoint}/latest/meta-data/spot/instance-action",
                                            headers={"X-aws-ec2-metadata-token": token})
    try:
        with urllib.request.urlopen(action_request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


class InterruptionWatcher(threading.Thread):
    """Polls for a spot notice; on one, sends SIGTERM to the training process once."""

    def __init__(self, endpoint: str, process: subprocess.Popen, interval: float = POLL_SECONDS) -> None:
        super().__init__(daemon=True)
        self.endpoint, self.process, self.interval = endpoint, process, interval
        self.notice: dict | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval) and self.process.poll() is None:
            try:
                notice = spot_interruption_notice(self.endpoint)
            except (OSError, ValueError):
                continue  # IMDS hiccup: try again next tick
            if notice is not None:
                self.notice = notice
                print(f"trainfleet agent: spot interruption notice {notice}; checkpointing", flush=True)
                self.process.send_signal(signal.SIGTERM)
                return

    def stop(self) -> None:
        self._halt.set()


def code_hash(script: str) -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "sha256:" + hashlib.sha256(Path(script).read_bytes()).hexdigest()


def update_attempt(location: S3Location, attempt: int, **fields) -> dict:
    record = read_json(location, "launch.json") or {"attempts": []}
    for entry in record["attempts"]:
        if entry["attempt"] == attempt:
            entry.update(fields)
    write_json(location, "launch.json", record)
    return record


def run_agent(config: dict, s3, *, python: str = sys.executable) -> int:
    prefix = run_prefix(config["campaign"], config["run_id"])
    location = S3Location(config["bucket"], prefix, s3)
    base_uri = f"s3://{config['bucket']}/{prefix}"
    local = os.environ.get("TRAINFLEET_HOST_LABEL")
    command = [python, config["script"], *config["args"], f"--output={base_uri}/train",
               f"--checkpoint={base_uri}/checkpoints"]
    print(f"trainfleet agent: {config['run_id']} attempt {config['attempt']}: {' '.join(command)}", flush=True)
    # The script imports its package (training_scripts/...) from the repository root, the working directory.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(command, env=env)
    watcher = None
    endpoint = imds_endpoint()
    if endpoint:
        interval = float(os.environ.get("TRAINFLEET_SPOT_POLL_SECONDS", POLL_SECONDS))
        watcher = InterruptionWatcher(endpoint, process, interval=interval)
        watcher.start()
    deadline = config["max_runtime_minutes"] * 60
    try:
        exit_code = process.wait(timeout=deadline)
        timed_out = False
    except subprocess.TimeoutExpired:
        process.kill()
        exit_code, timed_out = process.wait(), True
    if watcher:
        watcher.stop()
    noticed = watcher is not None and watcher.notice is not None
    # After a spot notice the attempt is interrupted however the script ended (a SIGTERM that lands
    # before the script installed its handler kills it; it then resumes from its last checkpoint).
    outcome = ("timeout" if timed_out else "completed" if exit_code == 0
               else "interrupted" if exit_code == EXIT_PREEMPTED or noticed else "failed")
    finished = datetime.now(timezone.utc)
    seconds = (finished - datetime.fromisoformat(config["launched_at"])).total_seconds()
    price = config["price"]["usd_per_hour"]
    record = update_attempt(location, config["attempt"], outcome=outcome, exit_code=exit_code,
                            ended_at=finished.isoformat(timespec="seconds"), instance_seconds=round(seconds, 3),
                            billed_seconds=billed_seconds(seconds), cost_usd=cost_usd(seconds, price),
                            host=local or f"ec2 {config['instance_type']}",
                            interruption_notice=watcher.notice if watcher else None)
    print(f"trainfleet agent: attempt {config['attempt']} {outcome} (exit {exit_code}) after {seconds:.1f}s", flush=True)
    if outcome != "completed":
        return EXIT_PREEMPTED if outcome == "interrupted" else 1

    train = location.child("train")
    train_result = read_json(train, "result.json")
    history = [json.loads(line) for line in (train.read_bytes("metrics.jsonl") or b"").splitlines() if line.strip()]
    if local:
        peak, peak_source = local_peak_tflops()
    else:
        precision = "fp16" if train_result.get("precision") in ("fp16", "bf16") else "fp32"
        peak, peak_source = config["peak_tflops"][precision], f"catalog {config['instance_type']} {precision}"
    figures = summarize(train_result, history, usd_per_hour=price, peak_tflops=peak, target=config.get("target"))
    attempts = record["attempts"]
    result = {
        "status": "complete",
        "campaign": config["campaign"], "run_id": config["run_id"], "workload": config["workload"],
        "instance_type": config["instance_type"], "market": config["market"], "price": config["price"],
        "hyperparameters": config["hyperparameters"],
        "measured_on": "local" if local else "ec2",
        "host": local or f"ec2 {config['instance_type']}",
        "fingerprint": train_result.get("fingerprint"), "code": code_hash(config["script"]),
        "peak_tflops": peak, "peak_source": peak_source,
        "attempts": len(attempts),
        "interruptions": sum(1 for a in attempts if a.get("outcome") == "interrupted"),
        "cost_usd": sum(a.get("cost_usd") or 0.0 for a in attempts),
        "instance_seconds": sum(a.get("instance_seconds") or 0.0 for a in attempts),
        "billable_seconds": sum(a.get("billed_seconds") or 0 for a in attempts),
        "spot_savings": 1 - price / config["price"]["on_demand_usd_per_hour"] if config["market"] == "spot" else 0.0,
        "backend": "ec2",
        "train_artifacts": train_result["artifacts"],
        "final": train_result["final"],
        "target": config.get("target"),
        "completed_at": finished.isoformat(timespec="seconds"),
        **figures,
    }
    write_json(location, "result.json", result)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="trainfleet on-instance agent")
    parser.add_argument("--config-b64", required=True)
    args = parser.parse_args(argv)
    config = json.loads(base64.b64decode(args.config_b64))
    import boto3

    return run_agent(config, boto3.client("s3", region_name=config["region"]))


if __name__ == "__main__":
    sys.exit(main())
