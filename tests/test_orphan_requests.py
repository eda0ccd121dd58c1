"""How many LIST requests the sweep's grace check of orphan files sends on S3 (moto).

Before deleting, the sweep asks the store again for the newest object under each
orphan-file candidate (anything younger than the grace period keeps it). On S3 that is
one ranged listing per batch (storage/listing.py ``newest_s3``), not a LIST per path:
counted on the wire here (botocore ``before-send``, once per request actually sent).

That listing is also the delete's: the sweep deletes exactly the keys it found there
(old enough, under a path the database still calls garbage), with no listing before
it and none after to prove the path empty. So a whole sweep of orphan files costs one
LIST per 1,000 objects listed on top of the bare ``delete_objects`` loop, held here to
the target; and an object written under a candidate after that listing is never
deleted, having never been checked.
"""

from __future__ import annotations

import math
import random
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from artifact_gc.demo.synthetic import SyntheticSpec, create_sqlite_store, populate
from artifact_gc.errors import StorageError
from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.run import mark
from artifact_gc.storage.backend import open_backend
from artifact_gc.storage.limits import RequestLimits
from artifact_gc.storage.listing import list_s3, s3_pages
from artifact_gc.storage.retry import RetryCounter
from artifact_gc.sweep.execute import execute
from artifact_gc.sweep.hooks import DELETE_FILES, SweepHooks
from artifact_gc.sweep.options import SweepOptions
from artifact_gc.sweep.orphan_files import newest_under_s3
from artifact_gc.sweep.plan import plan_sweep
from artifact_gc.sweep.verify import BatchItem
from artifact_gc.zenml.stores import ArtifactStore
from conftest import MotoS3
from s3_support import list_bucket, object_plan
from test_request_counts import (
    TARGET_EXTRA_PER_1000,
    CountingFilesystems,
    _fill,
    assert_lists_of_a_listing,
    count_lists,
    list_bound,
)

pytestmark = pytest.mark.s3

ROOT_KEY = "store"


def _unit(i: int) -> str:
    return f"{ROOT_KEY}/trainer/model/{i:08x}-0000-4000-8000-000000000000/abcdef12"


def _item(moto: MotoS3, key: str) -> BatchItem:
    url = moto.url(key)
    return BatchItem(artifact_version_id=url, artifact_id="", footprint=(url,),
                     size_bytes=0, file_count=0, store_id="a" * 32,
                     store_root=moto.url(ROOT_KEY))


def _newest(moto: MotoS3, keys: list[str]) -> tuple[dict[str, Any], int]:
    counting = CountingFilesystems(moto)
    root = moto.url(ROOT_KEY)
    store = ArtifactStore("a" * 32, "s3", "s3", root, "t")
    backend = open_backend(store, root, counting(store), workers=2, retries=RetryCounter(),
                           limits=RequestLimits())
    try:
        found = newest_under_s3(backend, [_item(moto, k) for k in keys])
    finally:
        backend.close()
    assert set(counting.sent) <= {"ListObjectsV2"}, counting.sent
    return found, counting.sent["ListObjectsV2"]


def test_a_dense_batch_costs_one_list_per_1000_objects_not_one_per_path(
        moto_s3: MotoS3) -> None:
    paths = 1500
    # Two objects per candidate, and a live object between every two candidates.
    objects = [(f"{_unit(i)}/{name}", b"x") for i in range(paths) for name in ("a", "b")]
    objects += [(f"{_unit(i)}-live/data", b"l") for i in range(paths)]
    _fill(moto_s3, objects)
    keys = [_unit(i) for i in range(paths)] + [_unit(paths + 7)]  # the last one is gone
    found, lists = _newest(moto_s3, keys)
    assert all(found[moto_s3.url(_unit(i))] is not None for i in range(paths))
    # A sibling's objects (``<unit>-live``) are not the unit's own: gone means None.
    assert found[moto_s3.url(_unit(paths + 7))] is None
    in_range = len(objects)
    print(f"dense: {lists} LISTs for {len(keys)} paths, {in_range} objects in range")
    assert lists <= math.ceil(in_range / 1000) + 1, lists  # 1,500 with a LIST per path


