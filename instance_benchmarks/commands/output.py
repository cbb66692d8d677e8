"""What every command prints through: one console, tables that fit, text that cannot act on the terminal.

Commands print through `output.console` (an attribute read at each call, so a test can swap it)."""
from __future__ import annotations

import os
import sys

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from instance_benchmarks.campaigns.report import format_value
from instance_benchmarks.core.safe_output import safe_text

# a terminal's width, or COLUMNS when set (Rich reads it); 160 when piped without COLUMNS
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit() else 160)


def build_table(title: str, rows: list[dict], columns: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_lines=False)
    for _, heading in columns:
        table.add_column(heading, overflow="fold")
    for row in rows:
        table.add_row(*(Text(format_value(row.get(key))) for key, _ in columns))
    return table


def print_table(title: str, rows: list[dict], columns: list[tuple[str, str]]) -> None:
    console.print(build_table(title, rows, columns))


FIT_WIDTH = 100  # the report and status tables fit this many columns unless --wide
# text columns that may be cut (…) to fit, first cut first, and the narrowest they get
CUTTABLE = {"label": 8, "resource": 8, "state": 7, "status": 7, "instance_type": 9, "market": 6, "runs_text": 4}


def fit_table(title: str, rows: list[dict], columns: list[tuple[str, str]], *, wide: bool = False,
              width: int | None = None) -> Table:
    """The style of `campaign collect` and `campaign status`: one space between columns, a rule under the
    headings (which carry the units), one line per row, numbers right-aligned. Without `wide` the table
    fits `width` (FIT_WIDTH, or the terminal when narrower): hyperparameters and other text are cut with
    an ellipsis, never wrapped; run ids and numbers are never cut."""
    cells = [[format_value(row.get(key)) for key, _ in columns] for row in rows]
    natural = [max([len(heading)] + [len(line[i]) for line in cells]) for i, (_, heading) in enumerate(columns)]
    limit = width or min(console.width, FIT_WIDTH)
    widths = list(natural)
    for key in CUTTABLE:  # cut text columns, in CUTTABLE's order, until the table fits
        excess = sum(widths) + len(widths) - 1 - limit
        if excess <= 0 or wide:
            break
        for i, (name, _) in enumerate(columns):
            if name == key:
                widths[i] = max(CUTTABLE[key], widths[i] - excess)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  padding=(0, 0))
    for i, (key, heading) in enumerate(columns):
        values = [row.get(key) for row in rows if row.get(key) is not None]
        numeric = bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        table.add_column(heading, no_wrap=True, overflow="ellipsis", justify="right" if numeric else "left",
                         max_width=None if wide or widths[i] == natural[i] else widths[i])
    for line in cells:
        table.add_row(*map(Text, line))  # a cell is text, never Rich markup ([link=...])
    return table


def print_fit(table: Table, *, wide: bool = False) -> None:
    """At most FIT_WIDTH columns (fewer on a narrower terminal); with `wide`, as wide as the table is."""
    if wide:
        needed = Measurement.get(console, console.options.update(width=100_000), table).maximum
        # Console.print never renders wider than its console: a console as wide as the table, same output
        Console(file=console.file, width=max(console.width, needed), force_terminal=console.is_terminal,
                color_system=console.color_system).print(table, crop=False)
    else:
        console.print(table, width=min(console.width, FIT_WIDTH))


def plain_log(message: str) -> None:
    """A message as text: no markup, and no control or bidi character of an untrusted part acts on the terminal."""
    console.print(safe_text(message, multiline=True), markup=False, highlight=False)


def note(message: str) -> None:
    """A line on stderr that may quote an instance's console (untrusted output): control characters escaped."""
    print(safe_text(message, multiline=True), file=sys.stderr)


def warn_log(message: str) -> None:
    print(message, file=sys.stderr)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
