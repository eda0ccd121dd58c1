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
- with ``--keep-tag`` at mark time: does the version, or its artifact, carry one of
  those tags now?
- with ``--release-unreachable-snapshots``: can the snapshot whose configuration
  names it run again now (a run, a schedule, a template, a deployment since the mark)?
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
from datetime import datetime, timedelta
from typing import Any

from artifact_gc.manifest.reasons import (
    PROTECT_OVERLAP_SINCE_MARK,
    PROTECT_TAG_PREFIX,
    REASON_CONFIG,
)
from artifact_gc.metadb.dialect import (
    DELETED_VERSIONS,
    IdDigest,
    ReferenceGuard,
    RerunTransaction,
    dialect_of,
    digest_xor,
    id_digest_of,
    steady_scans,
)
from artifact_gc.metadb.statements import quoter, select_in
from artifact_gc.zenml.references import VERSION_ID, config_filter
from artifact_gc.zenml.schema import VERSION_TABLE, ZenMLSchema
from artifact_gc.zenml.snapshots import Snapshots, discover_snapshots, runnable_filter


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


@dataclass(frozen=True)
class SweepPolicy:
    """The mark's policies that the sweep re-verifies, from the manifest's parameters:
    ``--keep-tag`` and ``--release-unreachable-snapshots`` (with the mark's grace
    cutoff, which decides whether a snapshot is old enough to release)."""

    keep_tags: tuple[str, ...] = ()
    release_snapshots: bool = False
    release_cutoff: datetime | None = None

    @classmethod
    def of(cls, parameters: dict[str, Any], started: datetime) -> SweepPolicy:
        release = bool(parameters.get("release_unreachable_snapshots"))
        grace = timedelta(seconds=int(parameters.get("older_than_seconds") or 0))
        return cls(keep_tags=tuple(parameters.get("keep_tags") or ()),
                   release_snapshots=release,
                   release_cutoff=started - grace if release else None)


#: Today's behaviour: no tags kept, no snapshot released.
DEFAULT_POLICY = SweepPolicy()


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
    policy: SweepPolicy = DEFAULT_POLICY,
) -> Liveness:
    """Ask the live database which of ``items`` must be kept, and why."""
    result = verify_references(connection, schema, items)
    present = [item for item in items if item.artifact_version_id in result.existing]
    verify_unreferenced(connection, schema, present, since, result, policy)
    return result


def verify_references(
    connection: Any, schema: ZenMLSchema, items: Sequence[BatchItem],
    existing: set[str] | None = None,
) -> Liveness:
    """Which of ``items`` still exist, and which a foreign key still points at.
    ``existing``: which exist, when the caller's lock has just read them."""

    q = quoter(connection)
    ids = [item.artifact_version_id for item in items]
    result = Liveness()
    result.existing = existing if existing is not None else {
        str(row[0]) for row in select_in(
            connection, f"SELECT {q('id')} FROM {q(VERSION_TABLE)} WHERE {q('id')} IN :ids", ids
        )
    }
    present = sorted(result.existing)
    steady = steady_scans(connection)
    for reference in schema.references:
        column = q(reference.column)
        if steady is not None:
            # SQLite has no index on the link tables' version columns: each lookup
            # scans the whole table. Under the write lock, one scan serves every
            # batch until another connection commits (metadb.dialect.SteadyScans):
            # the sweep never deletes link rows, so the set stays exact.
            key = ("referenced", reference.table, reference.column)
            if key not in steady:
                # Read through the driver's own cursor: hundreds of thousands of
                # link rows, each of which a result row object would wrap first.
                scan = connection.exec_driver_sql(f"SELECT {column} FROM {q(reference.table)}")
                steady[key] = frozenset(str(value) for (value,) in scan.cursor)
                scan.close()
            found = [vid for vid in present if vid in steady[key]]
        else:
            found = [str(value) for (value,) in select_in(
                connection,
                f"SELECT DISTINCT {column} FROM {q(reference.table)} WHERE {column} IN :ids",
                present,
            )]
        for value in found:
            result.referenced.setdefault(value, reference.reason)
    return result


