"""The sweep's artifact-emptiness check against a version being inserted, on MariaDB.

After a batch deletes the last versions it knows of an artifact, the artifact goes too,
and ``artifact_version.artifact_id`` cascades. A ZenML writer that inserted a new version
of that artifact and has not committed yet is invisible to the check; without a lock on
the artifact row, our DELETE waits for the writer's commit and then cascades its new
version away. The sweep locks the artifact rows FOR UPDATE first: it waits for the
writer, then sees its version, and keeps the artifact.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from artifact_gc.demo.synthetic import SyntheticSpec, populate
from artifact_gc.metadb.dialect import dialect_of
from artifact_gc.sweep.rows import Cascade
from artifact_gc.zenml.schema import VERSION_TABLE, discover
from scenarios.helpers import make_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from generate_store import create_schema_with_zenml  # noqa: E402


@pytest.mark.slow
@pytest.mark.mariadb
def test_a_version_inserted_before_the_artifact_check_keeps_its_artifact(
        mariadb_url_factory: Callable[..., str], tmp_path: Path) -> None:
    url = mariadb_url_factory("releases_race").replace("mysql://", "mysql+pymysql://")
    create_schema_with_zenml(url, sys.executable)
    populate(url, SyntheticSpec(versions=40, store_root=str(tmp_path / "root"),
                                write_files=False, orphan_share=0.5,
                                ids_dir=tmp_path / "ids", recent_share=0.0))
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            artifact = conn.execute(sa.text(
                "SELECT artifact_id FROM artifact_version GROUP BY artifact_id "
                "ORDER BY count(*) DESC LIMIT 1")).scalar_one()
            ids = [str(r[0]) for r in conn.execute(sa.text(
                "SELECT id FROM artifact_version WHERE artifact_id = :a"), {"a": artifact})]
            # The new version's values are read here, not by INSERT ... SELECT, whose
            # shared lock on the source row would hold the sweep back by itself.
            row = dict(conn.execute(sa.text("SELECT * FROM artifact_version WHERE id = :i"),
                                    {"i": ids[0]}).mappings().one())
        schema = discover(engine)
        cascade = Cascade.discover(engine, schema)
        newcomer = uuid.uuid4().hex
        row.update(id=newcomer, version="999999", version_number=999999)
        inserted = threading.Event()
        writer_error: list[BaseException] = []

        def writer() -> None:
            try:
                with engine.connect() as conn:
                    with conn.begin():
                        conn.execute(sa.text(
                            f"INSERT INTO artifact_version ({', '.join(f'`{c}`' for c in row)}) "
                            f"VALUES ({', '.join(f':{c}' for c in row)})"), row)
                        inserted.set()
                        time.sleep(3)  # the sweep's batch runs meanwhile
            except BaseException as exc:  # noqa: BLE001 - reported below
                writer_error.append(exc)
                inserted.set()

        thread = threading.Thread(target=writer)
        thread.start()
        assert inserted.wait(60)
        with dialect_of(engine).locked_transaction(engine, VERSION_TABLE, ids) as conn:
            cascade.delete(conn, ids)
        thread.join(60)
        assert not writer_error, writer_error
        with engine.connect() as conn:
            kept = conn.execute(sa.text("SELECT artifact_id FROM artifact_version WHERE id = :n"),
                                {"n": newcomer}).scalar_one_or_none()
            left = conn.execute(sa.text("SELECT count(*) FROM artifact_version WHERE id IN "
                                        f"({', '.join(repr(i) for i in ids)})")).scalar_one()
        assert left == 0
        assert kept == artifact, "the new version was cascaded away with its artifact"
    finally:
        engine.dispose()
