"""Run metadata shared between resources, swept in many batches on SQLite.

A ``run_metadata`` row goes once no ``run_metadata_resource`` row links it any more.
On SQLite the sweep counts the links from one kept read of the link table (its
``run_metadata_id`` has no index) and takes off the rows each batch deletes; these
tests pin that the counts stay exact from batch to batch, and that a commit by another
connection between batches (a ZenML server at work) makes the sweep read afresh.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from artifact_gc.demo.synthetic import SyntheticSpec, populate
from artifact_gc.demo.synthetic.schema import create_sqlite_store
from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.run import mark
from artifact_gc.sweep.execute import execute
from artifact_gc.sweep.hooks import AFTER_COMMIT, SweepHooks
from artifact_gc.sweep.options import SweepOptions
from artifact_gc.sweep.plan import plan_sweep, sweep_order


class _Writer(SweepHooks):
    """After each batch's commit, another connection inserts and commits a row."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)

    def point(self, name: str) -> None:
        if name == AFTER_COMMIT:
            with self.engine.begin() as connection:
                connection.execute(sa.text(
                    "INSERT INTO tag (id, name, color, \"exclusive\", created, updated) "
                    "VALUES (:i, :n, 'grey', 0, '2026-01-01', '2026-01-01')"),
                    {"i": uuid.uuid4().hex, "n": uuid.uuid4().hex})


def _link(connection: sa.Connection, metadata_id: str, resource_id: str,
          resource_type: str) -> None:
    connection.execute(sa.text(
        "INSERT INTO run_metadata_resource (id, resource_id, resource_type, run_metadata_id) "
        "VALUES (:i, :r, :t, :m)"),
        {"i": uuid.uuid4().hex, "r": resource_id, "t": resource_type, "m": metadata_id})


def _metadata(connection: sa.Connection) -> str:
    metadata_id = uuid.uuid4().hex
    user, project = connection.execute(sa.text(
        "SELECT user_id, project_id FROM run_metadata LIMIT 1")).one()
    connection.execute(sa.text(
        "INSERT INTO run_metadata (id, created, updated, user_id, project_id, key, value, "
        "type) VALUES (:i, '2026-01-01', '2026-01-01', :u, :p, 'shared', '1', 'int')"),
        {"i": metadata_id, "u": user, "p": project})
    return metadata_id


@pytest.mark.parametrize("other_writer", [False, True])
def test_shared_run_metadata_goes_with_its_last_link(tmp_path: Path,
                                                     other_writer: bool) -> None:
    url = create_sqlite_store(tmp_path / "zenml.db")
    populate(url, SyntheticSpec(versions=120, store_root=str(tmp_path / "root"),
                                orphan_share=0.5, recent_share=0.0, seed=5))
    manifest = tmp_path / "mark.parquet"
    mark(url, str(manifest), MarkOptions(older_than=timedelta(0)))
    order = sweep_order(str(manifest), url)
    first, last = order[0], order[-1]
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        live_step = connection.execute(sa.text("SELECT id FROM step_run LIMIT 1")).scalar_one()
        # Linked to the first and the last candidate: it goes with the last batch.
        both = _metadata(connection)
        _link(connection, both, first, "artifact_version")
        _link(connection, both, last, "artifact_version")
        # Linked to a candidate and to a live step run: it stays, with the step's link.
        kept = _metadata(connection)
        _link(connection, kept, first, "artifact_version")
        _link(connection, kept, live_step, "step_run")
    plan = plan_sweep(str(manifest), url, SweepOptions(batch_size=7))
    hooks = _Writer(url) if other_writer else SweepHooks()
    report = execute(plan, hooks=hooks)
    assert len(report.deleted) == len(order) and not report.failures
    with engine.connect() as connection:
        metadata = {row[0] for row in connection.execute(sa.text("SELECT id FROM run_metadata"))}
        links = connection.execute(sa.text(
            "SELECT resource_id, resource_type, run_metadata_id FROM run_metadata_resource"
        )).all()
        versions = {row[0] for row in connection.execute(sa.text(
            "SELECT id FROM artifact_version"))}
    engine.dispose()
    assert both not in metadata
    assert kept in metadata
    assert [(r, t) for r, t, m in links if m == kept] == [(live_step, "step_run")]
    # Nothing dangles: every link names a metadata row and, for a version, a version.
    assert all(m in metadata for _, _, m in links)
    assert all(r in versions for r, t, _ in links if t == "artifact_version")
    # Every metadata row a swept version owned alone went with it.
    linked = {m for _, _, m in links}
    synthetic_left = {m for m in metadata if m != kept}
    assert synthetic_left <= linked
