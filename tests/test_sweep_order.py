"""The order a sweep takes its candidates in, and where it cuts its batches.

- On MySQL/MariaDB the versions of a local store go in the order of their ids (the
  order InnoDB stores the tables and the version-keyed indexes in), so that each batch
  is one contiguous run of ids; on SQLite, and for the bucket stores (whose deletes
  list each batch's key range), by URI as before.
- Versions whose URIs nest are one family: they come one after the other and no
  batch boundary falls inside a family, in either order.

The first tests run the plan's own read and order (``pending_sql``, ``in_sweep_order``)
over a table in the shape of ``sweep_state``; the last one sweeps a real MariaDB store
and reads its journal.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from artifact_gc.manifest.reasons import ITEM_KIND_ORPHAN_FILE, ITEM_KIND_VERSION
from artifact_gc.sweep.plan import batch_slices, in_sweep_order, pending_sql, sweep_order
from test_mariadb_scale import (  # noqa: F401 - fixtures
    Store,
    _mark,
    _summary,
    _sweep,
    _version_ids,
    make_store,
    zenml_schema,
)

LOCAL, REMOTE = "/data/store", "s3://bucket/store"

#: Families of nested URIs in a local store (relative to its root), and versions on
#: their own beside them. ``step/out/a-b`` sorts between ``step/out/a`` and
#: ``step/out/a/in`` by URI ('-' < '/'), but is not inside ``step/out/a``.
NESTED = [
    ("step/out/a", "step/out/a/in", "step/out/a/in/deeper"),
    ("other/x", "other/x/"),  # the same directory, spelled twice
    ("third/p", "third/p/q", "third/p/r"),
]
SINGLES = ["step/out/a-b", "step/out/b", "zz/last", "aa/first", "other/y", "third/pq"]


def _rows() -> list[dict[str, Any]]:
    """Versions (ids random, as ZenML's are) of a local and a remote store, and two
    orphan files."""
    rng = random.Random(13)

    def version(root: str, path: str) -> dict[str, Any]:
        vid = uuid.UUID(int=rng.getrandbits(128)).hex
        return {"item_kind": ITEM_KIND_VERSION, "item_id": vid, "artifact_version_id": vid,
                "artifact_id": "a" * 32, "uri": f"{root}/{path}", "artifact_store_id": root,
                "store_root": root, "size_bytes": 1, "file_count": 1, "last_event": None,
                "created": datetime(2026, 1, 1) + timedelta(seconds=rng.randrange(10**6))}

    rows = [version(LOCAL, p) for family in NESTED for p in family]
    rows += [version(LOCAL, p) for p in SINGLES]
    rows += [version(LOCAL, f"bulk/{n:03d}") for n in range(40)]
    rows += [version(REMOTE, f"r/{n:03d}") for n in range(12)]
    rows += [version(REMOTE, "r/005/inside")]
    rows += [{**version(LOCAL, f"logs/{n}.log"), "item_kind": ITEM_KIND_ORPHAN_FILE,
              "item_id": f"{LOCAL}/logs/{n}.log"} for n in range(2)]
    rng.shuffle(rows)
    return rows


def _ordered(by_key: bool, key_column: str = "artifact_version_id") -> pa.Table:
    table = pa.Table.from_pylist(_rows())
    con = duckdb.connect()
    try:
        con.register("state", table)
        return in_sweep_order(con, con.sql(pending_sql(
            "SELECT *, NULL::VARCHAR[] AS visualization_uris, NULL::VARCHAR[] AS object_keys "
            "FROM state")).to_arrow_table(), by_key, key_column)
    finally:
        con.close()


def _family_of(uri: str) -> tuple[str, ...] | None:
    for family in NESTED:
        if uri.startswith(LOCAL + "/") and uri[len(LOCAL) + 1:] in family:
            return family
    return None


def _batches(items: pa.Table, size: int) -> list[list[dict[str, Any]]]:
    return [items.slice(start, length).to_pylist()
            for start, length in batch_slices(items, size)]


def test_sqlite_takes_local_versions_in_created_order() -> None:
    """SQLite's key order is ``created`` (the order its rowid tables were written in):
    the local store's versions first, families by their earliest version, each family
    in URI order; the remote store's versions keep the URI order."""
    rows = _ordered(by_key=True, key_column="created").to_pylist()
    local = [r for r in rows if r["item_kind"] == ITEM_KIND_VERSION
             and r["store_root"] == LOCAL]
    assert rows[:len(local)] == local
    keys = []
    for row in local:
        family = _family_of(row["uri"])
        members = [r for r in local if family and _family_of(r["uri"]) == family] or [row]
        keys.append(min(m["created"] for m in members))
    assert keys == sorted(keys)
    for family in NESTED:
        assert [r["uri"] for r in local if _family_of(r["uri"]) == family] == sorted(
            r["uri"] for r in local if _family_of(r["uri"]) == family)
    remote = [r["uri"] for r in rows if r["store_root"] == REMOTE]
    assert remote == sorted(remote)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7])