def test_a_sparse_batch_jumps_over_the_objects_between_its_paths(moto_s3: MotoS3) -> None:
    # Five candidates with 2,500 live objects between each two: paging through the
    # range would cost 13 LISTs; jumping to each next path costs at most one each.
    objects = []
    for i in range(5):
        objects.append((f"{_unit(i * 10_000)}/data", b"x"))
        objects += [(f"{_unit(i * 10_000 + j)}/live", b"l") for j in range(1, 2501)]
    _fill(moto_s3, objects)
    keys = [_unit(i * 10_000) for i in range(5)]
    found, lists = _newest(moto_s3, keys)
    assert all(found[moto_s3.url(k)] is not None for k in keys)
    print(f"sparse: {lists} LISTs for {len(keys)} paths, {len(objects)} objects in range")
    assert lists <= len(keys), lists


def _backdate(moto: MotoS3, days: int) -> None:
    """Make every object in the bucket ``days`` older (moto's own record of it)."""
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    bucket = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets[moto.bucket]
    for key in bucket.keys.values():
        key.last_modified -= timedelta(days=days)


def test_an_orphan_file_sweep_with_recorded_keys_stays_within_target(
        moto_s3: MotoS3, tmp_path: Path) -> None:
    url = create_sqlite_store(tmp_path / "zenml.db")
    populate(url, SyntheticSpec(versions=200, store_root=moto_s3.url(ROOT_KEY),
                                orphan_share=0.0, recent_share=0.0, seed=5))
    live = object_plan(url, moto_s3.bucket)
    # Outputs of deleted step runs (no row names them): 1,500 units of 8 objects.
    names = [f"part-{n}" for n in range(8)]
    units = [f"{ROOT_KEY}/deleted_step/output/{uuid.UUID(int=i + 1, version=4)}/{i:08x}"
             for i in range(1500)]
    orphans = [(f"{unit}/{name}", b"o") for unit in units for name in names]
    _fill(moto_s3, live + orphans)
    _backdate(moto_s3, days=2)
    manifest = tmp_path / "mark.parquet"
    mark(url, str(manifest), MarkOptions(older_than=timedelta(days=1), orphan_files=True,
                                         storage_options=moto_s3.storage_options))
    with duckdb.connect() as con:
        rows = con.execute(f"SELECT uri, object_keys FROM '{manifest}' WHERE status = "
                           "'candidate' AND item_kind = 'orphan_file'").fetchall()
    assert {uri for uri, _ in rows} == {moto_s3.url(u) for u in units}
    assert all(sorted(keys) == names for _, keys in rows)
    # Written under a candidate after the mark: the sweep's grace check lists the path
    # again before deleting and keeps it whole, recorded keys and all.
    young = units[700]
    _fill(moto_s3, [(f"{young}/written-after-mark", b"late")])

    counting = CountingFilesystems(moto_s3)
    # No undo window: the plain deletes are measured (the trash's copies are counted by
    # tests/test_trash_storage.py).
    plan = plan_sweep(str(manifest), url, SweepOptions(storage_options=moto_s3.storage_options,
                                                      undo_window=None))
    report = execute(plan, filesystem_factory=counting)

    assert not report.failures and len(report.deleted) == len(units) - 1
    assert report.protected == {moto_s3.url(young): "grace_period"}
    kept = {k for k, _ in live} | {f"{young}/{n}" for n in [*names, "written-after-mark"]}
    assert set(list_bucket(moto_s3.client(), moto_s3.bucket)) == kept
    deleted = len(orphans) - len(names)
    bare = math.ceil(deleted / 1000)  # the bare loop: DeleteObjects only
    total = sum(counting.sent.values())
    extra_per_1000 = (total - bare) * 1000 / deleted
    print(f"orphan files, recorded keys: {dict(counting.sent)} for {deleted} objects, "
          f"{extra_per_1000:.2f} per 1,000 beyond the bare loop's {bare}")
    assert set(counting.sent) <= {"ListObjectsV2", "DeleteObjects"}, counting.sent
    # The grace check's ranged listing is all of it: one LIST per 1,000 objects listed
    # (the candidates' and the live objects between them), plus at most one per batch
    # where a page ends; the deletes take its keys, nothing lists again.
    listed = len(orphans) + 1 + sum(1 for k, _ in live if k > units[0] and k < units[-1])
    batches = math.ceil(len(units) / 1000)
    assert counting.sent["ListObjectsV2"] <= math.ceil(listed / 1000) + batches, counting.sent
    assert counting.sent["DeleteObjects"] <= bare + batches, counting.sent
    assert extra_per_1000 <= TARGET_EXTRA_PER_1000, counting.sent


