"""Listing every object under an artifact store's root, as a stream of Arrow batches.

``gc mark --orphan-files`` needs every object a store holds, which on a large store is
millions of paths: each backend's ``list_objects`` yields them in record batches of
:data:`LISTING_SCHEMA` that DuckDB consumes as they come, so no listing is ever held
in a Python list.

A listing is complete or it fails. An object store that refuses a page, a directory
that cannot be read (permissions), a prefix that vanishes mid-listing: each raises
:class:`~artifact_gc.errors.StorageError`, and the mark stops without a manifest. A
partial listing must never become a manifest, because an object missing from it is
simply not there for the classification, while its parent may then look empty or
unnamed (juicefs#6479 lost data exactly so).

Paths are spelled as the store's root spells them (``/abs/path`` for a local store,
``s3://bucket/key`` for S3), so that they compare with the URIs ZenML writes. A
directory is listed only when it is empty (``is_dir``): a non-empty one is implied by
its contents, and an empty one is something ZenML's layout (or a sweep) left behind.
"""

from __future__ import annotations

import functools
import os
import queue
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from artifact_gc.errors import StorageError

LISTING_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("size", pa.int64()),
        pa.field("mtime", pa.timestamp("us")),
        pa.field("is_dir", pa.bool_()),
    ]
)

#: Objects per record batch of a listing.
BATCH_ROWS = 50_000


