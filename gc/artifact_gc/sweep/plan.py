"""The sweep's plan: check a manifest against the live store, and read what is left.

:func:`plan_sweep` refuses a manifest it must not act on and returns a
:class:`SweepPlan`, a value that says what a sweep would do; nothing is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from artifact_gc.errors import DatabaseError, ManifestRefused
from artifact_gc.manifest import format as mf
from artifact_gc.manifest.reasons import ITEM_KIND_ORPHAN_FILE, ITEM_KIND_VERSION
from artifact_gc.metadb.dialect import dialect_of
from artifact_gc.metadb.engine import create_engine, redact
from artifact_gc.metadb.fingerprint import DatabaseFingerprint, fingerprint
from artifact_gc.sweep.journal import FINAL_EVENTS, STATE_PENDING, STATE_VIEW, Journal
from artifact_gc.sweep.options import SweepOptions
from artifact_gc.undo.area import StoreUndo
from artifact_gc.zenml.config import resolve_database_url
from artifact_gc.zenml.profiles import describe_unknown
from artifact_gc.zenml.schema import KNOWN_SCHEMA_VERSIONS, ZenMLSchema, discover
from artifact_gc.zenml.stores import ArtifactStore, load_artifact_stores

#: The URI guard looks at rows created since the mark started, minus this margin, so
#: that a clock on the ZenML side running behind ours cannot hide a new row.
CLOCK_MARGIN = timedelta(hours=1)

#: The kinds of item this release can sweep (batch.py journals versions, orphan_files.py
#: orphan files).
#: A candidate of another kind is refused, not acted on as if it were a version.
SWEPT_KINDS = (ITEM_KIND_VERSION, ITEM_KIND_ORPHAN_FILE)


@dataclass
class SweepPlan:
    """What a sweep of a manifest will do: checked, and not yet started."""

    manifest_url: str
    journal_url: str
    db_url: str
    info: mf.ManifestInfo
    options: SweepOptions
    candidates: int
    journal_states: dict[str, int]
    items: pa.Table
    stores: dict[str, ArtifactStore]
    #: What the sweep should know before it starts (a dry run: a journal that could
    #: not be written), one line each.
    warnings: list[str] = field(default_factory=list)
    #: Events at the journal's location that belong to another mark, by mark id:
    #: never counted or resumed.
    foreign_events: dict[str, int] = field(default_factory=dict)
    #: With an undo window: how each store the sweep deletes from keeps its files.
    file_undo: dict[str, StoreUndo] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every candidate reached its final event in an earlier sweep: nothing to do."""
        return self.candidates > 0 and self.versions == 0

    @property
    def versions(self) -> int:
        return int(self.items.num_rows)

    @property
    def orphan_files(self) -> int:
        """Pending items of kind ``orphan_file`` (paths, not versions)."""
        kinds = self.items.column("item_kind").to_pylist()
        return sum(1 for k in kinds if k == ITEM_KIND_ORPHAN_FILE)

    @property
    def resuming(self) -> int:
        """Pending items that an earlier sweep started (or failed) and did not finish."""
        events = self.items.column("last_event").to_pylist()
        return sum(1 for e in events if e is not None)

    @property
    def bytes(self) -> int | None:
        sizes = self.items.column("size_bytes").to_pylist()
        return None if any(s is None for s in sizes) else int(sum(sizes))

    @property
    def files(self) -> int | None:
        counts = self.items.column("file_count").to_pylist()
        return None if any(c is None for c in counts) else int(sum(counts))

    @property
    def paths(self) -> int:
        """The paths a sweep deletes (each version's URI and visualizations): the unit
        the sweep's summary counts too."""
        from artifact_gc.mark.sizes import footprint_paths

        uris = self.items.column("uri").to_pylist()
        visualizations = self.items.column("visualization_uris").to_pylist()
        return sum(len(footprint_paths(u, v)) for u, v in zip(uris, visualizations,
                                                                strict=True))

    @property
    def batches(self) -> int:
        return -(-self.versions // self.batch_size)

    @property
    def by_key(self) -> bool:
        """Whether local stores' versions are taken in id order (see read_pending)."""
        return dialect_of(self.db_url).batches_in_key_order

    @property
    def key_column(self) -> str:
        """The manifest column of that order (see read_pending)."""
        return dialect_of(self.db_url).key_order_column

    @property
    def batch_size(self) -> int:
        return self.options.batch_size or dialect_of(self.db_url).default_batch_size

    @property
    def verify_since(self) -> datetime:
        """Rows created since then may overlap a candidate's paths unseen by the mark."""
        return self.info.started - CLOCK_MARGIN

    def open_journal(self) -> Journal:
        """The journal this plan read, for the sweep to write."""
        return Journal(self.manifest_url, self.options.storage_options, url=self.journal_url,
                       mark_id=self.info.mark_id, mark_started=self.info.started)

    def as_dict(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest_url,
            "journal": self.journal_url,
            "database": redact(self.db_url),
            "mark_id": self.info.mark_id,
            "mark_started_at": self.info.started_at,
            "mode": self.options.mode,
            "dry_run": self.options.dry_run,
            "candidates": self.candidates,
            "journal_states": dict(self.journal_states),
            "versions": self.versions,
            "orphan_files": self.orphan_files,
            "resuming": self.resuming,
            "bytes": self.bytes,
            "files": self.files,
            "batches": self.batches,
            "batch_size": self.batch_size,
            "workers": self.options.workers,
            "paths": self.paths,
            "complete": self.complete,
            "warnings": list(self.warnings),
            "foreign_events": dict(self.foreign_events),
            "undo": self.undo_dict(),
        }

    def undo_dict(self) -> dict[str, Any] | None:
        """The undo window and how each store keeps its files; None with --no-undo."""
        window = self.options.undo_window
        if not self.options.undo or window is None:
            return None
        from artifact_gc.durations import format_duration

        return {"window": format_duration(window),
                "window_seconds": window.total_seconds(),
                "files": {k: v.describe for k, v in self.file_undo.items()}}


def plan_sweep(
    manifest_url: str, db_url: str | None = None, options: SweepOptions | None = None
) -> SweepPlan:
    """Check the manifest against the live store and work out what is left to sweep.

    Refuses (``ManifestRefused``, exit 5) a manifest that is incomplete, fails its
    checksum, has an unknown format or schema version, comes from another database
    or is older than ``max_manifest_age``. Reads only.
    """
    options = options or SweepOptions()
    storage = options.storage_options
    info = mf.verify(manifest_url, storage)
    manifest_schema = info.database.get("schema_version") or info.schema.get("version")
    if manifest_schema not in KNOWN_SCHEMA_VERSIONS and not _accepted(manifest_schema, options):
        raise ManifestRefused(
            f"{manifest_url} was marked on ZenML schema {manifest_schema or 'unknown'}: "
            f"{describe_unknown(manifest_schema)}, and no schema profile covers it; to sweep "
            f"it on the schema's foreign keys alone, pass --accept-schema "
            f"{manifest_schema or 'unknown'}",
            manifest_url, "unknown_schema_version",
        )
    if options.max_manifest_age is not None:
        age = mf.utc_now() - info.started
        if age > options.max_manifest_age:
            raise ManifestRefused(
                f"{manifest_url} is {_age(age)} old, older than --max-manifest-age "
                f"({_age(options.max_manifest_age)}); mark again, or raise the limit",
                manifest_url, "too_old",
            )
    url = _database_url(db_url, info)
    if options.batch_size is None:
        options = replace(options, batch_size=dialect_of(url).default_batch_size)
    engine = create_engine(url, readonly=True)
    try:
        schema = discover_schema(engine)
        live = fingerprint(engine, schema.version)
        marked = DatabaseFingerprint.from_dict(info.database)
        if not live.same_store(marked):
            raise ManifestRefused(
                f"{manifest_url} was marked on {marked.describe()}, not on the database "
                f"being swept ({live.describe()})",
                manifest_url, "other_database",
            )
        refuse_unknown_schema(schema, options, manifest_url)
        overrides = dict(info.parameters.get("store_roots") or {})
        stores = load_artifact_stores(engine, url, overrides, options.storage_options)
    finally:
        engine.dispose()
    # Bound to this manifest's mark: events of another mark at the same location are
    # never counted or resumed.
    journal = Journal.of(manifest_url, info, storage, options.journal)
    warnings: list[str] = []
    if options.dry_run:
        problem = journal.unwritable()
        if problem:
            warnings.append(f"a sweep could not write its journal at {journal.url} "
                            f"({problem}); put it elsewhere with --journal LOCATION")
    else:
        journal.lock.refuse_if_held()
    candidates, states, items = read_pending(journal, options,
                                             dialect_of(url).batches_in_key_order,
                                             dialect_of(url).key_order_column)
    unknown = sorted(set(items.column("item_kind").to_pylist()) - set(SWEPT_KINDS))
    if unknown:
        raise ManifestRefused(
            f"{manifest_url} has candidates of a kind this release cannot sweep "
            f"({', '.join(unknown)}; it sweeps {', '.join(SWEPT_KINDS)})",
            manifest_url, "unknown_item_kind",
        )
    if not options.dry_run and items.num_rows:
        # Before the prompt, not at the first batch: exit 9 with the --journal hint.
        journal.check_writable()
    file_undo: dict[str, StoreUndo] = {}
    if options.undo and options.deletes_files and items.num_rows:
        # Before the prompt too: a store that cannot keep files restorable is refused
        # here (exit 9, naming --no-undo), not halfway through the sweep.
        from artifact_gc.undo.sweeping import describe_stores

        file_undo = describe_stores(stores, (
            (s, r) for s, r in zip(items.column("artifact_store_id").to_pylist(),
                                   items.column("store_root").to_pylist(), strict=True)
            if s and r))
    return SweepPlan(
        manifest_url=manifest_url, journal_url=journal.url, db_url=url, info=info,
        options=options, candidates=candidates, journal_states=states, items=items,
        stores=stores, warnings=warnings, foreign_events=journal.foreign_marks(),
        file_undo=file_undo,
    )


def _accepted(version: str | None, options: SweepOptions) -> bool:
    return version is not None and options.accept_schema == version


def refuse_unknown_schema(schema: ZenMLSchema, options: SweepOptions, manifest_url: str) -> None:
    """Refuse a live store that no schema profile covers, unless ``--accept-schema``
    names its version; refuse even then when reflection found something that could name
    a version and that no profile explains (a row we cannot see is a row we would leave
    dangling, or a reference we would miss)."""
    if schema.known_version:
        return
    version = schema.version or "unknown"
    if not _accepted(schema.version, options):
        raise ManifestRefused(
            f"the live store has ZenML schema {version}: {describe_unknown(schema.version)}, "
            "and it may hold references no schema profile describes; to sweep it on the "
            f"schema's foreign keys alone, pass --accept-schema {version}",
            manifest_url, "unknown_schema_version",
        )
    if schema.unexplained:
        raise ManifestRefused(
            f"refusing to sweep ZenML schema {version} even with --accept-schema: "
            f"{'; '.join(schema.unexplained)}",
            manifest_url, "unexplained_schema",
        )


def discover_schema(engine: Any) -> ZenMLSchema:
    """The store's schema, without the unknown-version warning: the plan refuses such a
    store by itself."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return discover(engine)


def read_pending(journal: Journal, options: SweepOptions, by_key: bool = False,
                 key_column: str = "artifact_version_id"
                 ) -> tuple[int, dict[str, int], pa.Table]:
    """(candidates, candidates by last journal event, the items not finished in the
    options' mode), from the view ``sweep_state`` (DuckDB). Items are keyed by
    (``item_kind``, ``item_id``); the version columns are what the sweep of a version
    acts on.

    The items come in the order the sweep takes them (see :func:`in_sweep_order`): with
    ``by_key`` (:attr:`Dialect.batches_in_key_order`), the versions of local stores in
    the order of their ids, the database's own; otherwise by URI. Either way, versions
    whose URIs nest (a family, ``family``) come one after the other, and
    :func:`batch_slices` never cuts a family in two."""
    finished = ", ".join(f"'{e}'" for e in (*FINAL_EVENTS, options.done_event))
    with journal.reading_state() as con:
        states = {
            str(state): int(n) for state, n in con.execute(
                f"SELECT coalesce(last_event, '{STATE_PENDING}'), count(*) FROM {STATE_VIEW} "
                "GROUP BY 1"
            ).fetchall()
        }
        items = in_sweep_order(con, con.sql(pending_sql(
            f"SELECT * FROM {STATE_VIEW} WHERE state NOT IN ({finished})")).to_arrow_table(),
            by_key, key_column)
    return sum(states.values()), states, items


#: The columns of the plan's items, from ``sweep_state`` (or a manifest).
_ITEM_COLUMNS = """item_kind, item_id,
       artifact_version_id, artifact_id, uri, artifact_store_id, store_root,
       coalesce(visualization_uris, []::VARCHAR[]) AS visualization_uris,
       size_bytes, file_count, object_keys, created, last_event"""


def pending_sql(source: str) -> str:
    """DuckDB SQL: the item columns of ``source`` (a query over ``sweep_state``, or over
    a manifest with a ``last_event`` column), in no order: :func:`in_sweep_order`
    orders them."""
    return f"SELECT {_ITEM_COLUMNS} FROM ({source})"


def in_sweep_order(con: Any, items: pa.Table, by_key: bool,
                   key_column: str = "artifact_version_id") -> pa.Table:
    """``items`` in the order a sweep takes them, with their ``family`` (``con``: the
    DuckDB connection that reorders the rows).

    **Families.** Versions whose URIs equal or lie inside one another are one family:
    deleting the outer directory deletes the inner version's files, so they are
    verified and deleted in one batch (:func:`batch_slices`), and no file of a version
    still in the database goes with another batch's directory. Within one batch, an
    outer version deletable beside an inner one revived would still take the inner's
    files: what prevents that is ``gc mark``, which protects every version whose
    footprint overlaps another's, so a mark's (checksummed) manifest has no family of
    more than one. Directory keys
    (``paths.directory_key``) sort every path inside a key right after it, so in that
    order a path belongs to the family of the last path that is not inside another.

    **Order.** By URI (as before): the bucket stores list each batch's key range
    (storage/s3.py, storage/buckets.py), which is short only for neighbouring paths.
    With ``by_key``, the versions of local stores (whose files are deleted path by
    path, in any order) come first, in the order of their ids: families by their
    smallest id, each in URI order. On MySQL/MariaDB a table is stored in the order of
    its primary key, and so are the indexes that lead with a foreign key to the
    versions (visualizations, step inputs and outputs, model links) or with a column
    that most versions share (store, user, project): a batch of consecutive ids reads
    a few dozen pages of each instead of a page per version, pages that a batch in URI
    order (random in id) reads from disk again once the buffer pool is smaller than
    the tables (MariaDB's default is 128 MB). ``key_column`` names the column of that
    order (:attr:`Dialect.key_order_column`): on SQLite, ``created``, since ZenML's
    rowid tables are stored in the order rows were inserted (see SQLiteDialect).

    The keys are worked out in Python, in two sorts of 100k keys (a fraction of a
    second; DuckDB's window functions over the same rows took twice the memory of the
    plan), and DuckDB puts the rows in that order (pyarrow's ``take`` would import
    ``pyarrow.compute``, a tenth of a second of a small sweep's start-up)."""
    from artifact_gc.paths import directory_key
    from artifact_gc.storage.urls import is_remote

    count = items.num_rows
    kinds = items.column("item_kind").to_pylist()
    item_ids = [str(v) for v in items.column("item_id").to_pylist()]
    versions = [v or "" for v in items.column("artifact_version_id").to_pylist()]
    uris = [u or "" for u in items.column("uri").to_pylist()]
    roots = items.column("store_root").to_pylist()
    # As text (a timestamp's text sorts as the timestamp), so that a missing value
    # sorts first instead of failing to compare.
    order = ([str(v) if v is not None else "" for v in items.column(key_column).to_pylist()]
             if by_key else versions)
    keys = [directory_key(u) for u in uris]
    family = [0] * count
    root: str | None = None
    number = 0
    for i in sorted(range(count), key=lambda i: (keys[i], kinds[i], item_ids[i])):
        if root is None or not keys[i].startswith(root):
            number, root = number + 1, keys[i]
        family[i] = number
    first_id: dict[int, str] = {}
    first_uri: dict[int, str] = {}
    for i in range(count):
        f = family[i]
        if f not in first_id or order[i] < first_id[f]:
            first_id[f] = order[i]
        if f not in first_uri or uris[i] < first_uri[f]:
            first_uri[f] = uris[i]

    def place(i: int) -> tuple[int, str, str, int, str, str, str]:
        f = family[i]
        if by_key and kinds[i] == ITEM_KIND_VERSION and not is_remote(roots[i] or ""):
            return (0, first_id[f], "", f, uris[i], kinds[i], item_ids[i])
        return (1, "", first_uri[f], f, uris[i], kinds[i], item_ids[i])

    position = [0] * count
    for n, i in enumerate(sorted(range(count), key=place)):
        position[i] = n
    ranks = pa.table({"sweep_position": pa.array(position, pa.int64()),
                      "family": pa.array(family, pa.int64())})
    con.register("gc_pending_items", items)
    con.register("gc_pending_ranks", ranks)
    try:
        return con.sql(
            "SELECT i.*, r.family FROM gc_pending_items i "
            "POSITIONAL JOIN gc_pending_ranks r ORDER BY r.sweep_position").to_arrow_table()
    finally:
        con.unregister("gc_pending_items")
        con.unregister("gc_pending_ranks")


def sweep_order(manifest_url: str, db_url: str,
                storage_options: dict[str, Any] | None = None) -> list[str]:
    """The candidate versions of a manifest in the order a first sweep against
    ``db_url`` takes them (what :func:`read_pending` gives with no journal): for tools
    and tests that must know which versions a sweep reaches first."""
    from artifact_gc.manifest.views import create_manifest_view, duckdb_for

    with duckdb_for(manifest_url, storage_options) as con:
        create_manifest_view(con, manifest_url)
        items = in_sweep_order(con, con.sql(pending_sql(
            "SELECT *, NULL::VARCHAR AS last_event FROM manifest WHERE status = 'candidate'"
        )).to_arrow_table(), dialect_of(db_url).batches_in_key_order,
            dialect_of(db_url).key_order_column)
    kinds = items.column("item_kind").to_pylist()
    return [str(vid) for kind, vid in zip(kinds, items.column("artifact_version_id")
                                          .to_pylist(), strict=True)
            if kind == ITEM_KIND_VERSION]


def batch_slices(items: pa.Table, size: int) -> list[tuple[int, int]]:
    """(offset, length) of each batch of ``items`` (in :func:`read_pending`'s order):
    ``size`` items, and the rest of the last one's family with them, so that a family
    is never cut in two. A batch is longer than ``size`` only by the family at its
    end; every batch but the last has at least ``size`` items, so there are never more
    batches than ``ceil(len(items) / size)``."""
    families = (items.column("family").to_pylist() if "family" in items.column_names
                else list(range(items.num_rows)))
    slices: list[tuple[int, int]] = []
    start, total = 0, len(families)
    while start < total:
        end = min(start + size, total)
        while end < total and families[end] == families[end - 1]:
            end += 1
        slices.append((start, end - start))
        start = end
    return slices


def _age(delta: timedelta) -> str:
    from artifact_gc.durations import format_duration

    return format_duration(delta)


def _database_url(explicit: str | None, info: mf.ManifestInfo) -> str:
    """``--db``, else mark's defaults, else the SQLite file the manifest was marked on."""
    if explicit:
        return resolve_database_url(explicit)
    try:
        return resolve_database_url(None)
    except DatabaseError:
        path = info.database.get("database")
        if info.database.get("dialect") == "sqlite" and path and os.path.exists(path):
            return f"sqlite:///{path}"
        raise
