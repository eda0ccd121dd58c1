"""How many LIST requests the sweep's grace check of orphan files sends on S3 (moto).

Before deleting, the sweep asks the store again for the newest object under each
orphan-file candidate (anything younger than the grace period keeps it). On S3 that is
one ranged listing per batch (storage/listing.py ``newest_s3``), not a LIST per path:
counted on the wire here (botocore ``before-send``, once per request actually sent).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from artifact_gc.storage.backend import open_backend
from artifact_gc.storage.limits import RequestLimits
from artifact_gc.storage.retry import RetryCounter
from artifact_gc.sweep.orphan_files import newest_under_s3
from artifact_gc.sweep.verify import BatchItem
from artifact_gc.zenml.stores import ArtifactStore
from conftest import MotoS3
from test_request_counts import CountingFilesystems, _fill

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


@pytest.fixture(autouse=True)
def _fresh_moto_backend(tmp_path: Path) -> Any:
    yield
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    s3_backends[DEFAULT_ACCOUNT_ID]["aws"].reset()
