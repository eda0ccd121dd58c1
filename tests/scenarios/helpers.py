"""Test helpers shared by the fixtures in ``tests/conftest.py`` and by test modules.

Import them with ``from scenarios.helpers import ...`` (``tests/`` is on ``sys.path``
under pytest's default import mode) or take them from ``conftest``.

Everything here talks to real things: the scenario store is built by real ZenML
pipelines in a subprocess (``build_store.py``), databases are queried through
SQLAlchemy, trees are listed through the filesystem or fsspec.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

BUILD_SCRIPT = Path(__file__).with_name("build_store.py")

#: Set to 1 to turn "server not reachable" skips into failures (CI, release checks).
REQUIRE_SERVERS_ENV = "ARTIFACT_GC_REQUIRE_SERVERS"

MARIADB_HOST = "127.0.0.1"
MARIADB_PORT = 3306
MARIADB_ADMIN_USER = "root"
MARIADB_ADMIN_PASSWORD = ""
#: ZenML refuses a MySQL URL without a password, so tests use this user.
MARIADB_USER = "zenml"
MARIADB_PASSWORD = "artifact-gc-test-pw"

#: The environment a scenario build runs with (on top of the caller's environment
#: minus every inherited ``ZENML_*`` variable).
BUILD_ENV = {
    "ZENML_ANALYTICS_OPT_IN": "false",
    "ZENML_DISABLE_STEP_LOGS_STORAGE": "true",
    "ZENML_DISABLE_PIPELINE_LOGS_STORAGE": "true",
    "ZENML_LOGGING_VERBOSITY": "WARN",
    "ZENML_ENABLE_RICH_TRACEBACK": "false",
    "AUTO_OPEN_DASHBOARD": "false",
}


def require_server(reason: str) -> None:
    """Skip the current test because a server is missing, or fail if servers are required.

    With ``ARTIFACT_GC_REQUIRE_SERVERS=1`` a missing server is a failure, so that a CI
    run cannot pass by skipping every MariaDB or S3 test.
    """
    if os.environ.get(REQUIRE_SERVERS_ENV, "").strip() == "1":
        pytest.fail(f"{reason} ({REQUIRE_SERVERS_ENV}=1)", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------------------
# URLs
# ---------------------------------------------------------------------------


def to_sqlalchemy_url(db_url: str) -> str:
    """ZenML's ``mysql://`` URLs mean pymysql; SQLAlchemy's default would be MySQLdb."""
    if db_url.startswith("mysql://"):
        return "mysql+pymysql://" + db_url[len("mysql://") :]
    return db_url


def make_engine(db_url: str) -> sa.Engine:
    """An engine without pooling, so no connection outlives the helper that opened it."""
    return sa.create_engine(to_sqlalchemy_url(db_url), poolclass=NullPool)


# ---------------------------------------------------------------------------
# The scenario store
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScenarioStore:
    """A real ZenML 0.98.0 store built by ``build_store.py``, with its expectations.

    ``expected`` is the parsed ``expected.json`` (see ``tests/scenarios/README.md``).
    """

    backend: str  # "sqlite" or "mysql"
    db_url: str  # as ZenML takes it: sqlite:////abs/zenml.db or mysql://zenml:pw@host/db
    sqlalchemy_url: str  # mysql+pymysql://... for MySQL, the same as db_url for SQLite
    config_dir: Path  # ZENML_CONFIG_PATH of the store
    store_root: Path  # root directory of the default local artifact store
    artifact_store_id: str  # 32 hex digits
    expected: dict[str, Any] = field(repr=False)

    @property
    def versions(self) -> dict[str, dict[str, Any]]:
        """Expected facts per artifact version id (hex)."""
        return self.expected["versions"]  # type: ignore[no-any-return]

    @property
    def all_ids(self) -> set[str]:
        return set(self.expected["all_artifact_version_ids"])

    def ids(
        self,
        status: str | None = None,
        *,
        scenario: str | None = None,
        reason: str | None = None,
    ) -> set[str]:
        """Version ids filtered by expected status, scenario and/or reason."""
        return {
            vid
            for vid, v in self.versions.items()
            if (status is None or v["status"] == status)
            and (scenario is None or v["scenario"] == scenario)
            and (reason is None or reason in v["reasons"])
        }

    @property
    def candidates(self) -> set[str]:
        return self.ids("candidate")

    @property
    def reachable(self) -> set[str]:
        return self.ids("reachable")

    @property
    def protected(self) -> set[str]:
        return self.ids("protected")

    def env(self) -> dict[str, str]:
        """Environment variables that point ZenML (or ``gc`` defaults) at this store."""
        env = {"ZENML_CONFIG_PATH": str(self.config_dir), **BUILD_ENV}
        if self.backend == "mysql":
            env["ZENML_STORE_URL"] = self.db_url
        return env


def _build_env(config_dir: Path, store_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env.update(BUILD_ENV)
    env["ZENML_CONFIG_PATH"] = str(config_dir)
    if store_url:
        env["ZENML_STORE_URL"] = store_url
    return env


def build_scenario_store(
    config_dir: Path, store_url: str | None = None, timeout: float = 300
) -> ScenarioStore:
    """Run ``build_store.py`` in a subprocess and load what it wrote.

    ``config_dir`` must not exist yet or be empty. ``store_url`` is a ZenML
    ``mysql://user:pw@host/db`` URL; without it the store is SQLite in ``config_dir``.
    """
    config_dir = Path(config_dir).resolve()
    config_dir.mkdir(parents=True, exist_ok=True)
    if any(config_dir.iterdir()):
        raise RuntimeError(f"{config_dir} is not empty")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), str(config_dir)],
        cwd=config_dir,
        env=_build_env(config_dir, store_url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0 or not (config_dir / "expected.json").exists():
        raise RuntimeError(
            f"build_store.py failed (exit {proc.returncode}) after "
            f"{time.monotonic() - started:.1f}s\n--- stdout ---\n{proc.stdout[-4000:]}"
            f"\n--- stderr ---\n{proc.stderr[-8000:]}"
        )
    return load_scenario_store(config_dir)


def load_scenario_store(config_dir: Path, db_url: str | None = None) -> ScenarioStore:
    """Load ``expected.json``; ``db_url`` overrides the recorded URL (cloned databases)."""
    expected = json.loads((Path(config_dir) / "expected.json").read_text())
    if db_url is not None:
        expected["db_url"] = db_url
        expected["sqlalchemy_url"] = to_sqlalchemy_url(db_url)
    return ScenarioStore(
        backend=expected["backend"],
        db_url=expected["db_url"],
        sqlalchemy_url=expected["sqlalchemy_url"],
        config_dir=Path(expected["config_dir"]),
        store_root=Path(expected["artifact_store"]["root"]),
        artifact_store_id=expected["artifact_store"]["id"],
        expected=expected,
    )


def restore_tree(pristine: Path, target: Path) -> None:
    """Make ``target`` an exact copy of ``pristine`` (same absolute path every time)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(pristine, target, symlinks=True)


