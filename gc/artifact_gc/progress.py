"""Progress reporting, injected into the library and rendered by the CLI.

Library functions never print. They take a :class:`Progress` and call it; the CLI
passes one that draws bars on a terminal, tests pass :class:`NullProgress` or a
recorder.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def stage(self, name: str, total: int | None = None, unit: str = "items") -> None:
        """A new phase of work begins; ``total`` is its size when known."""

    def advance(self, count: int = 1, nbytes: int = 0) -> None:
        """``count`` units (and ``nbytes`` bytes) of the current phase are done."""

    def note(self, message: str) -> None:
        """Something worth telling the user while the work goes on."""

    def close(self) -> None:
        """The work is over; release the display."""


class NullProgress:
    """Progress that shows nothing."""

    def stage(self, name: str, total: int | None = None, unit: str = "items") -> None:
        pass

    def advance(self, count: int = 1, nbytes: int = 0) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass
