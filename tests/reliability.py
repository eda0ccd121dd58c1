"""The figures of the reliability suite, printed at the end of the test run.

Tests of the reliability suite count what they did here (trials, faults injected, bad
inputs tried) and what they *measured* as lost (live versions, live files, leaked
files, dangling rows), each loss figure computed from the store before the test
asserts it is zero. ``conftest.pytest_terminal_summary`` prints the ledger, so a run
shows its figures beside its verdict.

A longer soak is switched on with ``ARTIFACT_GC_SOAK=N``: :func:`trials` multiplies
every trial count by N.
"""

from __future__ import annotations

import json
import os
import threading
from collections import defaultdict
from typing import Any

SOAK_ENV = "ARTIFACT_GC_SOAK"

#: The sections of the summary, in print order.
SECTIONS = ("crash trials", "faults injected", "concurrent writers", "bad inputs tried",
            "secrets checked", "lost")


def soak_factor() -> int:
    """How many times longer than the CI default the suite runs (``ARTIFACT_GC_SOAK``)."""
    raw = os.environ.get(SOAK_ENV, "").strip()
    if not raw:
        return 1
    try:
        return max(1, int(raw))
    except ValueError as exc:
        raise ValueError(f"{SOAK_ENV} must be a whole number, not {raw!r}") from exc


def trials(default: int) -> int:
    """The number of trials to run: ``default`` in CI, times the soak factor."""
    return default * soak_factor()


class Ledger:
    """Counts per section and key; thread-safe, process-local (pytest runs in one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def add(self, section: str, key: str, n: int = 1) -> None:
        if section not in SECTIONS:
            raise KeyError(f"unknown reliability section {section!r}")
        with self._lock:
            self.counts[section][key] += int(n)

    def lost(self, what: str, n: int) -> int:
        """Record a measured loss (``n`` is what the test found, before it asserts 0)."""
        self.add("lost", what, n)
        return n

    def empty(self) -> bool:
        return not any(self.counts.values())

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {s: dict(sorted(self.counts[s].items())) for s in SECTIONS if self.counts.get(s)}

    def lines(self) -> list[str]:
        out: list[str] = []
        for section, keys in self.as_dict().items():
            total = sum(keys.values())
            out.append(f"{section}: {total}")
            out.extend(f"    {key}: {n}" for key, n in keys.items())
        return out

    def dump(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.as_dict(), handle, indent=2, sort_keys=True)
            handle.write("\n")


LEDGER = Ledger()


def record(section: str, key: str, n: int = 1) -> None:
    LEDGER.add(section, key, n)


def lost(what: str, n: int) -> int:
    return LEDGER.lost(what, n)


def summary() -> dict[str, Any]:
    return LEDGER.as_dict()