# ---------------------------------------------------------------------------
# MariaDB
# ---------------------------------------------------------------------------


def mariadb_admin_connect(database: str | None = None, connect_timeout: float = 3) -> Any:
    """A pymysql connection as root (autocommit). Raises if the server is down."""
    import pymysql

    return pymysql.connect(
        host=MARIADB_HOST,
        port=MARIADB_PORT,
        user=MARIADB_ADMIN_USER,
        password=MARIADB_ADMIN_PASSWORD,
        database=database,
        autocommit=True,
        connect_timeout=connect_timeout,
        charset="utf8mb4",
    )


def mariadb_available() -> str | None:
    """None if MariaDB answers as root on 127.0.0.1:3306, else why not."""
    try:
        conn = mariadb_admin_connect()
    except Exception as exc:  # pymysql.err.OperationalError and socket errors
        return f"MariaDB not reachable on {MARIADB_HOST}:{MARIADB_PORT} as root: {exc}"
    conn.close()
    return None


def mariadb_create_database(name: str) -> str:
    """Create an empty database granted to the ``zenml`` user; return its ZenML URL."""
    conn = mariadb_admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
            )
    finally:
        conn.close()
    mariadb_grant(MARIADB_USER, MARIADB_PASSWORD, name)
    return f"mysql://{MARIADB_USER}:{MARIADB_PASSWORD}@{MARIADB_HOST}:{MARIADB_PORT}/{name}"


