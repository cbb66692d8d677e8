"""Untrusted text on a terminal and in a spreadsheet: every control, bidi and invisible format character is
shown escaped (never acts), printable text stays; CSV cells that a spreadsheet would run are neutralised."""
from __future__ import annotations

import sys
import unicodedata

import pytest

from instance_benchmarks.core.safe_output import csv_cell, safe_text

# each a different way for a log line, a metric key, a label or a record to act on a terminal
HOSTILE = {
    "osc-title": ("build \x1b]0;pwned\x07done", "\\x1b]0;pwned\\x07"),
    "osc-title-st": ("\x1b]2;pwned\x1b\\ok", "\\x1b]2;pwned\\x1b\\ok"),
    "csi-clear-screen": ("\x1b[2J\x1b[Hloss=0.1", "\\x1b[2J\\x1b[Hloss=0.1"),
    "osc8-hyperlink": ("\x1b]8;;http://evil.test\x1b\\click\x1b]8;;\x1b\\", "\\x1b]8;;http://evil.test"),
    "dcs": ("\x1bPq#0;2;0;0;0\x1b\\", "\\x1bPq#0;2;0;0;0"),
    "c1-csi": ("\x9b31mred", "\\x9b31mred"),
    "bidi-override": ("invoice_\u202egnp.exe", "invoice_\\u202egnp.exe"),
    "bidi-isolate": ("\u2067admin\u2069 ok", "\\u2067admin\\u2069 ok"),
    "arabic-letter-mark": ("a\u061cb", "a\\u061cb"),
    "zero-width-space": ("c5\u200b.xlarge", "c5\\u200b.xlarge"),
    "bom": ("\ufefflabel", "\\ufefflabel"),
    "tag-characters": ("x\U000e0041\U000e007f", "x\\U000e0041\\U000e007f"),
    "backspace-overwrite": ("secret\x08\x08\x08***", "secret\\x08\\x08\\x08***"),
    "carriage-return-overwrite": ("ok\rFAILED", "ok\\rFAILED"),
    "newline-spoof": ("x\nerror: fake line", "x\\nerror: fake line"),
    "line-separator": ("x\u2028y\u2029z", "x\\u2028y\\u2029z"),
    "bell-nul-del": ("\x07\x00\x7f", "\\x07\\x00\\x7f"),
    "lone-surrogate": ("bad\ud800json", "bad\\ud800json"),
}


@pytest.mark.parametrize("text, shown", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_string_is_shown_escaped_on_one_line(text, shown):
    safe = safe_text(text)
    assert shown in safe and "\n" not in safe and "\x1b" not in safe
    assert all(unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in safe)
    assert safe_text(safe) == safe  # escaping twice changes nothing: sinks may share a value


def test_printable_text_of_any_script_is_kept():
    text = "loss=0.25 épocas 学习率 ✓ 🚀 \\x1b (a backslash, not an escape) [red]markup[/red]"
    assert safe_text(text) == text == safe_text(text, multiline=True)


def test_multiline_keeps_lines_and_tabs_and_shows_redraws_as_lines():
    log = "step 1\tloss 0.5\r\n 10%|#   |\r 20%|##  |\x1b[K\nend"
    assert safe_text(log, multiline=True) == "step 1\tloss 0.5\n 10%|#   |\n 20%|##  |\\x1b[K\nend"


def test_every_control_format_and_separator_character_of_this_python_is_escaped():
    """The character class is Unicode's own list (Cc, Cf, Cs, Zl, Zp): checked against unicodedata here."""
    missed = [hex(c) for c in range(sys.maxunicode + 1)
              if unicodedata.category(chr(c)) in ("Cc", "Cf", "Cs", "Zl", "Zp") and safe_text(chr(c)) == chr(c)]
    assert missed == []


def test_non_strings_are_shown_as_text():
    assert safe_text(3.5) == "3.5" and safe_text(None) == "None" and safe_text(b"\x1b") == "b'\\x1b'"


@pytest.mark.parametrize("value, written", [
    ('=HYPERLINK("http://evil.test","click")', '\'=HYPERLINK("http://evil.test","click")'),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
    ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("\t=1+1", "'\t=1+1"),
    ("\r=1+1", "'\r=1+1"),
    ("-", "'-"),
    ("-inf", "'-inf"),
], ids=["equals", "plus-dde", "minus-formula", "at", "tab", "carriage-return", "dash", "minus-inf"])
def test_a_cell_a_spreadsheet_would_run_gets_a_quote(value, written):
    assert csv_cell(value) == written


@pytest.mark.parametrize("value", [3, -2.5, 0.0, float("nan"), None, "-1.5", "+2", "-1e-3", "c5.xlarge",
                                   "batch_size=3", " =x", "", True])
def test_numbers_and_plain_text_stay_as_they_are(value):
    assert csv_cell(value) is value or csv_cell(value) == value
