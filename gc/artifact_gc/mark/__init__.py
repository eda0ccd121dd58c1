"""Mark: read the metadata store in one snapshot and decide, for every artifact version
in scope, whether it is reachable and why; the decision becomes a manifest."""

# The Python API (see the README): ``from artifact_gc.mark import mark, MarkOptions``.
# Loaded on first use, so that importing one step module does not import them all.
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from artifact_gc.mark.options import MarkOptions as MarkOptions
    from artifact_gc.mark.run import MarkResult as MarkResult
    from artifact_gc.mark.run import mark as mark

_API = {"mark": "run", "MarkResult": "run", "MarkOptions": "options"}
__all__ = ["MarkOptions", "MarkResult", "mark"]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