def mariadb_grant(user: str, password: str, database: str,
                  privileges: str = "ALL PRIVILEGES", *, fresh: bool = False) -> None:
    """Let ``user`` (from ``%`` and ``localhost``, with ``password``) use ``database``.

    ``fresh`` drops the user first, so that it holds no other grant (a read-only user
    stays read-only); without it the user keeps its grants on other databases, which
    tests running side by side share (the ``zenml`` user)."""
    conn = mariadb_admin_connect()
    try:
        with conn.cursor() as cur:
            secret = conn.escape(password)
            for host in ("%", "localhost"):
                who = f"'{user}'@'{host}'"
                if fresh:
                    cur.execute(f"DROP USER IF EXISTS {who}")
                cur.execute(f"CREATE USER IF NOT EXISTS {who} IDENTIFIED BY {secret}")
                cur.execute(f"ALTER USER {who} IDENTIFIED BY {secret}")
                cur.execute(f"GRANT {privileges} ON `{database}`.* TO {who}")
    finally:
        conn.close()


def mariadb_drop_database(name: str) -> None:
    conn = mariadb_admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


def mariadb_clone_database(source: str, target: str) -> None:
    """Copy every table of ``source`` (schema with its foreign keys, and rows) into the
    existing empty database ``target``. Much faster than rebuilding with ZenML."""
    conn = mariadb_admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = %s AND table_type = 'BASE TABLE'",
                (source,),
            )
            tables = [r[0] for r in cur.fetchall()]
            cur.execute("SET SESSION foreign_key_checks = 0")
            try:
                for table in tables:
                    cur.execute(f"SHOW CREATE TABLE `{source}`.`{table}`")
                    ddl = cur.fetchone()[1]
                    cur.execute(f"USE `{target}`")
                    cur.execute(ddl)
                for table in tables:
                    cur.execute(
                        f"INSERT INTO `{target}`.`{table}` SELECT * FROM `{source}`.`{table}`"
                    )
            finally:
                cur.execute("SET SESSION foreign_key_checks = 1")
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# Before/after comparisons
# ---------------------------------------------------------------------------


def list_tree(
    root: str | os.PathLike[str],
    storage_options: Mapping[str, Any] | None = None,
    *,
    include_dirs: bool = False,
) -> dict[str, int]:
    """Every file under ``root`` as ``{posix path relative to root: size in bytes}``.

    ``root`` is a local path or any fsspec URL (``s3://bucket/prefix`` with
    ``storage_options``). With ``include_dirs`` directories appear too, as
    ``"rel/dir/": -1``, so that emptied directories left behind are visible.
    A missing root lists as ``{}``.
    """
    root_s = os.fspath(root)
    out: dict[str, int] = {}
    if "://" not in root_s:
        base = Path(root_s)
        if not base.exists():
            return out
        if base.is_file():
            return {base.name: base.stat().st_size}
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = Path(dirpath).relative_to(base)
            if include_dirs:
                for d in dirnames:
                    out[(rel_dir / d).as_posix() + "/"] = -1
            for f in filenames:
                p = Path(dirpath) / f
                out[(rel_dir / f).as_posix()] = p.lstat().st_size
        return out

    import fsspec

    fs, path = fsspec.url_to_fs(root_s, **dict(storage_options or {}))
    path = path.rstrip("/")
    fs.invalidate_cache()
    if not fs.exists(path):
        return out
    found = fs.find(path, withdirs=include_dirs, detail=True)
    for full, info in found.items():
        rel = full[len(path) :].lstrip("/") if full.startswith(path) else full
        if info.get("type") == "directory":
            if include_dirs and rel:
                out[rel.rstrip("/") + "/"] = -1
        else:
            out[rel or Path(full).name] = int(info.get("size") or 0)
    return out


