"""Hostile and bad input (issue 6): every refusal is clean, and nothing changes.

1. A table of bad inputs, each through the real CLI (click's runner on ``artifact_gc.cli``,
   a few also through the ``gc`` executable): each fails on ONE ``FAILED: ...`` line
   with the exit code ``gc --help`` documents, shows no traceback, and leaves the
   database (every row), the artifact store (every file and directory) and the
   manifest directory (the bytes of every file) exactly as they were.
2. URIs crafted to escape the store root (``..``, ``.``, symlinks, a sibling that
   shares the root's prefix, other buckets and schemes, URL-encoded dots and slashes,
   visualizations outside the root) are never deletion targets: mark then sweep end
   to end, and every victim outside the root is still there afterwards.
3. A store with a newer, unknown schema: an extra foreign key into artifact_version
   keeps versions alive in mark and in the sweep's re-verification; an unknown schema
   version stops the sweep.
4. A read-only MariaDB user can mark but not sweep: the sweep fails cleanly and deletes
   nothing, no file either.
5. Artifact names and URIs that are markup (``<script>``, rich's ``[/bold]`` and
   ``[link=...]``, CSV quotes and newlines, ``"<>&'``) print as text in the terminal,
   come back exactly from the CSV, and are inert in the HTML report (raw page, and its
   DOM after headless Chromium ran it).

The stores are synthetic (ZenML 0.98.0's real schema, bulk inserted, files written),
on SQLite, MariaDB and S3 (moto).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from artifact_gc.cli import cli
from artifact_gc.demo.synthetic import SyntheticSpec, SyntheticStore, create_sqlite_store, populate
from artifact_gc.manifest import format as mf
from artifact_gc.manifest.reasons import STATUS_CANDIDATE, STATUS_PROTECTED, STATUS_REACHABLE
from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.run import mark
from conftest import MotoS3
from reliability import lost, record
from s3_support import list_bucket, upload, upload_store_objects
from scenarios.helpers import (
    BUILD_ENV,
    MARIADB_HOST,
    MARIADB_PORT,
    integrity_problems,
    list_tree,
    make_engine,
    mariadb_admin_connect,
    mariadb_available,
    mariadb_clone_database,
    mariadb_create_database,
    mariadb_drop_database,
    mariadb_grant,
    require_server,
    restore_tree,
)
from sweep_support import db_snapshot, version_ids

GC = str(Path(sys.executable).with_name("gc"))

EXIT_USAGE, EXIT_DATABASE, EXIT_SCHEMA, EXIT_REFUSED, EXIT_STORAGE = 2, 3, 4, 5, 9


# ---------------------------------------------------------------------------
# The test bed: a synthetic SQLite store with files, and a valid manifest of it
# ---------------------------------------------------------------------------


@dataclass
class Bed:
    """One test's store, restored at the same absolute path before every test (the
    manifest names the database file, so it stays valid)."""

    db_url: str
    root: Path
    manifests: Path
    manifest: Path
    tmp: Path
    store: SyntheticStore
    #: More databases whose rows must not change (e.g. a MariaDB database of a case).
    watched: list[str] = field(default_factory=list)
    #: Paths that a hostile input tries to create; none may exist afterwards.
    forbidden: list[Path] = field(default_factory=list)

    @property
    def db_path(self) -> Path:
        return Path(self.db_url.removeprefix("sqlite:///"))


@pytest.fixture(scope="module")
def _pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, SyntheticStore]:
    base = tmp_path_factory.mktemp("hostile")
    live, copy = base / "live", base / "pristine"
    url = create_sqlite_store(live / "zenml.db")
    store = populate(url, SyntheticSpec(versions=60, store_root=str(live / "root"),
                                        write_files=True, recent_share=0.0, seed=11))
    assert store.expected_candidates
    mark(url, str(live / "manifests" / "mark.parquet"), MarkOptions(older_than=timedelta(0)))
    shutil.copytree(live, copy, symlinks=True)
    return live, copy, store


#: Set while a test may have changed the bed; the next test then restores it whole.
_DIRTY = {"bed": True}


@pytest.fixture
def bed(_pristine: tuple[Path, Path, SyntheticStore], tmp_path: Path) -> Iterator[Bed]:
    """The store as marked. A test that proved it changed nothing leaves it in place for
    the next one (restoring costs more than most cases); any other test restores it."""
    live, copy, store = _pristine
    manifests = live / "manifests"
    if _DIRTY["bed"]:
        restore_tree(copy, live)
    else:
        for extra in manifests.iterdir():
            if extra.name != "mark.parquet":
                shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
    _DIRTY["bed"] = True
    yield Bed(db_url=f"sqlite:///{live / 'zenml.db'}", root=live / "root",
              manifests=manifests, manifest=manifests / "mark.parquet", tmp=tmp_path,
              store=store)


def _clean(bed: Bed) -> None:
    """Called last by tests that asserted the bed is unchanged."""
    del bed
    _DIRTY["bed"] = False


def _hashes(directory: Path) -> dict[str, str]:
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def sqlite_rows(path: Path) -> dict[str, list[str]]:
    """Every row of every table of a SQLite file, read-only and without reflection (which
    costs seconds on ZenML's 60 tables): the before/after comparison of the table."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(map(repr, connection.execute(f'SELECT * FROM "{t}"')))
                for t in tables}
    finally:
        connection.close()


def _state(bed: Bed) -> tuple[Any, ...]:
    return (sqlite_rows(bed.db_path), list_tree(bed.root, include_dirs=True),
            _hashes(bed.manifests), [db_snapshot(u) for u in bed.watched])


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _invoke(*args: str) -> Any:
    env = {k: None for k in os.environ if k.startswith("ZENML_")}
    return CliRunner().invoke(cli, list(args), env=env)  # type: ignore[arg-type]


def _failed_line(output: str) -> str:
    """The one ``FAILED:`` line of a failure's output (and nothing like a traceback)."""
    assert "Traceback" not in output, output
    failed = [line for line in output.splitlines() if line.startswith("FAILED: ")]
    assert len(failed) == 1, output
    return failed[0]


# ---------------------------------------------------------------------------
# Manifests made bad in every way
# ---------------------------------------------------------------------------


def _rewrite_info(source: Path, target: Path, raw: bytes | None = None,
                  **changes: Any) -> Path:
    """A copy of a manifest whose metadata changed, written as is (no new checksum)."""
    table = pq.read_table(source)
    info = mf.read_info(str(source)).as_dict()
    info.update(changes)
    meta = {mf.METADATA_KEY: raw if raw is not None else json.dumps(info).encode()}
    pq.write_table(table.replace_schema_metadata(meta), target)
    return target


