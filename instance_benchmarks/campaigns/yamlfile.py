"""Campaign files are untrusted input: a YAML reader that refuses what `yaml.safe_load` lets through.

* duplicate keys (YAML says they are an error; PyYAML keeps the last one silently, so a pasted second
  `budget_usd:` would change the campaign): refused, naming the key and both lines;
* files over `MAX_BYTES` (read no further than that, so `/dev/zero` ends at once) and bytes that are not
  UTF-8;
* nesting deeper than `MAX_DEPTH` (PyYAML's recursive composer would hit Python's recursion limit);
* alias expansion: a document whose nodes, with every alias expanded, number more than `MAX_NODES` (the
  "billion laughs" anchor bomb), and recursive aliases. The expanded size is counted on the composed
  node graph (each shared node counted once per use, memoised), before anything is constructed;
* YAML 1.1's surprises in plain numbers: a leading-zero integer (`epochs: 010` would be octal 8) and a
  sexagesimal one (`1:30` would be 90) are refused, naming the field, rather than read either way (YAML 1.2
  reads the first as 10 and the second as text: a file must not mean different things to different readers);
* integers beyond +-2**53 (a count, a size or a seed is far smaller; a 5,000-digit integer would stop
  Python's own conversion), refused before they are converted.

Every refusal is one TrainfleetInputError line.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from instance_benchmarks.core.errors import TrainfleetInputError

MAX_BYTES = 1_000_000
MAX_DEPTH = 32
MAX_NODES = 100_000
MAX_INTEGER = 2**53  # the largest integer every JSON reader (and a float) holds exactly

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_OCTAL_1_1 = re.compile(r"[-+]?0[0-7_]+")  # YAML 1.1 octal; YAML 1.2 writes 0o10


class _Refused(Exception):
    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with a depth limit while composing and duplicate keys refused while constructing."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            # the keys written in this mapping; keys a merge (`<<: *base`) brings in may be overridden
            for key_node, _ in (pair for pair in node.value if pair[0].tag != "tag:yaml.org,2002:merge"):
                key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _Refused(f"duplicate key {key!r} (lines {seen[key]} and {line})")
                    seen[key] = line
                except TypeError:  # an unhashable key: SafeLoader's own error says so
                    continue
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root) -> int:
    """Nodes in the document with every alias expanded, without expanding it (memoised per node)."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            raise _Refused("a recursive alias (an anchor used inside itself)")
        in_progress.add(key)
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(item) for item in node.value)
        else:
            total = 1
        in_progress.discard(key)
        sizes[key] = total
        if total > MAX_NODES:
            raise _Refused(f"aliases expand to more than {MAX_NODES:,} values (an anchor bomb?)")
        return total

    return size(root)


def _where(path: str, node) -> str:
    return path or "the document"


def _check_number(path: str, node) -> None:
    """Refuse a plain int/float scalar that YAML 1.1 and 1.2 read differently, or an integer out of bounds."""
    text = node.value
    if node.tag == _FLOAT and ":" in text or node.tag == _INT and ":" in text:
        raise _Refused(f"{_where(path, node)}: {text} is a sexagesimal number in YAML 1.1 (1:30 reads as 90) "
                       "and text in YAML 1.2; write the number itself, or quote it as text", node.start_mark.line + 1)
    if node.tag != _INT:
        return
    if _OCTAL_1_1.fullmatch(text) and text.lstrip("+-").strip("0_"):
        octal = int(text.replace("_", ""), 8)
        raise _Refused(f"{_where(path, node)}: {text} is octal in YAML 1.1 (it would read as {octal}) and decimal "
                       "in YAML 1.2; write it without the leading zero, or quote it as text", node.start_mark.line + 1)
    digits = text.lstrip("+-").replace("_", "").lower()
    base = {"0x": 16, "0b": 2}.get(digits[:2], 10)
    if len(digits) > 64 or abs(int(digits[2:] if base != 10 else digits, base)) > MAX_INTEGER:
        shown = text if len(text) <= 24 else f"{text[:12]}...({len(digits)} digits)"
        raise _Refused(f"{_where(path, node)}: {shown} is beyond +-2**53; no campaign value is that large",
                       node.start_mark.line + 1)


def _dotted(path: tuple) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")[:120]


def _check_scalars(root) -> dict[tuple, int]:
    """Every plain number in the document checked, each named by its path (`matrix.batch_size[1]`); returns
    the line of every key and list item by its path (`("matrix", "batch_size", 1)`), for errors that name it."""
    seen: set[int] = set()
    lines: dict[tuple, int] = {(): root.start_mark.line + 1}

    def visit(node, path: tuple) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                lines.setdefault((*path, name), key.start_mark.line + 1)
                visit(key, path)
                visit(value, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines.setdefault((*path, index), item.start_mark.line + 1)
                visit(item, (*path, index))
        elif node.tag in (_INT, _FLOAT):
            _check_number(_dotted(path), node)

    visit(root, ())
    return lines


def load_yaml_file(path: str | Path):
    """The YAML document in `path`, or a one-line TrainfleetInputError saying why it is refused."""
    return load_yaml_lines(path)[0]


def load_yaml_lines(path: str | Path) -> tuple[object, dict[tuple, int]]:
    """(the YAML document in `path`, {key path: its line}), or a one-line TrainfleetInputError saying why the
    file is refused."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise TrainfleetInputError(f"{path}: cannot read campaign file ({error.strerror})") from None
    if len(raw) > MAX_BYTES:
        raise TrainfleetInputError(f"{path}: over {MAX_BYTES:,} bytes; a campaign file is a few hundred")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TrainfleetInputError(f"{path}: not UTF-8 text (byte {error.start})") from None
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _expanded_size(node)
        lines = _check_scalars(node)
        return loader.construct_document(node), lines
    except _Refused as refused:
        raise TrainfleetInputError(f"{path}{f':{refused.line}' if refused.line else ''}: {refused}") from None
    except RecursionError:
        raise TrainfleetInputError(f"{path}: nested too deeply") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None)
        raise TrainfleetInputError(f"{path}: not valid YAML{where}" + (f" ({problem})" if problem else "")) from None
    finally:
        loader.dispose()
