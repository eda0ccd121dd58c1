"""Rendering for the terminal: progress bars, tables, sizes. Used by the CLI only."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from artifact_gc.units import human_bytes

__all__ = ["TerminalProgress", "echo_json", "human_bytes", "plain", "stderr_console",
           "stdout_console"]


def plain(value: Any) -> str:
    """``value`` as text that rich prints as is. Names, URIs, paths and messages come
    from the store and the user: "[/bold]" in an artifact name must neither crash a
    table nor restyle the terminal, and "[link=...]" must not become a hyperlink."""
    from rich.markup import escape

    return escape(str(value))


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def stdout_console() -> Any:
    from rich.console import Console

    return Console(soft_wrap=False)


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
