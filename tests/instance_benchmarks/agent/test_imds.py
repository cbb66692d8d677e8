import signal
import subprocess
import sys

from instance_benchmarks.agent.imds import InterruptionWatcher, spot_interruption_notice
from tests.instance_benchmarks.embedded.fake_imds import FakeIMDS


def test_imdsv2_notice_needs_a_token_and_404_means_none():
    with FakeIMDS(interrupt_after=2) as imds:
        assert spot_interruption_notice(imds.endpoint) is None
        assert spot_interruption_notice(imds.endpoint)["action"] == "terminate"
        assert spot_interruption_notice(imds.endpoint) is None  # one notice only
        assert imds.rejected == 0 and len(imds.tokens) == 3


def test_watcher_sends_sigterm_on_notice():
    code = "import signal,sys,time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(75))\ntime.sleep(30)\n"
    process = subprocess.Popen([sys.executable, "-c", code])
    with FakeIMDS(interrupt_after=3) as imds:
        watcher = InterruptionWatcher(imds.endpoint, lambda notice: process.send_signal(signal.SIGTERM), interval=0.05)
        watcher.start()
        assert process.wait(timeout=20) == 75
        watcher.join(timeout=5)
    assert watcher.notice == {"action": "terminate", "time": "2026-11-22T22:00:00Z"}
