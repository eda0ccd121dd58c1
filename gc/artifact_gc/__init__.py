"""artifact-gc: a mark-and-sweep garbage collector for ZenML artifact stores.

The Python API, one package per phase (the ``gc`` command line is a thin layer over it)::

    from artifact_gc.mark import mark, MarkOptions, MarkResult
    from artifact_gc.sweep import plan_sweep, execute, SweepOptions, SweepPlan, SweepReport
    from artifact_gc.collect import collect, load_policy, Policy, CollectReport

The option and report values are also importable from here (``artifact_gc.MarkOptions``),
loaded on first use so that ``import artifact_gc`` stays cheap. Every error raised on
purpose is an ``artifact_gc.GCError`` carrying its exit code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from artifact_gc.collect.policy import Policy as Policy
    from artifact_gc.collect.report import CollectReport as CollectReport
    from artifact_gc.errors import BrakeFired as BrakeFired
    from artifact_gc.errors import GCError as GCError
    from artifact_gc.mark.options import MarkOptions as MarkOptions
    from artifact_gc.mark.run import MarkResult as MarkResult
    from artifact_gc.sweep.options import SweepOptions as SweepOptions
    from artifact_gc.sweep.plan import SweepPlan as SweepPlan
    from artifact_gc.sweep.report import SweepReport as SweepReport

#: name -> the module that defines it. The functions (mark, collect) are not here: the
#: names artifact_gc.mark and artifact_gc.collect are their packages.
_VALUES = {
    "MarkOptions": "artifact_gc.mark.options",
    "MarkResult": "artifact_gc.mark.run",
    "SweepOptions": "artifact_gc.sweep.options",
    "SweepPlan": "artifact_gc.sweep.plan",
    "SweepReport": "artifact_gc.sweep.report",
    "Policy": "artifact_gc.collect.policy",
    "CollectReport": "artifact_gc.collect.report",
    "GCError": "artifact_gc.errors",
    "BrakeFired": "artifact_gc.errors",
}
__all__ = ["__version__", *_VALUES]


def __getattr__(name: str) -> Any:
    if name in _VALUES:
        import importlib

        return getattr(importlib.import_module(_VALUES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
