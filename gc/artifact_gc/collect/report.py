"""What a collection did: :class:`CollectReport`, the one value behind the JSON summary,
the collection record and the metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from artifact_gc.collect.brakes import BrakeCheck, Totals
from artifact_gc.errors import EXIT_OK, GCError

#: The collection marked and stopped for a person to review (``sweep = false``).
OUTCOME_MARKED = "marked"
#: The collection marked, passed its brakes and swept.
OUTCOME_SWEPT = "swept"
#: A brake fired: nothing was swept.
OUTCOME_BRAKED = "braked"
#: A mark or a sweep failed (see ``error``).
OUTCOME_FAILED = "failed"


@dataclass
class MarkedScope:
    """One mark of the collection: its rule, scope and manifest, and what it found."""

    rule: str
    scope: dict[str, Any]
    manifest: str
    mark_id: str
    versions_in_scope: int
    candidates: int
    candidate_bytes: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SweepTotals:
    """What the sweeps of the collection's manifests did, added up."""

    deleted: int = 0
    revived: int = 0
    protected: int = 0
    failed: int = 0
    bytes_freed: int = 0
    sweeps: list[dict[str, Any]] = field(default_factory=list)

    def add(self, summary: dict[str, Any]) -> None:
        """Add one ``SweepReport.as_dict()`` (per-version lists left out: they can be
        millions long, and gc status has them)."""
        self.deleted += summary["deleted"]
        self.revived += summary["revived"]
        self.protected += summary["protected"]
        self.failed += summary["failed"]
        self.bytes_freed += summary["bytes_freed"]
        self.sweeps.append({k: v for k, v in summary.items() if k not in (
            "revived_versions", "protected_versions", "failures")})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CollectReport:
    """What ``collect()`` did. ``error`` is the GCError that ended it early (a brake
    is :class:`~artifact_gc.errors.BrakeFired`); :meth:`raise_for_outcome` raises it."""

    collection_id: str
    policy: str
    database: str
    started_at: str
    sweep_enabled: bool
    outcome: str = OUTCOME_FAILED
    finished_at: str | None = None
    duration_seconds: float = 0.0
    database_fingerprint: dict[str, Any] | None = None
    marks: list[MarkedScope] = field(default_factory=list)
    totals: Totals | None = None
    brakes: list[BrakeCheck] = field(default_factory=list)
    previous: dict[str, Any] | None = None
    sweep: SweepTotals | None = None
    error: GCError | None = None
    #: Running totals over this store's collections (the metrics' counters).
    counters: dict[str, int] = field(default_factory=dict)
    last_success_at: str | None = None
    record: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.error is None else self.error.exit_code

    @property
    def fired(self) -> list[BrakeCheck]:
        return [b for b in self.brakes if b.fired]

    def raise_for_outcome(self) -> None:
        """Raise the error that ended the collection, if one did."""
        if self.error is not None:
            raise self.error

    def next_steps(self) -> list[str]:
        """The commands a person runs after a collection that stopped before its sweep."""
        if self.outcome not in (OUTCOME_MARKED, OUTCOME_BRAKED):
            return []
        return [f"{verb} {m.manifest}" for m in self.marks if m.candidates
                for verb in ("gc show", "gc sweep")]

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection_id": self.collection_id,
            "policy": self.policy,
            "database": self.database,
            "database_fingerprint": self.database_fingerprint,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_seconds": round(self.duration_seconds, 3),
            "sweep_enabled": self.sweep_enabled,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "error": None if self.error is None else self.error.message,
            "marks": [m.as_dict() for m in self.marks],
            "manifests": [m.manifest for m in self.marks],
            "totals": None if self.totals is None else self.totals.as_dict(),
            "brakes": [b.as_dict() for b in self.brakes],
            "brakes_fired": [b.name for b in self.fired],
            "previous": self.previous,
            "sweep": None if self.sweep is None else self.sweep.as_dict(),
            "next": self.next_steps(),
            "counters": dict(self.counters),
            "last_success_at": self.last_success_at,
            "record": self.record,
        }
