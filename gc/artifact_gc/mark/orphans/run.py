"""The orphan-file part of a mark: list, read the named paths, classify, summarize."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pyarrow as pa

from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.orphans.classify import (
    KEYED_STORES_DDL,
    OBJECTS_DDL,
    OrphanSummary,
    classify_objects,
    summarize_objects,
)
from artifact_gc.mark.orphans.named import (
    CODE_PATH_COLUMN,
    LocationColumn,
    load_named_paths,
    load_step_runs_and_logs,
    location_columns,
)
from artifact_gc.metadb.snapshot import read_consistently
from artifact_gc.paths import inside_root
from artifact_gc.progress import Progress
from artifact_gc.storage.listing import LISTING_SCHEMA
from artifact_gc.zenml.schema import ZenMLSchema
from artifact_gc.zenml.stores import ArtifactStore


def mark_orphan_files(
    con: Any, db_url: str, schema: ZenMLSchema,
    stores: dict[str, ArtifactStore], options: MarkOptions, started: datetime,
    progress: Progress,
) -> OrphanSummary:
    """Fill the DuckDB table ``orphan_rows`` (manifest columns) and return the summary.

    The listing comes first and the database after it: a row created after the
    database read is one the sweep finds when it re-verifies, and a file created after
    the listing is not in this manifest at all. The database part is one consistent
    snapshot of its own (metadb/snapshot.py), taken after the listing, so that a long
    listing never holds a read transaction that writers would wait for."""
    con.execute(OBJECTS_DDL)
    con.execute(KEYED_STORES_DDL)
    listed = listed_stores(stores)
    refuse_filesystem_root(listed)
    summary = OrphanSummary(source="inventory" if options.inventory else "listing")
    if options.inventory:
        from artifact_gc.mark.orphans.inventory import load_inventory

        summary.stores = load_inventory(con, options.inventory, listed, options, started,
                                        progress)
    else:
        summary.stores = list_stores(con, listed, options, progress)

    def read(engine: Any) -> list[ArtifactStore]:
        # A try that fails on a lock runs again from scratch: every table it fills is
        # created or replaced, never appended to from an earlier try.
        for table in ("orphan_step_runs", "orphan_logs"):
            con.execute(f"DROP TABLE IF EXISTS {table}")
        skipped = check_roots(engine, listed)
        progress.stage("reading named paths")
        columns = location_columns(engine)
        if options.orphan_code_uploads:
            check_code_paths(columns, schema)
        load_named_paths(con, engine, db_url, columns)
        load_step_runs_and_logs(con, engine, db_url, schema.tables)
        return skipped

    for skipped in read_consistently(db_url, options.lock_timeout, read):
        # No version row vouches for this root: its listing is reported, not classified.
        con.execute("DELETE FROM orphan_objects WHERE store_id = ?", [skipped.id])
        for entry in summary.stores:
            if entry["id"] == skipped.id:
                entry["skipped"] = "no artifact version of this store: not classified"
    cutoff = started - options.older_than
    if options.inventory:
        # An inventory is a picture of an earlier moment: an object written after it
        # was taken, under a unit it lists, is not in it. Counting the grace period
        # back from the inventory's own date (not the mark's) keeps every unit that
        # could have changed since then out of the candidates.
        cutoff = min(cutoff, _inventory_date(summary) - options.older_than)
    summary.cutoff = cutoff.isoformat()
    progress.stage("classifying orphan files")
    classify_objects(con, cutoff, code_uploads=options.orphan_code_uploads)
    summarize_objects(con, summary)
    return summary


def refuse_filesystem_root(stores: list[ArtifactStore]) -> None:
    """Refuse to classify a whole filesystem: a store whose root is ``/`` holds every
    file of the machine, and the classification's paths are relative to ``root + '/'``,
    which a root of ``/`` does not have."""
    from artifact_gc.errors import UsageError

    for store in stores:
        if store.root is not None and store.root.rstrip("/") == "":
            raise UsageError(
                f"--orphan-files: the root of artifact store {store.name} ({store.id}) is "
                "'/', the whole filesystem; give the store's own folder with --store-root")


def check_roots(engine: Any, stores: list[ArtifactStore]) -> list[ArtifactStore]:
    """Refuse a store none of whose versions lies under its listed root; return the
    stores that have no version at all (not classified).

    Every file under such a root would look unnamed: a root given wrong (a mount at
    another path, a ``--store-root`` typo, a bucket prefix that changed) must stop the
    mark rather than turn the whole store into candidates. A store with no version
    (ZenML's default store of a deployment that writes elsewhere, a root guessed from
    the config directory) has nothing that shows its root is right: it is skipped."""
    import sqlalchemy as sa

    from artifact_gc.errors import UsageError
    from artifact_gc.metadb.dialect import dialect_of
    from artifact_gc.zenml.schema import VERSION_TABLE

    dialect = dialect_of(engine)

    def q(name: str) -> str:
        return dialect.quote(engine, name)

    skipped = []
    with engine.connect() as connection:
        for store in stores:
            assert store.root is not None
            prefix = store.root.rstrip("/") + "/"
            total, inside = connection.execute(sa.text(
                f"SELECT count(*), coalesce(sum(CASE WHEN substr({q('uri')}, 1, :n) = :p "
                f"THEN 1 ELSE 0 END), 0) FROM {q(VERSION_TABLE)} "
                f"WHERE {q('artifact_store_id')} = :id"),
                {"n": len(prefix), "p": prefix, "id": store.id}).one()
            if int(total) and not int(inside):
                raise UsageError(
                    f"none of the {int(total):,} artifact versions of store {store.name} "
                    f"({store.id}) lies under its root {store.root}: every file there "
                    "would look unnamed. Check --store-root (or the component's path)")
            if not int(total):
                skipped.append(store)
    return skipped


def check_code_paths(columns: list[LocationColumn], schema: ZenMLSchema) -> None:
    """Refuse ``--orphan-code-uploads`` on a schema whose snapshots cannot name a code
    archive (no ``code_path`` column in the profile's deployment or snapshot table):
    there, no row could ever vouch for an archive, and every one would look unnamed."""
    from artifact_gc.errors import UsageError

    table = schema.profile.deployment_table
    if not any(c.table == table and c.column == CODE_PATH_COLUMN for c in columns):
        raise UsageError(
            f"--orphan-code-uploads: this store's {table} table has no {CODE_PATH_COLUMN} "
            "column, so no snapshot can name a code archive; leave the flag out")


def _inventory_date(summary: OrphanSummary) -> datetime:
    dates = [datetime.fromisoformat(s["as_of"]) for s in summary.stores if s.get("as_of")]
    return min(dates)


def listed_stores(stores: dict[str, ArtifactStore]) -> list[ArtifactStore]:
    """The stores to list: one per root, none inside another's root.

    Two components with one root are listed once (the files are the same). A root
    inside another root is listed as part of the outer one, where its files sit below
    the outer layout's units and are unknown unless a row names them: never deleted."""
    roots: dict[str, ArtifactStore] = {}
    for store in sorted(stores.values(), key=lambda s: s.id):
        if store.root is not None and store.root not in roots:
            roots[store.root] = store
    return [store for root, store in sorted(roots.items())
            if not any(inside_root(root, other) for other in roots if other != root)]


def list_stores(con: Any, stores: list[ArtifactStore], options: MarkOptions,
                progress: Progress) -> list[dict[str, Any]]:
    """Stream the listing of every store into ``orphan_objects``, and name in
    ``orphan_keyed_stores`` those listed by key (S3, GCS, Azure Blob). A store that
    cannot be listed completely raises (StorageError): the mark then writes nothing."""
    from artifact_gc.storage.backend import default_filesystem, open_backend
    from artifact_gc.storage.buckets import ObjectStoreBackend
    from artifact_gc.storage.retry import RetryCounter
    from artifact_gc.storage.s3 import S3Backend

    described = []
    for store in stores:
        assert store.root is not None
        progress.stage(f"listing {store.root}", unit="objects")
        backend = open_backend(store, store.root, default_filesystem(store),
                               workers=options.workers, retries=RetryCounter(),
                               limits=options.limits)
        failures: list[BaseException] = []
        try:
            reader = pa.RecordBatchReader.from_batches(
                LISTING_SCHEMA, _counted(backend.list_objects(), progress, failures))
            _insert(con, store, reader)
            # Its listing spells each object's key, which its backend deletes unlisted
            # (``known``); an inventory is left out: it may be older than the listing.
            if isinstance(backend, S3Backend | ObjectStoreBackend):
                con.execute("INSERT INTO orphan_keyed_stores VALUES (?)", [store.id])
        except Exception:
            # DuckDB wraps what the listing raised: raise the listing's own error.
            if failures:
                raise failures[0] from None
            raise
        finally:
            backend.close()
        described.append({"id": store.id, "root": store.root})
    return described


def _counted(batches: Iterator[pa.RecordBatch], progress: Progress,
             failures: list[BaseException]) -> Iterator[pa.RecordBatch]:
    try:
        for batch in batches:
            progress.advance(batch.num_rows)
            yield batch
    except BaseException as exc:
        failures.append(exc)
        raise


def _insert(con: Any, store: ArtifactStore, reader: Any) -> None:
    con.register("_orphan_listing", reader)
    try:
        con.execute(
            "INSERT INTO orphan_objects SELECT ?, ?, path, size, mtime, is_dir "
            "FROM _orphan_listing", [store.id, store.root])
    finally:
        con.unregister("_orphan_listing")
