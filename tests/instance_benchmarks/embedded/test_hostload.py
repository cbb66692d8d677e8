"""The embedded default's host load: what other processes used of this machine's CPUs while an instance ran."""
import json
import resource
import subprocess
import sys
import time

import pytest

from instance_benchmarks.embedded.hostload import competition_warning
from instance_benchmarks.embedded.worker import LocalWorker
from instance_benchmarks.measure import hostload
from instance_benchmarks.measure.hostload import HostLoadMeter
from training_scripts.storage import S3Location

BURN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"


def test_busy_time_is_split_into_the_runs_trainfleets_and_the_rest(monkeypatch):
    readings = iter([(100.0, 10.0, 4.0, 1.0), (102.0, 13.0, 5.0, 1.5)])  # monotonic, busy, children, own

    def reading(index):
        return lambda *_: current[index]

    current = next(readings)
    for index, name in enumerate(("busy_cpu_seconds", "_children_seconds", "_own_seconds"), start=1):
        monkeypatch.setattr(hostload, name, reading(index))
    monkeypatch.setattr(hostload.time, "monotonic", reading(0))
    meter = HostLoadMeter().start()
    current = next(readings)
    load = meter.stop()
    # 3 busy CPU seconds in 2 s: 1 the instance's, 0.5 trainfleet's, 1.5 other processes'
    assert (load["busy_cpus"], load["run_cpus"], load["other_cpus"]) == (1.5, 0.5, 0.75)
    assert competition_warning(load, "c5-a").startswith("warning: other processes used 0.8 of ")
    assert competition_warning({**load, "other_cpus": 0.1}, "c5-a") is None and competition_warning(None, "x") is None


def test_a_process_outside_the_instance_is_counted_as_competition():
    competitor = subprocess.Popen([sys.executable, "-c", BURN.format(seconds=4)])
    try:
        time.sleep(0.5)
        meter = HostLoadMeter().start()
        time.sleep(2.0)
        load = meter.stop()
    finally:
        competitor.kill()
        competitor.wait()
    assert load["other_cpus"] >= 0.4 and load["run_cpus"] < 0.1, load


def test_the_instances_own_processes_are_not_competition():
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    meter = HostLoadMeter().start()
    subprocess.run([sys.executable, "-c", BURN.format(seconds=1.5)], check=True)  # reaped: the instance's own
    load = meter.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    burned = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    # all of the child's CPU time is the run's, however busy the machine is (a loaded CI machine gives it less)
    assert burned > 0.1 and load["run_cpus"] * load["seconds"] == pytest.approx(burned, abs=0.05), (load, burned)
    assert load["busy_cpus"] >= load["run_cpus"] - 0.1, load


class _Cloud:
    def __init__(self, s3, bucket):
        self.s3, self.outputs = s3, {"Storage": {"BucketName": bucket}}

    def client(self, service):
        return self.s3


def test_the_worker_records_the_load_in_the_attempt_and_warns(s3, bucket, tmp_path):
    location = S3Location(bucket, "campaigns/c/runs/c5-a", s3)
    location.write_bytes("launch.json", json.dumps({"attempts": [{"attempt": 1}, {"attempt": 2}]}).encode())
    said = []
    worker = LocalWorker(_Cloud(s3, bucket), host=None, log=said.append, root=tmp_path)
    instance = {"Tags": [{"Key": "trainfleet:campaign", "Value": "c"}, {"Key": "trainfleet:run", "Value": "c5-a"},
                         {"Key": "trainfleet:attempt", "Value": "2"}]}
    load = {"cpus": 2, "seconds": 10.0, "busy_cpus": 2.0, "run_cpus": 0.9, "other_cpus": 1.1, "load_avg_1m": 3.0}
    worker.record_load(instance, load)
    attempts = json.loads(location.read_bytes("launch.json"))["attempts"]
    assert attempts == [{"attempt": 1}, {"attempt": 2, "host_load": load}]
    assert said == ["warning: other processes used 1.1 of 2 CPUs on average while c5-a ran here (its own processes "
                    "0.9): its timings are slower and noisier than on an idle machine"]
    worker.record_load(instance, {**load, "other_cpus": 0.0})
    assert len(said) == 1


@pytest.mark.parametrize("text", ["", "cpu  x y\n"])
def test_unreadable_proc_stat_records_nothing(tmp_path, text):
    stat = tmp_path / "stat"
    stat.write_text(text)
    assert hostload.busy_cpu_seconds(str(stat)) is None
    assert hostload.busy_cpu_seconds(str(tmp_path / "missing")) is None


def test_a_sagemaker_jobs_load_goes_to_the_attempt_of_that_job(s3, bucket):
    from instance_benchmarks.embedded.hostload import record_host_load

    location = S3Location(bucket, "campaigns/c/runs/sm-a", s3)
    location.write_bytes("launch.json", json.dumps({"attempts": [{"attempt": 1, "job_name": "tf-sm-a-a1-1"},
                                                                 {"attempt": 2, "job_name": "tf-sm-a-a2-1"}]}).encode())
    load = {"cpus": 2, "seconds": 5.0, "busy_cpus": 1.0, "run_cpus": 0.9, "other_cpus": 0.0, "load_avg_1m": 1.0}
    said = []
    record_host_load(location, load, "sm-a", said.append, job_name="tf-sm-a-a2-1")
    assert [a.get("host_load") for a in json.loads(location.read_bytes("launch.json"))["attempts"]] == [None, load]
    assert said == []
