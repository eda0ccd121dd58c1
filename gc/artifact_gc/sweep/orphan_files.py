"""Sweeping orphan files: candidates of kind ``orphan_file`` (``gc mark --orphan-files``).

An orphan file has no row: there is nothing to delete in the database, only files,
and what must be proved before they go is that they are *still* garbage. A batch:

1. is fenced like a version: its store is known, its root unchanged since the mark,
   its path strictly inside the root (symlinks resolved);
2. journals ``intent`` durably;
3. takes the database's write lock (SQLite ``BEGIN IMMEDIATE``: no writer can commit
   a row until we let go) and, under it, asks the live database again, over every
   location column (named.py: not only the rows created since the mark): does any
   row name a path equal to the candidate, inside it or containing it? does the
   step run that writes into a step-output directory exist and still run? does a
   ``logs`` row with the file's id exist? Any "yes" keeps the path (``revived``);
4. lists the path again: anything under it younger than the grace period keeps it
   (``protected``, ``grace_period``): a step may have started writing there;
5. deletes the rest through the storage backend, still under the lock, then removes
   the directories those deletes left empty (up to the step's folder, never a
   top-level folder of the layout, never the root), and journals the outcome before
   the lock goes.

On S3, step 4 is one ranged listing of the batch's paths (about one LIST per 1,000
objects) and step 5 deletes exactly the objects that listing found under the paths it
passed: no other listing before the deletes and none after them. An object written
under a path after that listing was never checked against the grace period, so it is
not deleted; it stays for a later mark to find. Elsewhere the backend lists each path
as it deletes.

A crash anywhere leaves ``intent`` as an item's last event; the next sweep runs the
batch again from step 3, and a path already gone counts as deleted (invariant 7).

On MySQL/MariaDB no lock holds back a new row (``register_artifact`` of the very
path): the window between the check of step 3 and the delete of step 5 is the length
of one batch's file deletes. Use ``--batch-size`` to narrow it.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from artifact_gc.manifest.reasons import (
    ITEM_KIND_ORPHAN_FILE,
    PROTECT_GRACE,
    PROTECT_STEP_RUNNING,
    PROTECT_UNDO_TRASH,
)
from artifact_gc.mark.orphans.classify import FINISHED_STATUSES
from artifact_gc.mark.orphans.layout import CODE_UPLOADS_DIR, SUFFIX_RE, UNDO_TRASH_DIR, UUID_RE
from artifact_gc.mark.orphans.named import (
    LOGS_TABLE,
    STEP_RUN_TABLE,
    LocationColumn,
    location_columns,
)
from artifact_gc.metadb.dialect import dialect_of
from artifact_gc.metadb.statements import quoter, select_in
from artifact_gc.paths import directory_key
from artifact_gc.storage.fence import RealDirs
from artifact_gc.sweep import hooks as points
from artifact_gc.sweep.batch import fence, recorded_objects
from artifact_gc.sweep.journal import (
    EVENT_DELETED,
    EVENT_FAILED,
    EVENT_INTENT,
    EVENT_PROTECTED,
    EVENT_REVIVED,
    Event,
)
from artifact_gc.sweep.verify import BatchItem
from artifact_gc.zenml.schema import VERSION_TABLE

if TYPE_CHECKING:
    from artifact_gc.storage.s3 import ListedObjects

#: Reasons a revived orphan file is journaled with.
REVIVED_NAMED = "named_by"
REVIVED_LOGS_ROW = "logs_row"
#: Why an empty-directory candidate is kept when files lie under it now.
PROTECT_NOT_EMPTY = "not_empty"

_UUID = re.compile(UUID_RE)
_SUFFIX = re.compile(SUFFIX_RE)
#: Top-level folders of the layout that a sweep never removes, even empty.
_LAYOUT_FOLDERS = frozenset({"logs", "custom_artifacts", "external_artifacts",
                             CODE_UPLOADS_DIR})


def orphan_grace(info: Any) -> timedelta:
    """The mark's grace period (``--older-than``), which the sweep applies again."""
    from artifact_gc.mark.options import DEFAULT_GRACE

    seconds = info.parameters.get("older_than_seconds")
    return timedelta(seconds=int(seconds)) if seconds is not None else DEFAULT_GRACE


def orphan_item(row: dict[str, Any]) -> BatchItem:
    """A plan row of kind ``orphan_file`` as the sweep acts on it: its path is its id."""
    return BatchItem(
        artifact_version_id=row["item_id"], artifact_id="", footprint=(row["item_id"],),
        size_bytes=row["size_bytes"], file_count=row["file_count"],
        store_id=row["artifact_store_id"], store_root=row["store_root"],
        # The objects the mark listed in it (object stores): the backend deletes them
        # unlisted (effects.delete_files, known_objects) and lists the path afterwards.
        # On S3 the grace check's own listing takes their place (OrphanSweep._young).
        object_keys=recorded_objects(row),
    )