def _rewrite_rows(source: Path, target: Path,
                  edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> Path:
    """A copy of a manifest whose rows were edited by hand; the metadata (and with it the
    recorded checksum) is kept as it was."""
    table = pq.read_table(source)
    rows = edit(table.to_pylist())
    edited = pa.Table.from_pylist(rows, schema=table.schema)
    pq.write_table(edited.replace_schema_metadata(table.schema.metadata), target)
    return target


def _drop_column(name: str) -> Callable[[Bed], Path]:
    """A copy of the manifest without the column ``name``, its metadata (and checksum)
    kept as they were."""
    def make(bed: Bed) -> Path:
        table = pq.read_table(bed.manifest)
        target = bed.manifests / f"without-{name}.parquet"
        pq.write_table(table.drop_columns([name]).replace_schema_metadata(
            table.schema.metadata), target)
        return target

    return make


def _flip_reachable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    row = next(r for r in rows if r["status"] == STATUS_REACHABLE)
    row["status"], row["reasons"] = STATUS_CANDIDATE, []
    return rows


def _repoint_candidate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    row = next(r for r in rows if r["status"] == STATUS_CANDIDATE)
    row["uri"] = row["store_root"] + "/load_data"  # a whole step's outputs
    return rows


def _widen_root(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    row = next(r for r in rows if r["status"] == STATUS_CANDIDATE)
    row["store_root"], row["uri"] = "/", "/etc"
    return rows


def _drop_candidate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    first = next(i for i, r in enumerate(rows) if r["status"] == STATUS_CANDIDATE)
    return rows[:first] + rows[first + 1:]


def _manifest_of_another_database(bed: Bed) -> Path:
    other = bed.tmp / "other" / "zenml.db"
    other.parent.mkdir()
    shutil.copy(bed.db_path, other)
    out = bed.manifests / "other-db.parquet"
    mark(f"sqlite:///{other}", str(out), MarkOptions(older_than=timedelta(0)))
    return out


def _stale(bed: Bed) -> Path:
    # started_at is not part of the checksum's identity, so the checksum still holds:
    # only the age check can stop this one.
    old = (mf.utc_now() - timedelta(days=30)).isoformat()
    return _rewrite_info(bed.manifest, bed.manifests / "stale.parquet", started_at=old)


def _sqlite_with_other_tables(bed: Bed) -> str:
    path = bed.tmp / "app.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        connection.exec_driver_sql("CREATE TABLE orders (id INTEGER PRIMARY KEY, "
                                   "user_id INTEGER REFERENCES users(id))")
        connection.exec_driver_sql("INSERT INTO users VALUES (1, 'ann')")
    engine.dispose()
    bed.watched.append(f"sqlite:///{path}")
    return f"sqlite:///{path}"


def _mariadb_database(request: pytest.FixtureRequest, bed: Bed, *tables: str) -> str:
    """A fresh MariaDB database (dropped afterwards) holding ``tables`` (DDL)."""
    why = mariadb_available()
    if why:
        require_server(why)
    factory = request.getfixturevalue("mariadb_url_factory")
    url: str = "mysql+pymysql://" + factory("gc_hostile").removeprefix("mysql://")
    engine = make_engine(url)
    with engine.begin() as connection:
        for ddl in tables:
            connection.exec_driver_sql(ddl)
    engine.dispose()
    bed.watched.append(url)
    return url


#: A password nobody else uses, so that a message echoing it would be caught.
WRONG_PASSWORD = "Wr0ng-pw-7Hq2-zX9"


def _wrong_password(bed: Bed, request: pytest.FixtureRequest) -> str:
    url = _mariadb_database(request, bed)
    user_and_rest = url.split("://", 1)[1].split("@", 1)[1]
    return f"mysql+pymysql://zenml:{WRONG_PASSWORD}@{user_and_rest}"


@dataclass(frozen=True)
class Case:
    args: Callable[[Bed, pytest.FixtureRequest], list[str]]
    exit_code: int
    says: str
    never_says: tuple[str, ...] = ()


def _sweep(manifest: Callable[[Bed], Path], *extra: str) -> Callable[..., list[str]]:
    return lambda bed, _r: ["sweep", str(manifest(bed)), "--db", bed.db_url, "--yes", *extra]


def _mark(*extra: str, db: Callable[..., str] | None = None) -> Callable[..., list[str]]:
    def args(bed: Bed, request: pytest.FixtureRequest) -> list[str]:
        url = db(bed, request) if db else bed.db_url
        return ["mark", "--db", url, "--older-than", "0s",
                "--out", str(bed.manifests / "new.parquet"), *extra]

    return args


def _file(name: str, content: bytes) -> Callable[[Bed], Path]:
    def make(bed: Bed) -> Path:
        path = bed.manifests / name
        path.write_bytes(content)
        return path

    return make


def _truncated(bed: Bed) -> Path:
    data = bed.manifest.read_bytes()
    path = bed.manifests / "truncated.parquet"
    path.write_bytes(data[: len(data) // 2])
    return path


def _plain_parquet(bed: Bed) -> Path:
    path = bed.manifests / "plain.parquet"
    pq.write_table(pa.table({"artifact_version_id": ["x"]}), path)
    return path


def _filter(predicate: str, bed_path: Callable[[Bed], Path] | None = None
            ) -> Callable[..., list[str]]:
    def args(bed: Bed, _r: pytest.FixtureRequest) -> list[str]:
        if bed_path:
            bed.forbidden.append(bed_path(bed))
        text = predicate.format(tmp=bed.tmp)
        return ["filter", str(bed.manifest), "--where", text,
                "-o", str(bed.manifests / "narrow.parquet")]

    return args


CASES: dict[str, Case] = {
    # -- manifests ------------------------------------------------------------------
    "truncated manifest": Case(_sweep(_truncated), EXIT_REFUSED, "not a readable manifest"),
    "empty file as manifest": Case(_sweep(_file("empty.parquet", b"")), EXIT_REFUSED,
                                   "not a readable manifest"),
    "CSV file as manifest": Case(_sweep(_file("rows.parquet", b"id,status\nx,candidate\n")),
                                 EXIT_REFUSED, "not a readable manifest"),
    "Parquet without our metadata": Case(_sweep(_plain_parquet), EXIT_REFUSED,
                                         "without artifact-gc metadata"),
    "metadata not JSON": Case(
        _sweep(lambda b: _rewrite_info(b.manifest, b.manifests / "j.parquet", raw=b"{oops")),
        EXIT_REFUSED, "not valid JSON"),
    "wrong format version": Case(
        _sweep(lambda b: _rewrite_info(b.manifest, b.manifests / "v2.parquet",
                                       format_version="2.0")),
        EXIT_REFUSED, "format version 2.0"),
    "another format": Case(
        _sweep(lambda b: _rewrite_info(b.manifest, b.manifests / "f.parquet",
                                       format="lakefs-gc")),
        EXIT_REFUSED, "not an artifact-gc manifest"),
    "incomplete mark": Case(
        _sweep(lambda b: _rewrite_info(b.manifest, b.manifests / "i.parquet", complete=False)),
        EXIT_REFUSED, "did not complete"),
    "candidate row added by hand": Case(
        _sweep(lambda b: _rewrite_rows(b.manifest, b.manifests / "a.parquet", _flip_reachable)),
        EXIT_REFUSED, "fails its checksum"),
    "candidate row edited by hand": Case(
        _sweep(lambda b: _rewrite_rows(b.manifest, b.manifests / "e.parquet",
                                       _repoint_candidate)),
        EXIT_REFUSED, "fails its checksum"),
    "candidate row removed by hand": Case(
        _sweep(lambda b: _rewrite_rows(b.manifest, b.manifests / "r.parquet", _drop_candidate)),
        EXIT_REFUSED, "fails its checksum"),
    "candidate's store root widened by hand": Case(
        _sweep(lambda b: _rewrite_rows(b.manifest, b.manifests / "w.parquet", _widen_root)),
        EXIT_REFUSED, "fails its checksum"),
    "manifest without its status column": Case(_sweep(_drop_column("status")), EXIT_REFUSED,
                                               "lacks the column status"),
    "manifest without its visualization_uris column": Case(
        _sweep(_drop_column("visualization_uris")), EXIT_REFUSED,
        "lacks the column visualization_uris"),
    "gc show of a manifest without its store_root column": Case(
        lambda b, _r: ["show", str(_drop_column("store_root")(b))], EXIT_REFUSED,
        "lacks the column store_root"),
    "manifest of another database": Case(_sweep(_manifest_of_another_database), EXIT_REFUSED,
                                         "not on the database being swept"),
    "stale manifest": Case(_sweep(_stale), EXIT_REFUSED, "older than --max-manifest-age"),
    "nonexistent manifest": Case(_sweep(lambda b: b.manifests / "nope.parquet"), EXIT_REFUSED,
                                 "no manifest at"),
    "directory as manifest": Case(_sweep(lambda b: b.manifests), EXIT_REFUSED,
                                  "not a readable manifest"),
    "gc show of a truncated manifest": Case(
        lambda b, _r: ["show", str(_truncated(b))], EXIT_REFUSED, "not a readable manifest"),
    "gc report of a CSV file": Case(
        lambda b, _r: ["report", str(_file("rows.parquet", b"a,b\n")(b)),
                       "-o", str(b.manifests / "r.html")],
        EXIT_REFUSED, "not a readable manifest"),
    # -- options ---------------------------------------------------------------------
    "malformed --older-than": Case(_mark("--older-than", "1 fortnight"), EXIT_USAGE,
                                   "cannot read duration"),
    "negative --older-than": Case(_mark("--older-than", "-1d"), EXIT_USAGE,
                                  "cannot read duration"),
    "malformed --max-manifest-age": Case(_sweep(lambda b: b.manifest, "--max-manifest-age",
                                                "7x"), EXIT_USAGE, "cannot read duration"),
    "unclosed [ in --artifact": Case(_mark("--artifact", "["), EXIT_USAGE,
                                     "without a closing ']'"),
    "empty range in --exclude-artifact": Case(_mark("--exclude-artifact", "model[z-a]*"),
                                              EXIT_USAGE, "empty"),
    "--batch-size 0": Case(_sweep(lambda b: b.manifest, "--batch-size", "0"), EXIT_USAGE,
                           "--batch-size"),
    "--workers 0": Case(_sweep(lambda b: b.manifest, "--workers", "0"), EXIT_USAGE,
                        "--workers"),
    "negative --keep-latest": Case(_mark("--keep-latest", "-1"), EXIT_USAGE, "--keep-latest"),
    "unknown --project": Case(_mark("--project", "no-such-project"), EXIT_USAGE,
                              "no project named 'no-such-project'"),
    "--only-artifact with --only-metadata": Case(
        _sweep(lambda b: b.manifest, "--only-artifact", "--only-metadata"), EXIT_USAGE,
        "mutually exclusive"),
    "--storage-option without =": Case(_sweep(lambda b: b.manifest, "--storage-option",
                                              "endpoint"), EXIT_USAGE, "KEY=VALUE"),
    "--storage-option with an empty key": Case(_mark("--storage-option", "a..b=1"),
                                               EXIT_USAGE, "KEY=VALUE"),
    "--storage-option value and table at once": Case(
        _mark("--storage-option", "a=1", "--storage-option", "a.b=2"), EXIT_USAGE,
        "already a value"),
    "--store-root of a non-UUID": Case(_mark("--store-root", "default=/tmp"), EXIT_USAGE,
                                       "not a component id"),
    "--store-root of an unknown component": Case(
        _mark("--store-root", f"{uuid.UUID(int=7)}=/tmp"), EXIT_USAGE,
        "names no artifact store"),
    "unknown --by": Case(lambda b, _r: ["show", str(b.manifest), "--by", "colour"], EXIT_USAGE,
                         "--by"),
    # -- gc filter --where: it narrows or it fails, it never writes anything ------------------
    "--where with a second statement": Case(_filter("1=1; DROP TABLE manifest"), EXIT_USAGE,
                                            "--where"),
    "--where closing its parentheses": Case(
        _filter("true) AS keep FROM manifest UNION ALL SELECT (false"), EXIT_USAGE,
        "--where does not parse"),
    "--where that comments out the rest": Case(
        _filter("true) OR (true --"), EXIT_USAGE, "--where does not parse"),
    "--where that tries to COPY out": Case(
        _filter("true); COPY (SELECT 1) TO '{tmp}/pwned.csv'; SELECT (1",
                lambda b: b.tmp / "pwned.csv"),
        EXIT_USAGE, "--where"),
    "--where of an unknown column": Case(_filter("owner = 'me'"), EXIT_USAGE,
                                         "not a valid predicate"),
    "gc query that attaches the metadata database": Case(
        lambda b, _r: ["query", str(b.manifest),
                       f"ATTACH '{b.db_path}' AS z (TYPE sqlite); DELETE FROM z.artifact"],
        EXIT_USAGE, "the query failed"),
    # -- databases -----------------------------------------------------------------------
    "unreachable database (closed port)": Case(
        _mark(db=lambda b, r: f"mysql+pymysql://zenml:pw@127.0.0.1:{_closed_port()}/zenml"),
        EXIT_DATABASE, "Can't connect"),
    "unreachable database in the sweep": Case(
        lambda b, _r: ["sweep", str(b.manifest), "--yes", "--db",
                       f"mysql+pymysql://zenml:pw@127.0.0.1:{_closed_port()}/zenml"],
        EXIT_DATABASE, "Can't connect"),
    "wrong MariaDB password": Case(_mark(db=_wrong_password), EXIT_DATABASE,
                                   "Access denied", never_says=(WRONG_PASSWORD,)),
    "password with a raw @ in the URL": Case(
        _mark(db=lambda b, r: "mysql+pymysql://zenml:Raw-Pa@ss-Tail9Q@127.0.0.1:3306/zenml"),
        EXIT_DATABASE, "must be URL-encoded", never_says=("ss-Tail9Q", "Raw-Pa")),
    "SQLite busy timeout that is not a number": Case(
        _mark(db=lambda b, r: f"sqlite:///{b.db_path}?timeout=soon"), EXIT_DATABASE,
        "?timeout= must be a number"),
    "ZenML REST URL": Case(_mark(db=lambda b, r: "http://127.0.0.1:8237"), EXIT_DATABASE,
                           "ZenML server (REST) URL"),
    "ZenML REST URL in the sweep": Case(
        lambda b, _r: ["sweep", str(b.manifest), "--yes", "--db", "https://127.0.0.1:8237"],
        EXIT_DATABASE, "ZenML server (REST) URL"),
    "PostgreSQL URL": Case(_mark(db=lambda b, r: "postgresql://u:Pg-s3cret-42@127.0.0.1/z"),
                           EXIT_USAGE, "unsupported database URL",
                           never_says=("Pg-s3cret-42",)),
    "SQLite file that does not exist": Case(
        _mark(db=lambda b, r: f"sqlite:///{b.tmp / 'nope.db'}"), EXIT_DATABASE,
        "does not exist"),
    "empty SQLite file": Case(
        _mark(db=lambda b, r: (b.tmp / "empty.db").write_bytes(b"")
              or f"sqlite:///{b.tmp / 'empty.db'}"),
        EXIT_SCHEMA, "not a ZenML store"),
    "SQLite database of another application": Case(
        _mark(db=lambda b, r: _sqlite_with_other_tables(b)), EXIT_SCHEMA, "not a ZenML store"),
    "sweep against another application's database": Case(
        lambda b, _r: ["sweep", str(b.manifest), "--yes", "--db", _sqlite_with_other_tables(b)],
        EXIT_SCHEMA, "not a ZenML store"),
    "MariaDB database of another application": Case(
        _mark(db=lambda b, r: _mariadb_database(
            r, b, "CREATE TABLE customer (id INT PRIMARY KEY, name VARCHAR(20))",
            "CREATE TABLE invoice (id INT PRIMARY KEY, customer_id INT, "
            "FOREIGN KEY (customer_id) REFERENCES customer(id))")),
        EXIT_SCHEMA, "not a ZenML store"),
    # -- outputs that cannot be written (root ignores permission bits) ---------------------
    "--out under a regular file": Case(
        lambda b, _r: ["mark", "--db", b.db_url, "--out",
                       str(b.manifests / "mark.parquet" / "new.parquet")],
        EXIT_STORAGE, "is a file, not a directory"),
    "--out inside /proc": Case(
        lambda b, _r: ["mark", "--db", b.db_url, "--out", "/proc/1/gc-mark.parquet"],
        EXIT_STORAGE, "cannot write the manifest"),
    "gc report -o under a regular file": Case(
        lambda b, _r: ["report", str(b.manifest), "-o", str(b.manifest / "r.html")],
        EXIT_STORAGE, "cannot write the report"),
    "gc filter -o under a regular file": Case(
        lambda b, _r: ["filter", str(b.manifest), "--where", "true", "-o",
                       str(b.manifest / "f.parquet")],
        EXIT_STORAGE, "cannot write the manifest"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_cleanly_and_changes_nothing(
    name: str, bed: Bed, request: pytest.FixtureRequest
) -> None:
    case = CASES[name]
    args = case.args(bed, request)
    before = _state(bed)
    result = _invoke(*args)
    record("bad inputs tried", name, 1)
    assert result.exit_code == case.exit_code, (name, result.output)
    line = _failed_line(result.output)
    assert case.says in line, line
    for secret in case.never_says:
        assert secret not in result.output
    assert _state(bed) == before
    for path in bed.forbidden:
        assert not path.exists(), f"{name} created {path}"
    _clean(bed)


@pytest.mark.parametrize("name", ["truncated manifest", "unclosed [ in --artifact",
                                  "unreachable database (closed port)"])
def test_the_executable_prints_one_line_to_stderr(name: str, bed: Bed,
                                                  request: pytest.FixtureRequest) -> None:
    """The same refusals from the installed ``gc``: stdout empty, one stderr line."""
    case = CASES[name]
    args = case.args(bed, request)
    before = _state(bed)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    done = subprocess.run([GC, *args], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    record("bad inputs tried", f"{name} (gc executable)", 1)
    assert done.returncode == case.exit_code, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("FAILED: "), done.stderr
    assert case.says in done.stderr
    assert _state(bed) == before
    # --traceback is how to see more: the stack trace, and the same error at its end.
    traced = subprocess.run([GC, "--traceback", *args], capture_output=True, text=True,
                            env=env, timeout=120, check=False)
    assert traced.returncode != 0
    if case.exit_code != EXIT_USAGE:  # click reports usage errors itself
        assert "Traceback (most recent call last)" in traced.stderr
    assert _state(bed) == before
    _clean(bed)


# ---------------------------------------------------------------------------
# URIs that try to leave the store root
# ---------------------------------------------------------------------------


def _set_uri(db_url: str, version_id: str, uri: str, *, visualization: bool = False) -> None:
    engine = make_engine(db_url)
    with engine.begin() as connection:
        table = "artifact_visualization" if visualization else "artifact_version"
        column = "artifact_version_id" if visualization else "id"
        done = connection.execute(sa.text(f"UPDATE {table} SET uri = :u WHERE {column} = :i"),
                                  {"u": uri, "i": version_id})
        assert done.rowcount >= 1
    engine.dispose()


def _victim(path: Path, files: int = 2) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (path / f"precious-{i}.bin").write_bytes(b"do not delete " * (i + 1))
    return path


def _sweep_cli(manifest: Path, db_url: str, *extra: str) -> dict[str, Any]:
    result = _invoke("sweep", str(manifest), "--db", db_url, "--yes", "--json", *extra)
    assert result.exit_code in (0, 8), result.output
    summary: dict[str, Any] = json.loads(result.output[result.output.index("{"):])["summary"]
    return summary


def _decisions(manifest: Path) -> dict[str, tuple[str, list[str]]]:
    rows = pq.read_table(manifest, columns=["artifact_version_id", "status", "reasons"])
    return {r["artifact_version_id"]: (r["status"], r["reasons"] or []) for r in rows.to_pylist()}


def test_local_uris_that_escape_the_root_are_never_deleted(bed: Bed) -> None:
    root = bed.root
    outside = bed.tmp / "outside"
    victims: dict[str, Path] = {}
    legit = sorted(bed.store.expected_candidates)
    hostile = legit[:12]
    plan: list[tuple[str, str, Path | None, bool]] = []

    def add(name: str, uri: str, victim: Path | None, *, visualization: bool = False) -> None:
        plan.append((name, uri, victim, visualization))

    add("dotdot", f"{root}/../{outside.name}-dotdot",
        _victim(root.parent / f"{outside.name}-dotdot"))
    add("deep dotdot", f"{root}/load_data/raw_data/../../../{outside.name}-deep",
        _victim(root.parent / f"{outside.name}-deep"))
    add("the root itself via .", f"{root}/.", None)
    add("the root itself via ..", f"{root}/load_data/..", None)
    add("absolute path outside", str(_victim(outside / "absolute")), outside / "absolute")
    sibling = Path(f"{root}_evil") / "v"
    add("sibling sharing the root's prefix", str(sibling), _victim(sibling))
    link_target = _victim(outside / "linked")
    (root / "linked-version").symlink_to(link_target, target_is_directory=True)
    add("symlink to a directory outside", f"{root}/linked-version", link_target)
    parent_target = outside / "linked-parent"
    _victim(parent_target / "v1")
    (root / "linked-parent").symlink_to(parent_target, target_is_directory=True)
    add("symlinked parent directory", f"{root}/linked-parent/v1", parent_target / "v1")
    inside = _victim(root / "load_data" / "raw_data" / "other-scheme")
    add("file:// scheme for a local store", f"file://{inside}", inside)
    add("gs:// scheme for a local store", f"gs://bucket{root}/load_data", None)
    add("visualization with ..", f"{root}/../{outside.name}-vis",
        _victim(root.parent / f"{outside.name}-vis"), visualization=True)
    add("visualization outside", str(_victim(outside / "vis-abs")), outside / "vis-abs",
        visualization=True)
    assert len(plan) == len(hostile)
    for vid, (name, uri, victim, visualization) in zip(hostile, plan, strict=True):
        _set_uri(bed.db_url, vid, uri, visualization=visualization)
        if victim is not None:
            victims[name] = victim
    # URL-encoded dots and slashes are literal characters to a local filesystem: the
    # path names a directory inside the root, never the one a decoder would find.
    encoded_victim = _victim(root.parent / f"{outside.name}-encoded")
    encoded_id = legit[12]
    _set_uri(bed.db_url, encoded_id, f"{root}/%2e%2e/{encoded_victim.name}")
    encoded_slash_id = legit[13]
    _set_uri(bed.db_url, encoded_slash_id, f"{root}/..%2F{encoded_victim.name}")
    victims["encoded"] = encoded_victim

    before_victims = {n: list_tree(p) for n, p in victims.items()}
    assert all(before_victims.values())
    before_root = list_tree(root)
    manifest = bed.tmp / "escape.parquet"
    mark(bed.db_url, str(manifest), MarkOptions(older_than=timedelta(0)))
    decisions = _decisions(manifest)
    summary = _sweep_cli(manifest, bed.db_url)
    record("bad inputs tried", "URIs escaping a local store root", len(plan) + 2)

    remaining = version_ids(bed.db_url)
    # Mark sees only the database: what a URI or a visualization URI says (a
    # visualization outside the root protects its version already in the manifest).
    # Where a symlink leads is the sweep's fence to check, before its database step.
    fenced_by_sweep = {"symlink to a directory outside", "symlinked parent directory"}
    for vid, (name, _uri, _victim_path, _vis) in zip(hostile, plan, strict=True):
        assert vid in remaining, f"{name}: its version was deleted ({decisions[vid]})"
        if name in fenced_by_sweep:
            assert summary["protected_versions"].get(vid) == "outside_store_root", name
        else:
            assert decisions[vid] == (STATUS_PROTECTED, ["outside_store_root"]), (
                name, decisions[vid])
    escaped = {n: p for n, p in victims.items() if list_tree(p) != before_victims[n]}
    assert lost("files outside the store root", len(escaped)) == 0, escaped
    # Everything in the root that no deleted version owned is still there.
    deleted = set(legit) - remaining
    assert deleted >= set(legit[14:])
    owned = _footprints(manifest, deleted, root)
    after_root = list_tree(root)
    for rel, size in before_root.items():
        if not any(rel == o or rel.startswith(o + "/") for o in owned):
            assert after_root.get(rel) == size, f"{rel} was lost"
    assert integrity_problems(bed.db_url) == []


def _footprints(manifest: Path, ids: set[str], root: Path) -> list[str]:
    """Root-relative paths (URI and visualizations) of the versions ``ids``."""
    rows = pq.read_table(manifest, columns=["artifact_version_id", "uri",
                                            "visualization_uris"]).to_pylist()
    paths = [p for r in rows if r["artifact_version_id"] in ids
             for p in [r["uri"], *(r["visualization_uris"] or [])]]
    return [os.path.relpath(p, root) for p in paths if p.startswith(f"{root}/")]


def test_s3_uris_that_escape_the_root_are_never_deleted(moto_s3: MotoS3,
                                                        tmp_path: Path) -> None:
    url = create_sqlite_store(tmp_path / "zenml.db")
    bucket = moto_s3.bucket
    store = populate(url, SyntheticSpec(versions=40, store_root=moto_s3.url("store"),
                                        recent_share=0.0, seed=5))
    client = moto_s3.client()
    upload_store_objects(client, bucket, url, "store")
    other = f"{bucket}-other"
    client.create_bucket(Bucket=other)
    local_victim = _victim(tmp_path / "outside" / "file-scheme")
    # (name, uri, visualization?, victim (bucket, key prefix) or None)
    plan: list[tuple[str, str, bool, tuple[str, str] | None]] = [
        ("another bucket, same key", f"s3://{other}/store/victim-a", False,
         (other, "store/victim-a/")),
        ("dotdot", f"s3://{bucket}/store/../outside/dotdot", False, (bucket, "outside/dotdot/")),
        # (The root itself as a URI overlaps every version: mark protects them all.)
        ("the root via ..", f"s3://{bucket}/store/load_data/..", False, None),
        ("the root via .", f"s3://{bucket}/store/.", False, None),
        ("sibling sharing the prefix", f"s3://{bucket}/store-evil/v", False,
         (bucket, "store-evil/v/")),
        ("prefix without separator", f"s3://{bucket}/storeevil/v", False,
         (bucket, "storeevil/v/")),
        ("gs:// with the store's own path", f"gs://{bucket}/store/gs-victim", False,
         (bucket, "store/gs-victim/")),
        ("file:// on an S3 store", f"file://{local_victim}", False, None),
        ("no scheme at all", f"{bucket}/store/no-scheme", False, (bucket, "store/no-scheme/")),
        ("visualization in another bucket", f"s3://{other}/store/vis-victim", True,
         (other, "store/vis-victim/")),
    ]
    legit = sorted(store.expected_candidates)
    hostile = legit[:len(plan)]
    for vid, (_name, uri, visualization, victim) in zip(hostile, plan, strict=True):
        _set_uri(url, vid, uri, visualization=visualization)
        if victim is not None:
            target, prefix = victim
            upload(client, target, [(f"{prefix}precious-{i}.bin", b"keep") for i in range(2)])
    # URL-encoded dots and slashes are plain characters in an S3 key: this path is a key
    # inside the root, and the key a decoder would find outside must survive.
    encoded = legit[len(plan)]
    _set_uri(url, encoded, f"s3://{bucket}/store/%2e%2e/outside/encoded")
    upload(client, bucket, [("store/%2e%2e/outside/encoded/literal.bin", b"inside"),
                            ("outside/encoded/precious.bin", b"keep")])
    before = {b: list_bucket(client, b) for b in (bucket, other)}
    local_before = list_tree(local_victim)

    manifest = tmp_path / "escape.parquet"
    endpoint = f"client_kwargs.endpoint_url={moto_s3.endpoint_url}"
    marked = _invoke("mark", "--db", url, "--older-than", "0s", "--out", str(manifest),
                     "--storage-option", endpoint, "--json")
    assert marked.exit_code == 0, marked.output
    decisions = _decisions(manifest)
    summary = _sweep_cli(manifest, url, "--storage-option", endpoint)
    record("bad inputs tried", "URIs escaping an S3 store root", len(plan) + 1)

    remaining = version_ids(url)
    # Mark protects every one of them, by its URI or a visualization URI; the sweep
    # never sees them as candidates.
    assert summary["protected_versions"] == {}
    for vid, (name, _uri, _visualization, _target) in zip(hostile, plan, strict=True):
        assert vid in remaining, f"{name}: its version was deleted ({decisions[vid]})"
        assert decisions[vid] == (STATUS_PROTECTED, ["outside_store_root"]), (
            name, decisions[vid])
    deleted = set(legit) - remaining
    assert deleted >= set(legit[len(plan) + 1:])
    after = {b: list_bucket(client, b) for b in (bucket, other)}
    owned = [p.split("://", 1)[1].split("/", 1)[1].rstrip("/")
             for p in _footprints_any(manifest, deleted)]
    gone = [(b, k) for b, keys in before.items() for k in keys
            if k not in after[b] and not (
                b == bucket and any(k == o or k.startswith(o + "/") for o in owned))]
    assert lost("objects outside the store root", len(gone)) == 0, gone
    assert "outside/encoded/precious.bin" in after[bucket]
    assert list_tree(local_victim) == local_before
    assert integrity_problems(url) == []


def _footprints_any(manifest: Path, ids: set[str]) -> list[str]:
    rows = pq.read_table(manifest, columns=["artifact_version_id", "uri",
                                            "visualization_uris"]).to_pylist()
    return [p for r in rows if r["artifact_version_id"] in ids
            for p in [r["uri"], *(r["visualization_uris"] or [])]]


# ---------------------------------------------------------------------------
# A newer ZenML schema than this release knows
# ---------------------------------------------------------------------------


def test_a_newer_schema_keeps_what_it_references_and_stops_the_sweep(bed: Bed) -> None:
    """A future release's table with a foreign key into artifact_version keeps versions
    alive (mark: ``fk:<table>``; sweep of an older manifest: revived), and a schema
    version this release does not know stops the sweep before it deletes anything."""
    pinned = sorted(bed.store.expected_candidates)[:3]
    engine = make_engine(bed.db_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE deployment_pin (id CHAR(32) PRIMARY KEY, "
            "artifact_version_id CHAR(32) NOT NULL REFERENCES artifact_version(id))")
        for vid in pinned:
            connection.execute(sa.text("INSERT INTO deployment_pin VALUES (:i, :v)"),
                               {"i": uuid.uuid4().hex, "v": vid})
    engine.dispose()
    fresh = bed.tmp / "fresh.parquet"
    mark(bed.db_url, str(fresh), MarkOptions(older_than=timedelta(0)))
    decisions = _decisions(fresh)
    for vid in pinned:
        assert decisions[vid] == (STATUS_REACHABLE, ["fk:deployment_pin"])
    # The manifest marked before the table existed names them as candidates; the sweep's
    # re-verification reflects the schema again and keeps them.
    summary = _sweep_cli(bed.manifest, bed.db_url)
    assert set(pinned) <= set(summary["revived_versions"])
    remaining = version_ids(bed.db_url)
    assert lost("versions pinned by an unknown table", len(set(pinned) - remaining)) == 0
    assert all((bed.root / os.path.relpath(p, bed.root)).exists()
               for p in _footprints_any(bed.manifest, set(pinned)))
    assert integrity_problems(bed.db_url) == []

    # A store migrated to a release we do not know: mark warns and still reflects, the
    # sweep refuses.
    engine = make_engine(bed.db_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0.99.0'")
    engine.dispose()
    newer = bed.tmp / "newer.parquet"
    marked = _invoke("mark", "--db", bed.db_url, "--older-than", "0s", "--out", str(newer))
    assert marked.exit_code == 0, marked.output
    assert "0.99.0" in marked.output
    before = _state(bed)
    refused = _invoke("sweep", str(newer), "--db", bed.db_url, "--yes")
    record("bad inputs tried", "store with an unknown newer schema", 1)
    assert refused.exit_code == EXIT_REFUSED, refused.output
    assert "0.99.0" in _failed_line(refused.output)
    assert _state(bed) == before


# ---------------------------------------------------------------------------
# MariaDB: a ZenML schema made by ZenML's own migrations, shared with the secrets suite
# ---------------------------------------------------------------------------

_SCHEMA: dict[str, str] = {}


@pytest.fixture(scope="session")
def zenml_mariadb_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A MariaDB database migrated by ZenML 0.98.0 itself (about 20 s); tests clone it.
    Migrated once per session even when several modules ask for it."""
    why = mariadb_available()
    if why:
        require_server(why)
    if "name" not in _SCHEMA:
        name = f"gc_h4_schema_{uuid.uuid4().hex[:10]}"
        url = mariadb_create_database(name)
        _SCHEMA["name"] = name
        config = tmp_path_factory.mktemp("zenml-migrate")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
        env.update(BUILD_ENV, ZENML_CONFIG_PATH=str(config), ZENML_STORE_URL=url)
        done = subprocess.run(
            [sys.executable, "-c", "from zenml.client import Client; Client().zen_store"],
            env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"ZenML could not migrate {name}:\n{done.stderr[-3000:]}"
    yield _SCHEMA["name"]
    mariadb_drop_database(_SCHEMA["name"])  # idempotent: the last module finds it gone


@dataclass
class MariaStore:
    database: str
    admin_url: str  # the zenml user's URL (all privileges on the database)
    root: Path
    store: SyntheticStore

    def url_for(self, user: str, password: str) -> str:
        from urllib.parse import quote

        return (f"mysql+pymysql://{quote(user, safe='')}:{quote(password, safe='')}@"
                f"{MARIADB_HOST}:{MARIADB_PORT}/{self.database}")


def make_maria_store(schema: str, factory: Callable[..., str], root: Path,
                     versions: int = 30) -> MariaStore:
    """A synthetic store (files written) in a fresh clone of the migrated schema."""
    zenml_url = factory("gc_h4")
    database = zenml_url.rsplit("/", 1)[1]
    mariadb_clone_database(schema, database)
    admin = "mysql+pymysql://" + zenml_url.removeprefix("mysql://")
    store = populate(admin, SyntheticSpec(versions=versions, store_root=str(root),
                                          write_files=True, recent_share=0.0, seed=17))
    return MariaStore(database, admin, root, store)


def mysql_rows(database: str) -> dict[str, list[str]]:
    """Every row of every table of a MariaDB database, as root and without reflection."""
    conn = mariadb_admin_connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = %s ORDER BY table_name", (database,))
            tables = [r[0] for r in cur.fetchall()]
            rows = {}
            for table in tables:
                cur.execute(f"SELECT * FROM `{table}`")
                rows[table] = sorted(map(repr, cur.fetchall()))
            return rows
    finally:
        conn.close()


def create_mariadb_user(user: str, password: str, database: str, privileges: str) -> None:
    mariadb_grant(user, password, database, privileges, fresh=True)


def drop_mariadb_user(user: str) -> None:
    conn = mariadb_admin_connect()
    try:
        with conn.cursor() as cur:
            for host in ("%", "localhost"):
                cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
    finally:
        conn.close()


def test_a_read_only_user_can_mark_but_its_sweep_deletes_nothing(
    zenml_mariadb_schema: str, mariadb_url_factory: Callable[..., str], tmp_path: Path
) -> None:
    maria = make_maria_store(zenml_mariadb_schema, mariadb_url_factory, tmp_path / "root")
    user, password = "gc_h4_readonly", "ro-Pw-5tq8"
    create_mariadb_user(user, password, maria.database, "SELECT")
    try:
        readonly = maria.url_for(user, password)
        manifest = tmp_path / "mark.parquet"
        marked = _invoke("mark", "--db", readonly, "--older-than", "0s", "--out",
                         str(manifest), "--json")
        assert marked.exit_code == 0, marked.output
        candidates = {v for v, (s, _r) in _decisions(manifest).items()
                      if s == STATUS_CANDIDATE}
        assert candidates == set(maria.store.expected_candidates)
        before = (mysql_rows(maria.database), list_tree(maria.root, include_dirs=True),
                  manifest.read_bytes())
        # (--only-artifact deletes files and no row: re-verifying under FOR UPDATE
        # needs nothing but SELECT on MariaDB, so a read-only user may run that one.)
        for mode in ((), ("--only-metadata",)):
            result = _invoke("sweep", str(manifest), "--db", readonly, "--yes", *mode)
            record("bad inputs tried", f"read-only database user, sweep {' '.join(mode)}", 1)
            assert result.exit_code == EXIT_DATABASE, (mode, result.output)
            line = _failed_line(result.output)
            assert "denied" in line and password not in result.output, line
            after = (mysql_rows(maria.database), list_tree(maria.root, include_dirs=True),
                     manifest.read_bytes())
            assert after == before, mode
    finally:
        drop_mariadb_user(user)


# ---------------------------------------------------------------------------
# Names and URIs that are markup: text in the terminal, the CSV and the report
# ---------------------------------------------------------------------------

SCRIPT_NAME = "<script>alert(1)</script>"
MARKUP_NAME = "[/bold] [link=http://127.0.0.1:9/x]click[/link]"
CSV_NAME = 'evil,"quoted"\nname'
URI_TAIL = "q\"<>&'x"


def test_hostile_names_and_uris_render_as_text(bed: Bed) -> None:
    engine = make_engine(bed.db_url)
    with engine.begin() as connection:
        candidates = sorted(bed.store.expected_candidates)
        artifacts = [connection.execute(sa.text(
            "SELECT artifact_id FROM artifact_version WHERE id = :v"), {"v": v}).scalar_one()
            for v in candidates]
        named = list(dict.fromkeys(artifacts))[:3]
        assert len(named) == 3
        for artifact, name in zip(named, (SCRIPT_NAME, MARKUP_NAME, CSV_NAME), strict=True):
            connection.execute(sa.text("UPDATE artifact SET name = :n WHERE id = :a"),
                               {"n": name, "a": artifact})
        odd = candidates[0]
        uri = connection.execute(sa.text("SELECT uri FROM artifact_version WHERE id = :v"),
                                 {"v": odd}).scalar_one()
        connection.execute(sa.text("UPDATE artifact_version SET uri = :u WHERE id = :v"),
                           {"u": f"{uri}-{URI_TAIL}", "v": odd})
    engine.dispose()
    manifest = bed.tmp / "names.parquet"
    record("bad inputs tried", "artifact names and URIs that are markup", 4)

    # The terminal: rich markup in a name is printed, not interpreted (nor a crash).
    marked = _invoke("mark", "--db", bed.db_url, "--older-than", "0s", "--out", str(manifest))
    assert marked.exit_code == 0, marked.output
    shown = CliRunner().invoke(cli, ["show", str(manifest), "--by", "artifact"],
                               env={"COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    assert MARKUP_NAME in shown.output and "\\[" not in shown.output

    # CSV: every hostile value comes back exactly from a CSV reader.
    by_artifact = _invoke("show", str(manifest), "--by", "artifact", "--format", "csv")
    assert by_artifact.exit_code == 0, by_artifact.output
    names = {row["artifact_name"] for row in csv.DictReader(io.StringIO(by_artifact.output))}
    assert {SCRIPT_NAME, MARKUP_NAME, CSV_NAME} <= names
    rows = _invoke("query", str(manifest), "SELECT artifact_name, uri FROM manifest",
                   "--format", "csv")
    assert rows.exit_code == 0, rows.output
    uris = {row["uri"] for row in csv.DictReader(io.StringIO(rows.output))}
    assert any(u.endswith(URI_TAIL) for u in uris)

    # HTML: the page shows them as text and runs none of them.
    page = bed.tmp / "names.html"
    report = _invoke("report", str(manifest), "-o", str(page))
    assert report.exit_code == 0, report.output
    html = page.read_text()
    for raw in (SCRIPT_NAME, "alert(1)</script>", URI_TAIL, '"<>&'):
        assert raw not in html, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&quot;&lt;&gt;&amp;" in html
    dom, log = _render(page, bed.tmp)
    assert SCRIPT_NAME not in dom and "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "alert" not in log.lower()


def _render(page: Path, tmp: Path) -> tuple[str, str]:
    """The page's DOM after its scripts ran in headless Chromium, and the browser log
    (test_review's harness: no network, every request logged)."""
    from test_review import _chromium

    dom, log, _png, requested = _chromium(page, tmp, screenshot=False)
    assert not [u for u in requested if not u.startswith("file:")], requested
    return dom, log



# ---------------------------------------------------------------------------
# GCS and Azure roots (emulators on loopback)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", [pytest.param("gcs", marks=pytest.mark.gcs),
                                     pytest.param("azure", marks=pytest.mark.azure)])
def test_cloud_uris_that_escape_the_root_are_never_deleted(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Other buckets or containers, ``..``, sibling prefixes, another scheme, another
    spelling of the same container, and characters a URL decoder would read (``%2e``,
    ``?``, ``#``): mark protects what lies outside the root, and the sweep deletes
    nothing outside it, on GCS and on Azure."""
    from cloud_support import new_bucket, object_plan
    from emulators import AZURITE_ACCOUNT

    emulator = request.getfixturevalue("gcs_emulator" if backend == "gcs" else "azurite")
    scheme = emulator.scheme
    url = create_sqlite_store(tmp_path / "zenml.db")
    bucket, other = new_bucket(emulator), new_bucket(emulator)
    store = populate(url, SyntheticSpec(versions=40, store_root=f"{scheme}://{bucket}/store",
                                        recent_share=0.0, seed=5))
    emulator.upload(bucket, object_plan(url, f"{scheme}://{bucket}/").items())
    other_scheme = "az" if scheme == "gs" else "gs"
    plan: list[tuple[str, str, tuple[str, str] | None]] = [
        ("another bucket, same key", f"{scheme}://{other}/store/victim-a",
         (other, "store/victim-a/")),
        ("dotdot", f"{scheme}://{bucket}/store/../outside/dotdot", (bucket, "outside/dotdot/")),
        ("sibling sharing the prefix", f"{scheme}://{bucket}/store-evil/v",
         (bucket, "store-evil/v/")),
        ("another scheme, the store's own path", f"{other_scheme}://{bucket}/store/x",
         (bucket, "store/x/")),
        ("the same container spelled another way",
         f"abfs://{bucket}@{AZURITE_ACCOUNT}.dfs.core.windows.net/store/alt",
         (bucket, "store/alt/")),
    ]
    legit = sorted(store.expected_candidates)
    hostile = legit[:len(plan)]
    for vid, (_name, uri, victim) in zip(hostile, plan, strict=True):
        _set_uri(url, vid, uri)
        if victim is not None:
            emulator.upload(victim[0], [(f"{victim[1]}precious-{i}.bin", b"keep")
                                        for i in range(2)])
    # Literal characters inside the root: each names its own prefix; what a decoder
    # would make of it (outside/encoded, store/q) must survive.
    literal = legit[len(plan):len(plan) + 3]
    for vid, rel in zip(literal, ("%2e%2e/outside/encoded", "q?generation=1", "h#frag"),
                        strict=True):
        _set_uri(url, vid, f"{scheme}://{bucket}/store/{rel}")
        emulator.upload(bucket, [(f"store/{rel}/literal.bin", b"inside")])
    emulator.upload(bucket, [("outside/encoded/precious.bin", b"keep"),
                             ("store/q/precious.bin", b"keep"), ("store/h/precious.bin", b"keep")])
    before = {b: emulator.listing(b) for b in (bucket, other)}
    options = [a for k, v in emulator.options().items() for a in ("--storage-option", f"{k}={v}")]
    manifest = tmp_path / "escape.parquet"
    marked = _invoke("mark", "--db", url, "--older-than", "0s", "--out", str(manifest), "--json",
                     *options)
    assert marked.exit_code == 0, marked.output
    decisions = _decisions(manifest)
    summary = _sweep_cli(manifest, url, *options)
    record("bad inputs tried", f"URIs escaping a {backend} store root", len(plan) + 3)
    remaining = version_ids(url)
    for vid, (name, _uri, _victim) in zip(hostile, plan, strict=True):
        assert vid in remaining, f"{name}: its version was deleted ({decisions[vid]})"
        assert decisions[vid] == (STATUS_PROTECTED, ["outside_store_root"]), (name, decisions[vid])
    assert summary["failed"] == 0
    after = {b: emulator.listing(b) for b in (bucket, other)}
    deleted = set(legit) - remaining
    assert set(literal) <= deleted
    owned = [p.split("://", 1)[1].split("/", 1)[1].rstrip("/")
             for p in _footprints_any(manifest, deleted)]
    gone = [(b, k) for b, keys in before.items() for k in keys
            if k not in after[b] and not (
                b == bucket and any(k == o or k.startswith(o + "/") for o in owned))]
    assert lost(f"objects outside a {backend} store root", len(gone)) == 0, gone
    for kept in ("outside/encoded/precious.bin", "store/q/precious.bin", "store/h/precious.bin"):
        assert kept in after[bucket]
    for rel in ("%2e%2e/outside/encoded", "q?generation=1", "h#frag"):
        assert f"store/{rel}/literal.bin" not in after[bucket]
    assert integrity_problems(url) == []
