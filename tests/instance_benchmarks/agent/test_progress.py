"""The agent's live progress: the latest metric values and the log so far, pushed while the script runs."""
import json

from instance_benchmarks.agent.progress import ProgressPush
from training_scripts.storage import LocalLocation


def test_each_push_merges_the_new_records_and_uploads_the_log_only_when_it_grew(tmp_path):
    logs, log = LocalLocation(tmp_path / "s3"), tmp_path / "bootstrap.log"
    records: list[dict] = []
    push = ProgressPush(logs, records, log, interval=3600)
    push.push()
    assert logs.list() == []  # nothing printed yet, no log yet
    log.write_text("cloning\n")
    records += [{"epoch": 1, "step": 10, "t": 1.0}, {"val_loss": 0.7, "t": 1.5}]
    push.push()
    progress = json.loads(logs.read_bytes("progress.json"))
    assert progress["latest"] == {"epoch": 1, "step": 10, "val_loss": 0.7} and progress["records"] == 2
    assert logs.read_bytes("bootstrap.log") == b"cloning\n"
    logs.delete("bootstrap.log")
    push.push()
    assert logs.read_bytes("bootstrap.log") is None  # unchanged: not uploaded again
    records.append({"epoch": 2, "step": 20, "t": 3.0})
    with log.open("a") as out:
        out.write("epoch 2\n")
    push.start()
    push.stop()  # one last push of what the script printed
    progress = json.loads(logs.read_bytes("progress.json"))
    assert progress["latest"] == {"epoch": 2, "step": 20, "val_loss": 0.7} and progress["records"] == 3
    assert logs.read_bytes("bootstrap.log") == b"cloning\nepoch 2\n" and push.errors == []
