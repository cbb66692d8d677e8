r"""Metric records from a training script's stdout (stdlib and RE2 only: runs on the bare training instance).

The script knows nothing of trainfleet. Each stdout line is either a JSON object (a metric record
as is) or plain text from which SageMaker-style metric definitions ({"name", "regex"}) pull numbers.

The regexes are the campaign's, i.e. untrusted, and run on every line of an untrusted script: they are
matched by RE2 (`google-re2`), whose time is linear in the line's length whatever the pattern, so that
`(a+)+$` cannot hold the agent's threads (deadline, spot notice, checkpoint and progress pushes) as
Python's backtracking `re` would. What RE2 cannot run (backreferences, lookaround, `\Z`, huge repeats)
is refused by `parse_definitions`, i.e. at validate.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import re2

MAX_STRING = 200
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RE2 = re2.Options()
_RE2.log_errors = False  # the error comes back as an exception, not as lines on stderr


class MetricDefinitionError(ValueError):
    """A metric definition that cannot be used; the message names the entry in one line."""


@dataclass(frozen=True)
class MetricDefinition:
    """A metric read from plain-text lines: `name` is float(first capture) of `regex` searched in a line."""

    name: str
    regex: str


def parse_definitions(raw) -> tuple[MetricDefinition, ...]:
    """Validate a list of {"name": NAME, "regex": REGEX} dicts (exactly those keys, both strings).

    NAME must be an identifier, unique, and not "t" (the parser's seconds since start);
    REGEX must compile with exactly one capturing group.
    """
    if not isinstance(raw, (list, tuple)):
        raise MetricDefinitionError(f"metric_definitions must be a list of {{name, regex}}, got {type(raw).__name__}")
    definitions: list[MetricDefinition] = []
    for i, entry in enumerate(raw):
        where = f"metric_definitions[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"name", "regex"}:
            keys = sorted(map(str, entry)) if isinstance(entry, dict) else type(entry).__name__
            raise MetricDefinitionError(f"{where} must have exactly the keys 'name' and 'regex', got {keys}")
        name, regex = entry["name"], entry["regex"]
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise MetricDefinitionError(f"{where}.name {name!r} must match ^[A-Za-z_][A-Za-z0-9_]*$")
        if name == "t" or any(d.name == name for d in definitions):
            raise MetricDefinitionError(f"{where}.name {name!r} is reserved or repeated")
        if not isinstance(regex, str):
            raise MetricDefinitionError(f"{where}.regex must be a string, got {type(regex).__name__}")
        try:
            groups = compile_regex(regex).groups
        except re2.error as exc:
            why = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise MetricDefinitionError(f"{where}.regex {regex!r} does not compile: {why} (metric regexes run "
                                        "under RE2, in linear time: no backreferences, lookaround or \\Z)") from None
        except (UnicodeError, ValueError, TypeError) as exc:
            raise MetricDefinitionError(f"{where}.regex {regex!r} does not compile: {exc}") from None
        if groups != 1:
            raise MetricDefinitionError(f"{where}.regex {regex!r} must have exactly one capturing group (has {groups})")
        definitions.append(MetricDefinition(name, regex))
    return tuple(definitions)


def compile_regex(regex: str):
    """`regex` compiled by RE2 (raises re2.error for what RE2 cannot run)."""
    return re2.compile(regex, _RE2)


def _search(pattern, text: str):
    """pattern.search(text); a lone surrogate (no UTF-8, which RE2 needs) is searched as '?'."""
    try:
        return pattern.search(text)
    except UnicodeError:
        return pattern.search(text.encode("utf-8", "replace").decode("utf-8"))


def _keep(value) -> bool:
    """A JSON value worth recording: a finite number, or a short printable string (an event tag)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and len(value) <= MAX_STRING and value.isprintable()


def _finite_float(capture: str | None) -> float | None:
    """float(capture) when it is a finite number, else None."""
    try:
        value = float(capture)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _json_object(text: str) -> dict | None:
    """The line as a JSON object, or None when it is not one."""
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


class MetricParser:
    """Turns stdout lines into metric records ({name: value, ..., "t": seconds since start})."""

    def __init__(self, definitions: tuple[MetricDefinition, ...] = ()) -> None:
        self._patterns = tuple((d.name, compile_regex(d.regex)) for d in definitions)

    def parse(self, line: str, t: float) -> dict | None:
        """The record a line carries, with "t": round(t, 6) (overwriting any "t" of its own); None if none."""
        text = line.strip()
        obj = _json_object(text)
        if obj is not None:
            record = {key: value for key, value in obj.items() if _keep(value)}
        else:
            record = {}
            for name, pattern in self._patterns:
                match = _search(pattern, text)
                value = _finite_float(match.group(1)) if match else None
                if value is not None:
                    record[name] = value
        record.pop("t", None)
        if not record:
            return None
        record["t"] = round(t, 6)
        return record

