"""Re-verifying a batch of candidates against the live database.

A manifest can be days old. Before a sweep deletes anything it asks the database
again, inside the transaction that deletes on SQLite (under its write lock). On
MySQL/MariaDB the version rows are locked FOR UPDATE, which holds back foreign-key
references only: the configuration and URI questions are asked just before that
transaction, and the configurations once more before its commit
(:func:`verify_before_commit`):

- does the version row still exist?
- does any reference table (every foreign key into ``artifact_version`` found by
  reflection, not a hand-written list) name it?
- does a ``step_configuration.config`` that names external input artifacts hold its
  dashed id?
- has a version or visualization been created since the mark whose URI equals,
  contains or lies inside one of the candidate's paths? (The mark already protected
  overlaps with every row that existed when it ran.)

Any "yes" keeps the version. The questions are batched: one query per table per
batch, never one per version.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from artifact_gc.manifest.reasons import PROTECT_OVERLAP_SINCE_MARK, REASON_CONFIG
from artifact_gc.metadb.dialect import ReferenceGuard, RerunTransaction, dialect_of
from artifact_gc.metadb.statements import quoter, select_in
from artifact_gc.zenml.references import VERSION_ID, config_filter
from artifact_gc.zenml.schema import VERSION_TABLE, ZenMLSchema


@dataclass(frozen=True)
class BatchItem:
    """One candidate as the sweep acts on it."""

    artifact_version_id: str
    artifact_id: str
    footprint: tuple[str, ...]
    size_bytes: int | None = None
    file_count: int | None = None
    store_id: str | None = None
    store_root: str | None = None
    #: The manifest's ``object_keys``: the objects gc mark --sizes found under the
    #: footprint (None: not recorded; the backend lists).
    object_keys: tuple[str, ...] | None = None


@dataclass
class Liveness:
    """The live database's answer for one batch."""

    existing: set[str] = field(default_factory=set)
    referenced: dict[str, str] = field(default_factory=dict)
    uri_conflicts: dict[str, str] = field(default_factory=dict)

    def keep_reason(self, version_id: str) -> str | None:
        return self.referenced.get(version_id) or self.uri_conflicts.get(version_id)


def verify_batch(
    connection: Any,
    schema: ZenMLSchema,
    items: Sequence[BatchItem],
    since: datetime,
) -> Liveness:
    """Ask the live database which of ``items`` must be kept, and why."""
    result = verify_references(connection, schema, items)
    present = [item for item in items if item.artifact_version_id in result.existing]
    verify_unreferenced(connection, schema, present, since, result)
    return result


def verify_references(
    connection: Any, schema: ZenMLSchema, items: Sequence[BatchItem]
) -> Liveness:
    """Which of ``items`` still exist, and which a foreign key still points at."""
    q = quoter(connection)
    ids = [item.artifact_version_id for item in items]
    result = Liveness()
    result.existing = {
        str(row[0]) for row in select_in(
            connection, f"SELECT {q('id')} FROM {q(VERSION_TABLE)} WHERE {q('id')} IN :ids", ids
        )
    }
    present = sorted(result.existing)
    for reference in schema.references:
        column = q(reference.column)
        for (value,) in select_in(
            connection,
            f"SELECT DISTINCT {column} FROM {q(reference.table)} WHERE {column} IN :ids",
            present,
        ):
            result.referenced.setdefault(str(value), reference.reason)
    return result


def verify_unreferenced(
    connection: Any,
    schema: ZenMLSchema,
    items: Sequence[BatchItem],
    since: datetime,
    result: Liveness,
) -> None:
    """Add what keeps ``items`` alive without a foreign key: an id named in a step
    configuration, or a path that a row created since the mark overlaps.

    A version whose row is already gone (a batch a crash interrupted after its commit)
    is not "kept" by a configuration that names it: its files are finished off.
    Callers pass only the versions that still exist, or filter afterwards."""
    import sqlalchemy as sa

    wanted = {item.artifact_version_id for item in items}
    for sql in _config_queries(connection, schema):
        _add_config_references(connection.execute(sa.text(sql)).all(), wanted, result)
    result.uri_conflicts.update(_uri_conflicts(connection, schema, items, since))


