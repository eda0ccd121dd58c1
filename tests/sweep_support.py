"""Helpers for the sweep tests: marking a scenario store, snapshots, ZenML subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.run import mark
from scenarios.helpers import ScenarioStore, integrity_problems, list_tree, make_engine

ZENML_SCRIPT = Path(__file__).with_name("sweep_zenml.py")
GC = str(Path(sys.executable).with_name("gc"))

#: The sweep journal's columns, in order, as releases from before item kinds wrote them.
JOURNAL_COLUMNS_BEFORE_ITEM_KINDS = ["sweep_id", "batch", "seq", "artifact_version_id", "event",
                                     "mode", "bytes", "error", "at", "reason", "files"]

#: Columns that change on their own (timestamps ZenML bumps); everything else compares.
_VOLATILE = {"updated", "last_login", "expires"}


def mark_store(store: ScenarioStore, out: Path, **options: Any) -> Path:
    options.setdefault("older_than", timedelta(0))
    options.setdefault("sizes", True)
    if store.backend == "mysql":
        # A MySQL store does not say which ZenML config dir its default local artifact
        # store hangs off; name the root as a user would.
        options.setdefault("store_roots", {store.artifact_store_id: str(store.store_root)})
    mark(store.sqlalchemy_url, str(out), MarkOptions(**options))
    return out


def zenml(store: ScenarioStore, *args: str, timeout: float = 240) -> dict[str, Any]:
    """Run ``sweep_zenml.py`` against ``store`` in a subprocess; return its JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env.update(store.env())
    proc = subprocess.run([sys.executable, str(ZENML_SCRIPT), *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"sweep_zenml.py {args} failed:\n{proc.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def db_snapshot(db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (volatile timestamp columns left out), sorted."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            snapshot = {}
            for table in sorted(sa.inspect(conn).get_table_names()):
                meta = sa.Table(table, sa.MetaData(), autoload_with=conn)
                cols = [c for c in meta.c if c.name not in _VOLATILE]
                rows = conn.execute(sa.select(*cols)).all()
                snapshot[table] = sorted(tuple(map(repr, r)) for r in rows)
            return snapshot
    finally:
        engine.dispose()


def version_ids(db_url: str) -> set[str]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return {str(r[0]) for r in conn.execute(sa.text("SELECT id FROM artifact_version"))}
    finally:
        engine.dispose()


def uri_paths(store: ScenarioStore, ids: set[str]) -> dict[str, list[str]]:
    """The footprint (uri + visualization uris) of every id, from expected + the DB."""
    engine = make_engine(store.sqlalchemy_url)
    out: dict[str, list[str]] = {vid: [store.versions[vid]["uri"]] for vid in ids}
    try:
        with engine.connect() as conn:
            for vid, uri in conn.execute(
                sa.text("SELECT artifact_version_id, uri FROM artifact_visualization")
            ):
                if vid in out:
                    out[vid].append(uri)
    finally:
        engine.dispose()
    return out


def assert_swept(store: ScenarioStore, deleted: set[str], before_tree: dict[str, int],
                 footprints: dict[str, list[str]], *, load: bool = True) -> None:
    """The integrity check every sweep test ends with.

    - exactly ``deleted`` is gone from the database, nothing else;
    - no dangling row (foreign keys and the polymorphic tables);
    - the deleted versions' paths are gone, and every other file is intact;
    - ZenML's own client loads every remaining version.
    """
    remaining = version_ids(store.sqlalchemy_url)
    assert remaining == store.all_ids - deleted
    assert integrity_problems(store.sqlalchemy_url) == []
    after = list_tree(store.store_root)
    root = str(store.store_root)
    gone_prefixes = [
        os.path.relpath(p, root) for vid in deleted for p in footprints[vid]
    ]
    for rel, size in before_tree.items():
        doomed = any(rel == g or rel.startswith(g + "/") for g in gone_prefixes)
        if doomed:
            assert rel not in after, f"{rel} of a deleted version is still there"
        else:
            assert after.get(rel) == size, f"{rel} was lost or changed"
    for path in store.expected["unmanaged_paths"]:
        assert Path(path).exists()
    if load:
        result = zenml(store, "load")
        assert result["failed"] == {}
        assert result["loaded"] == len(remaining)


def rewrite_journal_as_before_item_kinds(manifest: Path) -> int:
    """Rewrite every segment of ``manifest``'s journal as a release from before item
    kinds wrote it: its columns, in its order, nothing else. Returns the number of
    segments."""
    import pyarrow.parquet as pq

    segments = sorted(Path(str(manifest) + ".journal").glob("*.parquet"))
    for segment in segments:
        table = pq.read_table(segment)
        assert table.column("item_kind").to_pylist() == ["artifact_version"] * table.num_rows
        pq.write_table(table.select(JOURNAL_COLUMNS_BEFORE_ITEM_KINDS), segment)
    return len(segments)
