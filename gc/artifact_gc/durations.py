"""Human durations such as ``0s``, ``90m``, ``24h``, ``7d`` and ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta

from artifact_gc.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """Parse ``90m``, ``1d12h`` or ``2w`` into a timedelta; reject anything else."""
    if "M" in text:
        # A grace period decides what is old enough to delete. "M" is a month to
        # systemd, pandas and most readers: taken as a minute, "6M" would shrink six
        # months to six minutes. Refused rather than guessed either way.
        raise UsageError(
            f"cannot read duration {text!r}: 'M' is ambiguous (months or minutes?); "
            "write m for minutes, or days or weeks (30d, 26w) for months"
        )
    cleaned = text.strip().lower().replace(" ", "")
    if not cleaned:
        raise UsageError("empty duration; use a form like 0s, 90m, 24h, 7d or 2w")
    position = 0
    seconds = 0.0
    for match in _PART.finditer(cleaned):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if position != len(cleaned):
        raise UsageError(
            f"cannot read duration {text!r}; use a number and a unit "
            "(s, m, h, d, w), e.g. 0s, 90m, 24h, 7d, 2w or 1d12h"
        )
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        # A bad value is the user's to fix (exit 2), not an unexpected failure (exit 1).
        raise UsageError(f"cannot read duration {text!r}: it is too long") from None


def format_duration(delta: timedelta) -> str:
    """Render a timedelta in the same short form ``parse_duration`` reads."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)