class _WriteWhenDeleting(SweepHooks):
    """Writes objects under a candidate between the grace check's listing and the
    deletes (the delete phase begins), as a step might."""

    def __init__(self, moto: MotoS3, keys: list[str]) -> None:
        self.moto = moto
        self.keys = keys

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name == DELETE_FILES and self.keys:
            _fill(self.moto, [(k, b"late") for k in self.keys])
            # Old by its date, even: it is kept because no check saw it.
            _backdate(self.moto, days=2)
            self.keys = []
        yield


def test_an_object_written_after_the_listing_is_never_deleted(
        moto_s3: MotoS3, tmp_path: Path) -> None:
    url = create_sqlite_store(tmp_path / "zenml.db")
    populate(url, SyntheticSpec(versions=50, store_root=moto_s3.url(ROOT_KEY),
                                orphan_share=0.0, recent_share=0.0, seed=9))
    live = object_plan(url, moto_s3.bucket)
    units = [f"{ROOT_KEY}/deleted_step/output/{uuid.UUID(int=i + 1, version=4)}/{i:08x}"
             for i in range(300)]
    orphans = [(f"{unit}/{name}", b"o") for unit in units for name in ("a", "b", "c")]
    _fill(moto_s3, live + orphans)
    _backdate(moto_s3, days=2)
    manifest = tmp_path / "mark.parquet"
    mark(url, str(manifest), MarkOptions(older_than=timedelta(days=1), orphan_files=True,
                                         storage_options=moto_s3.storage_options))
    late = [f"{units[17]}/written-after-listing", f"{units[17]}/a/deeper"]
    counting = CountingFilesystems(moto_s3)
    plan = plan_sweep(str(manifest), url, SweepOptions(storage_options=moto_s3.storage_options,
                                                      undo_window=None))
    report = execute(plan, filesystem_factory=counting,
                     hooks=_WriteWhenDeleting(moto_s3, late))

    assert not report.failures and not report.protected
    assert len(report.deleted) == len(units)
    # Every object the listing found went; the two written after it stayed.
    assert set(list_bucket(moto_s3.client(), moto_s3.bucket)) == {k for k, _ in live} | set(late)
    # One batch: one ranged listing, one DeleteObjects; nothing listed after the deletes.
    assert counting.sent == {"ListObjectsV2": 1, "DeleteObjects": 1}, counting.sent


@pytest.mark.parametrize("streams", [1, 4])
def test_the_mark_lists_the_root_once_page_by_page_whatever_its_layout(
        moto_s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        streams: int) -> None:
    url = create_sqlite_store(tmp_path / "zenml.db")
    populate(url, SyntheticSpec(versions=200, store_root=moto_s3.url(ROOT_KEY),
                                orphan_share=0.3, recent_share=0.0, seed=7))
    objects = object_plan(url, moto_s3.bucket)
    # Every hook output's run folder is a top-level prefix of its own, with a few
    # objects: 400 of them, and 1,200 log files of deleted runs.
    objects += [(f"{ROOT_KEY}/{uuid.UUID(int=i + 1, version=4)}/"
                 f"{uuid.UUID(int=i + 10_000, version=4)}/output/{name}", b"h")
                for i in range(400) for name in ("data", "meta")]
    objects += [(f"{ROOT_KEY}/logs/{uuid.UUID(int=i + 20_000, version=4)}.log", b"l")
                for i in range(1200)]
    _fill(moto_s3, objects)
    _backdate(moto_s3, days=2)
    served = count_lists(monkeypatch)
    limits = RequestLimits(list_workers=streams)
    mark(url, str(tmp_path / "plain.parquet"),
         MarkOptions(older_than=timedelta(days=1), storage_options=moto_s3.storage_options,
                     limits=limits))
    plain = served[0]
    served[0] = 0
    manifest = tmp_path / "mark.parquet"
    mark(url, str(manifest), MarkOptions(older_than=timedelta(days=1), orphan_files=True,
                                         storage_options=moto_s3.storage_options,
                                         limits=limits))
    with duckdb.connect() as con:
        hooks = con.execute(f"SELECT count(*) FROM '{manifest}' WHERE status = 'candidate' "
                            "AND orphan_class = 'hook_output'").fetchone()
    assert hooks == (400,)
    # The bare paginated listing of the root: one LIST per 1,000 objects (one LIST per
    # top-level prefix would be 400 more). One stream sends exactly that; more streams
    # at most one more LIST per range split off.
    bare = math.ceil(len(objects) / 1000)
    print(f"mark --orphan-files, {streams} streams: {served[0] - plain} LISTs for "
          f"{len(objects)} objects (plain mark {plain}, bare listing {bare})")
    assert_lists_of_a_listing(served[0] - plain, bare, streams)