def test_local_versions_go_in_id_order_and_families_share_a_batch(size: int) -> None:
    """By key: the local store's versions first, families by their smallest id, each
    family in URI order; every batch of them is a run of consecutive ids (but for the
    nested members of a family) and no family is cut. The remote store's versions keep
    the URI order, nested ones included."""
    items = _ordered(by_key=True)
    rows = items.to_pylist()
    local = [r for r in rows if r["item_kind"] == ITEM_KIND_VERSION
             and r["store_root"] == LOCAL]
    remote = [r for r in rows if r["store_root"] == REMOTE]
    assert rows[:len(local)] == local  # local versions first
    # Each family (and each single version) keyed by its smallest id, in that order.
    keys = []
    for row in local:
        family = _family_of(row["uri"])
        members = [r for r in local if family and _family_of(r["uri"]) == family] or [row]
        keys.append(min(m["artifact_version_id"] for m in members))
    assert keys == sorted(keys)
    for family in NESTED:
        run = [r["uri"] for r in local if _family_of(r["uri"]) == family]
        assert run == sorted(run)
        at = [n for n, r in enumerate(local) if _family_of(r["uri"]) == family]
        assert at == list(range(at[0], at[0] + len(family)))  # one after the other
    assert [r["uri"] for r in remote] == sorted(r["uri"] for r in remote)

    versions = items.filter(pc.equal(items.column("item_kind"), ITEM_KIND_VERSION))
    batches = _batches(versions, size)
    assert len(batches) <= math.ceil(versions.num_rows / size)
    assert [r["item_id"] for b in batches for r in b] == versions.column("item_id").to_pylist()
    for family in NESTED:
        holding = [n for n, batch in enumerate(batches)
                   if any(_family_of(r["uri"]) == family for r in batch)]
        assert len(holding) == 1, (family, size)
    assert all(len(batch) >= size for batch in batches[:-1])
    # Only the family at its end makes a batch longer (by 2 at most here).
    assert all(len(batch) <= size + 2 for batch in batches)
    # The single local versions: each batch a contiguous range of their ids.
    ids = sorted(r["artifact_version_id"] for r in local if _family_of(r["uri"]) is None)
    position = {vid: n for n, vid in enumerate(ids)}
    for batch in batches:
        mine = sorted(position[r["artifact_version_id"]] for r in batch
                      if r["artifact_version_id"] in position)
        assert mine == list(range(mine[0], mine[0] + len(mine))) if mine else True


@pytest.mark.parametrize("size", [1, 2, 4])
def test_uri_order_keeps_families_together_too(size: int) -> None:
    """Without key order (SQLite): everything by URI as before, but a family comes
    whole, before a path that sorts inside it by URI without being inside it
    (``step/out/a-b``), and no batch cuts it."""
    items = _ordered(by_key=False)
    uris = [r["uri"] for r in items.to_pylist() if r["item_kind"] == ITEM_KIND_VERSION]
    family = [f"{LOCAL}/{p}" for p in NESTED[0]]
    start = uris.index(family[0])
    assert uris[start:start + len(family)] == family
    assert uris.index(f"{LOCAL}/step/out/a-b") == start + len(family)
    singles = [u for u in uris if _family_of(u) is None]
    assert singles == sorted(singles)
    versions = items.filter(pc.equal(items.column("item_kind"), ITEM_KIND_VERSION))
    for fam in NESTED:
        holding = [n for n, batch in enumerate(_batches(versions, size))
                   if any(_family_of(r["uri"]) == fam for r in batch)]
        assert len(holding) == 1, (fam, size)


@pytest.mark.mariadb
@pytest.mark.slow
def test_mariadb_sweep_takes_local_versions_in_id_ranges(
        make_store: Callable[..., Store], tmp_path: Path) -> None:  # noqa: F811
    """A real sweep of a MariaDB store with local files, in batches of 25: each batch's
    intent (the journal) names the next 25 candidates by id, and everything goes."""
    store = make_store(240, 0.5)
    manifest = tmp_path / "mark.parquet"
    candidates = _mark(store, manifest)
    assert sweep_order(str(manifest), store.sweep_url) == sorted(candidates)
    summary = _summary(_sweep(store, manifest, None, None, "--batch-size", "25"))
    assert summary["deleted"] == len(candidates) and summary["failed"] == 0, summary
    journal = Path(str(manifest) + ".journal")
    rows = duckdb.sql(
        f"SELECT batch, list(item_id ORDER BY item_id) FROM read_parquet('{journal}/*.parquet') "
        "WHERE event = 'intent' GROUP BY batch ORDER BY batch").fetchall()
    ordered = sorted(candidates)
    assert [list(ids) for _, ids in rows] == [ordered[n:n + 25]
                                              for n in range(0, len(ordered), 25)]
    assert not candidates & _version_ids(store.zenml_url)
