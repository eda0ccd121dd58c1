"""Synthetic stores: ZenML's real schema, consistent rows, and the truth they report.

The schema snapshot is compared against a store that ZenML 0.98.0 creates itself, and a
populated store is read back by ZenML's own client, so neither the schema nor the row
values can drift into an imitation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from artifact_gc.demo.synthetic import (
    SyntheticSpec,
    SyntheticStore,
    build_demo_store,
    create_sqlite_store,
    populate,
    schema_sql,
)
from scenarios.helpers import integrity_problems, to_sqlalchemy_url

REPO = Path(__file__).resolve().parent.parent
SNAPSHOT_SCRIPT = REPO / "scripts" / "snapshot_zenml_schema.py"

#: Rows that belong to a version (they die with it) rather than keep it alive.
OWNED_BY_VERSION = {"artifact_visualization"}

HEX32 = re.compile(r"^[0-9a-f]{32}$")
ZENML_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$")


def _zenml_env(config: Path, store_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env.update(
        ZENML_CONFIG_PATH=str(config),
        ZENML_ANALYTICS_OPT_IN="false",
        ZENML_LOGGING_VERBOSITY="ERROR",
        ZENML_ENABLE_RICH_TRACEBACK="false",
        AUTO_OPEN_DASHBOARD="false",
    )
    if store_url:
        env["ZENML_STORE_URL"] = store_url
    return env


def _run_zenml(code: str, config: Path, store_url: str | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=_zenml_env(config, store_url),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def _references(engine: sa.Engine) -> list[tuple[str, str]]:
    """Every (table, column) with a foreign key into artifact_version, by reflection."""
    insp = sa.inspect(engine)
    refs = []
    for table in insp.get_table_names():
        for fk in insp.get_foreign_keys(table):
            if fk["referred_table"] == "artifact_version":
                refs.extend((table, col) for col in fk["constrained_columns"])
    return refs


def _referenced_ids(engine: sa.Engine) -> dict[str, set[str]]:
    """Version ids named by each reference table (FK tables, tags, step config JSON)."""
    found: dict[str, set[str]] = {}
    with engine.connect() as conn:
        for table, column in _references(engine):
            if table in OWNED_BY_VERSION:
                continue
            rows = conn.execute(sa.text(f"SELECT {column} FROM {table}"))
            found.setdefault(table, set()).update(r[0] for r in rows)
        found["tag_resource"] = {
            r[0]
            for r in conn.execute(
                sa.text(
                    "SELECT resource_id FROM tag_resource WHERE resource_type = 'artifact_version'"
                )
            )
        }
        json_ids: set[str] = set()
        for (config,) in conn.execute(sa.text("SELECT config FROM step_configuration")):
            externals = json.loads(config)["step_config_overrides"]["external_input_artifacts"]
            json_ids.update(v["id"].replace("-", "") for v in externals.values())
        found["step_configuration.config"] = json_ids
    return found


def _versions(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {
            r.id: dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM artifact_version"))
        }


def _link_rows(counts: dict[str, int]) -> int:
    return sum(
        counts.get(t, 0)
        for t in (
            "step_run_input_artifact",
            "step_run_output_artifact",
            "model_versions_artifacts",
            "pipeline_run_output",
        )
    )


# ---------------------------------------------------------------------------
# Schema snapshot


@pytest.fixture(scope="session")
def zenml_sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine store made by ZenML 0.98.0 itself (default rows included)."""
    pytest.importorskip("zenml")
    config = tmp_path_factory.mktemp("zenml-made") / "zenml"
    _run_zenml("from zenml.client import Client; Client().zen_store", config)
    db = config / "local_stores" / "default_zen_store" / "zenml.db"
    assert db.is_file()
    return db


