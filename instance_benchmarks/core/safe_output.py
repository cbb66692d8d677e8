"""Untrusted text made safe to show: on a terminal (`safe_text`) and in a spreadsheet (`csv_cell`).

Whatever a repository, its script, a record or the bucket holds is untrusted. On a terminal, an ESC or OSC
sequence can retitle the window, clear the screen, rewrite earlier lines or plant a hyperlink; bidi
overrides and invisible format characters make text read other than it is. `safe_text` shows every such
character as its escape (ESC as `\\x1b`, U+202E as `\\u202e`) and keeps all printable text. In a spreadsheet,
a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula (`=HYPERLINK(...)`):
`csv_cell` makes it text by a leading `'`, as OWASP advises, and leaves numbers numbers.
"""
from __future__ import annotations

import math
import re

# C0 and C1 controls and DEL; every Unicode format character (Cf: bidi embeddings, overrides and isolates,
# zero-width characters, the BOM, interlinear annotations, tag characters ...); line and paragraph separators;
# surrogates (no character at all). Unicode 15's lists, checked against unicodedata by the tests.
_OTHERS = ("\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u2028-\u202e"
           "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff\U000110bd\U000110cd\U00013430-\U0001343f"
           "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f")
_UNSAFE = re.compile(f"[\x00-\x1f{_OTHERS}]")
_UNSAFE_IN_LINES = re.compile(f"[\x00-\x08\x0b-\x1f{_OTHERS}]")  # tab and newline are layout there
_LINE_BREAK = re.compile("\r\n?")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _escape(match: re.Match) -> str:
    return match.group().encode("unicode_escape", "backslashreplace").decode("ascii")


def safe_text(text, *, multiline: bool = False) -> str:
    """`text` (any value: str() of it) with every control, bidi and invisible format character shown as its
    escape, so that nothing it holds acts on a terminal. With `multiline`, line breaks stay line breaks
    ("\\r" and "\\r\\n" become "\\n": a progress bar's redraws are shown, not replayed) and tabs stay tabs;
    otherwise the result is one line."""
    text = text if isinstance(text, str) else str(text)
    if not multiline:
        return _UNSAFE.sub(_escape, text)
    return _UNSAFE_IN_LINES.sub(_escape, _LINE_BREAK.sub("\n", text))


def csv_cell(value):
    """`value` for a CSV cell that a spreadsheet opens as data: numbers as they are (a string that is a plain
    decimal number too); any other string starting with =, +, -, @, a tab or a carriage return behind a `'`."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        if _NUMBER.fullmatch(value) and math.isfinite(float(value)):
            return value
        return "'" + value
    return value
