"""How many LIST requests the sweep's grace check of orphan files sends on S3 (moto).

Before deleting, the sweep asks the store again for the newest object under each
orphan-file candidate (anything younger than the grace period keeps it). On S3 that is
one ranged listing per batch (storage/listing.py ``newest_s3``), not a LIST per path:
counted on the wire here (botocore ``before-send``, once per request actually sent).

The mark records the keys it listed in each candidate (``object_keys``), so the sweep
deletes them without listing first, as it does a version's: a whole sweep of orphan
files is held to the version sweep's budget over a bare ``delete_objects`` loop.
"""

from __future__ import annotations

import math
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from artifact_gc.demo.synthetic import SyntheticSpec, create_sqlite_store, populate
from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.run import mark
from artifact_gc.storage.backend import open_backend
from artifact_gc.storage.limits import RequestLimits
from artifact_gc.storage.retry import RetryCounter
from artifact_gc.sweep.execute import execute
from artifact_gc.sweep.options import SweepOptions
from artifact_gc.sweep.orphan_files import newest_under_s3
from artifact_gc.sweep.plan import plan_sweep
from artifact_gc.sweep.verify import BatchItem
from artifact_gc.zenml.stores import ArtifactStore
from conftest import MotoS3
from s3_support import list_bucket, object_plan
from test_request_counts import TARGET_EXTRA_PER_1000, CountingFilesystems, _fill

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
    # The grace check's ranged listing is most of it (one LIST per 1,000 objects); the
    # rest is the one listing after the deletes that proves the batch's range empty.
    assert extra_per_1000 <= TARGET_EXTRA_PER_1000, counting.sent


def _count_lists(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the LIST requests (V1 and V2) the in-process moto server answers."""
    from moto.s3.responses import S3Response

    served = [0]
    for name in ("list_objects", "list_objects_v2"):
        answer = getattr(S3Response, name)

        def counted(self: Any, _answer: Any = answer) -> Any:
            served[0] += 1
            return _answer(self)

        monkeypatch.setattr(S3Response, name, counted)
    return served


def test_the_mark_lists_the_root_once_page_by_page_whatever_its_layout(
        moto_s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
    served = _count_lists(monkeypatch)
    mark(url, str(tmp_path / "plain.parquet"),
         MarkOptions(older_than=timedelta(days=1), storage_options=moto_s3.storage_options))
    plain = served[0]
    served[0] = 0
    manifest = tmp_path / "mark.parquet"
    mark(url, str(manifest), MarkOptions(older_than=timedelta(days=1), orphan_files=True,
                                         storage_options=moto_s3.storage_options))
    with duckdb.connect() as con:
        hooks = con.execute(f"SELECT count(*) FROM '{manifest}' WHERE status = 'candidate' "
                            "AND orphan_class = 'hook_output'").fetchone()
    assert hooks == (400,)
    # The bare paginated listing of the root: one LIST per 1,000 objects (one LIST per
    # top-level prefix would be 400 more).
    bare = math.ceil(len(objects) / 1000)
    print(f"mark --orphan-files: {served[0]} LISTs for {len(objects)} objects "
          f"(plain mark {plain}, bare listing {bare})")
    assert served[0] - plain == bare, (served[0], plain, bare)


@pytest.fixture(autouse=True)
def _fresh_moto_backend(tmp_path: Path) -> Any:
    yield
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    s3_backends[DEFAULT_ACCOUNT_ID]["aws"].reset()