def verify_unreferenced(
    connection: Any,
    schema: ZenMLSchema,
    items: Sequence[BatchItem],
    since: datetime,
    result: Liveness,
    policy: SweepPolicy = DEFAULT_POLICY,
    new_paths: NewPaths | None = None,
) -> None:
    """Add what keeps ``items`` alive without a foreign key: an id named in a step
    configuration (of a snapshot that can run again, with the policy's
    ``release_snapshots``), a ``--keep-tag`` tag on it or its artifact, or a path that
    a row created since the mark overlaps.

    A version whose row is already gone (a batch a crash interrupted after its commit)
    is not "kept" by a configuration that names it: its files are finished off.
    Callers pass only the versions that still exist, or filter afterwards.

    ``new_paths``: the URI guard's reads kept from one batch to the next (MySQL/MariaDB,
    see :class:`NewPaths`); without it every call reads the new rows afresh."""
    import sqlalchemy as sa

    wanted = {item.artifact_version_id for item in items}
    if policy.release_snapshots:
        _add_runnable_config_references(connection, schema, wanted, result, policy)
    else:
        for sql in _config_queries(connection, schema):
            _add_config_references(connection.execute(sa.text(sql)).all(), wanted, result)
    if policy.keep_tags:
        _add_tags(connection, items, policy.keep_tags, result)
    result.uri_conflicts.update(_uri_conflicts(connection, schema, items, since, new_paths))


def _add_runnable_config_references(
    connection: Any, schema: ZenMLSchema, wanted: set[str], result: Liveness,
    policy: SweepPolicy, read: Any = None, since: Any = None,
) -> None:
    """A configuration names a version: it keeps it unless it belongs to a snapshot
    that nothing can run again now (zenml.snapshots), by the rule the mark used.

    A snapshot run again since the mark, scheduled, named, templated or deployed since,
    keeps what it names (``revived``); so does a configuration of a snapshot created
    since the mark's cutoff, or one whose owner is unknown. With ``read`` (the MySQL
    guard's locking read) only the configurations created since ``since`` are read."""
    import sqlalchemy as sa

    inspector = sa.inspect(connection)
    snapshots = discover_snapshots(inspector, schema.tables)
    q = quoter(connection)
    created = f"{q('created')} >= :since AND " if read is not None else ""
    named: dict[str, set[str | None]] = {}
    for table, column in schema.config_tables:
        owner = (snapshots.config_owner_columns(
            table, frozenset(c["name"] for c in inspector.get_columns(table)))[0]
            if snapshots else None)
        owner_sql = q(owner) if owner else "NULL"
        sql = (f"SELECT {q(column)}, {owner_sql} FROM {q(table)} "
               f"WHERE {created}({config_filter(q(column))})")
        rows = (read(sql, since=since) if read is not None
                else connection.execute(sa.text(sql)).all())
        for config, snapshot in rows:
            for match in VERSION_ID.findall(str(config or "")):
                version_id = match.replace("-", "").lower()
                if version_id in wanted:
                    named.setdefault(version_id, set()).add(
                        str(snapshot) if snapshot is not None else None)
    owners = {s for found in named.values() for s in found if s is not None}
    released = (_released_snapshots(connection, snapshots, owners, policy)
                if snapshots is not None and owners else set())
    for version_id, found in named.items():
        if any(s is None or s not in released for s in found):
            result.referenced.setdefault(version_id, REASON_CONFIG)


def _released_snapshots(connection: Any, snapshots: Snapshots, ids: set[str],
                        policy: SweepPolicy) -> set[str]:
    """Which of the snapshots ``ids`` nothing can run again now, and older than the
    mark's cutoff."""
    q = quoter(connection)
    alias = "s"
    moment = dialect_of(connection).db_time(policy.release_cutoff or datetime.min)
    return {str(row[0]) for row in select_in(
        connection,
        f"SELECT {alias}.{q('id')} FROM {q(snapshots.table)} {alias} "
        f"WHERE {alias}.{q('id')} IN :ids AND {alias}.{q('created')} <= :cutoff "
        f"AND NOT {runnable_filter(snapshots, q, alias)}",
        ids, cutoff=moment,
    )}


def _add_tags(connection: Any, items: Sequence[BatchItem], tags: tuple[str, ...],
              result: Liveness) -> None:
    """``tag:<name>`` for the items that carry a ``--keep-tag`` tag, or whose artifact
    does: a tag added since the mark keeps the version (``revived``)."""
    q = quoter(connection)
    by_version = {item.artifact_version_id: item for item in items}
    by_artifact: dict[str, list[str]] = {}
    for item in items:
        by_artifact.setdefault(item.artifact_id, []).append(item.artifact_version_id)
    sql = (f"SELECT r.{q('resource_id')}, r.{q('resource_type')}, t.{q('name')} "
           f"FROM {q('tag_resource')} r JOIN {q('tag')} t ON t.{q('id')} = r.{q('tag_id')} "
           f"WHERE t.{q('name')} = :name AND r.{q('resource_id')} IN :ids")
    rows = [row for name in tags
            for row in select_in(connection, sql, [*by_version, *by_artifact], name=name)]
    for resource_id, resource_type, name in rows:
        rid = str(resource_id)
        if resource_type == "artifact_version" and rid in by_version:
            targets = [rid]
        elif resource_type == "artifact":
            targets = by_artifact.get(rid, [])
        else:
            continue
        for version_id in targets:
            result.referenced.setdefault(version_id, f"{PROTECT_TAG_PREFIX}{name}")


