"""Progress of a running attempt, pushed to S3 while the script runs (stdlib + boto3: runs on the instance).

Every `interval` seconds (and once more at the end) the agent writes to the attempt's `logs/attempt-N/`:

* `progress.json`: the latest value of every metric the script printed so far (its step/epoch lines and
  its loss/accuracy lines merged), the number of metric records and when it was written;
* `bootstrap.log`: the instance's log so far (user data, agent and the script's output), if it grew.

`trainfleet campaign run` and `campaign status` show the progress; `trainfleet campaign logs --follow`
follows the log. The agent uploads the complete log once more when the attempt ends.
"""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path

PROGRESS_SECONDS = 30.0


class ProgressPush(threading.Thread):
    def __init__(self, logs, records: list, log_path: Path, interval: float = PROGRESS_SECONDS) -> None:
        super().__init__(daemon=True)
        self.logs, self.records, self.log_path, self.interval = logs, records, log_path, interval
        self.latest: dict = {}
        self._seen_records = 0
        self._log_size = -1
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.errors: list[str] = []

    def push(self) -> None:
        with self._lock:
            records = self.records[self._seen_records:]  # appended by the script's reader thread
            if records:
                for record in records:
                    self.latest.update({k: v for k, v in record.items() if k != "t"})
                self._seen_records += len(records)
                self.logs.write_bytes("progress.json", json.dumps({
                    "latest": self.latest, "records": self._seen_records,
                    "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}, sort_keys=True).encode())
            try:
                size = self.log_path.stat().st_size
            except OSError:
                return
            if size != self._log_size:
                self.logs.write_bytes(self.log_path.name, self.log_path.read_bytes())
                self._log_size = size

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                self.push()
            except Exception as error:  # noqa: BLE001 - progress is best effort; the next tick retries
                self.errors.append(str(error))

    def stop(self) -> None:
        """Stop pushing, after one last push of what the script printed."""
        self._halt.set()
        self.join(timeout=60)
        try:
            self.push()
        except Exception as error:  # noqa: BLE001
            self.errors.append(str(error))