# ---------------------------------------------------------------------------
# The parallel listing lists exactly what the sequential one lists
# ---------------------------------------------------------------------------

#: Segments of odd characters: spaces, URL and glob metacharacters, non-ASCII (UTF-8
#: order is not UTF-16's: the emoji sorts after the CJK), and names that are each
#: other's prefixes.
ODD = ("a b", "a+b", "a%2Fb", "[1]*?", "a&b=c", "'q'", "#h", "~", "!", "x.y", "-", "_",
       "ü", "ñandú", "日本", "😀", "\uff61", "ab", "ab-c", "ab0", "ab.", "a", "b", "logs")


def _random_keys(rnd: random.Random) -> set[str]:
    """A key set of every shape the listing must get right: keys at the root, deep
    keys, uuid hex folders (where the listing cuts its ranges), families of keys that
    are each other's prefixes (``k``, ``k/``, ``k/x``, ``k0``, ``k-``), odd characters,
    directory markers, and keys beside the root (``store``, ``storex/``)."""
    keys: set[str] = set()
    for _ in range(rnd.randint(100, 400)):
        shape = rnd.random()
        if shape < 0.15:
            key = rnd.choice(ODD) + rnd.choice(["", ".log", "/"])
        elif shape < 0.65:
            folder = rnd.choice(["trainer/model", "logs", "custom_artifacts/n", ""])
            unit = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
            key = "/".join(p for p in (folder, unit, rnd.choice(["a", "b/c", ""])) if p)
        else:
            key = "/".join(rnd.choice(ODD) for _ in range(rnd.randint(2, 6)))
        keys.add(f"{ROOT_KEY}/{key}")
        if rnd.random() < 0.1:
            keys |= {f"{ROOT_KEY}/{key}{tail}" for tail in ("/", "/x", "0", "-", ".")}
    return keys | {f"{ROOT_KEY}/", ROOT_KEY, f"{ROOT_KEY}x/y", "other/z", "stora"}


def _cuts(rnd: random.Random, keys: list[str]) -> list[str]:
    """Cut points of every kind: listed keys, their prefixes and successors, points
    between keys, before the root and after everything."""
    cuts = []
    for _ in range(rnd.randint(1, 12)):
        key = rnd.choice(keys)
        cuts.append(rnd.choice([key, key[:rnd.randint(0, len(key))], key + "0", key + "/",
                                key + "~", key + "ÿ", f"{ROOT_KEY}/", "a", "zzz"]))
    return cuts


def _listed(moto: MotoS3, streams: int, page_keys: int, cuts: list[str] | None = None
            ) -> tuple[list[str], int]:
    """The raw keys a listing of the root yields (every page, in the order taken) and
    the LISTs it sent."""
    client = moto.client()
    sent = [0]
    lock = threading.Lock()

    def call(method: str, **kwargs: Any) -> Any:
        with lock:
            sent[0] += 1
        return getattr(client, method)(**kwargs)

    pages = s3_pages(call, moto.url(ROOT_KEY), moto.bucket, f"{ROOT_KEY}/", streams=streams,
                     page_keys=page_keys, convert=lambda entries: [e["Key"] for e in entries],
                     cuts=cuts or ())
    return [key for page in pages for key in page], sent[0]


