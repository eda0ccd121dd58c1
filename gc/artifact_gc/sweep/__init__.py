"""The sweep: carry out a manifest, re-verified against the live store, in journaled batches.

    options.py   SweepOptions and the modes (all, only-artifact, only-metadata)
    plan.py      plan_sweep -> SweepPlan: refuse a manifest or read what is left to do
    execute.py   execute(plan) -> SweepReport: the one batch loop
    batch.py     one batch: the root fence, the live database's verdict, its journal events
    effects.py   what a batch does to the world (journal, locked database step, files);
                 the dry run is another implementation of it
    rows.py      the cascade of row deletes, driven by the discovered schema
    verify.py    re-verification of a batch against the live database
    journal.py   the journal: durable segments, and the item state (sweep_state.sql)
    lock.py      one sweep of a manifest at a time; who holds the lock, read without taking it
    report.py    SweepReport: what a sweep did, counted once
    status.py    sweep_status (gc status), a read that never takes the lock
    hooks.py     SweepHooks: kill/pause points and phase timing, injected by tests
"""

# The Python API (see the README): ``from artifact_gc.sweep import sweep, SweepOptions``,
# or plan_sweep and then ``artifact_gc.sweep.execute.execute`` to look at the plan first
# (the name ``execute`` here is the module). Loaded on first use.
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from artifact_gc.progress import Progress
    from artifact_gc.sweep.options import SweepOptions as SweepOptions
    from artifact_gc.sweep.plan import SweepPlan as SweepPlan
    from artifact_gc.sweep.plan import plan_sweep as plan_sweep
    from artifact_gc.sweep.report import SweepReport as SweepReport

_API = {"SweepOptions": "options", "SweepPlan": "plan", "plan_sweep": "plan",
        "SweepReport": "report"}
__all__ = ["SweepOptions", "SweepPlan", "SweepReport", "plan_sweep", "sweep"]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sweep(manifest_url: str, db_url: str | None = None,
          options: "SweepOptions | None" = None, *,
          progress: "Progress | None" = None) -> "SweepReport":
    """Plan and carry out the sweep of ``manifest_url``, without asking: the caller
    has decided. ``plan_sweep`` then ``execute`` do the same in two steps."""
    from artifact_gc.sweep.execute import execute
    from artifact_gc.sweep.plan import plan_sweep

    return execute(plan_sweep(manifest_url, db_url, options), progress=progress)
