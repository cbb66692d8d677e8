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


def test_a_run_is_measured_against_the_peak_of_the_precision_it_recorded():
    a100 = load_catalog().get("p4d.24xlarge").peaks()
    assert (contract.peak_for(a100, "fp32"), contract.peak_for(a100, "tf32"), contract.peak_for(a100, "bf16")) == \
        (156.0, 1248.0, 2496.0)  # 8 x 19.5, 8 x 156, 8 x 312 dense
    legacy = {"fp32": 19.5, "fp16": 312.0}  # peaks recorded before tf32 was
    assert contract.peak_for(legacy, "bf16") == 312.0 and contract.peak_for(legacy, "tf32") is None