def verify_before_commit(
    guard: ReferenceGuard,
    connection: Any,
    schema: ZenMLSchema,
    items: Sequence[BatchItem],
    since: datetime,
    result: Liveness,
    deleted: Sequence[str] = (),
    policy: SweepPolicy = DEFAULT_POLICY,
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
    if policy.release_snapshots:
        # The same rule as the first check: a configuration of a snapshot that
        # nothing can run again keeps nothing, here too (with a short grace period
        # its rows can be younger than the clock margin).
        _add_runnable_config_references(connection, schema, present, result, policy,
                                        read=guard.read, since=moment)
    else:
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


def _new_paths(connection: Any, schema: ZenMLSchema, since: datetime,
               kept: NewPaths | None = None, items: Sequence[BatchItem] = ()
               ) -> list[tuple[str, str]]:
    """(path, owning version id) of every version and visualization created since."""
    if kept is not None:
        return kept.read(connection, items)
    steady = steady_scans(connection)
    if steady is None:
        return _read_new_paths(connection, schema, since)
    # ``created`` has no index: each read scans both tables. Under SQLite's write lock
    # one read serves every batch until another connection commits (a new row is such
    # a commit); the rows the sweep deleted since are left out, as a new read would.
    key = ("new_paths", since)
    if key not in steady:
        steady[key] = _read_new_paths(connection, schema, since)
        steady[DELETED_VERSIONS] = set()
    deleted = steady[DELETED_VERSIONS]
    return [(path, owner) for path, owner in steady[key] if owner not in deleted]


class NewPaths:
    """The URI guard's reads of the rows created since the mark, kept from one batch
    to the next on MySQL/MariaDB for as long as no row has been added.

    ``created`` has no index, so the guard's question (which versions and
    visualizations were created since?) is a full scan of both tables. The sweep asks
    it before every batch: at 100,000 orphans, 100 batches of 1,000 scanned 143k
    version rows and 143k visualization rows each (about 190 MB), through a buffer pool
    smaller than the tables (MariaDB's default 128 MB), so that every scan read them from
    disk again and pushed out the pages the deletes needed.

    Here the answer is read once, with a digest of every id in each table
    (:meth:`Dialect.id_digest`: the row count and 64 bits of XOR, read from the
    smallest index). Before each later batch the digest is read again, and the kept
    answer stands only if it equals the digest of the rows there were, less those
    this sweep's committed batches deleted (:meth:`deleted`: their versions, and the
    visualizations of those versions read before the batch took its locks): no row
    was added, so the rows created since are the kept ones, whose paths are then read
    again by primary key (a row gone since no longer counts, as with a fresh read).
    A row taken out that the digest did not count (a visualization added between
    the digest and the read of the batch's own) only makes the two differ. Any other
    difference (a row added, or one deleted by someone else) and the tables are read
    in full again, as before. The question is asked at the
    same moment as before, before every batch; only its cost changed, from two scans
    of the tables to two scans of an index and a few lookups by key.

    What makes the kept answer exact: a row's id and ``created`` are set when it is
    inserted and never change (ZenML updates neither, and this sweep only deletes),
    and ids are random UUIDs, so that an added row changes the digest but for odds of
    2**-64 (with the count: a row added with as many deleted, by someone else, whose
    ids XOR alike). A digest read before the answer it vouches for (the order below)
    can only be stale in the safe direction: a row added between the two reads is in
    the answer and not in the digest, and the next batch reads everything again.
    """

    def __init__(self, schema: ZenMLSchema, since: datetime) -> None:
        self.since = since
        #: (table, column naming the owning version) of the tables the guard reads.
        self._tables = [(VERSION_TABLE, "id")]
        if "artifact_visualization" in schema.tables:
            self._tables.append(("artifact_visualization", "artifact_version_id"))
        #: table -> the digest of the rows believed to be there (None: read in full).
        self._digest: dict[str, IdDigest | None] = {t: None for t, _ in self._tables}
        #: table -> ids of its rows created since, when the digest was read.
        self._recent: dict[str, set[str]] = {t: set() for t, _ in self._tables}
        #: table -> owning version id -> ids of that table's rows owned by a version
        #: of the batch about to run (read before its locks; see :meth:`deleted`).
        self._owned: dict[str, dict[str, set[str]]] = {t: {} for t, _ in self._tables}
        #: Reads of the whole tables, and reads answered by the kept rows (for tests
        #: and benchmarks).
        self.full_reads = 0
        self.kept_reads = 0

    @classmethod
    def of(cls, engine: Any, schema: ZenMLSchema, since: datetime) -> NewPaths | None:
        """Kept reads where they are needed: None where the sweep's write lock holds
        back every writer (SQLite, whose kept scans are metadb.dialect.SteadyScans)."""
        return None if dialect_of(engine).lock_blocks_all_writers else cls(schema, since)

    def read(self, connection: Any, items: Sequence[BatchItem]) -> list[tuple[str, str]]:
        """(path, owning version id) of every version and visualization created since;
        ``items`` are the batch about to be deleted (see :meth:`deleted`)."""
        found: list[tuple[str, str]] = []
        kept = True
        for table, owner in self._tables:
            rows, fresh = self._read_table(connection, table, owner)
            kept = kept and not fresh
            found.extend((str(uri).rstrip("/"), str(vid)) for vid, uri in rows if uri)
        if kept:
            self.kept_reads += 1
        else:
            self.full_reads += 1
        self._remember(connection, items)
        return found

    def _read_table(self, connection: Any, table: str, owner: str
                    ) -> tuple[list[Any], bool]:
        """The (owner, uri) rows of ``table`` created since, and whether they were read
        in full."""
        import sqlalchemy as sa

        q = quoter(connection)
        dialect = dialect_of(connection)
        moment = dialect.db_time(self.since)
        expected = self._digest[table]
        # The digest first, then the rows it vouches for (see the class).
        row = connection.execute(sa.text(
            f"SELECT {dialect.id_digest(q('id'))} FROM {q(table)}")).one()
        digest: IdDigest = (int(row[0]), int(row[1]), int(row[2]))
        if digest == expected:
            rows = select_in(
                connection,
                f"SELECT {q(owner)}, {q('uri')} FROM {q(table)} "
                f"WHERE {q('id')} IN :ids AND {q('created')} >= :since",
                self._recent[table], since=moment)
            return rows, False
        # Not kept until the read below has finished: an error half way leaves the
        # next batch reading in full again.
        self._digest[table] = None
        rows = connection.execute(sa.text(
            f"SELECT {q('id')}, {q(owner)}, {q('uri')} FROM {q(table)} "
            f"WHERE {q('created')} >= :since"), {"since": moment}).all()
        self._recent[table] = {str(r[0]) for r in rows}
        self._digest[table] = digest
        return [(r[1], r[2]) for r in rows], True

    def _remember(self, connection: Any, items: Sequence[BatchItem]) -> None:
        """Read the ids of the rows that the batch of ``items`` would delete with its
        versions in the tables owned through a version (its visualizations), as they
        are now: :meth:`deleted` takes them out of the digest once the batch commits.
        The versions' own rows need no read: the batch reports exactly which it
        deleted."""
        q = quoter(connection)
        ids = [item.artifact_version_id for item in items]
        for table, owner in self._tables:
            self._owned[table] = {}
            if owner == "id" or self._digest[table] is None or not ids:
                continue
            for row_id, version_id in select_in(
                    connection, f"SELECT {q('id')}, {q(owner)} FROM {q(table)} "
                                f"WHERE {q(owner)} IN :ids", ids):
                self._owned[table].setdefault(str(version_id), set()).add(str(row_id))

    def deleted(self, version_ids: Sequence[str]) -> None:
        """The batch last read for has committed, deleting the versions
        ``version_ids`` and, with them, every row owned through them: the digests
        the next read expects lose those rows.

        Only what a committed transaction deleted may be taken out; a caller that
        reports nothing leaves the digests to differ, and the next read is in full."""
        gone = set(version_ids)
        for table, owner in self._tables:
            expected = self._digest[table]
            owned, self._owned[table] = self._owned[table], {}
            if expected is None:
                continue
            rows = gone if owner == "id" else {
                row_id for vid in gone for row_id in owned.get(vid, ())}
            for row_id in rows:
                expected = digest_xor(expected, id_digest_of(row_id), -1)
            self._digest[table] = expected


def _read_new_paths(connection: Any, schema: ZenMLSchema, since: datetime
                    ) -> list[tuple[str, str]]:
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
    connection: Any, schema: ZenMLSchema, items: Sequence[BatchItem], since: datetime,
    kept: NewPaths | None = None,
) -> dict[str, str]:
    """Candidates whose paths overlap a path of a row created since ``since``.

    Rows that belong to the candidate itself do not count. Rows of other versions
    that existed at mark time were already compared by the mark, which protected any
    candidate overlapping them, whatever their status.
    """
    new = _new_paths(connection, schema, since, kept, items)
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
