"""The sample store ``gc demo`` collects: a ZenML config directory with a populated
SQLite store, its files, and one orphan whose directory holds a live version's."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from artifact_gc.demo.synthetic.encoding import dashed, local_path, new_id, timestamp
from artifact_gc.demo.synthetic.populate import populate
from artifact_gc.demo.synthetic.schema import create_sqlite_store
from artifact_gc.demo.synthetic.spec import SyntheticSpec, SyntheticStore
from artifact_gc.demo.synthetic.vocabulary import KINDS


def build_demo_store(directory: Path, *, versions: int = 2000, seed: int = 7) -> SyntheticStore:
    """A realistic sample store for ``gc demo``, laid out like a ZenML config directory.

    ``<directory>/zenml/local_stores/default_zen_store/zenml.db`` holds the database
    (from the schema snapshot); the artifact store is a local component with ZenML's
    default configuration ``{}``, so its root is ``<directory>/zenml/local_stores/<id>``.
    Files are written. Besides what ``populate`` makes (recent, preexisting, model-only
    and JSON-only versions), one orphan's directory contains a live version's directory.
    """
    directory = Path(directory).resolve()
    config_dir = directory / "zenml"
    rng = random.Random(seed)
    store_id = new_id(rng)
    root = config_dir / "local_stores" / dashed(store_id)
    url = create_sqlite_store(config_dir / "local_stores" / "default_zen_store" / "zenml.db")
    spec = SyntheticSpec(
        versions=versions,
        artifacts=max(1, versions // 10),
        projects=["default"],
        age_days=60,
        recent_share=0.02,
        store_root=str(root),
        root_in_configuration=False,
        write_files=True,
        seed=seed,
        preexisting_share=0.005,
        model_only_share=0.02,
        artifact_store_id=store_id,
    )
    store = populate(url, spec)
    nested = _add_nested_orphan(store, rng)
    store.counts["versions"] += 1
    store.counts["orphans"] += 1
    return SyntheticStore(
        url=store.url,
        store_root=store.store_root,
        artifact_store_id=store.artifact_store_id,
        project_ids=store.project_ids,
        counts=store.counts,
        orphan_ids=store.orphan_ids | {nested},
        live_ids=store.live_ids,
        recent_ids=store.recent_ids,
        preexisting_ids=store.preexisting_ids,
        nested_orphan_ids=frozenset({nested}),
    )


def _add_nested_orphan(store: SyntheticStore, rng: random.Random) -> str:
    """Add an orphan whose URI is a parent directory of a live version's URI.

    A live step-output version is moved under the orphan's directory (rows and files),
    so deleting the orphan's directory recursively would destroy live data.
    """
    engine = sa.create_engine(store.url)
    try:
        with engine.begin() as conn:
            live = _first_live_output(conn)
            orphan_uri = f"{store.store_root}/shared_outputs/{dashed(new_id(rng))}"
            new_live_uri = f"{orphan_uri}/{live.uri.rsplit('/', 1)[-1]}"
            orphan_id = _insert_orphan(conn, store, rng, live, orphan_uri)
            _move_live_rows(conn, live, new_live_uri)
    finally:
        engine.dispose()
    old_path, new_path = Path(local_path(live.uri)), Path(local_path(new_live_uri))
    new_path.parent.mkdir(parents=True, exist_ok=True)
    old_path.rename(new_path)
    (new_path.parent / "data.json").write_text('{"synthetic": "nested orphan"}\n')
    (new_path.parent / "artifact.bin").write_bytes(b"orphan\n")
    return orphan_id


def _first_live_output(conn: sa.Connection) -> sa.Row[Any]:
    """The live step-output version with the smallest id."""
    return conn.execute(
        sa.text(
            "SELECT av.id, av.uri, av.artifact_id, av.project_id, av.user_id "
            "FROM artifact_version av JOIN step_run_output_artifact o "
            "ON o.artifact_id = av.id WHERE av.save_type = 'step_output' "
            "ORDER BY av.id LIMIT 1"
        )
    ).one()


def _insert_orphan(
    conn: sa.Connection, store: SyntheticStore, rng: random.Random, live: sa.Row[Any], uri: str
) -> str:
    """An orphaned step-output version at ``uri`` (another artifact of ``live``'s project,
    next version number), with its visualization; returns its id."""
    artifact_id = conn.execute(
        sa.text("SELECT id FROM artifact WHERE project_id = :p AND id != :a ORDER BY id LIMIT 1"),
        {"p": live.project_id, "a": live.artifact_id},
    ).scalar_one()
    number = conn.execute(
        sa.text(
            "SELECT COALESCE(MAX(version_number), 0) + 1 FROM artifact_version "
            "WHERE artifact_id = :a"
        ),
        {"a": artifact_id},
    ).scalar_one()
    created = timestamp(datetime.now(UTC).replace(tzinfo=None) - timedelta(days=20))
    orphan_id = new_id(rng)
    conn.execute(
        sa.text(
            "INSERT INTO artifact_version (id, created, updated, version, version_number,"
            " type, uri, materializer, data_type, save_type, content_hash, artifact_id,"
            " artifact_store_id, user_id, project_id) VALUES (:id, :c, :c, :v, :n,"
            " :type, :uri, :m, :d, 'step_output', :h, :a, :s, :u, :p)"
        ),
        {
            "id": orphan_id,
            "c": created,
            "v": str(number),
            "n": number,
            "type": KINDS[1][0],
            "uri": uri,
            "m": KINDS[1][1],
            "d": KINDS[1][2],
            "h": f"{rng.getrandbits(128):032x}",
            "a": artifact_id,
            "s": store.artifact_store_id,
            "u": live.user_id,
            "p": live.project_id,
        },
    )
    conn.execute(
        sa.text(
            "INSERT INTO artifact_visualization (id, created, updated, type, uri,"
            " artifact_version_id) VALUES (:id, :c, :c, 'json', :uri, :v)"
        ),
        {"id": new_id(rng), "c": created, "uri": f"{uri}/data.json", "v": orphan_id},
    )
    return orphan_id


def _move_live_rows(conn: sa.Connection, live: sa.Row[Any], new_uri: str) -> None:
    """Point ``live``'s version and visualization rows at ``new_uri``."""
    for table in ("artifact_version", "artifact_visualization"):
        column = "id" if table == "artifact_version" else "artifact_version_id"
        conn.execute(
            sa.text(f"UPDATE {table} SET uri = :new || substr(uri, :n) WHERE {column} = :id"),
            {"new": new_uri, "n": len(live.uri) + 1, "id": live.id},
        )
