"""gc sweep end to end on real ZenML stores (SQLite and MariaDB).

Every test ends with the integrity check of ``sweep_support.assert_swept``: nothing
but the swept candidates is gone, no dangling row, no lost or leaked file, and
ZenML's own client still loads every remaining artifact version.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from artifact_gc.review.progress import sweep_progress
from artifact_gc.review.session import open_review
from artifact_gc.sweep import hooks as points
from artifact_gc.sweep.execute import execute
from artifact_gc.sweep.hooks import SweepHooks
from artifact_gc.sweep.journal import Journal
from artifact_gc.sweep.options import SweepOptions
from artifact_gc.sweep.plan import plan_sweep
from artifact_gc.sweep.status import sweep_status
from scenarios.helpers import ScenarioStore, list_tree
from sweep_support import (
    JOURNAL_COLUMNS_BEFORE_ITEM_KINDS,
    assert_swept,
    db_snapshot,
    mark_store,
    rewrite_journal_as_before_item_kinds,
    uri_paths,
    zenml,
)


def _sweep_and_check(store: ScenarioStore, tmp_path: Path, **options: object) -> None:
    manifest = mark_store(store, tmp_path / "mark.parquet")
    before = list_tree(store.store_root)
    footprints = uri_paths(store, store.all_ids)
    plan = plan_sweep(str(manifest), store.sqlalchemy_url, SweepOptions(**options))  # type: ignore[arg-type]
    assert plan.versions == len(store.candidates)
    report = execute(plan)
    assert set(report.deleted) == store.candidates
    assert not report.revived and not report.failures
    # Parents left without versions are deleted once each, with their own tags.
    assert report.rows_deleted["artifact_version"] == len(store.candidates)
    empty_artifacts = {
        v["artifact_id"] for vid, v in store.versions.items() if vid in store.candidates
    } - {v["artifact_id"] for vid, v in store.versions.items() if vid not in store.candidates}
    assert report.rows_deleted.get("artifact", 0) == len(empty_artifacts)
    assert report.rows_deleted.get("tag_resource", 0) > 0
    assert report.rows_deleted.get("run_metadata_resource", 0) > 0
    assert_swept(store, store.candidates, before, footprints)
    status = sweep_status(str(manifest))
    assert status.as_dict()["done"] == len(store.candidates) and status.remaining == 0
    # A second sweep finds nothing left to do (and changes nothing).
    again = plan_sweep(str(manifest), store.sqlalchemy_url, SweepOptions())
    assert again.versions == 0


def test_sweep_sqlite_end_to_end(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    _sweep_and_check(scenario_store, tmp_path, batch_size=5, workers=3)


def test_sweep_mariadb_end_to_end(mariadb_scenario_store: ScenarioStore, tmp_path: Path) -> None:
    _sweep_and_check(mariadb_scenario_store, tmp_path, batch_size=5, workers=3)


def test_revived_between_mark_and_sweep_survive(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    """Invariants 1 and 2 against a stale manifest.

    After the mark, a new pipeline run consumes one orphan, another orphan is linked
    to a model, and a new version is saved inside a third orphan's directory. The
    sweep keeps all three (two revived, one protected by the live URI guard)."""
    store = scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet")
    consume, link, nest, *_ = sorted(store.ids("candidate", scenario="deleted_runs")
                                     | store.ids("candidate", scenario="versions"))
    zenml(store, "revive", consume, link, nest)
    before = list_tree(store.store_root)
    footprints = uri_paths(store, store.all_ids)
    report = execute(plan_sweep(str(manifest), store.sqlalchemy_url, SweepOptions()))
    assert report.revived == {consume: "step_input", link: "model_link"}
    assert set(report.protected) == {nest}
    assert report.protected[nest].startswith("uri_overlap_since_mark")
    kept = {consume, link, nest}
    assert set(report.deleted) == store.candidates - kept
    # The store grew by the revival's new versions; they and the kept three remain.
    from sweep_support import version_ids

    remaining = version_ids(store.sqlalchemy_url)
    assert kept <= remaining and not (store.candidates - kept) & remaining
    from scenarios.helpers import integrity_problems

    assert integrity_problems(store.sqlalchemy_url) == []
    root = str(store.store_root)
    for vid in kept | (store.all_ids - store.candidates):
        for path in footprints[vid]:
            rel = str(Path(path).relative_to(root))
            assert any(k == rel or k.startswith(rel + "/") for k in before), rel
            assert all(list_tree(store.store_root).get(k) == v for k, v in before.items()
                       if k == rel or k.startswith(rel + "/"))
    assert zenml(store, "load")["failed"] == {}
    journal = [json.loads(line) for line in _journal_lines(manifest)]
    events = {(j["artifact_version_id"], j["event"]) for j in journal}
    assert (consume, "revived") in events and (link, "revived") in events
    assert (nest, "protected") in events


def _journal_lines(manifest: Path) -> list[str]:
    import duckdb

    con = duckdb.connect()
    Journal(str(manifest)).register(con)
    rows = con.sql("SELECT artifact_version_id, event FROM journal ORDER BY seq").fetchall()
    return [json.dumps({"artifact_version_id": a, "event": e}) for a, e in rows]


def test_dry_run_changes_nothing(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    """Style 4: the dry run is compared before/after on the database and the tree."""
    store = scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet")
    db_before = db_snapshot(store.sqlalchemy_url)
    tree_before = list_tree(store.store_root, include_dirs=True)
    files_before = sorted(p.name for p in tmp_path.iterdir())
    report = execute(plan_sweep(str(manifest), store.sqlalchemy_url,
                                SweepOptions(dry_run=True)))
    assert set(report.deleted) == store.candidates and report.dry_run
    assert db_snapshot(store.sqlalchemy_url) == db_before
    assert list_tree(store.store_root, include_dirs=True) == tree_before
    assert sorted(p.name for p in tmp_path.iterdir()) == files_before  # no journal


@pytest.mark.parametrize("mode", ["only-metadata", "only-artifact"])
def test_only_modes(scenario_store: ScenarioStore, tmp_path: Path, mode: str) -> None:
    store = scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet")
    before = list_tree(store.store_root)
    footprints = uri_paths(store, store.all_ids)
    report = execute(plan_sweep(str(manifest), store.sqlalchemy_url, SweepOptions(mode=mode)))
    assert set(report.deleted) == store.candidates
    from scenarios.helpers import integrity_problems
    from sweep_support import version_ids

    assert integrity_problems(store.sqlalchemy_url) == []
    root = str(store.store_root)
    doomed = [str(Path(p).relative_to(root)) for v in store.candidates for p in footprints[v]]
    after = list_tree(store.store_root)
    if mode == "only-metadata":
        assert version_ids(store.sqlalchemy_url) == store.all_ids - store.candidates
        assert after == before  # files kept
    else:
        assert version_ids(store.sqlalchemy_url) == store.all_ids  # rows kept
        for rel in before:
            gone = any(rel == d or rel.startswith(d + "/") for d in doomed)
            assert (rel not in after) if gone else (after[rel] == before[rel])
    # A later full sweep finishes the other half and ends like a plain sweep.
    execute(plan_sweep(str(manifest), store.sqlalchemy_url, SweepOptions()))
    assert_swept(store, store.candidates, before, footprints, load=False)


class _StopAfterCommit(SweepHooks):
    """Stop the sweep once the rows of batch ``batch`` are committed: that batch keeps
    its intent as its last event, its files not yet deleted."""

    def __init__(self, batch: int) -> None:
        self.left = batch

    def point(self, name: str) -> None:
        if name == points.AFTER_COMMIT:
            self.left -= 1
            if self.left == 0:
                raise _Stopped


class _Stopped(Exception):
    pass


def test_a_sweep_resumes_a_journal_written_before_item_kinds(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    """A sweep interrupted under a release from before item kinds: its journal has no
    item columns. This release's status, plan and review read it, and its sweep
    finishes the job, appending segments with item columns."""
    store = scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet")
    before = list_tree(store.store_root)
    footprints = uri_paths(store, store.all_ids)
    size = 3
    assert len(store.candidates) > 2 * size
    with pytest.raises(_Stopped):
        execute(plan_sweep(str(manifest), store.sqlalchemy_url, SweepOptions(batch_size=size)),
                hooks=_StopAfterCommit(batch=2))
    old_segments = rewrite_journal_as_before_item_kinds(manifest)
    assert old_segments >= 3
    status = sweep_status(str(manifest)).as_dict()
    assert (status["done"], status["in_progress"], status["pending"]) == (
        size, size, len(store.candidates) - 2 * size)
    plan = plan_sweep(str(manifest), store.sqlalchemy_url, SweepOptions(batch_size=size))
    assert (plan.versions, plan.resuming) == (len(store.candidates) - size, size)
    assert set(plan.items.column("item_id").to_pylist()) <= store.candidates
    with open_review(str(manifest)) as review:
        progress = sweep_progress(review)
    assert (progress.state, progress.by_state["deleted"]) == ("partial", size)
    report = execute(plan)
    assert len(report.deleted) == len(store.candidates) - size and not report.failures
    assert_swept(store, store.candidates, before, footprints)
    final = sweep_status(str(manifest)).as_dict()
    assert final["done"] == len(store.candidates) and final["remaining"] == 0
    segments = sorted(Path(str(manifest) + ".journal").glob("*.parquet"))
    names = [pq.read_schema(s).names for s in segments]
    assert names[:old_segments] == [JOURNAL_COLUMNS_BEFORE_ITEM_KINDS] * old_segments
    assert all({"item_kind", "item_id"} <= set(n) for n in names[old_segments:])
    assert plan_sweep(str(manifest), store.sqlalchemy_url, SweepOptions()).versions == 0