def split_items(items: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(artifact versions, orphan files) of the plan's items, each in URI order."""
    if ITEM_KIND_ORPHAN_FILE not in items.column("item_kind").to_pylist():
        # The common case, without importing pyarrow.compute (a tenth of a second).
        return items, items.slice(0, 0)
    import pyarrow.compute as pc

    is_orphan = pc.equal(items.column("item_kind"), ITEM_KIND_ORPHAN_FILE)
    return items.filter(pc.invert(is_orphan)), items.filter(is_orphan)


def _segments(item: BatchItem) -> list[str]:
    root = (item.store_root or "").rstrip("/")
    return item.footprint[0][len(root) + 1:].rstrip("/").split("/")


def _in_trash(item: BatchItem) -> str | None:
    """The undo window's trash is gc's own: a mark never proposes it, and a sweep of
    orphan files never deletes in it (only the undo window's purge does)."""
    return PROTECT_UNDO_TRASH if _segments(item)[0] == UNDO_TRASH_DIR else None


def _step_run_id(item: BatchItem) -> str | None:
    """The step run of a step-output path (``<step>/<output>/<step_run_id>[/<8 hex>]``)."""
    seg = _segments(item)
    if seg[0] in _LAYOUT_FOLDERS or len(seg) not in (3, 4):
        return None
    if _UUID.fullmatch(seg[0]) and _UUID.fullmatch(seg[1]):
        return None  # a hook output
    if _UUID.fullmatch(seg[2]) and (len(seg) == 3 or _SUFFIX.fullmatch(seg[3])):
        return seg[2].replace("-", "").lower()
    return None


def _logs_id(item: BatchItem) -> str | None:
    seg = _segments(item)
    if len(seg) == 2 and seg[0] == "logs":
        return re.sub(r"\.log$", "", seg[1]).replace("-", "").lower()
    return None


def empty_parents(item: BatchItem) -> list[str]:
    """The directories above ``item``'s path that its delete may leave empty, deepest
    first: up to its top-level folder (a step's), never a folder of the layout itself
    (``logs``, ``custom_artifacts``, ``external_artifacts``) and never the root."""
    root = (item.store_root or "").rstrip("/")
    seg = _segments(item)
    stop = 2 if seg[0] in _LAYOUT_FOLDERS else 1
    return [root + "/" + "/".join(seg[:depth]) for depth in range(len(seg) - 1, stop - 1, -1)]


def own_folders(items: Sequence[BatchItem]) -> list[str]:
    """The ``<step>/<output>/<step_run_id>`` folders of step outputs that lie one level
    inside one (``.../<step_run_id>/<8 hex>``, ZenML's layout since the suffix came):
    the folder of one output of one step run, which only that step run writes into. A
    local trash may take such a folder along with its path (LocalTrash.delete's
    ``parents``). A folder that other writers share (``<step>/<output>`` of the older
    layout, ``custom_artifacts/<name>``, a user's) is never one of them."""
    folders = set()
    for item in items:
        if not item.store_root or _step_run_id(item) is None:
            continue
        seg = _segments(item)
        if len(seg) == 4:
            folders.add(item.store_root.rstrip("/") + "/" + "/".join(seg[:3]))
    return sorted(folders)


def empty_dirs_after(items: Sequence[BatchItem]) -> list[str]:
    """The directories the deletes of ``items`` may leave empty, deepest first."""
    dirs = {d for item in items if item.store_root for d in empty_parents(item)}
    return sorted(dirs, key=lambda d: (-d.count("/"), d))


# ---------------------------------------------------------------------------
# Re-verification against the live database
# ---------------------------------------------------------------------------


def verify_orphans(connection: Any, columns: Sequence[LocationColumn], tables: frozenset[str],
                   items: Sequence[BatchItem]) -> dict[str, str]:
    """The items that a live row keeps now, with the reason: a path that any location
    column names equals, contains or lies inside the item's path; the step run that
    writes into it has not finished; its ``logs`` row exists."""
    import sqlalchemy as sa

    q = quoter(connection)
    keep: dict[str, str] = {}
    paths = sorted(item.footprint[0].rstrip("/") for item in items)
    if not paths:
        return keep
    # Every value equal to or inside a path of the batch lies in [min, max + "0"):
    # "0" sorts right after "/", so "p/..." < "p0". Ancestors are asked by equality.
    low, high = paths[0], paths[-1] + "0"
    ancestors: set[str] = set()
    for path in paths:
        probe = path
        while "/" in probe.strip("/"):
            probe = probe.rsplit("/", 1)[0]
            if not probe or probe.endswith(":/") or probe.endswith(":"):
                break
            ancestors.update((probe, probe + "/"))
    for location in columns:
        col, table = q(location.column), q(location.table)
        found = [str(v) for (v,) in connection.execute(
            sa.text(f"SELECT {col} FROM {table} WHERE {col} >= :low AND {col} < :high"),
            {"low": low, "high": high}).all()]
        found += [str(v) for (v,) in select_in(
            connection, f"SELECT {col} FROM {table} WHERE {col} IN :ids", ancestors)]
        _match(found, items, f"{location.table}.{location.column}", keep)
    runs = {item.artifact_version_id: rid for item in items
            if (rid := _step_run_id(item)) is not None}
    if runs and STEP_RUN_TABLE in tables:
        status = {str(i).replace("-", "").lower(): str(s or "").lower() for i, s in select_in(
            connection, f"SELECT {q('id')}, {q('status')} FROM {q(STEP_RUN_TABLE)} "
            f"WHERE {q('id')} IN :ids", _id_spellings(runs.values()))}
        for item_id, run in runs.items():
            if run in status and status[run] not in FINISHED_STATUSES:
                keep.setdefault(item_id, PROTECT_STEP_RUNNING)
    logs = {item.artifact_version_id: lid for item in items
            if (lid := _logs_id(item)) is not None}
    if logs and LOGS_TABLE in tables:
        present = {str(i).replace("-", "").lower() for (i,) in select_in(
            connection, f"SELECT {q('id')} FROM {q(LOGS_TABLE)} WHERE {q('id')} IN :ids",
            _id_spellings(logs.values()))}
        for item_id, lid in logs.items():
            if lid in present:
                keep.setdefault(item_id, REVIVED_LOGS_ROW)
    return keep


def _match(found: list[str], items: Sequence[BatchItem], where: str,
           keep: dict[str, str]) -> None:
    """Add to ``keep`` every item whose path a value of ``found`` equals, contains or
    lies inside (:data:`artifact_gc.paths.OVERLAP`, on directory keys): a set lookup per
    ancestor and a binary search per item, not every value against every item."""
    keys = sorted({directory_key(v): v for v in found}.items())
    ordered = [k for k, _ in keys]
    value_of = dict(keys)
    for item in items:
        if item.artifact_version_id in keep:
            continue
        key = directory_key(item.footprint[0])
        hit = None
        # A value equal to the path or containing it: one of the path's ancestors.
        probe = key
        while probe:
            if probe in value_of:
                hit = value_of[probe]
                break
            cut = probe.rstrip("/").rfind("/")
            if cut <= 0:
                break
            probe = probe[:cut + 1]
        if hit is None:
            # A value inside the path: its key starts with the path's key.
            at = bisect.bisect_left(ordered, key)
            if at < len(ordered) and ordered[at].startswith(key):
                hit = value_of[ordered[at]]
        if hit is not None:
            keep[item.artifact_version_id] = f"{REVIVED_NAMED} {where}: {hit}"


def _id_spellings(ids: Any) -> list[str]:
    """Ids as ZenML stores them (32 hex digits) and dashed, in case a store differs."""
    out = []
    for value in ids:
        out.append(value)
        if len(value) == 32:
            out.append(f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}")
    return out


# ---------------------------------------------------------------------------
# The grace period, asked of the store again
# ---------------------------------------------------------------------------


def newest_under(fs: Any, path: str) -> datetime | None:
    """The newest modification time (naive UTC) of ``path`` and everything under it;
    None if it is gone."""
    from fsspec.implementations.local import LocalFileSystem

    if isinstance(fs, LocalFileSystem):
        return _newest_local(path)
    from artifact_gc.storage.listing import _mtime_us

    # A cached listing could hide an object written since: ask the store itself.
    fs.invalidate_cache(path)
    try:
        # Objects only: an object store's "directories" are prefixes without a time.
        found = fs.find(path, withdirs=False, detail=True)
    except FileNotFoundError:
        return None
    if not found:
        try:
            found = {path: fs.info(path)}
        except FileNotFoundError:
            return None
    newest = max(_mtime_us(info) for info in found.values())
    return datetime(1970, 1, 1) + timedelta(microseconds=newest)


def newest_under_s3(backend: Any, items: Sequence[BatchItem]) -> dict[str, datetime | None]:
    """:func:`newest_under` for a batch of one S3 store, in one ranged listing."""
    return {item_id: newest for item_id, (newest, _) in survey_s3(backend, items).items()}


def survey_s3(backend: Any, items: Sequence[BatchItem]
              ) -> dict[str, tuple[datetime | None, list[str]]]:
    """Item -> (the newest modification time under its path, or None if nothing is
    there; the object URLs under it), for a batch of one S3 store, by one ranged
    listing of the batch's paths (``S3Backend.objects_under``): the listing the grace
    check is made on is the one the deletes take their keys from."""
    key_of = {item.artifact_version_id: item.footprint[0].split("://", 1)[1].split("/", 1)[1]
              .rstrip("/") for item in items}
    found = backend.objects_under(sorted(set(key_of.values())))
    epoch = datetime(1970, 1, 1)
    out: dict[str, tuple[datetime | None, list[str]]] = {}
    for item_id, key in key_of.items():
        objects = found[key]
        newest = epoch + timedelta(microseconds=max(objects.values())) if objects else None
        out[item_id] = (newest, [f"s3://{backend.bucket}/{k}" for k in objects])
    return out


def _newest_local(path: str) -> datetime | None:
    try:
        newest = os.lstat(path).st_mtime_ns
    except FileNotFoundError:
        return None
    for directory, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            try:
                newest = max(newest, os.lstat(os.path.join(directory, name)).st_mtime_ns)
            except FileNotFoundError:
                continue
    return datetime(1970, 1, 1) + timedelta(microseconds=newest // 1000)


# ---------------------------------------------------------------------------
# The batch loop
# ---------------------------------------------------------------------------


class OrphanSweep:
    """The orphan-file batches of one sweep, through the sweep's effects and report."""

    def __init__(self, plan: Any, effects: Any, report: Any, hooks: Any, progress: Any,
                 grace: timedelta) -> None:
        self.plan = plan
        self.effects = effects
        self.report = report
        self.hooks = hooks
        self.progress = progress
        self.grace = grace
        self.dry_run = plan.options.dry_run
        self.columns = location_columns(effects.engine)
        self.tables = frozenset(effects.schema.tables)

    def run(self, items: pa.Table, batch_no: int) -> int:
        """Sweep ``items`` (kind ``orphan_file``); return the next batch number."""
        total = items.num_rows
        if not total:
            return batch_no
        self.progress.stage("sweeping orphan files" if not self.dry_run
                            else "dry run: re-verifying orphan files",
                            total=total, unit="paths")
        size = self.plan.batch_size
        for start in range(0, total, size):
            batch = [orphan_item(row) for row in items.slice(start, size).to_pylist()]
            self._batch(batch_no, batch)
            self.report.batches += 1
            batch_no += 1
        return batch_no

    def _event(self, item: BatchItem, event: str, **kw: Any) -> Event:
        return Event(ITEM_KIND_ORPHAN_FILE, item.artifact_version_id, event, **kw)

    def _batch(self, batch_no: int, items: list[BatchItem]) -> None:
        with self.hooks.phase(points.BATCH_BEGIN):
            real_dirs = RealDirs()
            ready: list[BatchItem] = []
            fenced: list[Event] = []
            for item in items:
                reason = fence(item, self.plan.stores, real_dirs) or _in_trash(item)
                if reason:
                    fenced.append(self._event(item, EVENT_PROTECTED, reason=reason))
                    self.report.protected[item.artifact_version_id] = reason
                else:
                    ready.append(item)
            self.effects.journal(batch_no, fenced)
            if not ready:
                self.progress.advance(len(items))
                return
            self.effects.journal(batch_no, [self._event(i, EVENT_INTENT) for i in ready])
            self.hooks.point(points.AFTER_INTENT)
        engine = self.effects.engine
        if self.dry_run:
            with engine.connect() as connection:
                kept = verify_orphans(connection, self.columns, self.tables, ready)
                connection.rollback()
            self._finish(batch_no, ready, kept, {}, {})
            return
        dialect = dialect_of(engine)
        # The write lock (SQLite) holds every writer back from the check to the journal
        # of the outcome: no row can come to name a path between its check and its delete.
        with dialect.locked_transaction(engine, VERSION_TABLE, []) as connection:
            with self.hooks.phase(points.VERIFY):
                kept = verify_orphans(connection, self.columns, self.tables, ready)
                young, listed = self._young(
                    [i for i in ready if i.artifact_version_id not in kept])
            deletable = [i for i in ready
                         if i.artifact_version_id not in kept and i.artifact_version_id
                         not in young]
            # The backend also removes the directories these deletes leave empty. Where
            # the grace check listed the objects (S3), exactly those are deleted: an
            # object written under a path after that listing was never checked, so it
            # stays (a later mark finds it) instead of being deleted unchecked.
            errors = self.effects.delete_files(deletable, listed=listed) if deletable else {}
            self.hooks.point(points.AFTER_COMMIT)
            self.hooks.point(points.BEFORE_FINAL)
            self._finish(batch_no, ready, kept, young, errors)

    def _young(self, items: list[BatchItem]
               ) -> tuple[dict[str, str], dict[str, ListedObjects]]:
        """Items under which something is younger than the grace period now, and, by
        store id, the objects the listing found under each path where the store's
        listing gives them (S3): the deletes take exactly those."""
        from artifact_gc.manifest.format import utc_now

        cutoff = utc_now() - self.grace
        by_store: dict[str, list[BatchItem]] = {}
        for item in items:
            by_store.setdefault(item.store_id or "", []).append(item)
        newest: dict[str, datetime | None] = {}
        listed: dict[str, ListedObjects] = {}
        for store_id, group in by_store.items():
            found, objects = self._newest(self.plan.stores[store_id], group)
            newest.update(found)
            if objects is not None:
                listed[store_id] = objects
        young = {key: PROTECT_GRACE for key, time in newest.items()
                 if time is not None and time >= cutoff}
        for item in items:
            store_listing = listed.get(item.store_id or "")
            urls = store_listing.get(item.footprint[0]) if store_listing else None
            if item.file_count == 0 and urls is not None and \
                    any(not url.endswith("/") for url in urls):
                # The mark found no file in it (an empty directory, its marker only):
                # one there now, of whatever age, is no part of what was judged
                # garbage, and the prefix delete would take it.
                young.setdefault(item.artifact_version_id, PROTECT_NOT_EMPTY)
        return young, listed

    def _newest(self, store: Any, items: list[BatchItem]
                ) -> tuple[dict[str, datetime | None], ListedObjects | None]:
        """Item -> the newest modification time under its path, asked of the store now
        (one ranged listing for a batch on S3, a listing per path elsewhere), and on
        S3 the objects that listing found under each path."""
        from artifact_gc.storage.s3 import ListedObjects, S3Backend

        backend = self.effects.store_files(items[0])
        # With an undo window the backend is wrapped (TrashingFiles): the listing is
        # the store's own either way.
        inner = getattr(backend, "backend", backend)
        if isinstance(inner, S3Backend):
            survey = survey_s3(inner, items)
            listed = ListedObjects({item.footprint[0]: survey[item.artifact_version_id][1]
                                    for item in items})
            return {key: newest for key, (newest, _) in survey.items()}, listed
        fs = self.effects.filesystem_factory(store)

        def check(item: BatchItem) -> tuple[str, datetime | None]:
            return item.artifact_version_id, newest_under(fs, item.footprint[0])

        with ThreadPoolExecutor(max_workers=self.plan.options.workers) as pool:
            return dict(pool.map(check, items)), None

    def _finish(self, batch_no: int, ready: list[BatchItem], kept: dict[str, str],
                young: dict[str, str], errors: dict[str, str]) -> None:
        events: list[Event] = []
        freed = 0
        for item in ready:
            key = item.artifact_version_id
            if key in kept:
                reason = kept[key]
                if reason == PROTECT_STEP_RUNNING:
                    events.append(self._event(item, EVENT_PROTECTED, reason=reason))
                    self.report.protected[key] = reason
                else:
                    events.append(self._event(item, EVENT_REVIVED, reason=reason))
                    self.report.revived[key] = reason
            elif key in young:
                events.append(self._event(item, EVENT_PROTECTED, reason=young[key]))
                self.report.protected[key] = young[key]
            elif key in errors:
                events.append(self._event(item, EVENT_FAILED, error=errors[key]))
            else:
                events.append(self._event(item, EVENT_DELETED, bytes=item.size_bytes,
                                          files=item.file_count))
                freed += self.report.count_deleted(item, with_files=True)
        self.effects.journal(batch_no, events)
        self.progress.advance(len(ready), self.effects.freed(freed))
        if errors:
            from artifact_gc.errors import ItemFailure, StorageError

            failures = [ItemFailure(k, "files", e) for k, e in sorted(errors.items())]
            self.report.failures.extend(failures)
            if not self.plan.options.ignore_errors:
                first = failures[0]
                raise StorageError(
                    f"could not delete the orphan file {first.artifact_version_id}: "
                    f"{first.cause} ({len(failures)} in batch {batch_no}). "
                    "Run gc sweep again to resume.", path=first.artifact_version_id)