@pytest.mark.parametrize("seed", range(5))
def test_a_parallel_listing_lists_exactly_the_sequential_one(moto_s3: MotoS3,
                                                             seed: int) -> None:
    rnd = random.Random(seed)
    keys = _random_keys(rnd)
    _fill(moto_s3, [(k, b"x") for k in keys])
    truth = sorted(k for k in list_bucket(moto_s3.client(), moto_s3.bucket)
                   if k.startswith(f"{ROOT_KEY}/"))
    assert truth == sorted(k for k in keys if k.startswith(f"{ROOT_KEY}/"))
    page_keys = rnd.choice([7, 20])
    bare = max(1, math.ceil(len(truth) / page_keys))
    sequential, lists = _listed(moto_s3, 1, page_keys)
    assert sequential == truth and lists == bare
    for streams in (2, 3, 8):
        # Cut as the streams cut their ranges while they list, from the pages they see.
        listed, lists = _listed(moto_s3, streams, page_keys)
        assert sorted(listed) == truth and len(listed) == len(set(listed)), streams
        assert lists <= list_bound(bare, streams), (streams, lists, bare)
        print(f"seed {seed}, {streams} streams: {lists} LISTs, bare {bare}")
        # And at cut points of every kind, given beforehand: wherever a cut falls, the
        # ranges tile the key space (a range costs at most one LIST beyond its pages,
        # and those pages count toward the splits the streams may make: the bound of a
        # listing whose bare count is ``bare`` plus one per cut).
        cuts = _cuts(rnd, truth)
        listed, lists = _listed(moto_s3, streams, page_keys, cuts)
        assert sorted(listed) == truth and len(listed) == len(set(listed)), (streams, cuts)
        assert lists <= list_bound(bare + len(set(cuts)), streams), (streams, lists, cuts)
    # The batches the mark takes in: the same paths as the sequential listing's.
    client = moto_s3.client()

    def call(method: str, **kwargs: Any) -> Any:
        return getattr(client, method)(**kwargs)

    def paths(streams: int) -> list[str]:
        return sorted(p for batch in list_s3(call, moto_s3.url(ROOT_KEY), streams=streams,
                                             page_keys=page_keys)
                      for p in batch.column("path").to_pylist())

    assert paths(4) == paths(1)


def _hex_store(moto: MotoS3, units: int) -> list[str]:
    rnd = random.Random(units)
    keys = [f"{ROOT_KEY}/trainer/model/{uuid.UUID(int=rnd.getrandbits(128), version=4)}/"
            f"{name}" for _ in range(units) for name in ("a", "b")]
    _fill(moto, [(k, b"x") for k in keys])
    return keys


def _no_listing_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("gc-list")]


@pytest.mark.parametrize("fail_at", [1, 2, 6, 11])
def test_any_stream_that_fails_fails_the_whole_listing(moto_s3: MotoS3,
                                                       fail_at: int) -> None:
    """A LIST refused in any stream (the first, or one of a range split off later)
    fails the listing: never a partial one (juicefs#6479), and no stream is left
    running."""
    from botocore.exceptions import ClientError

    _hex_store(moto_s3, 1500)
    client = moto_s3.client()
    sent = [0]
    lock = threading.Lock()

    def call(method: str, **kwargs: Any) -> Any:
        with lock:
            sent[0] += 1
            refuse = sent[0] == fail_at
        if refuse:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}},
                              "ListObjectsV2")
        return getattr(client, method)(**kwargs)

    taken = 0
    with pytest.raises(StorageError, match="AccessDenied"):
        for batch in list_s3(call, moto_s3.url(ROOT_KEY), streams=4, page_keys=100):
            taken += batch.num_rows
    assert taken < 3000
    assert _no_listing_threads()


def test_a_listing_stopped_early_leaves_no_stream_running(moto_s3: MotoS3) -> None:
    _hex_store(moto_s3, 1500)
    client = moto_s3.client()
    batches = list_s3(lambda method, **kwargs: getattr(client, method)(**kwargs),
                      moto_s3.url(ROOT_KEY), streams=4, page_keys=100)
    for _ in range(8):
        next(batches)
    batches.close()  # type: ignore[attr-defined]
    assert _no_listing_threads()


@pytest.fixture(autouse=True)
def _fresh_moto_backend(tmp_path: Path) -> Any:
    yield
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    s3_backends[DEFAULT_ACCOUNT_ID]["aws"].reset()
