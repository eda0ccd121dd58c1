"""Human durations such as ``0s``, ``90m``, ``24h``, ``7d`` and ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta

from artifact_gc.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """Parse ``90m``, ``1d12h`` or ``2w`` into a timedelta; reject anything else."""
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
    return timedelta(seconds=seconds)


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