def test_snapshot_matches_zenml(tmp_path: Path) -> None:
    pytest.importorskip("zenml")
    out = tmp_path / "schema.sql"
    subprocess.run(
        [sys.executable, str(SNAPSHOT_SCRIPT), "--output", str(out)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.read_text() == schema_sql(), (
        "the shipped schema snapshot differs from what ZenML creates; "
        "rerun scripts/snapshot_zenml_schema.py"
    )


def test_snapshot_replays_to_zenml_schema(tmp_path: Path, zenml_sqlite_store: Path) -> None:
    url = create_sqlite_store(tmp_path / "replayed.db")

    def objects(url: str) -> list[tuple[str, str, str | None]]:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                return [
                    tuple(r)
                    for r in conn.execute(
                        sa.text("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
                    )
                ]
        finally:
            engine.dispose()

    assert objects(url) == objects(f"sqlite:///{zenml_sqlite_store}")
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
            ("0.98.0",)
        ]
        # No default rows: the generator brings its own.
        for table in ("user", "project", "stack", "stack_component", "flavor"):
            assert conn.execute(sa.text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one() == 0
    engine.dispose()


def test_create_sqlite_store_refuses_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(b"")
    with pytest.raises(FileExistsError):
        create_sqlite_store(path)


# ---------------------------------------------------------------------------
# Populated SQLite stores


SMALL = SyntheticSpec(
    versions=3000,
    artifacts=200,
    projects=["default", "team-b"],
    age_days=30,
    recent_share=0.02,
    seed=3,
)


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStore:
    tmp = tmp_path_factory.mktemp("small")
    spec = SyntheticSpec(**{**SMALL.__dict__, "store_root": str(tmp / "root")})
    return populate(create_sqlite_store(tmp / "store.db"), spec)


def test_foreign_keys_hold(small_store: SyntheticStore) -> None:
    engine = sa.create_engine(small_store.url)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
        assert conn.exec_driver_sql("PRAGMA integrity_check").all() == [("ok",)]
        # The generation-time pragmas are not left behind.
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "delete"
    engine.dispose()
    assert integrity_problems(small_store.url) == []


def test_counts_match_spec(small_store: SyntheticStore) -> None:
    spec = SMALL
    engine = sa.create_engine(small_store.url)
    versions = _versions(engine)
    counts = small_store.counts
    assert len(versions) == counts["versions"] == spec.versions
    assert len(small_store.orphan_ids) == counts["orphans"]
    assert abs(counts["orphans"] - spec.orphan_share * spec.versions) <= len(spec.projects)
    assert small_store.orphan_ids | small_store.live_ids == set(versions)
    assert not small_store.orphan_ids & small_store.live_ids
    links = _link_rows(counts)
    assert abs(links / spec.versions - spec.links_per_version) < 0.1
    with engine.connect() as conn:
        for table in ("step_run_input_artifact", "step_run_output_artifact", "artifact"):
            n = conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
            assert n == counts[table]
        n_artifacts = conn.execute(
            sa.text("SELECT COUNT(*) FROM artifact WHERE has_custom_name = 1")
        ).scalar_one()
        assert n_artifacts == spec.artifacts
        per_artifact = conn.execute(
            sa.text(
                "SELECT MIN(c) FROM (SELECT COUNT(*) c FROM artifact_version "
                "WHERE save_type != 'external' GROUP BY artifact_id) t"
            )
        ).scalar_one()
        assert per_artifact >= 5
        projects = dict(
            conn.execute(
                sa.text(
                    "SELECT p.name, COUNT(*) FROM artifact_version av "
                    "JOIN project p ON p.id = av.project_id GROUP BY p.name"
                )
            ).all()
        )
        assert projects == {"default": 1500, "team-b": 1500}
        statuses = {r[0] for r in conn.execute(sa.text("SELECT DISTINCT status FROM step_run"))}
        assert statuses == {"completed"}
        save_types = dict(
            conn.execute(
                sa.text("SELECT save_type, COUNT(*) FROM artifact_version GROUP BY save_type")
            ).all()
        )
    engine.dispose()
    assert set(save_types) == {"step_output", "manual", "preexisting", "external"}
    assert save_types["step_output"] > 0.7 * spec.versions
    assert set(small_store.preexisting_ids) == {
        v for v, row in versions.items() if row["save_type"] == "preexisting"
    }
    for vid, row in versions.items():
        assert HEX32.match(vid)
        assert ZENML_TIMESTAMP.match(str(row["created"])), row["created"]
        assert row["uri"].startswith(small_store.store_root + "/")
        assert row["artifact_store_id"] == small_store.artifact_store_id
    # Recent versions are the ones younger than a day, and there are a few.
    assert abs(len(small_store.recent_ids) - spec.recent_share * spec.versions) <= 2
    assert small_store.expected_candidates < small_store.orphan_ids


def test_orphans_have_no_reference_and_live_ones_do(small_store: SyntheticStore) -> None:
    engine = sa.create_engine(small_store.url)
    refs = _references(engine)
    # Reflection finds ZenML 0.98's reference tables; the check below uses all of them.
    assert {t for t, _ in refs} >= {
        "step_run_input_artifact",
        "step_run_output_artifact",
        "model_versions_artifacts",
        "pipeline_run_output",
        "hook_invocation_output_artifact",
    }
    found = _referenced_ids(engine)
    engine.dispose()
    referenced = set().union(*found.values())
    for source, ids in found.items():
        assert not ids & small_store.orphan_ids, f"orphans referenced by {source}"
    assert small_store.live_ids <= referenced
    # The cases ZenML's own prune gets wrong are present.
    step_linked = found["step_run_input_artifact"] | found["step_run_output_artifact"]
    assert found["model_versions_artifacts"] - step_linked
    assert found["step_configuration.config"] - step_linked - found["model_versions_artifacts"]
    assert found["pipeline_run_output"]


def test_storage_configuration_for_remote_root(tmp_path: Path) -> None:
    spec = SyntheticSpec(versions=200, store_root="s3://bucket/some/prefix", seed=5)
    store = populate(create_sqlite_store(tmp_path / "s3.db"), spec)
    engine = sa.create_engine(store.url)
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT type, flavor, configuration FROM stack_component WHERE id = :i"),
            {"i": store.artifact_store_id},
        ).one()
        uris = [r[0] for r in conn.execute(sa.text("SELECT uri FROM artifact_version"))]
    engine.dispose()
    assert row.type == "artifact_store" and row.flavor == "s3"
    assert json.loads(base64.b64decode(row.configuration)) == {"path": "s3://bucket/some/prefix"}
    assert all(u.startswith("s3://bucket/some/prefix/") for u in uris)


def test_files_exist_for_local_root(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    spec = SyntheticSpec(versions=400, store_root=str(root), write_files=True, seed=11)
    store = populate(create_sqlite_store(tmp_path / "files.db"), spec)
    engine = sa.create_engine(store.url)
    with engine.connect() as conn:
        uris = [r[0] for r in conn.execute(sa.text("SELECT uri FROM artifact_version"))]
        vis = [r[0] for r in conn.execute(sa.text("SELECT uri FROM artifact_visualization"))]
        config = conn.execute(
            sa.text("SELECT configuration, flavor FROM stack_component WHERE id = :i"),
            {"i": store.artifact_store_id},
        ).one()
    engine.dispose()
    assert json.loads(base64.b64decode(config[0])) == {"path": str(root)}
    assert config[1] == "local"
    assert len(uris) == len(vis) == 400
    for uri in uris:
        assert sorted(p.name for p in Path(uri).iterdir()).__len__() == 2, uri
    for uri in vis:
        assert Path(uri).is_file(), uri
    step_output = [
        u
        for u in uris
        if "/custom_artifacts/" not in u
        and "/user_data/" not in u
        and "/external_artifacts/" not in u
    ]
    # <root>/<step>/<output>/<step_run uuid>/<8 hex>
    for uri in step_output:
        parts = Path(uri).relative_to(root).parts
        assert len(parts) == 4 and re.match(r"^[0-9a-f]{8}$", parts[3]), uri


def test_orphan_files_only_writes_the_orphans_directories(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    spec = SyntheticSpec(versions=400, store_root=str(root), write_files=True, seed=11,
                         orphan_files_only=True)
    store = populate(create_sqlite_store(tmp_path / "files.db"), spec)
    engine = sa.create_engine(store.url)
    with engine.connect() as conn:
        uris = dict(conn.execute(sa.text("SELECT id, uri FROM artifact_version")).all())
    engine.dispose()
    assert store.orphan_ids and store.live_ids
    for version_id in store.orphan_ids:
        assert len(list(Path(uris[version_id]).iterdir())) == 2, version_id
    for version_id in store.live_ids:
        assert not Path(uris[version_id]).exists(), version_id


def test_write_files_refuses_remote_root() -> None:
    with pytest.raises(ValueError):
        populate("sqlite://", SyntheticSpec(versions=1, store_root="s3://b/p", write_files=True))


def test_demo_store(tmp_path: Path) -> None:
    store = build_demo_store(tmp_path, versions=1000)
    root = Path(store.store_root)
    assert root.parent == tmp_path.resolve() / "zenml" / "local_stores"
    assert root.name.replace("-", "") == store.artifact_store_id
    assert store.url.endswith("/zenml/local_stores/default_zen_store/zenml.db")
    assert integrity_problems(store.url) == []
    engine = sa.create_engine(store.url)
    versions = _versions(engine)
    with engine.connect() as conn:
        configuration = conn.execute(
            sa.text("SELECT configuration FROM stack_component WHERE id = :i"),
            {"i": store.artifact_store_id},
        ).scalar_one()
    found = _referenced_ids(engine)
    engine.dispose()
    assert json.loads(base64.b64decode(configuration)) == {}
    assert len(versions) == store.counts["versions"] == 1001
    assert store.recent_ids and store.preexisting_ids and store.nested_orphan_ids
    (nested,) = store.nested_orphan_ids
    nested_uri = versions[nested]["uri"]
    inside = [v for v, row in versions.items() if row["uri"].startswith(nested_uri + "/")]
    assert inside and set(inside) <= store.live_ids
    for vid in [nested, *inside]:
        assert Path(versions[vid]["uri"]).is_dir()
    referenced = set().union(*found.values())
    assert not referenced & store.orphan_ids
    assert store.live_ids <= referenced
    for row in versions.values():
        assert Path(row["uri"]).exists(), row["uri"]


def test_zenml_client_reads_synthetic_store(tmp_path: Path, zenml_sqlite_store: Path) -> None:
    """ZenML's own client lists and hydrates what the generator wrote.

    The store is a copy of one ZenML made: ZenML syncs its flavor rows only when it
    migrates, and it cannot open a store without them (such as a bare snapshot).
    """
    db = tmp_path / "zenml.db"
    shutil.copy(zenml_sqlite_store, db)
    store = populate(
        f"sqlite:///{db}",
        SyntheticSpec(
            versions=300,
            projects=["default", "other"],
            store_root=str(tmp_path / "root"),
            seed=2,
        ),
    )
    assert integrity_problems(store.url) == []
    engine = sa.create_engine(store.url)
    with engine.connect() as conn:
        projects = conn.execute(sa.text("SELECT COUNT(*) FROM project")).scalar_one()
    engine.dispose()
    assert projects == 2  # ZenML's "default" is reused
    some = sorted(store.live_ids)[:3] + sorted(store.orphan_ids)[:3]
    code = f"""
from zenml.client import Client
c = Client()
c.set_active_project("default")
versions = c.list_artifact_versions(size=50, hydrate=True)
assert versions.total == 150, versions.total
for v in versions.items:
    v.uri, v.save_type, v.data_type, v.materializer, v.visualizations, v.run_metadata
unused = c.list_artifact_versions(only_unused=True, size=1).total
for r in c.list_pipeline_runs(size=5, hydrate=True).items:
    r.steps, r.status
for s in c.list_run_steps(size=5, hydrate=True).items:
    s.inputs, s.outputs
for vid in {some!r}:
    c.get_artifact_version(vid, hydrate=True)
c.list_models(size=5)
c.list_tags(size=5)
c.list_snapshots(size=5, hydrate=True)
print("unused", unused)
"""
    out = _run_zenml(code, tmp_path / "zenml-config", store.url)
    unused = int(out.split("unused", 1)[1].split()[0])
    # ZenML's "unused" (no step link) is wider than ours: it also counts the model-only
    # and JSON-only versions that its prune would wrongly delete.
    engine = sa.create_engine(store.url)
    with engine.connect() as conn:
        default_id = store.project_ids["default"]
        in_default = {
            r[0]
            for r in conn.execute(
                sa.text("SELECT id FROM artifact_version WHERE project_id = :p"),
                {"p": default_id},
            )
        }
    found = _referenced_ids(engine)
    engine.dispose()
    step_linked = found["step_run_input_artifact"] | found["step_run_output_artifact"]
    assert unused == len(in_default - step_linked)
    assert unused > len(in_default & store.orphan_ids)


# ---------------------------------------------------------------------------
# Reproducibility: the same spec and seed give the same store, byte for byte

#: Benchmarks compare runs on stores regenerated from a spec and a seed, so a change to
#: what the generator writes must be deliberate: update this digest, and say so.
PINNED_DIGEST = "b55ee8a1ac63ab3444583fbf9d36faba3403022bdc8b0863bb1a43494dcfeec1"
PINNED_NOW = datetime(2025, 6, 1, 12, 0, 0, 123456)


def _store_digest(db: Path, root: Path | None) -> str:
    """SHA-256 over every table's rows (sorted) and, under ``root``, every file's path,
    size and content hash; ``root`` itself is written ``<root>``."""
    digest = hashlib.sha256()
    conn = sqlite3.connect(db)
    try:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        ]
        for table in tables:
            rows = sorted(repr(r) for r in conn.execute(f'SELECT * FROM "{table}"'))
            digest.update(f"{table} {len(rows)}\n".encode())
            for row in rows:
                if root is not None:
                    row = row.replace(str(root), "<root>")
                digest.update(row.encode() + b"\n")
    finally:
        conn.close()
    if root is not None:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            line = f"{path.relative_to(root)} {len(data)} {hashlib.sha256(data).hexdigest()}\n"
            digest.update(line.encode())
    return digest.hexdigest()


def pinned_stores_digest(tmp: Path) -> str:
    """The digest of two small stores: an S3 root over three projects, and a local root
    with files in ZenML's default layout (``{}`` configuration)."""
    remote = SyntheticSpec(
        versions=400,
        projects=["default", "team-b", "team-c"],
        store_root="s3://digest-bucket/store",
        seed=11,
        now=PINNED_NOW,
        json_only_share=0.01,
        preexisting_share=0.02,
        tag_share=0.2,
    )
    populate(create_sqlite_store(tmp / "remote.db"), remote)
    root = tmp / "root"
    local = SyntheticSpec(
        versions=60,
        store_root=str(root),
        root_in_configuration=False,
        write_files=True,
        seed=12,
        now=PINNED_NOW,
        artifact_store_id="0123456789abcdef0123456789abcdef",
    )
    populate(create_sqlite_store(tmp / "local.db"), local)
    return _store_digest(tmp / "remote.db", None) + _store_digest(tmp / "local.db", root)


def test_same_spec_and_seed_give_pinned_store(tmp_path: Path) -> None:
    digest = hashlib.sha256(pinned_stores_digest(tmp_path).encode()).hexdigest()
    assert digest == PINNED_DIGEST, (
        "the generator's output changed; if that is intended, pin the new digest"
    )


# ---------------------------------------------------------------------------
# The collector does not carry the generator


def test_phases_do_not_import_the_generator() -> None:
    """Importing every module of the collector (the CLI included) leaves the synthetic
    store generator unloaded: it is test and benchmark support, and ``gc demo`` loads
    it only when it runs."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import artifact_gc\n"
        "names = ['artifact_gc.demo.run']\n"
        "for pkg in ('zenml', 'metadb', 'mark', 'manifest', 'sweep', 'storage', 'review', 'cli'):\n"
        "    mod = importlib.import_module(f'artifact_gc.{pkg}')\n"
        "    names.append(mod.__name__)\n"
        "    names += [m.name for m in pkgutil.walk_packages(mod.__path__, mod.__name__ + '.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
        "print(sorted(m for m in sys.modules if m.startswith('artifact_gc.demo.synthetic')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    imported, loaded = proc.stdout.splitlines()
    assert int(imported) > 30
    assert loaded == "[]"


# ---------------------------------------------------------------------------
# MariaDB, schema created by ZenML's own migrations


def test_populate_mariadb(mariadb_url_factory: Callable[..., str], tmp_path: Path) -> None:
    pytest.importorskip("zenml")
    zenml_url = mariadb_url_factory("gc_synth")
    _run_zenml("from zenml.client import Client; Client().zen_store", tmp_path / "cfg", zenml_url)
    url = to_sqlalchemy_url(zenml_url)
    spec = SyntheticSpec(versions=2000, projects=["default", "team-b"], store_root="s3://b/p")
    store = populate(url, spec)
    assert integrity_problems(zenml_url) == []
    engine = sa.create_engine(url)
    try:
        assert len(_versions(engine)) == 2000
        found = _referenced_ids(engine)
    finally:
        engine.dispose()
    referenced = set().union(*found.values())
    assert not referenced & store.orphan_ids
    assert store.live_ids <= referenced
    assert abs(_link_rows(store.counts) / spec.versions - spec.links_per_version) < 0.1