class _Batcher:
    """Collects listed objects into record batches of :data:`BATCH_ROWS`."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.paths: list[str] = []
        self.sizes: list[int] = []
        self.mtimes: list[int] = []
        self.dirs: list[bool] = []

    def add(self, path: str, size: int, mtime_us: int, is_dir: bool) -> pa.RecordBatch | None:
        self.paths.append(path)
        self.sizes.append(size)
        self.mtimes.append(mtime_us)
        self.dirs.append(is_dir)
        return self.flush() if len(self.paths) >= BATCH_ROWS else None

    def flush(self) -> pa.RecordBatch | None:
        if not self.paths:
            return None
        batch = pa.RecordBatch.from_arrays(
            [pa.array(self.paths, pa.string()), pa.array(self.sizes, pa.int64()),
             pa.array(self.mtimes, pa.int64()).cast(pa.timestamp("us")),
             pa.array(self.dirs, pa.bool_())],
            schema=LISTING_SCHEMA,
        )
        self._reset()
        return batch


def _fail(root: str, path: str, exc: BaseException) -> StorageError:
    return StorageError(
        f"could not list {path} (under the artifact store root {root}): "
        f"{type(exc).__name__}: {exc}. A mark never classifies a partial listing; "
        "fix the access and mark again", path=path)


# ---------------------------------------------------------------------------
# Local disks: GNU find, parsed by Arrow; os.scandir where there is no GNU find
# ---------------------------------------------------------------------------

#: One record per entry, NUL-terminated (a file name may hold any other byte): type,
#: depth, size, mtime (seconds, fraction to the nanosecond) and the path last, so
#: that spaces in it need no quoting.
FIND_FORMAT = "%y %d %s %T@ %p\\0"
#: Bytes read from find's output at a time (about 60,000 entries).
FIND_BLOCK = 8 << 20


def list_local(root: str, *, workers: int = 4) -> Iterator[pa.RecordBatch]:
    """Every file, symlink and empty directory under the local directory ``root``.

    Symlinks are listed as themselves (``lstat``), never followed: a link out of the
    root is an object of the root, and a sweep removes the link, not its target. A
    root that does not exist holds nothing.

    GNU find walks the tree where there is one (about three times faster than the
    same walk in Python, which spends its time per entry in the interpreter); its
    output is split and converted by Arrow a block at a time, never a Python object
    per entry. Elsewhere (BSD find has no ``-printf``), os.scandir in threads."""
    if not os.path.lexists(root):
        return
    if not os.path.isdir(root):
        raise _fail(root, root, NotADirectoryError(f"not a directory: {root}"))
    find = gnu_find()
    if find is not None and os.path.isabs(root):
        yield from list_local_find(root, find)
    else:
        yield from list_local_scandir(root, workers=workers)


@functools.cache
def gnu_find() -> str | None:
    """The path of GNU find, or None (absent, or another find without ``-printf``)."""
    found = shutil.which("find")
    if found is None:
        return None
    try:
        version = subprocess.run([found, "--version"], capture_output=True, text=True,
                                 timeout=10, env={**os.environ, "LC_ALL": "C"}).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return found if "GNU findutils" in version else None


def list_local_find(root: str, find: str) -> Iterator[pa.RecordBatch]:
    """The listing of ``root`` by GNU find (see :func:`list_local`).

    Complete or failed: find reports every entry it cannot read (a directory without
    permission, a root that vanished) on stderr and exits non-zero, and that exit
    fails the listing after its last batch, so the INSERT streaming it fails too.
    ``-ignore_readdir_race`` only spares an entry that vanished between its
    directory's read and its own ``lstat``: it holds nothing now, as a scandir walk
    that meets FileNotFoundError skips it. ``-H`` follows a root that is a symlink,
    and nothing below it (``-P``, the default, for every other entry).

    One find process: several over the root's directories were measured too (1M
    objects, 2 loaded cores), no faster than one, with 10% more CPU."""
    top = root.rstrip("/") or "/"
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            [find, "-H", top, "-ignore_readdir_race", "-mindepth", "1",
             "-printf", FIND_FORMAT],
            stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C"})
        assert proc.stdout is not None
        try:
            yield from _find_batches(root, proc.stdout)
            code = proc.wait()
            if code != 0:
                errors.seek(0)
                message = errors.read().decode(errors="replace").strip()
                raise _fail(root, root, OSError(
                    f"find exited with status {code}: {message[-2000:]}"))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()


def _find_batches(root: str, stream: Any) -> Iterator[pa.RecordBatch]:
    # find walks depth first and prints a directory right before its entries, so a
    # directory is empty exactly when the next entry is not deeper than it. The last
    # complete record of each block waits for the next block, which holds its follower.
    carry = b""
    while True:
        block = stream.read(FIND_BLOCK)
        data = carry + block if carry else block
        if not block:
            break
        end = data.rfind(b"\0")
        held = data.rfind(b"\0", 0, end) if end > 0 else -1
        if held < 0:
            carry = data
            continue
        carry = data[held + 1:]
        try:
            following = int(carry.split(b" ", 2)[1])
        except (IndexError, ValueError) as exc:
            raise _fail(root, root, OSError("find printed an entry that is not "
                                            "'type depth size mtime path'")) from exc
        yield _find_batch(root, data[:held], following)
    if carry:
        if not carry.endswith(b"\0"):
            raise _fail(root, root, OSError("find's output ended inside an entry"))
        yield _find_batch(root, carry[:-1], 0)


def _find_batch(root: str, data: bytes, following: int) -> pa.RecordBatch:
    """A batch of :data:`LISTING_SCHEMA` from find records (NUL-separated, without the
    last NUL); ``following`` is the depth of the record after the last one (0: none)."""
    # Imported here: a sweep imports this module for its grace re-check and never
    # lists a tree (pyarrow.compute costs about 0.1 s to import).
    import pyarrow.compute as pc

    offsets = pa.array([0, len(data)], pa.int64())
    text = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets.buffers()[1],
                                                        pa.py_buffer(data)])
    records = pc.list_flatten(pc.split_pattern(text, "\0"))
    fields = pc.split_pattern(records, " ", max_splits=4)
    if pc.min(pc.list_value_length(fields)).as_py() != 5:
        raise _fail(root, root, OSError("find printed an entry that is not "
                                        "'type depth size mtime path'"))
    kind = pc.list_element(fields, 0)
    depth = pc.cast(pc.list_element(fields, 1), pa.int32())
    following_depth = pa.concat_arrays([depth.slice(1), pa.array([following], pa.int32())])
    is_dir = pc.equal(kind, "d")
    empty_dir = pc.and_(is_dir, pc.less_equal(following_depth, depth))
    keep = pc.or_(pc.invert(is_dir), empty_dir)
    size = pc.if_else(pc.equal(kind, "f"), pc.cast(pc.list_element(fields, 2), pa.int64()),
                      pa.scalar(0, pa.int64()))
    seconds = pc.cast(pc.list_element(fields, 3), pa.decimal128(24, 10))
    mtime = pc.cast(pc.cast(pc.multiply(seconds, pa.scalar(1_000_000, pa.decimal128(7, 0))),
                            pa.int64(), safe=False), pa.timestamp("us"))
    path = pc.cast(pc.list_element(fields, 4), pa.string())
    try:
        path.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise _fail(root, root, ValueError(f"a path under the root is not UTF-8: {exc}")
                    ) from exc
    batch = pa.RecordBatch.from_arrays([path, size, mtime, empty_dir], schema=LISTING_SCHEMA)
    return batch.filter(keep)


def list_local_scandir(root: str, *, workers: int = 4) -> Iterator[pa.RecordBatch]:
    """The listing of ``root`` by os.scandir, one thread per top-level directory."""
    top: list[str] = []
    files = _Batcher()
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    top.append(entry.path)
                else:
                    batch = _add_entry(files, entry)
                    if batch is not None:
                        yield batch
    except OSError as exc:
        raise _fail(root, root, exc) from exc
    last = files.flush()
    if last is not None:
        yield last
    yield from _parallel(root, top, lambda d: _walk_local(root, d), workers)


def _add_entry(batcher: _Batcher, entry: os.DirEntry[str]) -> pa.RecordBatch | None:
    try:
        info = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None  # removed while we listed: it holds nothing now
    return batcher.add(entry.path, info.st_size if stat.S_ISREG(info.st_mode) else 0,
                       info.st_mtime_ns // 1000, False)


def _walk_local(root: str, top: str) -> Iterator[pa.RecordBatch]:
    # The hot loop of a local listing: one scandir per directory, one lstat per file
    # (DirEntry caches it), appended to plain columns; Arrow converts them a batch
    # at a time (times stay nanoseconds until then).
    paths: list[str] = []
    sizes: list[int] = []
    mtimes: list[int] = []
    empty_dirs: list[int] = []
    is_regular = stat.S_ISREG
    stack = [top]
    while stack:
        directory = stack.pop()
        empty = True
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    empty = False
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                        continue
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        # Removed between the directory's read and its lstat: it holds
                        # nothing now. Only this entry is skipped, never the rest of
                        # its directory (that would be a partial listing).
                        continue
                    paths.append(entry.path)
                    sizes.append(info.st_size if is_regular(info.st_mode) else 0)
                    mtimes.append(info.st_mtime_ns)
            if empty:
                empty_dirs.append(len(paths))
                paths.append(directory)
                sizes.append(0)
                mtimes.append(os.lstat(directory).st_mtime_ns)
        except FileNotFoundError:
            # Removed while we listed (a sweep, a ZenML delete): it holds nothing now.
            continue
        except OSError as exc:
            raise _fail(root, directory, exc) from exc
        if len(paths) >= BATCH_ROWS:
            yield _checked_batch(root, paths, sizes, mtimes, empty_dirs)
            paths, sizes, mtimes, empty_dirs = [], [], [], []
    if paths:
        yield _checked_batch(root, paths, sizes, mtimes, empty_dirs)


def _checked_batch(root: str, paths: list[str], sizes: list[int], mtimes_ns: list[int],
                   empty_dirs: list[int]) -> pa.RecordBatch:
    """:func:`_columns_batch`, failing the listing (one line, the path named) on a file
    name that is not UTF-8, as the find listing does."""
    try:
        return _columns_batch(paths, sizes, mtimes_ns, empty_dirs)
    except UnicodeEncodeError:
        bad = next(p for p in paths if not _is_utf8(p))
        raise _fail(root, ascii(bad), ValueError("a path under the root is not UTF-8")
                    ) from None


def _is_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _columns_batch(paths: list[str], sizes: list[int], mtimes_ns: list[int],
                   empty_dirs: list[int]) -> pa.RecordBatch:
    """A batch of :data:`LISTING_SCHEMA` from plain columns; ``empty_dirs`` holds the
    row numbers that are empty directories."""
    is_dir = [False] * len(paths)
    for row in empty_dirs:
        is_dir[row] = True
    return pa.RecordBatch.from_arrays(
        [pa.array(paths, pa.string()), pa.array(sizes, pa.int64()),
         pa.array(mtimes_ns, pa.int64()).cast(pa.timestamp("ns")).cast(
             pa.timestamp("us"), safe=False),
         pa.array(is_dir, pa.bool_())],
        schema=LISTING_SCHEMA)


def _parallel(root: str, prefixes: list[str],
              walk: Callable[[str], Iterator[pa.RecordBatch]], workers: int
              ) -> Iterator[pa.RecordBatch]:
    """The batches of ``walk(prefix)`` for every prefix, listed ``workers`` at a time.

    A bounded queue keeps memory flat: a lister waits while DuckDB catches up. The
    first error stops the listing and is raised here."""
    if not prefixes:
        return
    done = object()
    out: queue.Queue[Any] = queue.Queue(maxsize=max(2, workers * 2))
    stop = threading.Event()

    def run(prefix: str) -> None:
        try:
            for batch in walk(prefix):
                if stop.is_set():
                    return
                out.put(batch)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            out.put(exc)

    def all_prefixes() -> None:
        with ThreadPoolExecutor(max_workers=max(1, workers),
                                thread_name_prefix="gc-list") as pool:
            for prefix in prefixes:
                pool.submit(run, prefix)
        out.put(done)

    feeder = threading.Thread(target=all_prefixes, name="gc-list-feed", daemon=True)
    feeder.start()
    try:
        while True:
            item = out.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # Drain so that no lister stays blocked on a full queue.
        while feeder.is_alive():
            try:
                out.get(timeout=0.1)
            except queue.Empty:
                pass


# ---------------------------------------------------------------------------
# Any fsspec filesystem: walk with details
# ---------------------------------------------------------------------------


def list_fsspec(fs: Any, root: str) -> Iterator[pa.RecordBatch]:
    """Every object under ``root`` through fsspec's ``walk`` (GCS, Azure, ...)."""
    batcher = _Batcher()
    protocol = root.split("://", 1)[0] + "://" if "://" in root else ""
    try:
        for directory, dirs, files in fs.walk(root, detail=True, on_error="raise"):
            if not dirs and not files and directory.rstrip("/") != fs._strip_protocol(root):
                batch = batcher.add(protocol + directory.rstrip("/"), 0, 0, True)
                if batch is not None:
                    yield batch
            for name, info in files.items():
                path = info.get("name") or f"{directory.rstrip('/')}/{name}"
                batch = batcher.add(protocol + str(path).lstrip("/") if protocol else
                                    str(path), int(info.get("size") or 0),
                                    _mtime_us(info), False)
                if batch is not None:
                    yield batch
    except FileNotFoundError:
        pass
    except Exception as exc:  # noqa: BLE001 - any failure makes the listing partial
        raise _fail(root, root, exc) from exc
    last = batcher.flush()
    if last is not None:
        yield last


