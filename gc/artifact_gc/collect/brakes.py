"""The brakes: checks between the mark and the sweep that stop an unattended collection
when what it is about to delete looks wrong.

A misconfigured store root, a scope that lost its filter or a database restored from an
old backup all show up the same way: far more candidates than usual. Each brake
compares the marks' totals with a limit; one that fires stops the collection before
the sweep, so the store is untouched and the manifests stay for a person to review.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from artifact_gc.collect.policy import Brakes

MAX_CANDIDATES = "max_candidates"
MAX_FRACTION = "max_fraction"
MAX_BYTES = "max_bytes"
JUMP = "jump"
#: Every brake, in the order they are checked (the metrics list each one).
BRAKES = (MAX_CANDIDATES, MAX_FRACTION, MAX_BYTES, JUMP)


@dataclass(frozen=True)
class Totals:
    """What the marks of one collection found, added up over their disjoint scopes."""

    versions_in_scope: int
    candidates: int
    #: Bytes of the candidates; None when a mark did not measure them.
    candidate_bytes: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BrakeCheck:
    """One brake's verdict. ``checked`` is False when it is off or cannot judge."""

    name: str
    fired: bool
    checked: bool
    value: float | None
    limit: float | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_brakes(brakes: Brakes, totals: Totals,
                 previous_candidates: int | None) -> list[BrakeCheck]:
    """Every brake's verdict on ``totals``; ``previous_candidates`` is the candidates
    of the previous collection of the same store (None: there is none)."""
    checks: list[BrakeCheck] = []
    n = totals.candidates

    def add(name: str, limit: float | None, value: float | None, fired: bool,
            message: str) -> None:
        checks.append(BrakeCheck(name, fired, limit is not None and value is not None,
                                 value, limit, message))

    limit_n = brakes.max_candidates
    fired = limit_n is not None and n > limit_n
    add(MAX_CANDIDATES, limit_n, n, fired,
        f"{n:,} candidates {_verb(fired)} brakes.max_candidates = {limit_n:,}"
        if limit_n is not None else "off")

    fraction = n / totals.versions_in_scope if totals.versions_in_scope else 0.0
    limit_f = brakes.max_fraction
    fired = limit_f is not None and fraction > limit_f
    add(MAX_FRACTION, limit_f, fraction, fired,
        f"{n:,} candidates are {fraction:.1%} of the {totals.versions_in_scope:,} versions "
        f"in scope: {_verb(fired)} brakes.max_fraction = {limit_f:.1%}"
        if limit_f is not None else "off")

    limit_b = brakes.max_bytes
    size = totals.candidate_bytes
    if limit_b is not None and size is None and n:
        add(MAX_BYTES, limit_b, None, False, "not judged: the marks did not measure sizes "
                                             "(sizes = false)")
    else:
        fired = limit_b is not None and (size or 0) > limit_b
        add(MAX_BYTES, limit_b, size, fired,
            f"{size or 0:,} candidate bytes {_verb(fired)} brakes.max_bytes = {limit_b:,}"
            if limit_b is not None else "off")

    factor = brakes.jump_factor
    if factor is None:
        add(JUMP, None, n, False, "off")
    elif previous_candidates is None:
        add(JUMP, None, n, False, "not judged: no previous collection of this store")
    else:
        ceiling = max(previous_candidates * factor, previous_candidates + brakes.jump_min)
        fired = n > ceiling
        add(JUMP, ceiling, n, fired,
            f"{n:,} candidates against the previous collection's {previous_candidates:,}: "
            f"{_verb(fired)} the limit of {ceiling:,.0f} (brakes.jump_factor = {factor:g}, "
            f"brakes.jump_min = {brakes.jump_min:,})")
    return checks


def _verb(fired: bool) -> str:
    return "exceed" if fired else "within"
