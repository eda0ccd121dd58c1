"""Orphan log folders on GCS (gcp-storage-emulator on loopback, through gcsfs).

On a store whose filesystem cannot append (GCS, ``IS_IMMUTABLE_FILESYSTEM``), ZenML
0.98 writes a step's or run's logs as a folder ``logs/<logs_id>/`` of flushes
(``<time>.log``, ``<time>_merged.log``; log_stores/artifact), and the ``logs`` row
names the folder. ``delete_pipeline_run`` cascades the row away and leaves the folder.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from artifact_gc.demo.synthetic import SyntheticSpec, create_sqlite_store, populate
from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.run import mark
from artifact_gc.sweep.execute import execute
from artifact_gc.sweep.options import SweepOptions
from artifact_gc.sweep.plan import plan_sweep
from cloud_support import new_bucket, object_plan
from emulators import GCSEmulator

pytestmark = pytest.mark.gcs


def _log_folder(root_key: str, logs_id: str) -> dict[str, bytes]:
    folder = f"{root_key}/logs/{logs_id}"
    return {f"{folder}/1764570000.25.log": b"step output\n",
            f"{folder}/1764570001.5_merged.log": b"step output\nmore\n"}


def test_a_deleted_runs_log_folder_is_a_candidate_and_a_live_ones_is_kept(
        gcs_emulator: GCSEmulator, tmp_path: Path) -> None:
    bucket = new_bucket(gcs_emulator)
    base = f"gs://{bucket}/"
    root = base + "zenml-store"
    url = create_sqlite_store(tmp_path / "zenml.db")
    store = populate(url, SyntheticSpec(versions=24, orphan_share=0.3, store_root=root,
                                        recent_share=0.0, seed=3))
    live_id, gone_id = str(uuid.uuid4()), str(uuid.uuid4())
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        run_id, project_id = connection.execute(sa.text(
            "SELECT id, project_id FROM pipeline_run LIMIT 1")).one()
        # The live run's logs row names its folder, as ZenML writes it on GCS.
        connection.execute(sa.text(
            "INSERT INTO logs (id, created, updated, uri, source, project_id, "
            "pipeline_run_id, artifact_store_id) VALUES (:id, '2026-01-01 00:00:00', "
            "'2026-01-01 00:00:00', :uri, 'execution', :project, :run, :store)"),
            {"id": live_id.replace("-", ""), "uri": f"{root}/logs/{live_id}",
             "project": project_id, "run": run_id, "store": store.artifact_store_id})
    engine.dispose()
    objects = object_plan(url, base)
    live_logs, gone_logs = _log_folder("zenml-store", live_id), _log_folder("zenml-store", gone_id)
    objects.update(live_logs)
    objects.update(gone_logs)  # a deleted run's folder: its row cascaded away
    gcs_emulator.upload(bucket, objects.items(), threads=8)

    options = gcs_emulator.options()
    manifest = tmp_path / "mark.parquet"
    # The emulator's objects cannot be back-dated: no grace period, so that age is not
    # what keeps the live folder.
    mark(url, str(manifest), MarkOptions(older_than=timedelta(0), orphan_files=True,
                                         storage_options=options))
    rows = {r[0]: r[1:] for r in duckdb.sql(
        f"SELECT item_id, status, orphan_class, file_count, size_bytes FROM '{manifest}' "
        "WHERE item_kind = 'orphan_file'").fetchall()}
    gone_folder, live_folder = f"{root}/logs/{gone_id}", f"{root}/logs/{live_id}"
    assert rows[gone_folder] == ("candidate", "deleted_run_logs", 2,
                                 sum(len(b) for b in gone_logs.values()))
    assert not any(p.startswith(live_folder) for p in rows)  # live: no row at all

    report = execute(plan_sweep(str(manifest), url, SweepOptions(storage_options=options)))
    assert gone_folder in report.deleted and not report.failures
    left = gcs_emulator.listing(bucket)
    assert not any(k in left for k in gone_logs)
    assert all(k in left for k in live_logs)
