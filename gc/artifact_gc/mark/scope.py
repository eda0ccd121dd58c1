"""Which versions a mark decides: ``--project``, ``--artifact`` and ``--exclude-artifact``.

Scope narrows what is written to the manifest, never what protects it: versions out of
scope still refer to, and overlap, the versions in scope (see footprints.py).
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from artifact_gc.errors import UsageError
from artifact_gc.mark.ids import hex_id

if TYPE_CHECKING:
    from artifact_gc.mark.options import MarkOptions


def in_scope_filter(con: Any, options: MarkOptions, scope_noun: str = "project") -> str:
    """SQL over a version ``v`` of ``in_versions``: true when it is in scope.

    Reads ``in_projects`` and ``in_artifacts``; registers the ids in scope as
    ``scope_artifacts`` and ``scope_projects`` for the filter to read. ``in_projects``
    holds the store's projects, or its workspaces before ZenML 0.80 (``scope_noun``
    says which, for messages): ``--project`` names either.
    """
    artifact_scope, project_scope = _scope(con, options, scope_noun)
    _register_scope(con, "scope_artifacts", artifact_scope)
    _register_scope(con, "scope_projects", project_scope)
    scope_filters = []
    if artifact_scope is not None:
        scope_filters.append("v.artifact_id IN (SELECT id::UUID FROM scope_artifacts)")
    if project_scope is not None:
        scope_filters.append("v.project_id IN (SELECT id::UUID FROM scope_projects)")
    return " AND ".join(scope_filters) or "TRUE"


def _scope(con: Any, options: MarkOptions,
           scope_noun: str = "project") -> tuple[set[str] | None, set[str] | None]:
    """The artifact ids and project ids in scope (None: no filter on that axis)."""
    project_ids: set[str] | None = None
    if options.projects:
        projects = con.execute(
            f"SELECT {hex_id('id')}, name FROM in_projects").fetchall()
        names = {name: pid for pid, name in projects}
        ids = {pid for pid, _ in projects}
        project_ids = set()
        for wanted in options.projects:
            if wanted in names:
                project_ids.add(names[wanted])
            elif wanted.replace("-", "").lower() in ids:
                project_ids.add(wanted.replace("-", "").lower())
            else:
                raise UsageError(
                    f"no {scope_noun} named {wanted!r}; the store has: "
                    + (", ".join(sorted(n for n in names if n)) or f"no {scope_noun}s")
                )
    artifact_ids: set[str] | None = None
    if options.artifacts or options.exclude_artifacts:
        artifact_ids = set()
        for artifact_id, name in con.execute(
                f"SELECT {hex_id('id')}, name FROM in_artifacts").fetchall():
            name = name or ""
            included = not options.artifacts or any(
                fnmatch.fnmatchcase(name, pattern) for pattern in options.artifacts
            )
            excluded = any(fnmatch.fnmatchcase(name, p) for p in options.exclude_artifacts)
            if included and not excluded:
                artifact_ids.add(artifact_id)
    return artifact_ids, project_ids


def _register_scope(con: Any, name: str, ids: set[str] | None) -> None:
    con.register(name, pa.table({"id": pa.array(sorted(ids or ()), pa.string())}))
