"""Benchmark stores: ZenML's own migrations create the schema, then bulk inserts.

Pristine stores are made once per size and cached under the bench directory; each
destructive benchmark side works on its own copy, so both sides of a comparison
start from identical stores.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from artifact_gc.demo.synthetic import SyntheticSpec, populate
from generate_store import create_schema_with_zenml

MARIADB_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/"
#: Not the tests' ``zenml`` user: each side sets its own password, and a shared user
#: would have one side lock the other out.
MARIADB_USER, MARIADB_PASSWORD = "gcbench", "artifact-gc-bench-pw"


@dataclass(frozen=True)
class BenchStore:
    url: str
    root: str
    versions: int
    orphans: int
    directory: Path


def _populate(url: str, versions: int, root: str, files: bool, orphan_share: float,
              ids_dir: Path, orphan_files_only: bool = False) -> int:
    ids_dir.mkdir(parents=True, exist_ok=True)
    store = populate(url, SyntheticSpec(
        versions=versions, store_root=root, write_files=files, orphan_share=orphan_share,
        ids_dir=ids_dir, recent_share=0.0, orphan_files_only=orphan_files_only,
    ))
    return int(store.counts["orphans"])


def sqlite_store(base: Path, versions: int, *, files: bool = False,
                 orphan_share: float = 0.3, orphan_files_only: bool = False) -> BenchStore:
    """A cached SQLite store of ``versions`` versions (with files under root if asked:
    every version's, or with ``orphan_files_only`` the orphans' alone)."""
    kind = ("-orphanfiles" if orphan_files_only else "-files") if files else ""
    name = f"sqlite-{versions}{kind}-{int(orphan_share * 100)}"
    directory = base / name
    db = directory / "zenml.db"
    root = directory / "root"
    done = directory / "orphans.count"
    if not done.exists():
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        url = f"sqlite:///{db}"
        print(f"[stores] creating {name} (ZenML migrations, then bulk inserts)", flush=True)
        create_schema_with_zenml(url, sys.executable)
        orphans = _populate(url, versions, str(root), files, orphan_share, directory / "ids",
                            orphan_files_only)
        done.write_text(str(orphans))
    return BenchStore(f"sqlite:///{db}", str(root), versions, int(done.read_text()), directory)


def sqlite_copy(store: BenchStore, destination: Path) -> BenchStore:
    """An identical copy: the database file, and the files tree as hard links."""
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    shutil.copy(store.directory / "zenml.db", destination / "zenml.db")
    root = Path(store.root)
    copy_root = destination / "root"
    if root.exists():
        # Hard links: deleting a link in the copy leaves the pristine tree intact.
        subprocess.run(["cp", "-al", str(root), str(copy_root)], check=True)
    db = destination / "zenml.db"
    # The copy's rows name the pristine root; point its store component at the copy.
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.begin() as connection:
        connection.execute(sa.text(
            "UPDATE artifact_version SET uri = replace(uri, :old, :new)"
        ), {"old": str(root) + "/", "new": str(copy_root) + "/"})
        connection.execute(sa.text(
            "UPDATE artifact_visualization SET uri = replace(uri, :old, :new)"
        ), {"old": str(root) + "/", "new": str(copy_root) + "/"})
        rows = connection.execute(sa.text(
            "SELECT id, configuration FROM stack_component WHERE type = 'artifact_store'"
        )).all()
        import base64
        import json
        for component_id, raw in rows:
            config = json.loads(base64.b64decode(raw))
            if config.get("path") == str(root):
                config["path"] = str(copy_root)
                connection.execute(
                    sa.text("UPDATE stack_component SET configuration = :c WHERE id = :i"),
                    {"c": base64.b64encode(json.dumps(config).encode()), "i": component_id},
                )
    engine.dispose()
    return BenchStore(f"sqlite:///{db}", str(copy_root), store.versions, store.orphans,
                      destination)


def _mariadb_admin() -> sa.Engine:
    return sa.create_engine(MARIADB_ADMIN)


def mariadb_store(base: Path, versions: int, *, root: str | None = None,
                  orphan_share: float = 0.3, files: bool = False,
                  database: str | None = None) -> BenchStore:
    """A cached MariaDB store (database ``gcbench_<versions>``) on 127.0.0.1:3306,
    with its files under ``root`` if ``files``."""
    database = database or f"gcbench_{versions}"
    directory = base / ("mariadb-" + database.removeprefix("gcbench_"))
    done = directory / "orphans.count"
    url = f"mysql+pymysql://{MARIADB_USER}:{MARIADB_PASSWORD}@127.0.0.1:3306/{database}"
    root = root or str(directory / "root")
    admin = _mariadb_admin()
    with admin.begin() as connection:
        exists = connection.execute(sa.text(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = :d"
        ), {"d": database}).scalar()
    if not done.exists() or not exists:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {database}"))
            connection.execute(sa.text(f"CREATE DATABASE {database}"))
            for host in ("%", "localhost"):
                connection.execute(sa.text(
                    f"CREATE USER IF NOT EXISTS '{MARIADB_USER}'@'{host}' "
                    f"IDENTIFIED BY '{MARIADB_PASSWORD}'"))
                connection.execute(sa.text(
                    f"GRANT ALL ON *.* TO '{MARIADB_USER}'@'{host}'"))
        print(f"[stores] creating MariaDB {database}", flush=True)
        create_schema_with_zenml(url, sys.executable)
        orphans = _populate(url, versions, root, files, orphan_share, directory / "ids")
        done.write_text(str(orphans))
    admin.dispose()
    return BenchStore(url, root, versions, int(done.read_text()), directory)
