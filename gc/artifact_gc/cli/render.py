"""Rendering for the terminal: progress bars, tables, sizes. Used by the CLI only."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from artifact_gc.units import human_bytes

__all__ = ["TableColumn", "TerminalProgress", "echo_json", "human_bytes", "invoked_as",
           "plain", "print_table", "say", "stderr_console", "stdout_console"]

#: The width of a console whose output goes to a pipe or a file: wide enough that no
#: line is ever wrapped or cut, so that grep, less and diff see whole values.
UNBOUNDED_WIDTH = 1_000_000
#: A text column is never cut narrower than this (a number column never at all)...
MIN_TEXT_WIDTH = 10
#: ...and one whose longest value is this short is not cut at all: "2026-12-0…" tells
#: nothing, so such a column is rather left out whole.
SHORT_TEXT_WIDTH = 16


def plain(value: Any) -> str:
    """``value`` as text that rich prints as is. Names, URIs, paths and messages come
    from the store and the user: "[/bold]" in an artifact name must neither crash a
    table nor restyle the terminal, and "[link=...]" must not become a hyperlink."""
    from rich.markup import escape

    return escape(str(value))


def invoked_as(argv0: str | None = None) -> str:
    """The command to type to run this tool again, as a user would paste it.

    ``gc`` when that name on the PATH is this very program; else the path it was run by
    (``.venv/bin/gc`` after ``make demo``): another ``gc`` (graphviz's /usr/bin/gc) may
    come first on the PATH, or none at all.
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    name = os.path.basename(argv0)
    if name not in ("gc", "artifact-gc"):
        return "gc"  # run as ``python -m`` or inside a test runner: the documented name
    found = shutil.which(name)
    try:
        if found is not None and os.path.samefile(found, argv0):
            return name
    except OSError:
        pass
    return argv0


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def stdout_console() -> Any:
    """The console for results. On a terminal: its width (``COLUMNS`` when set), tables
    fitted to it. Into a pipe or a file: plain text, no colour, no line wrapped or cut."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console(soft_wrap=False)
    return Console(soft_wrap=True, width=UNBOUNDED_WIDTH, no_color=True, highlight=False,
                   emoji=False)


def say(console: Any, text: str, *, style: str | None = None) -> None:
    """One line of prose holding a path, URL or id: printed whole, never broken inside a
    word by us (a terminal narrower than the line continues it on the next row, and
    copying it still gives one line)."""
    from rich.text import Text

    console.print(Text(text, style=style or ""), soft_wrap=True)


@dataclass(frozen=True)
class TableColumn:
    """A column of :func:`print_table`: a key into the rows, its header, whether it
    holds numbers (right-aligned, never cut), and whether its text is a value to copy
    whole (a manifest name): such a column is left out rather than cut."""

    key: str
    header: str | None = None
    numeric: bool = False
    whole: bool = False

    @property
    def title(self) -> str:
        return self.header if self.header is not None else self.key


def _fit_widths(natural: list[int], floors: list[int], budget: int) -> list[int]:
    """Widths that sum to at most ``budget``: every column cut to one common level (the
    widest first), none below its floor; space left under the level goes back to the
    columns that were cut."""
    if sum(natural) <= budget:
        return list(natural)

    def at(level: int) -> list[int]:
        return [max(f, min(n, level)) for n, f in zip(natural, floors, strict=True)]

    low, high = 0, max(natural)
    while low < high:
        middle = (low + high + 1) // 2
        if sum(at(middle)) <= budget:
            low = middle
        else:
            high = middle - 1
    widths = at(low)
    spare = budget - sum(widths)
    for i, width in enumerate(widths):
        if spare <= 0:
            break
        if width < natural[i]:
            widths[i] += 1
            spare -= 1
    return widths


def print_table(console: Any, title: str | None, columns: Sequence[TableColumn],
                rows: Sequence[Sequence[str]], *, hide_first: Sequence[str] = (),
                hide_rather_than_cut: bool = False) -> list[str]:
    """Print ``rows`` (cells already as text) as a table that fits ``console``.

    Nothing is wrapped and no word is broken: on a narrow terminal, whole columns are
    left out first (those named in ``hide_first``, in that order), then the widest text
    columns are cut with an ellipsis, never below :data:`MIN_TEXT_WIDTH`; numbers are
    never cut. ``hide_rather_than_cut``: leave out the ``hide_first`` columns as long as
    the others would need cutting (a short list of secondary columns). Into a pipe every
    column is printed whole. Returns the columns left out.
    """
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    visible = list(range(len(columns)))
    natural = [max([cell_len(columns[i].title), *(cell_len(r[i]) for r in rows)])
               for i in range(len(columns))]
    floors = [natural[i] if columns[i].numeric or columns[i].whole
              or natural[i] <= SHORT_TEXT_WIDTH else MIN_TEXT_WIDTH
              for i in range(len(columns))]

    def needed(indexes: list[int]) -> int:
        # Content, one space of padding each side, a border between and around columns.
        widths = natural if hide_rather_than_cut else floors
        return sum(widths[i] for i in indexes) + 3 * len(indexes) + 1

    hidden: list[str] = []
    for key in hide_first:
        if needed(visible) <= console.width:
            break
        index = next((i for i in visible if columns[i].key == key), None)
        if index is not None and len(visible) > 1:
            visible.remove(index)
            hidden.append(columns[index].title)
    budget = console.width - 3 * len(visible) - 1
    widths = _fit_widths([natural[i] for i in visible], [floors[i] for i in visible], budget)
    table = Table(title=None if title is None else Text(title, style="bold"),
                  title_justify="left")
    for index, width in zip(visible, widths, strict=True):
        column = columns[index]
        table.add_column(Text(column.title), justify="right" if column.numeric else "left",
                         no_wrap=True, overflow="ellipsis", max_width=width)
    for row in rows:
        table.add_row(*(Text(row[i]) for i in visible))
    console.print(table)
    if hidden:
        console.print(Text(f"(not shown at this width: {', '.join(hidden)}; into a pipe "
                           "every column is shown)", style="dim"))
    return hidden


class TerminalProgress:
    """Bars on stderr when it is a terminal; silence otherwise (e.g. under --json)."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Any = None
        self._task: Any = None

    def _ensure(self) -> Any:
        if self._progress is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[freed]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=stderr_console(),
                transient=False,
            )
            self._progress.start()
        return self._progress

    def stage(self, name: str, total: int | None = None, unit: str = "items") -> None:
        if not self.enabled:
            return
        progress = self._ensure()
        if self._task is not None:
            task = progress.tasks[self._task]
            if task.total is None:
                progress.update(self._task, total=task.completed or 1,
                                completed=task.completed or 1)
        self._unit = unit
        self._bytes = 0
        self._task = progress.add_task(name, total=total, rate="", freed="")

    def advance(self, count: int = 1, nbytes: int = 0) -> None:
        if not self.enabled or self._task is None:
            return
        progress = self._ensure()
        progress.advance(self._task, count)
        task = progress.tasks[self._task]
        speed = task.speed
        rate = f"{speed:,.0f} {self._unit}/s" if speed else ""
        self._bytes += nbytes
        freed = human_bytes(self._bytes) if self._bytes else ""
        progress.update(self._task, rate=rate, freed=freed)

    def note(self, message: str) -> None:
        if self.enabled:
            self._ensure().console.print(plain(message))
        else:
            click.echo(message, err=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None
