"""The script environment contract for GPU runs: torchrun on multi-GPU types and the catalog's peaks."""
from __future__ import annotations

import json

from instance_benchmarks.campaigns.spec import DISTRIBUTED_WORKLOADS, WORKLOADS
from instance_benchmarks.catalog import load_catalog
from instance_benchmarks.core import contract
from training_scripts import loop


def test_one_gpu_runs_the_script_plainly_and_more_run_one_process_per_gpu():
    assert contract.script_command("py", "training_scripts/cifar10_resnet.py", ["--epochs=3"], 1) == \
        ["py", "training_scripts/cifar10_resnet.py", "--epochs=3"]
    assert contract.script_command("py", "train.py", ["--x=1"], 4) == \
        ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "train.py", "--x=1"]


def test_peaks_of_a_multi_gpu_type_reach_the_loop_per_gpu_used():
    spec = load_catalog().get("g5.12xlarge")
    text = contract.peak_tflops_env(spec.peaks(), spec.gpu_count)
    assert json.loads(text) == {"device": "cuda", "gpu_count": 4, "fp32": 140.0, "tf32": 140.0, "fp16": 280.0,
                                "bf16": 280.0}
    t4 = load_catalog().get("g4dn.xlarge")
    assert json.loads(contract.peak_tflops_env(t4.peaks(), 1)) == {"device": "cuda", "gpu_count": 1, "fp32": 8.1,
                                                                   "fp16": 65.0}  # no tf32, no bf16 on a T4
    assert contract.PEAK_TFLOPS_VAR == loop.PEAK_TFLOPS_VAR  # the script reads what the agent writes
    cpu = contract.peak_tflops_env({"fp32": 1.5, "fp16": 0}, 0)
    assert json.loads(cpu) == {"device": "cpu", "fp32": 1.5}  # no fp16 figure: no fp16 MFU


def test_distributed_workloads_are_bundled_ones_on_the_shared_loop():
    assert set(DISTRIBUTED_WORKLOADS) <= set(WORKLOADS) and "cartpole_pg" not in DISTRIBUTED_WORKLOADS
    assert {"cifar10_resnet", "gpt_tokens"} <= set(DISTRIBUTED_WORKLOADS)


def test_a_task_adds_only_allowlisted_names_to_the_runs_environment():
    """What validate refuses is dropped again where the task is read (an agent configuration written by
    something other than this trainfleet): no tool variable, no proxy, no non-text value."""
    from instance_benchmarks.core.contract import task_environment

    hostile = {"HTTPS_PROXY": "http://evil:8080", "https_proxy": "http://evil", "SSL_CERT_FILE": "/tmp/ca.pem",
               "LD_PRELOAD": "/tmp/x.so", "PYTHONPATH": "/tmp", "NODE_OPTIONS": "--require /tmp/x.js", "_x": "1",
               "lr": "0.1", "batch_size": "32", "n": 3, "a b": "1"}
    assert task_environment({"env": hostile}) == {"lr": "0.1", "batch_size": "32"}
    assert task_environment({"env": ["lr"]}) == {} and task_environment({}) == {} and task_environment(None) == {}
