"""Release fixtures: stores made by each ZenML release's own ZenML, restored for a test.

``tests/fixtures/releases/<X>/`` holds ``store.tar.gz`` (a ZenML config dir: the SQLite
store and its tiny local artifact store) and ``expected.json``, both written by
``scripts/build_release_fixtures.py``. Paths inside are those of the build; ``restore``
unpacks into a test's directory and rewrites them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import sqlalchemy as sa

from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.run import mark
from artifact_gc.sweep.execute import execute
from artifact_gc.sweep.options import SweepOptions
from artifact_gc.sweep.plan import plan_sweep
from artifact_gc.zenml.profiles import release_key
from scenarios.helpers import integrity_problems, list_tree, make_engine

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "releases"
ZENML_SCRIPT = Path(__file__).with_name("sweep_zenml.py")
sys.path.insert(0, str(REPO / "scripts"))
from build_release_fixtures import release_python, zenml_env  # noqa: E402

#: Columns holding absolute paths of the build's config dir.
PATH_COLUMNS = (("artifact_version", "uri"), ("artifact_visualization", "uri"), ("logs", "uri"))


def fixture_releases() -> list[str]:
    return sorted((p.name for p in FIXTURES.iterdir() if (p / "expected.json").exists()),
                  key=release_key)


@dataclass
class ReleaseStore:
    release: str
    config_dir: Path
    expected: dict[str, Any]
    sqlalchemy_url: str
    store_root: Path

    @property
    def all_ids(self) -> set[str]:
        return {i for s in self.expected["scenarios"].values() for ids in s.values() for i in ids}

    def ids(self, scenario: str, status: str) -> set[str]:
        return set(self.expected["scenarios"].get(scenario, {}).get(status, []))

    def env(self) -> dict[str, str]:
        env = zenml_env(self.config_dir)
        env["ZENML_STORE_URL"] = zenml_url(self.sqlalchemy_url)
        return env


def zenml_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("mysql+pymysql://", "mysql://")


def restore(release: str, target: Path) -> ReleaseStore:
    """Unpack the fixture of ``release`` under ``target`` with its paths rewritten."""
    source = FIXTURES / release
    expected = json.loads((source / "expected.json").read_text())
    with tarfile.open(source / "store.tar.gz") as archive:
        archive.extractall(target, filter="data")
    config = target / "config"
    old, new = expected["config_dir"], str(config)
    db = config / "local_stores" / "default_zen_store" / "zenml.db"
    url = f"sqlite:///{db}"
    rewrite_paths(url, old, new)
    for yaml in config.glob("*.yaml"):
        yaml.write_text(yaml.read_text().replace(old, new))
    expected["config_dir"] = new
    expected["artifact_store"]["root"] = expected["artifact_store"]["root"].replace(old, new)
    return ReleaseStore(release, config, expected, url, Path(expected["artifact_store"]["root"]))


def rewrite_paths(url: str, old: str, new: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            for table, column in PATH_COLUMNS:
                if table in tables:
                    conn.execute(sa.text(f"UPDATE {table} SET {column} = "
                                         f"replace({column}, :old, :new)"),
                                 {"old": old, "new": new})
    finally:
        engine.dispose()


def mark_release(store: ReleaseStore, out: Path, **options: Any) -> Path:
    options.setdefault("older_than", timedelta(0))
    options.setdefault("sizes", True)
    options.setdefault("store_roots", {store.expected["artifact_store"]["id"]:
                                       str(store.store_root)})
    mark(store.sqlalchemy_url, str(out), MarkOptions(**options))
    return out


def statuses(manifest: Path) -> dict[str, tuple[str, list[str]]]:
    """version id -> (status, reasons) from a manifest."""
    rows = duckdb.sql(
        f"SELECT artifact_version_id, status, reasons FROM read_parquet('{manifest}') "
        "WHERE item_kind = 'artifact_version' OR item_kind IS NULL"
    ).fetchall()
    return {str(v).replace("-", ""): (str(s), list(r or [])) for v, s, r in rows}


def sweep_release(store: ReleaseStore, manifest: Path, **options: Any) -> Any:
    return execute(plan_sweep(str(manifest), store.sqlalchemy_url, SweepOptions(**options)))


def version_ids(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {str(r[0]) for r in conn.execute(sa.text("SELECT id FROM artifact_version"))}
    finally:
        engine.dispose()


def release_integrity_problems(url: str) -> list[str]:
    """``integrity_problems`` plus the run metadata of releases before 0.71, whose
    ``run_metadata`` rows name their resource themselves (no foreign key)."""
    problems = integrity_problems(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            insp = sa.inspect(conn)
            tables = set(insp.get_table_names())
            if "run_metadata" in tables and "resource_type" in {
                    c["name"] for c in insp.get_columns("run_metadata")}:
                for rtype, target in (("artifact_version", "artifact_version"),
                                      ("artifact", "artifact")):
                    rows = conn.execute(sa.text(
                        "SELECT r.resource_id FROM run_metadata r WHERE r.resource_type = :t "
                        f"AND NOT EXISTS (SELECT 1 FROM {target} x WHERE x.id = r.resource_id)"
                    ), {"t": rtype}).all()
                    problems += [f"run_metadata: {rtype} {rid} dangles" for (rid,) in rows]
    finally:
        engine.dispose()
    return problems


def assert_swept(store: ReleaseStore, before_tree: dict[str, int],
                 candidate_paths: list[str]) -> None:
    """Exactly the candidates are gone (rows and files); nothing dangles; every other
    file is intact, the unmanaged ones included."""
    candidates = set(store.expected["candidates"])
    assert version_ids(store.sqlalchemy_url) == store.all_ids - candidates
    assert release_integrity_problems(store.sqlalchemy_url) == []
    after = list_tree(store.store_root)
    root = str(store.store_root)
    gone = [os.path.relpath(p, root) for p in candidate_paths]
    for rel, size in before_tree.items():
        if any(rel == g or rel.startswith(g + "/") for g in gone):
            assert rel not in after, f"{rel} of a deleted version is still there"
        else:
            assert after.get(rel) == size, f"{rel} was lost or changed"
    for rel in store.expected["unmanaged_paths"]:
        assert (store.store_root / rel).exists()


def candidate_paths(manifest: Path) -> list[str]:
    rows = duckdb.sql(f"SELECT uri FROM read_parquet('{manifest}') WHERE status = 'candidate'"
                      ).fetchall()
    return [str(r[0]) for r in rows]


def load_with_release(store: ReleaseStore, release: str, timeout: float = 600) -> dict[str, Any]:
    """Every version loaded by ``release``'s own client (in its cached venv)."""
    python = release_python(release) if release != "current" else Path(sys.executable)
    proc = subprocess.run([str(python), str(ZENML_SCRIPT), "load"], env=store.env(),
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"load with ZenML {release} failed:\n{proc.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def build_release_store(release: str, config_dir: Path, store_url: str | None,
                        timeout: float = 900) -> ReleaseStore:
    """A fresh store made by ``release``'s own ZenML (its cached venv), on SQLite or on
    ``store_url`` (a ZenML MySQL URL)."""
    python = release_python(release)
    config_dir.mkdir(parents=True)
    expected = config_dir.parent / "expected.json"
    env = zenml_env(config_dir)
    if store_url:
        env["ZENML_STORE_URL"] = store_url
    proc = subprocess.run([str(python), str(REPO / "scripts" / "release_fixture_store.py"),
                           str(expected)], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"ZenML {release} store build failed:\n{proc.stderr[-4000:]}"
    data = json.loads(expected.read_text())
    url = (store_url.replace("mysql://", "mysql+pymysql://") if store_url else
           f"sqlite:///{config_dir / 'local_stores' / 'default_zen_store' / 'zenml.db'}")
    return ReleaseStore(release, config_dir, data, url, Path(data["artifact_store"]["root"]))


def upgrade_with_current_zenml(store: ReleaseStore, timeout: float = 600) -> None:
    """Let the ZenML of the test environment migrate the store, as a user's upgrade does."""
    proc = subprocess.run(
        [sys.executable, "-c", "from zenml.client import Client; Client().zen_store"],
        env=store.env(), capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
