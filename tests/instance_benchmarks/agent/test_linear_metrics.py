"""Untrusted regexes over untrusted output: metric_definitions run under RE2 (linear time), so `(a+)+$` over
long lines, progress bars that redraw with "\\r" and 1 MB lines leave the agent's own threads (deadline, spot
notice, checkpoint and progress pushes) on time. Fake scripts stand in for the user's; the agent's real
threads and a fake metadata service run as on an instance."""
from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import pytest

from instance_benchmarks.agent.imds import InterruptionWatcher
from instance_benchmarks.agent.main import KEPT_LINE_CHARS, attempt_outcome, output_lines, start_task, wait_task
from instance_benchmarks.measure.metrics import MetricDefinitionError, MetricParser, parse_definitions
from tests.instance_benchmarks.embedded.fake_imds import FakeIMDS

EVIL = [{"name": "x", "regex": "(a+)+$"}]
# long lines that make Python's backtracking `re` take ~2**N steps for `(a+)+$` (the '!' defeats the `$`)
LONG_A_LINES = "import sys\nwhile True:\n    sys.stdout.write('a' * 20000 + '!\\n')\n    sys.stdout.flush()\n"


def _start(tmp_path: Path, source: str, task: dict):
    (tmp_path / "train.py").write_text(source)
    task = {"script": "train.py", "args": [], **task}
    return task, start_task(task, Path(sys.executable), cwd=tmp_path, env=None, log_path=tmp_path / "script.log")


def test_a_catastrophic_regex_over_long_lines_keeps_the_deadline(tmp_path):
    task, run = _start(tmp_path, LONG_A_LINES, {"metric_definitions": EVIL})
    started = time.monotonic()
    code, sliced = wait_task(run, task, 2.0)
    assert time.monotonic() - started < 8  # the deadline at 2 s, SIGKILL at most a grace later
    assert run.stop_reason.startswith("deadline")
    assert attempt_outcome(code, stop_reason=run.stop_reason, sliced=sliced) == "timeout"
    assert (tmp_path / "script.log").stat().st_size > 20000 * 10  # the reader kept up with the script


def test_a_catastrophic_regex_over_long_lines_keeps_the_spot_notice_on_time(tmp_path):
    task, run = _start(tmp_path, LONG_A_LINES, {"metric_definitions": EVIL})
    with FakeIMDS(interrupt_after=10) as imds:  # the notice on the 10th poll, 0.5 s in
        watcher = InterruptionWatcher(imds.endpoint, lambda notice: run.stop(f"spot interruption notice {notice}"),
                                      0.05)
        watcher.start()
        started = time.monotonic()
        code, sliced = wait_task(run, task, 120.0)
        watcher.stop()
    assert time.monotonic() - started < 10  # stopped on the notice, long before the 120 s deadline
    assert run.stop_reason.startswith("spot interruption notice") and imds.polls >= 10
    assert attempt_outcome(code, stop_reason=run.stop_reason, sliced=sliced, notice=watcher.notice) == "interrupted"


def test_a_script_printing_long_lines_under_a_catastrophic_regex_completes(tmp_path):
    source = ("for i in range(50):\n    print('a' * 100000 + '!')\n"
              "print('a' * (1 << 21))\nprint('loss=0.25')\n")  # and a 2 MB line, read in 1 MB pieces
    task, run = _start(tmp_path, source, {"metric_definitions": EVIL + [{"name": "loss", "regex": r"loss=([0-9.]+)"}],
                                          "metrics_grace_seconds": 60.0})
    started = time.monotonic()
    code, sliced = wait_task(run, task, 60.0)
    assert code == 0 and time.monotonic() - started < 20
    assert [r["loss"] for r in run.records] == [0.25]
    assert attempt_outcome(code, stop_reason=run.stop_reason, sliced=sliced) == "completed"
    assert max(len(line) for line in run.unmatched) <= KEPT_LINE_CHARS  # the note keeps no megabyte lines


def test_a_progress_bar_that_never_prints_a_newline_is_read_as_it_redraws(tmp_path):
    """tqdm-style output: "\\r" redraws, no "\\n" for ever. Each redraw is a line, so its metric arrives now,
    not at a newline that never comes (which would end the run as `no metrics`)."""
    source = ("import sys, time\ni = 0\nwhile True:\n    i += 1\n"
              "    sys.stdout.write(f'\\r{i}it loss={1.0 / i:.4f}'); sys.stdout.flush(); time.sleep(0.02)\n")
    task, run = _start(tmp_path, source, {"metric_definitions": [{"name": "loss", "regex": r"loss=([0-9.]+)"}],
                                          "metrics_grace_seconds": 1.0})
    code, sliced = wait_task(run, task, 3.0)
    assert run.stop_reason.startswith("deadline") and run.measured and len(run.records) > 10
    assert b"\r" in (tmp_path / "script.log").read_bytes()  # the log keeps the redraws as printed


@pytest.mark.parametrize(("data", "limit", "expected"), [
    (b"a\rb\nc", 100, [("a", "\r"), ("b", "\n"), ("c", "")]),
    (b"loss=1\r\n", 100, [("loss=1", "\r"), ("", "\n")]),
    (b"x" * 25 + b"\n", 10, [("x" * 10, ""), ("x" * 10, ""), ("x" * 5, "\n")]),
    (b"\xff\xfeok\n", 100, [("\ufffd\ufffdok", "\n")]),
    (b"", 100, []),
], ids=["cr-and-lf", "crlf", "over-the-limit", "not-utf8", "nothing"])
def test_output_lines_end_at_cr_or_lf_and_never_exceed_the_limit(data, limit, expected):
    assert list(output_lines(io.BufferedReader(io.BytesIO(data)), limit)) == expected


@pytest.mark.parametrize(("regex", "why"), [
    (r"loss=(\d+)\1", "invalid escape sequence: \\1"),          # backreference
    (r"(?=loss)loss=(\d+)", "invalid perl operator: (?="),      # lookahead
    (r"(?<=loss=)(\d+)", "invalid perl operator: (?<"),         # lookbehind
    (r"(?!nan)(\d+)", "invalid perl operator: (?!"),            # negative lookahead
    (r"loss=(\d+)\Z", "invalid escape sequence: \\Z"),          # Python-only anchor
    (r"(?>loss)=(\d+)", "invalid perl operator: (?>"),          # atomic group
    (r"((a{100}){100}){100}", "invalid repetition size"),        # a program too large to run
    ("(\ud800)", "does not compile"),                            # no UTF-8
])
def test_what_re2_cannot_run_is_refused_naming_the_field(regex, why):
    with pytest.raises(MetricDefinitionError) as info:
        parse_definitions([{"name": "loss", "regex": regex}])
    message = str(info.value)
    assert message.startswith("metric_definitions[0].regex ") and why in message and "\n" not in message


def test_the_regex_is_matched_in_linear_time():
    parser = MetricParser(parse_definitions(EVIL + [{"name": "loss", "regex": r"loss=([0-9.]+)"}]))
    started = time.monotonic()
    assert parser.parse("a" * 1_000_000 + "! loss=2", 1.0) == {"loss": 2.0, "t": 1.0}
    assert time.monotonic() - started < 2  # Python's re: 2**1000000 steps
