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

import bisect
import functools
import itertools
import os
import queue
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import pyarrow as pa

from artifact_gc.errors import StorageError

_T = TypeVar("_T")
_P = TypeVar("_P")

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


def _parallel(root: str, prefixes: list[_P], walk: Callable[[_P], Iterator[_T]],
              workers: int, *, stop: threading.Event | None = None) -> Iterator[_T]:
    """The batches of ``walk(prefix)`` for every prefix, listed ``workers`` at a time.

    A bounded queue keeps memory flat: a lister waits while DuckDB catches up. The
    first error stops the listing and is raised here; ``stop`` is set once the
    listing ends, however it ends."""
    if not prefixes:
        return
    done = object()
    out: queue.Queue[Any] = queue.Queue(maxsize=max(2, workers * 2))
    stop = stop or threading.Event()

    def run(prefix: _P) -> None:
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
# S3: paginated ListObjectsV2 streams over contiguous key ranges
# ---------------------------------------------------------------------------

#: Pages a listing must have fetched for each range it splits off. A root of fewer
#: than this many pages is listed by one stream, exactly as a bare paginated listing,
#: and the LISTs the splits add stay within a third of the bare count.
PAGES_PER_SPLIT = 4
#: Ranges a listing may split off for each stream beyond the first: the later splits
#: rebalance, where a stream ran dry early and another still has far to go.
SPLITS_PER_STREAM = 4
#: Characters of a key that a split point is computed to.
SPLIT_DIGITS = 6


def list_s3(call: Callable[..., dict[str, Any]], root: str, *, streams: int,
            page_keys: int = 1000) -> Iterator[pa.RecordBatch]:
    """Every object under the S3 ``root`` (``s3://bucket/prefix``).

    ``call(method, **kwargs)`` sends one request (the backend's client: rate limit,
    retries). ``streams`` paginated listings run at once over contiguous key ranges
    (:func:`s3_pages`); with one, the root is listed page after page exactly as a bare
    paginated ``list_objects_v2`` lists it, the next page in flight while DuckDB takes
    in the last. (A listing per top-level prefix sent one LIST per hook output's run
    folder, each a prefix of its own with a few objects: 8 times the bare count on a
    real layout.)"""
    scheme, rest = root.split("://", 1)
    bucket, _, root_key = rest.partition("/")
    root_key = root_key.strip("/")
    base = root_key + "/" if root_key else ""
    prefix_of = f"{scheme}://{bucket}/"
    yield from s3_pages(call, root, bucket, base, streams=streams, page_keys=page_keys,
                        convert=lambda contents: _s3_batch(contents, prefix_of))


def s3_pages(call: Callable[..., dict[str, Any]], root: str, bucket: str, base: str, *,
             streams: int, page_keys: int,
             convert: Callable[[list[dict[str, Any]]], _T | None],
             cuts: Sequence[str] = ()) -> Iterator[_T]:
    """``convert(entries)`` of every page of the keys under ``base`` in ``bucket``, each
    key exactly once, listed by ``streams`` paginated ListObjectsV2 streams at a time.

    S3 returns keys in UTF-8 binary order (Python's order of ``str``), so the key space
    cuts into contiguous ranges ``(after, upto]``: a stream lists its range from
    ``StartAfter=after``, page by page, and stops at the first key above ``upto``. The
    ranges tile the key space exactly, whatever the cut points are (a key at the root,
    a prefix of odd characters, a key equal to a cut point: each lies in one range),
    so the cut points decide only the balance, never what is listed.

    The listing starts as one stream over the whole space (a small root costs exactly
    the bare listing). Once it has fetched :data:`PAGES_PER_SPLIT` pages per split so
    far, a stream with nothing to do cuts the remaining part of a running range in two
    (:func:`split_point`) and takes the upper half; at most
    ``SPLITS_PER_STREAM * (streams - 1)`` times. A range's LISTs are its full pages
    plus one last page, so the whole listing sends at most ``bare + splits`` LISTs:
    ``bare + 4 (streams - 1)``, and never more than 4/3 of the bare count.

    Complete or failed: any stream's failure fails the listing (never a partial one:
    invariant 9). Memory stays flat: a bounded queue of pages between the streams and
    the consumer. ``cuts``: points to cut the key space at from the start (tests)."""
    stop = threading.Event()
    space = _KeySpace(base, stop=stop, max_splits=SPLITS_PER_STREAM * max(0, streams - 1),
                      cuts=cuts)

    def stream(_: object) -> Iterator[_T]:
        while (part := space.take_range()) is not None:
            yield from _range_pages(call, root, bucket, space, part, page_keys, convert)

    yield from _parallel(root, list(range(max(1, streams))), stream, max(1, streams),
                         stop=stop)


