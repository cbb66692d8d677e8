"""Campaign files are untrusted input: a YAML reader that refuses what `yaml.safe_load` lets through.

* duplicate keys (YAML says they are an error; PyYAML keeps the last one silently, so a pasted second
  `budget_usd:` would change the campaign): refused, naming the key and both lines;
* files over `MAX_BYTES` (read no further than that, so `/dev/zero` ends at once) and bytes that are not
  UTF-8;
* nesting deeper than `MAX_DEPTH` (PyYAML's recursive composer would hit Python's recursion limit);
* alias expansion: a document whose nodes, with every alias expanded, number more than `MAX_NODES` (the
  "billion laughs" anchor bomb), and recursive aliases. The expanded size is counted on the composed
  node graph (each shared node counted once per use, memoised), before anything is constructed.

Every refusal is one TrainfleetInputError line.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from instance_benchmarks.core.errors import TrainfleetInputError

MAX_BYTES = 1_000_000
MAX_DEPTH = 32
MAX_NODES = 100_000


class _Refused(Exception):
    pass


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


def load_yaml_file(path: str | Path):
    """The YAML document in `path`, or a one-line TrainfleetInputError saying why it is refused."""
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
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    except _Refused as refused:
        raise TrainfleetInputError(f"{path}: {refused}") from None
    except RecursionError:
        raise TrainfleetInputError(f"{path}: nested too deeply") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None)
        raise TrainfleetInputError(f"{path}: not valid YAML{where}" + (f" ({problem})" if problem else "")) from None
    finally:
        loader.dispose()