def _mtime_us(info: dict[str, Any]) -> int:
    for key in ("mtime", "LastModified", "updated", "last_modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, int | float):
            return int(value * 1_000_000)
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if isinstance(value, datetime):
            return _datetime_us(value)
    # No time known: the newest possible, so that the grace period protects it.
    return _datetime_us(datetime.now(UTC)) + 86_400_000_000 * 365


def _datetime_us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1_000_000)


# ---------------------------------------------------------------------------
# S3: one paginated ListObjectsV2 of the root
# ---------------------------------------------------------------------------


def list_s3(call: Callable[..., dict[str, Any]], root: str, *,
            page_keys: int = 1000) -> Iterator[pa.RecordBatch]:
    """Every object under the S3 ``root`` (``s3://bucket/prefix``).

    ``call(method, **kwargs)`` sends one request (the backend's client: rate limit,
    retries). One listing of the whole root, page after page, as a bare paginated
    ``list_objects_v2`` sends: one LIST per 1,000 objects, whatever the layout. (A
    listing per top-level prefix sent one LIST per hook output's run folder, each a
    prefix of its own with a few objects: 8 times the bare count on a real layout.)
    The pages are fetched in a thread of their own, so that the next request is in
    flight while DuckDB takes in the last page."""
    scheme, rest = root.split("://", 1)
    bucket, _, root_key = rest.partition("/")
    root_key = root_key.strip("/")
    base = root_key + "/" if root_key else ""
    prefix_of = f"{scheme}://{bucket}/"
    yield from _parallel(
        root, [base], lambda p: _s3_pages(call, root, bucket, p, prefix_of, page_keys), 1)