def db_rows(db_url: str, table: str, columns: Iterable[str] | None = None) -> set[tuple[Any, ...]]:
    """All rows of ``table`` (or just ``columns``) as a set of tuples."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            tbl = sa.Table(table, sa.MetaData(), autoload_with=conn)
            cols = [tbl.c[c] for c in columns] if columns else list(tbl.c)
            return {tuple(r) for r in conn.execute(sa.select(*cols))}
    finally:
        engine.dispose()


def table_counts(db_url: str, tables: Iterable[str] | None = None) -> dict[str, int]:
    """``{table: row count}`` for ``tables`` (default: every table)."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            names = list(tables) if tables else sa.inspect(conn).get_table_names()
            return {
                t: conn.execute(sa.text(f"SELECT COUNT(*) FROM {_q(conn, t)}")).scalar_one()
                for t in names
            }
    finally:
        engine.dispose()


def _q(conn: sa.Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


#: Polymorphic tables (no FK) and the resource types that name artifacts.
POLYMORPHIC_CHECKS = (
    ("run_metadata_resource", "artifact_version", "artifact_version"),
    ("tag_resource", "artifact_version", "artifact_version"),
    ("run_metadata_resource", "artifact", "artifact"),
    ("tag_resource", "artifact", "artifact"),
)


def integrity_problems(db_url: str) -> list[str]:
    """Dangling rows, as human-readable strings; ``[]`` means the store is consistent.

    - every foreign key: SQLite ``PRAGMA foreign_key_check``; on MySQL/MariaDB a
      LEFT JOIN per reflected foreign key (child value set, parent row missing);
    - ``run_metadata_resource`` / ``tag_resource`` rows of type ``artifact_version``
      or ``artifact`` whose resource row is gone (these tables have no FK);
    - ``run_metadata`` rows that no ``run_metadata_resource`` row points at any more.
    """
    problems: list[str] = []
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            insp = sa.inspect(conn)
            tables = set(insp.get_table_names())
            if conn.dialect.name == "sqlite":
                for table, rowid, parent, fkid in conn.exec_driver_sql("PRAGMA foreign_key_check"):
                    problems.append(
                        f"{table} rowid={rowid}: foreign key #{fkid} into {parent} dangles"
                    )
            else:
                for table in sorted(tables):
                    for fk in insp.get_foreign_keys(table):
                        parent = fk["referred_table"]
                        cols, pcols = fk["constrained_columns"], fk["referred_columns"]
                        join = " AND ".join(
                            f"c.{_q(conn, a)} = p.{_q(conn, b)}"
                            for a, b in zip(cols, pcols, strict=True)
                        )
                        notnull = " AND ".join(f"c.{_q(conn, a)} IS NOT NULL" for a in cols)
                        n = conn.execute(
                            sa.text(
                                f"SELECT COUNT(*) FROM {_q(conn, table)} c "
                                f"LEFT JOIN {_q(conn, parent)} p ON {join} "
                                f"WHERE {notnull} AND p.{_q(conn, pcols[0])} IS NULL"
                            )
                        ).scalar_one()
                        if n:
                            problems.append(
                                f"{table}.{','.join(cols)} -> {parent}: {n} dangling row(s)"
                            )
            for table, rtype, target in POLYMORPHIC_CHECKS:
                if table not in tables or target not in tables:
                    continue
                rows = conn.execute(
                    sa.text(
                        f"SELECT r.resource_id FROM {_q(conn, table)} r "
                        f"WHERE r.resource_type = :t AND NOT EXISTS "
                        f"(SELECT 1 FROM {_q(conn, target)} x WHERE x.id = r.resource_id)"
                    ),
                    {"t": rtype},
                ).all()
                for (rid,) in rows:
                    problems.append(f"{table}: resource_type={rtype} resource_id={rid} dangles")
            if {"run_metadata", "run_metadata_resource"} <= tables:
                rows = conn.execute(
                    sa.text(
                        "SELECT m.id FROM run_metadata m WHERE NOT EXISTS "
                        "(SELECT 1 FROM run_metadata_resource r WHERE r.run_metadata_id = m.id)"
                    )
                ).all()
                for (mid,) in rows:
                    problems.append(f"run_metadata id={mid} has no run_metadata_resource left")
    finally:
        engine.dispose()
    return problems