def verify_before_commit(
    guard: ReferenceGuard,
    connection: Any,
    schema: ZenMLSchema,
    items: Sequence[BatchItem],
    since: datetime,
    result: Liveness,
    deleted: Sequence[str] = (),
) -> None:
    """Ask again, as late as the batch allows, whether a step configuration names one
    of ``items`` (MySQL/MariaDB: after the deletes, or before the files in files-only
    mode), and add what it finds to ``result``.

    If a version in ``deleted`` (rows deleted by this uncommitted transaction) is kept
    now, raise :class:`RerunTransaction`: the batch rolls back and runs again, and its
    first check then sees the new reference.

    The configurations are read through ``guard``, whose shared locks cover every row
    and gap of the configuration tables until the batch has committed: a configuration
    committed since the first check is seen here, one still being written is waited
    for, and one written after this read waits for the commit (it then names a version
    that is gone, as if it had come a moment later). No window is left.

    Only the rows created since the mark are matched (the scan, and so the lock, still
    covers the whole table). The first check read every row, and ZenML only inserts
    step configurations, with ``created`` set as it builds them: one created before the
    mark and committed after that check would need a transaction open for longer than
    the clock margin, which the URI guard assumes too. Matching every row would hold the
    locks longer: the text filter is most of a check (80 of 90 ms on 2,000
    configurations).

    The URI guard is not asked again. Files are what it protects, and the sweep deletes
    them after its commit, while ZenML writes a version's files before its row, so no
    lock on the rows could close that window. Asking again inside the batch would only
    narrow it, and it doubled the batch transaction on a store of 250,000 versions (two
    full scans; ``created`` has no index).
    """
    present = {item.artifact_version_id for item in items
               if item.artifact_version_id in result.existing}
    moment = dialect_of(connection).db_time(since)
    for sql in _config_queries(connection, schema, since=True):
        _add_config_references(guard.read(sql, since=moment), present, result)
    late = sorted(vid for vid in deleted if result.keep_reason(vid))
    if late:
        raise RerunTransaction(
            f"{len(late)} version(s) deleted by this batch gained a reference before its "
            f"commit (first {late[0]}: {result.keep_reason(late[0])})")


def _config_queries(connection: Any, schema: ZenMLSchema, since: bool = False) -> list[str]:
    """The same configurations as the mark reads (see CONFIG_ID_KEYS); with ``since``,
    only those created since ``:since`` (the cheap test first)."""
    q = quoter(connection)
    created = f"{q('created')} >= :since AND " if since else ""
    return [f"SELECT {q(column)} FROM {q(table)} WHERE {created}({config_filter(q(column))})"
            for table, column in schema.config_tables]


def _add_config_references(rows: Sequence[Any], wanted: set[str], result: Liveness) -> None:
    for (config,) in rows:
        for match in VERSION_ID.findall(str(config or "")):
            version_id = match.replace("-", "").lower()
            if version_id in wanted:
                result.referenced.setdefault(version_id, REASON_CONFIG)


def _new_paths(connection: Any, schema: ZenMLSchema, since: datetime) -> list[tuple[str, str]]:
    """(path, owning version id) of every version and visualization created since."""
    import sqlalchemy as sa

    q = quoter(connection)
    moment = dialect_of(connection).db_time(since)
    rows = connection.execute(
        sa.text(f"SELECT {q('id')}, {q('uri')} FROM {q(VERSION_TABLE)} "
                f"WHERE {q('created')} >= :since"),
        {"since": moment},
    ).all()
    found = [(str(uri).rstrip("/"), str(owner)) for owner, uri in rows if uri]
    if "artifact_visualization" in schema.tables:
        rows = connection.execute(
            sa.text(f"SELECT {q('artifact_version_id')}, {q('uri')} "
                    f"FROM {q('artifact_visualization')} WHERE {q('created')} >= :since"),
            {"since": moment},
        ).all()
        found.extend((str(uri).rstrip("/"), str(owner)) for owner, uri in rows if uri)
    return found


def _uri_conflicts(
    connection: Any, schema: ZenMLSchema, items: Sequence[BatchItem], since: datetime
) -> dict[str, str]:
    """Candidates whose paths overlap a path of a row created since ``since``.

    Rows that belong to the candidate itself do not count. Rows of other versions
    that existed at mark time were already compared by the mark, which protected any
    candidate overlapping them, whatever their status.
    """
    new = _new_paths(connection, schema, since)
    if not new:
        return {}
    owners: dict[str, set[str]] = {}
    for path, owner in new:
        owners.setdefault(path, set()).add(owner)
    ordered = sorted(owners)
    conflicts: dict[str, str] = {}
    for item in items:
        me = item.artifact_version_id
        for raw in item.footprint:
            path = raw.rstrip("/")
            hit = _overlap(path, owners, ordered, me)
            if hit is not None:
                conflicts[me] = f"{PROTECT_OVERLAP_SINCE_MARK}: {hit}"
                break
    return conflicts


def _overlap(path: str, owners: dict[str, set[str]], ordered: list[str], me: str
             ) -> str | None:
    def foreign(other: str) -> bool:
        return bool(owners[other] - {me})

    # Equal to, or inside, a new path: one of path's prefixes (itself included).
    probe = path
    while probe:
        if probe in owners and foreign(probe):
            return probe
        cut = probe.rfind("/")
        if cut <= 0 or probe[:cut].endswith(":/"):
            break
        probe = probe[:cut]
    # Containing a new path: the new paths that start with path + "/" sort together.
    prefix = path + "/"
    start = bisect.bisect_left(ordered, prefix)
    for other in ordered[start:]:
        if not other.startswith(prefix):
            break
        if foreign(other):
            return other
    return None


def foreign_key_children(engine: Any, table: str, inspector: Any = None
                         ) -> list[tuple[str, str]]:
    """(child table, column) of every foreign key that points at ``table``.

    ``inspector``: one ``sa.inspect(engine)`` shared by several calls, which then
    reflect each table's foreign keys once (the inspector caches them)."""
    import sqlalchemy as sa

    inspector = inspector if inspector is not None else sa.inspect(engine)
    children = []
    for child in inspector.get_table_names():
        for fk in inspector.get_foreign_keys(child):
            if fk.get("referred_table") == table:
                children.append((child, fk["constrained_columns"][0]))
    return children