def _s3_pages(call: Callable[..., dict[str, Any]], root: str, bucket: str, prefix: str,
              prefix_of: str, page_keys: int) -> Iterator[pa.RecordBatch]:
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_keys}
        if token:
            kwargs["ContinuationToken"] = token
        try:
            page = call("list_objects_v2", **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure makes the listing partial
            raise _fail(root, prefix_of + prefix, exc) from exc
        batch = _s3_batch(page.get("Contents") or [], prefix_of)
        if batch is not None:
            yield batch
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated"):
            return
        if not token:
            raise _fail(root, prefix_of + prefix,
                        RuntimeError("a truncated page without a continuation token"))


def _s3_batch(contents: list[dict[str, Any]], prefix_of: str) -> pa.RecordBatch | None:
    if not contents:
        return None
    batcher = _Batcher()
    for entry in contents:
        key = str(entry["Key"])
        # A "directory marker" key (ending in "/") is an empty directory of the layout.
        is_dir = key.endswith("/")
        batcher.add(prefix_of + key.rstrip("/"), int(entry.get("Size") or 0),
                    _entry_mtime_us(entry), is_dir)
    return batcher.flush()


# ---------------------------------------------------------------------------
# The newest object under each of many S3 paths, in one ranged listing
# ---------------------------------------------------------------------------


def newest_s3(call: Callable[..., dict[str, Any]], bucket: str, keys: list[str], *,
              page_keys: int = 1000) -> dict[str, int | None]:
    """The newest ``LastModified`` (microseconds since the epoch) of the objects equal
    to or under each of ``keys`` (object keys of ``bucket``); None where there is none.

    One ranged listing serves them all, instead of a LIST per key: the keys are
    sorted, and ListObjectsV2 pages through their common prefix from just before the
    first key. Where a page ends in a gap before the next key that is still open (keys
    of no interest: live objects between two candidates), the listing jumps to that
    key with ``StartAfter`` instead of paging through the gap. So a batch costs at
    most one request per key, and about one per 1,000 objects where its keys lie
    close together, as a sweep's sorted candidates do. A key is done once the listing
    has passed ``key + "0"``: every key under ``key/`` sorts below it (``/`` < ``0``)."""
    from artifact_gc.storage.buckets import common_prefix

    ordered = sorted(set(keys))
    newest: dict[str, int | None] = dict.fromkeys(ordered)
    if not ordered:
        return newest
    prefix = common_prefix(ordered[0], ordered[-1])
    # StartAfter is exclusive: the key without its last character sorts right before
    # it, so the key itself is listed (a few keys of no interest may come too).
    start: str | None = ordered[0][:-1]
    token: str | None = None
    open_at = 0
    while open_at < len(ordered):
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_keys}
        if token:
            kwargs["ContinuationToken"] = token
        elif start and start >= prefix:
            kwargs["StartAfter"] = start
        page = call("list_objects_v2", **kwargs)
        contents = page.get("Contents") or []
        for entry in contents:
            _newer(newest, str(entry["Key"]), _entry_mtime_us(entry))
        if not page.get("IsTruncated") or not contents:
            break
        last = str(contents[-1]["Key"])
        while open_at < len(ordered) and last >= ordered[open_at] + "0":
            open_at += 1
        if open_at == len(ordered):
            break
        following = ordered[open_at][:-1]
        if last < following:
            start, token = following, None
        else:
            token = page.get("NextContinuationToken")
            if not token:
                raise StorageError(f"could not list s3://{bucket}/{prefix}: a truncated "
                                   "page without a continuation token",
                                   path=f"s3://{bucket}/{prefix}")
    return newest


def _newer(newest: dict[str, int | None], key: str, mtime: int) -> None:
    """Count ``key`` for itself and every ancestor among the keys asked about."""
    probe = key
    while True:
        if probe in newest:
            seen = newest[probe]
            newest[probe] = mtime if seen is None else max(seen, mtime)
        cut = probe.rfind("/")
        if cut <= 0:
            return
        probe = probe[:cut]


def _entry_mtime_us(entry: dict[str, Any]) -> int:
    modified = entry.get("LastModified")
    return _datetime_us(modified) if isinstance(modified, datetime) else \
        _mtime_us({"mtime": modified})


# ---------------------------------------------------------------------------
# Directories a sweep leaves empty
# ---------------------------------------------------------------------------


def remove_empty_local_dirs(dirs: list[str]) -> int:
    """``rmdir`` each of ``dirs`` that is empty, in the order given (deepest first).

    ``rmdir`` removes only an empty directory, atomically: a directory that a writer
    has just put a file into stays, so this cannot lose data. Returns how many went."""
    removed = 0
    for directory in dirs:
        try:
            os.rmdir(directory)
            removed += 1
        except OSError:
            # Not empty, already gone, or not ours to remove: all fine to leave.
            continue
    return removed