@dataclass
class _KeyRange:
    """Keys ``k`` with ``after < k <= upto`` (None: unbounded on that side)."""

    after: str | None
    upto: str | None
    #: The keys its stream took from its latest page (where a split is cut).
    page: list[str] = field(default_factory=list)


class _KeySpace:
    """The ranges of one listing: pending, running, and how they are cut."""

    def __init__(self, base: str, *, stop: threading.Event, max_splits: int,
                 cuts: Sequence[str] = ()) -> None:
        self.base = base
        self.stop = stop
        self.max_splits = max_splits
        self.splits = 0
        self.pages = 0
        bounds: list[str | None] = [None, *sorted(set(cuts)), None]
        self.pending = [_KeyRange(low, high) for low, high in itertools.pairwise(bounds)]
        self.running: list[_KeyRange] = []
        self.cond = threading.Condition()

    def take_range(self) -> _KeyRange | None:
        """A range to list, or None once every range is listed (or the listing stops)."""
        with self.cond:
            while not self.stop.is_set():
                part = self.pending.pop() if self.pending else self._split()
                if part is not None:
                    self.running.append(part)
                    return part
                if not self.running:
                    return None
                self.cond.wait(timeout=0.2)
            return None

    def _split(self) -> _KeyRange | None:
        if self.splits >= self.max_splits or self.pages < PAGES_PER_SPLIT * (self.splits + 1):
            return None
        best: tuple[tuple[int, float], _KeyRange, str] | None = None
        for part in self.running:
            cut = split_point(part.page, part.upto)
            if cut is not None and (best is None or cut[1] > best[0]):
                best = (cut[1], part, cut[0])
        if best is None:
            return None
        _, part, at = best
        # The running stream took keys up to its page's last, below ``at``: it goes
        # on to ``at`` and stops there; the new range starts right after ``at``.
        upper = _KeyRange(at, part.upto)
        part.upto = at
        self.splits += 1
        return upper

    def take_page(self, part: _KeyRange, entries: list[dict[str, Any]], truncated: bool
                  ) -> tuple[list[dict[str, Any]], bool]:
        """The entries of a page that lie in ``part``, and whether ``part`` is done."""
        with self.cond:
            self.pages += 1
            done = not truncated
            upto = part.upto
            if part.after is not None and entries and str(entries[0]["Key"]) <= part.after:
                # A server that ignores StartAfter: its keys up to ``after`` belong to
                # the range below, so the ranges still tile the key space exactly.
                entries = [e for e in entries if str(e["Key"]) > part.after]
            if upto is not None and entries and str(entries[-1]["Key"]) >= upto:
                # Keys ascend: this page reaches the range's end (a key equal to
                # ``upto`` is the range's own; everything after it, the next range's).
                entries = [e for e in entries if str(e["Key"]) <= upto]
                done = True
            if entries:
                part.page = [str(e["Key"]) for e in entries]
            if done:
                self.running.remove(part)
            self.cond.notify_all()
            return entries, done


