"""Listing a GCS bucket or Azure container root flat, page by page, into Arrow batches.

An object store has no directories: a listing without a delimiter returns the keys
under a prefix in name order, 1,000 a page on GCS (5,000 on Azure), each with its
size and last-modified time. fsspec's ``walk`` instead sends a LIST per "directory"
(one per folder of the layout: 603 LISTs for 600 objects in 300 folders), and
gcsfs's and adlfs's own ``find`` collect the whole listing in a list before they
return. Here each page becomes a record batch of
:data:`~artifact_gc.storage.listing.LISTING_SCHEMA` as it arrives, the next page in
flight while DuckDB takes in the last, so memory holds a few pages, whatever the size
of the root.

The rows are those every other listing gives the classifier for the same store:

- an object: ``scheme://bucket/key``, its size and last-modified time;
- a directory marker (a key ending in ``/``, or an Azure blob whose metadata says
  it is a folder, ``hdi_isfolder``): an empty directory, ``is_dir`` with the marker's
  own time, only when nothing else lies under it. A non-empty directory is implied by
  its contents, as on a local disk (a row for it would make an "empty directory" of
  ZenML's layout out of a folder that holds, say, unknown files);
- the root's own marker is not a row (the root is not an object under itself).

Name order is what makes the markers cheap: every key under ``P/`` sorts after
``P/`` and before the first key that does not start with it, so a marker waits only
until the listing passes its prefix. A page whose first key sorts below the last
page's last key fails the listing: a service that broke the order could hide a
marker's contents, and a listing is complete and right or it fails (invariant 9).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from artifact_gc.errors import StorageError
from artifact_gc.storage.listing import LISTING_SCHEMA, _fail, _parallel

#: Last-modified time for an object the service gave none for: far in the future, so
#: that the grace period protects it (as the fsspec listing did).
_UNKNOWN_MTIME_DAYS = 365


@dataclass
class FlatPage:
    """One LIST request's answer: keys in name order, and the next page's token."""

    keys: list[str]
    sizes: list[int]
    #: Last-modified times, ``timestamp("us")`` in UTC (nulls where the service gave none).
    mtimes: pa.Array
    #: Whether each key is a directory marker by more than its name (Azure folder blobs).
    folders: list[bool] | None
    token: str | None


#: ``fetch(prefix, token)``: one LIST of the keys under ``prefix`` from ``token`` on
#: (None: the first page), through the backend's rate limit and retries.
PageFetch = Callable[[str, "str | None"], FlatPage]


def list_flat(fetch: PageFetch, root: str, prefix_of: str, root_key: str
              ) -> Iterator[pa.RecordBatch]:
    """Every object under ``root`` (``prefix_of`` + ``root_key``), as described in the
    module doc. ``prefix_of``: what a key is prefixed with to make the path
    (``gs://bucket/``); ``root_key``: the root's key in its bucket ("" for a whole
    bucket)."""
    base = root_key.strip("/") + "/" if root_key.strip("/") else ""

    def pages(_: object) -> Iterator[FlatPage]:
        token: str | None = None
        while True:
            try:
                page = fetch(base, token)
            except StorageError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure makes the listing partial
                raise _fail(root, prefix_of + base, exc) from exc
            yield page
            if page.token is None:
                return
            token = page.token

    converter = _Converter(root, prefix_of, base)
    # One lister thread: the next page is fetched while this one is converted and
    # consumed; the bounded queue of _parallel keeps a few pages at most.
    for page in _parallel(root, [0], pages, 1):
        yield from converter.page(page)
    yield from converter.finish()


class _Converter:
    """Turns pages into batches, holding back directory markers until the listing has
    passed their prefix."""

    def __init__(self, root: str, prefix_of: str, base: str) -> None:
        self.root = root
        self.prefix_of = prefix_of
        self.base = base
        self.last: str | None = None
        #: Markers not yet known empty: (prefix their contents start with, row).
        self.pending: list[tuple[str, pa.RecordBatch]] = []

    def page(self, page: FlatPage) -> Iterator[pa.RecordBatch]:
        keys = page.keys
        if not keys:
            return
        if self.last is not None and keys[0] < self.last:
            raise _fail(self.root, self.prefix_of + self.base, RuntimeError(
                "the store listed a page out of name order"))
        self.last = keys[-1]
        folders = page.folders or [False] * len(keys)
        batch = self._batch(keys, page.sizes, page.mtimes, folders)
        keep = [True] * len(keys)
        emitted: list[pa.RecordBatch] = []
        for row, key in enumerate(keys):
            if self.pending:
                emitted.extend(self._passed(key))
            if not key.startswith(self.base) or key == self.base:
                # Outside the prefix asked for (a service that lists more), or the
                # root's own marker: not an object under the root.
                keep[row] = False
            elif key.endswith("/") or folders[row]:
                keep[row] = False
                self.pending.append((key if key.endswith("/") else key + "/",
                                     batch.slice(row, 1)))
        yield from emitted
        objects = batch.filter(pa.array(keep, pa.bool_()))
        if objects.num_rows:
            yield objects

    def finish(self) -> Iterator[pa.RecordBatch]:
        """The markers still held: nothing came under them before the listing ended."""
        for _, row in self.pending:
            yield row
        self.pending = []

    def _passed(self, key: str) -> list[pa.RecordBatch]:
        """The held markers that ``key`` shows empty (it sorts past their prefix without
        starting with it); drops those it shows non-empty."""
        empty: list[pa.RecordBatch] = []
        still: list[tuple[str, pa.RecordBatch]] = []
        for prefix, row in self.pending:
            if key.startswith(prefix):
                continue  # something under it: not an empty directory
            if key > prefix:
                empty.append(row)
            else:
                still.append((prefix, row))
        self.pending = still
        return empty

    def _batch(self, keys: list[str], sizes: list[int], mtimes: pa.Array, folders: list[bool]
               ) -> pa.RecordBatch:
        import pyarrow.compute as pc

        unknown = pa.scalar(int((datetime.now(UTC).timestamp() + _UNKNOWN_MTIME_DAYS * 86_400)
                                * 1_000_000), pa.int64()).cast(pa.timestamp("us"))
        times = pc.fill_null(mtimes.cast(pa.timestamp("us")), unknown) \
            if mtimes.null_count else mtimes.cast(pa.timestamp("us"))
        return pa.RecordBatch.from_arrays(
            [pa.array([self.prefix_of + k.rstrip("/") for k in keys], pa.string()),
             pa.array(sizes, pa.int64()), times,
             pa.array([k.endswith("/") or f for k, f in zip(keys, folders, strict=True)],
                      pa.bool_())],
            schema=LISTING_SCHEMA)


def rfc3339_us(values: list[str | None]) -> pa.Array:
    """GCS's ``updated`` strings (``2026-12-01T18:00:00.123Z``) as ``timestamp("us")``
    in UTC, parsed by Arrow (no Python object per key)."""
    return pa.array(values, pa.string()).cast(pa.timestamp("us", "UTC")).cast(
        pa.timestamp("us"))


def datetimes_us(values: list[datetime | None]) -> pa.Array:
    """Timezone-aware datetimes (Azure's ``last_modified``) as ``timestamp("us")`` in UTC."""
    return pa.array([v.astimezone(UTC).replace(tzinfo=None) if v is not None else None
                     for v in values], pa.timestamp("us"))