def _range_pages(call: Callable[..., dict[str, Any]], root: str, bucket: str,
                 space: _KeySpace, part: _KeyRange, page_keys: int,
                 convert: Callable[[list[dict[str, Any]]], _T | None]) -> Iterator[_T]:
    prefix = space.base
    if part.after is not None and part.upto is not None:
        # Every key between two keys starts with their common prefix: where that is
        # narrower than the base, it lists the same keys of the range, fewer others.
        common = os.path.commonprefix([part.after, part.upto])
        if common.startswith(space.base):
            prefix = common
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_keys}
        if token:
            kwargs["ContinuationToken"] = token
        elif part.after is not None:
            kwargs["StartAfter"] = part.after
        try:
            page = call("list_objects_v2", **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure makes the listing partial
            raise _fail(root, f"s3://{bucket}/{prefix}", exc) from exc
        entries, done = space.take_page(part, list(page.get("Contents") or []),
                                        bool(page.get("IsTruncated")))
        if entries:
            item = convert(entries)
            if item is not None:
                yield item
        if done:
            return
        token = page.get("NextContinuationToken")
        if not token:
            raise _fail(root, f"s3://{bucket}/{prefix}",
                        RuntimeError("a truncated page without a continuation token"))


def split_point(page: list[str], upto: str | None) -> tuple[str, tuple[int, float]] | None:
    """Where to cut the rest of a range whose stream took ``page`` (its latest page's
    keys, ascending) and ends at ``upto``: a key about halfway between the page's last
    key and ``upto``, and how much the cut leaves to the upper part (for choosing the
    range to cut: the shallowest level first, then the widest). None where there is
    no such key.

    Any cut is correct (the ranges tile the key space whatever the points); this one
    aims at balance. The page shows which level of the key hierarchy the listing is
    moving through: the path segment where its first and last keys differ (in a ZenML
    store, a run or step-run id: uuid hex). The rest of the range is read as a number
    in that segment's alphabet (the characters the page shows there), from the last
    key to ``upto`` (or to the level's end), and cut at the middle."""
    if not page:
        return None
    first, last = page[0], page[-1]
    differ = len(os.path.commonprefix([first, last]))
    start = last.rfind("/", 0, differ) + 1
    level = last[:start]
    alphabet = "".join(sorted({ch for key in page
                               for ch in key[start:].split("/", 1)[0]}))
    if len(alphabet) < 2:
        return None
    low = _fraction(last[start:], alphabet)
    high = _fraction(upto[start:], alphabet) \
        if upto is not None and upto.startswith(level) else 1.0
    if high <= low:
        return None
    middle = (low + high) / 2
    digits = []
    for _ in range(SPLIT_DIGITS):
        middle *= len(alphabet)
        rank = min(int(middle), len(alphabet) - 1)
        digits.append(alphabet[rank])
        middle -= rank
    at = level + "".join(digits)
    if not (last < at and (upto is None or at < upto)):
        return None
    return at, (-level.count("/"), high - low)


def _fraction(text: str, alphabet: str) -> float:
    """``text`` read as a fraction in base ``len(alphabet)`` (its first digits), each
    character counted by its rank in ``alphabet`` (one not in it, by where it sorts)."""
    value, scale = 0.0, 1.0
    for ch in text[:SPLIT_DIGITS]:
        scale /= len(alphabet)
        value += min(bisect.bisect_left(alphabet, ch), len(alphabet)) * scale
    return min(value, 1.0)


def _s3_batch(contents: list[dict[str, Any]], prefix_of: str) -> pa.RecordBatch | None:
    if not contents:
        return None
    batcher = _Batcher()
    for entry in contents:
        key = str(entry["Key"])
        # A "directory marker" key (ending in "/"): a directory row. Whether anything
        # lies under it may be on another stream's page; the classifier drops a marker
        # with contents (classify._drop_filled_markers), so only an empty one is an
        # empty directory of the layout.
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
