"""Fault injection (issue 6, "Faults"): storage and database failures during a sweep.

Storage, local and S3 (moto over HTTP), through hostile fsspec wrappers around the real
filesystems (tests/faulty_fs.py, tests/s3_support.py):

- transient faults at a rate (the errors the real stacks raise: EBUSY, ETIMEDOUT,
  ECONNRESET...; ClientError InternalError/SlowDown/ServiceUnavailable,
  ReadTimeoutError, asyncio.TimeoutError, per-key DeleteObjects errors, deletes
  whose answer is lost) are retried, and the end state is the one of a fault-free
  sweep, row for row and file for file;
- permanent faults (EACCES, AccessDenied) on chosen paths stop the sweep with exit 9,
  name the path and the cause (library error, ``gc status``), go on and list every
  failure with ``--ignore-errors`` (exit 8, ``gc sweep --json``), and a sweep once the
  fault is gone ends like a clean one. The CLI runs as a subprocess with the wrappers
  installed as fsspec protocols (tests/faulty_gc.py): no hook in the library.

Database:

- MariaDB: the sweep's connection is KILLed from an admin session while its batch
  transaction holds the row locks with its deletes done and not committed (the
  pause hook); a row lock held by another session outlasts every retry (1205).
- SQLite: another connection holds the write lock (BEGIN IMMEDIATE) past the busy
  timeout, briefly (retried) and for good (the batch fails, the sweep stops).

After every failure: no batch half-applied, no dangling row
(``integrity_problems``), no live version or file lost, and for every candidate
"its files are touched only if its rows are gone". The next sweep finishes the job.
Every fault counted here was raised (counted by the wrappers or measured from the
store), and every loss figure is measured before it is asserted to be zero.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from artifact_gc.demo.synthetic import SyntheticSpec, create_sqlite_store, populate
from artifact_gc.errors import DatabaseError, StorageError
from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.run import mark
from artifact_gc.sweep.execute import execute
from artifact_gc.sweep.options import SweepOptions
from artifact_gc.sweep.plan import plan_sweep
from artifact_gc.sweep.report import SweepReport
from artifact_gc.sweep.status import sweep_status
from artifact_gc.zenml.stores import ArtifactStore
from conftest import MotoS3
from faulty_fs import FlakyFileSystem, LocalFaults
from reliability import lost, record, trials
from s3_support import Faults, FaultyS3FileSystem, list_bucket, upload_store_objects
from scenarios.helpers import (
    integrity_problems,
    list_tree,
    make_engine,
    mariadb_admin_connect,
    restore_tree,
)
from sweep_hooks import PAUSE_ENV, gc_command
from sweep_support import version_ids
from test_mariadb_scale import Store, make_store, zenml_schema  # noqa: F401 - fixtures

GC = str(Path(sys.executable).with_name("gc"))
RUNNER = str(Path(__file__).with_name("faulty_gc.py"))
RATE = 0.1


# ---------------------------------------------------------------------------
# A store with a pristine copy, and what "nothing lost" means for it
# ---------------------------------------------------------------------------


@dataclass
class Bench:
    """A synthetic store (ZenML's schema, SQLite) with files on a local or S3 root, a
    mark of it, and a pristine copy to restore between sweeps."""

    kind: str  # "local" or "s3"
    url: str
    db: Path
    root: str
    manifest: Path
    work: Path
    candidates: list[str]  # in the sweep's order (plan.sweep_order)
    all_ids: set[str]
    pristine: dict[str, int]  # files (local: relative to root; S3: bucket keys) -> size
    files_of: dict[str, set[str]]  # candidate -> its files in ``pristine``
    rel_of: dict[str, str]  # candidate -> its URI (local: relative to root; S3: key)
    dependents: dict[str, tuple[int, int, int]]  # candidate -> its own rows, pristine
    moto: MotoS3 | None = None
    _runs: int = field(default=0, repr=False)

    # -- storage ----------------------------------------------------------

    def listing(self) -> dict[str, int]:
        if self.moto is not None:
            return list_bucket(self.moto.client(), self.moto.bucket)
        return list_tree(self.root)

    def tree(self) -> dict[str, int]:
        """The listing compared between runs (local: with directories)."""
        if self.moto is not None:
            return self.listing()
        return list_tree(self.root, include_dirs=True)

    def clean_fs(self, _store: ArtifactStore) -> Any:
        if self.moto is not None:
            return self.moto.filesystem()
        import fsspec

        return fsspec.filesystem("file")

    def faulty_fs(self, faults: LocalFaults | Faults) -> Callable[[ArtifactStore], Any]:
        def factory(_store: ArtifactStore) -> Any:
            if isinstance(faults, Faults):
                assert self.moto is not None
                return FaultyS3FileSystem(faults, **self.moto.storage_options)
            return FlakyFileSystem(faults)

        return factory

    def faults(self, seed: int, *, rate: float = RATE, denied: tuple[str, ...] = ()
               ) -> LocalFaults | Faults:
        """Transient faults at ``rate`` and permanent ones on ``denied`` candidates."""
        if self.kind == "s3":
            # Per-key errors at a third of the rate: at 10% of keys nearly every
            # DeleteObjects carries a SlowDown, and the adaptive limiter (rightly)
            # slows the sweep to about a request a second.
            return Faults(rate=rate, key_rate=rate / 3, seed=seed,
                          denied=tuple(self.path_of(v) + "/" for v in denied))
        return LocalFaults(rate=rate, seed=seed, scope=self.root,
                           denied=tuple(self.path_of(v) for v in denied))

    def path_of(self, vid: str) -> str:
        """The candidate's directory as the sweep names it (S3: its key prefix)."""
        return self.rel_of[vid] if self.kind == "s3" else f"{self.root}/{self.rel_of[vid]}"

    # -- runs -------------------------------------------------------------

    def fresh_manifest(self) -> Path:
        """A copy of the pristine manifest with no journal: a sweep from scratch."""
        self._runs += 1
        target = self.work / f"run{self._runs}" / "mark.parquet"
        target.parent.mkdir()
        shutil.copy(self.manifest, target)
        return target

    def sweep(self, manifest: Path, fs: Callable[[ArtifactStore], Any] | None = None,
              db_url: str | None = None, **options: Any) -> SweepReport:
        options.setdefault("workers", 4)
        # The faults are injected into the filesystem's deletes; the undo window's
        # trash moves files instead (its faults and crashes: test_trash_storage.py,
        # test_sweep_crash.py, test_undo_crash.py).
        options.setdefault("undo_window", None)
        plan = plan_sweep(str(manifest), db_url or self.url, SweepOptions(**options))
        return execute(plan, filesystem_factory=fs or self.clean_fs)

    def end_state(self) -> tuple[dict[str, Any], dict[str, int]]:
        return _sqlite_snapshot(self.db), self.tree()

    def restore(self) -> None:
        shutil.copy(self.work / "pristine" / "zenml.db", self.db)
        if self.moto is not None:
            upload_store_objects(self.moto.client(), self.moto.bucket, self.url,
                                 self.root.split("/", 3)[3])
        else:
            restore_tree(self.work / "pristine" / "root", Path(self.root))
        assert self.listing() == self.pristine
        assert version_ids(self.url) == self.all_ids

    def reference(self, **options: Any) -> tuple[dict[str, Any], dict[str, int]]:
        """The end state of a fault-free sweep (then the store is restored)."""
        report = self.sweep(self.fresh_manifest(), **options)
        assert not report.failures and len(report.deleted) == len(self.candidates)
        state = self.end_state()
        self.restore()
        return state

    # -- what must never happen ---------------------------------------------

    def audit(self, stage: str) -> dict[str, Any]:
        """Measure the losses the sweep must never cause, record them, assert zero."""
        return _audit(stage, self.url, self.all_ids, self.candidates, self.pristine,
                      self.files_of, self.dependents, self.listing())


def _dependents(url: str, ids: list[str]) -> dict[str, tuple[int, int, int]]:
    """Per version: its visualizations, run-metadata links and tags (rows that go with
    it, in the same transaction)."""
    import sqlalchemy as sa

    counts: dict[str, list[int]] = {vid: [0, 0, 0] for vid in ids}
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            for slot, sql in enumerate((
                "SELECT artifact_version_id, count(*) FROM artifact_visualization GROUP BY 1",
                "SELECT resource_id, count(*) FROM run_metadata_resource "
                "WHERE resource_type = 'artifact_version' GROUP BY 1",
                "SELECT resource_id, count(*) FROM tag_resource "
                "WHERE resource_type = 'artifact_version' GROUP BY 1",
            )):
                for vid, n in connection.execute(sa.text(sql)):
                    if str(vid) in counts:
                        counts[str(vid)][slot] = int(n)
    finally:
        engine.dispose()
    return {vid: (a, b, c) for vid, (a, b, c) in counts.items()}


def _audit(stage: str, url: str, all_ids: set[str], candidates: list[str],
           pristine: dict[str, int], files_of: dict[str, set[str]],
           dependents: dict[str, tuple[int, int, int]], now: dict[str, int]
           ) -> dict[str, Any]:
    """The losses a sweep must never cause, measured on the store, recorded, asserted 0."""
    remaining = version_ids(url)
    owned = set().union(*files_of.values())
    kept = [vid for vid in candidates if vid in remaining]
    current = _dependents(url, kept)
    figures = {
        "live versions lost": len(all_ids - set(candidates) - remaining),
        "live files lost": sum(1 for k in pristine if k not in owned and k not in now),
        # A candidate's files may go only once its rows are gone (invariant 6 and the
        # order of a batch): any file missing while its rows remain is a loss.
        "candidate files deleted while rows remain": sum(
            1 for vid in kept for k in files_of[vid] if k not in now),
        # Half-applied batches: a version still there whose own rows (visualizations,
        # metadata links, tags) went.
        "versions kept with dependent rows deleted": sum(
            1 for vid in kept if current[vid] != dependents[vid]),
        "dangling rows": len(integrity_problems(url)),
    }
    for what, n in figures.items():
        assert lost(what, n) == 0, f"{stage}: {what}: {n}"
    return {"remaining": remaining, "listing": now}


#: Columns that change on their own (timestamps ZenML bumps), as in sweep_support.
_VOLATILE = {"updated", "last_login", "expires"}


def _sqlite_snapshot(db: Path) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table, sorted (sweep_support.db_snapshot through sqlite3,
    without reflecting ZenML's fifty tables: ten times faster)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [str(r[0]) for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        snapshot = {}
        for table in tables:
            columns = [f'"{r[1]}"' for r in conn.execute(f'PRAGMA table_info("{table}")')
                       if r[1] not in _VOLATILE]
            rows = conn.execute(f'SELECT {", ".join(columns)} FROM "{table}"').fetchall()
            snapshot[table] = sorted(tuple(map(repr, r)) for r in rows)
        return snapshot
    finally:
        conn.close()


def _query(sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _candidates(manifest: Path, url: str) -> list[str]:
    """In the sweep's order (plan.sweep_order: on MariaDB, a local store's versions by
    id; by URI otherwise)."""
    from artifact_gc.sweep.plan import sweep_order

    return sweep_order(str(manifest), url)


def _uris(url: str) -> dict[str, str]:
    import sqlalchemy as sa

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return {str(i): str(u) for i, u in connection.execute(
                sa.text("SELECT id, uri FROM artifact_version"))}
    finally:
        engine.dispose()


def _relative(candidates: list[str], uris: dict[str, str], base: str) -> dict[str, str]:
    return {vid: uris[vid][len(base):].strip("/") for vid in candidates}


def _files_of(rel_of: dict[str, str], listing: dict[str, int]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for vid, rel in rel_of.items():
        out[vid] = {k for k in listing if k == rel or k.startswith(rel + "/")}
        assert out[vid], f"candidate {vid} has no files under {rel}"
    return out


def make_bench(kind: str, tmp_path: Path, moto: MotoS3 | None = None, *,
               versions: int = 400) -> Bench:
    work = tmp_path / f"bench-{kind}"
    work.mkdir()
    db = work / "zenml.db"
    url = create_sqlite_store(db)
    if kind == "s3":
        assert moto is not None
        root = moto.url("zenml-store")
        populate(url, SyntheticSpec(versions=versions, orphan_share=0.5, store_root=root,
                                    recent_share=0.0, seed=5))
        upload_store_objects(moto.client(), moto.bucket, url, "zenml-store")
        pristine = list_bucket(moto.client(), moto.bucket)
        base = f"s3://{moto.bucket}/"
    else:
        root = str(work / "artifacts")
        populate(url, SyntheticSpec(versions=versions, orphan_share=0.5, store_root=root,
                                    write_files=True, recent_share=0.0, seed=5))
        pristine = list_tree(root)
        base = root
    manifest = work / "mark.parquet"
    mark(url, str(manifest), MarkOptions(older_than=timedelta(0)))
    candidates = _candidates(manifest, url)
    assert len(candidates) >= versions // 4
    (work / "pristine").mkdir()
    shutil.copy(db, work / "pristine" / "zenml.db")
    if kind == "local":
        shutil.copytree(root, work / "pristine" / "root", symlinks=True)
    uris = _uris(url)
    rel_of = _relative(candidates, uris, base)
    return Bench(kind=kind, url=url, db=db, root=root, manifest=manifest, work=work,
                 candidates=candidates, all_ids=set(uris), pristine=pristine,
                 files_of=_files_of(rel_of, pristine), rel_of=rel_of,
                 dependents=_dependents(url, candidates), moto=moto)


BACKENDS = [pytest.param("local", id="local"),
            pytest.param("s3", id="s3", marks=pytest.mark.s3)]


@pytest.fixture
def bench(request: pytest.FixtureRequest, tmp_path: Path) -> Bench:
    kind = request.param
    moto = request.getfixturevalue("moto_s3") if kind == "s3" else None
    return make_bench(kind, tmp_path, moto, versions=160 if kind == "s3" else 400)


def _record_faults(kind: str, faults: LocalFaults | Faults) -> int:
    for name, n in sorted(faults.raised.items()):
        record("faults injected", f"{kind} storage: {name}", n)
    return faults.total()


# ---------------------------------------------------------------------------
# 1. Storage: transient faults are retried; the end state is a clean sweep's
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bench", BACKENDS, indirect=True)
def test_transient_storage_faults_end_like_a_clean_sweep(bench: Bench) -> None:
    """Every file operation (local: each path an rm removes; S3: each request, and each
    key of a DeleteObjects at a third of the rate) fails transiently at 10%, before or
    after it took effect. Nothing fails for good, and database and files end exactly
    as a fault-free sweep of the same manifest leaves them."""
    # Small batches on S3: more requests, so that request-level faults (ClientError,
    # timeouts) happen and not only per-key ones.
    batch = 10 if bench.kind == "s3" else 25
    expected = bench.reference(batch_size=batch)
    request_faults = 0
    # S3 runs at moto's pace, and each SlowDown rightly slows the sweep: one trial in CI.
    for trial in range(trials(1 if bench.kind == "s3" else 2)):
        if trial:
            bench.restore()
        faults = bench.faults(seed=100 + trial)
        report = bench.sweep(bench.fresh_manifest(), bench.faulty_fs(faults), batch_size=batch)
        raised = _record_faults(bench.kind, faults)
        request_faults += sum(n for k, n in faults.raised.items() if "per-key" not in k)
        # Enough faults to matter, and every one of them was got past.
        assert raised >= 5, dict(faults.raised)
        assert report.retries >= 1
        assert report.failures == [], report.failures[:3]
        assert sorted(report.deleted) == sorted(bench.candidates)
        bench.audit(f"transient faults, trial {trial}")
        db, tree = bench.end_state()
        leaked = sum(1 for vid in bench.candidates for k in bench.files_of[vid] if k in tree)
        assert lost(f"{bench.kind} files leaked after transient faults", leaked) == 0
        assert db == expected[0], "database differs from a fault-free sweep"
        assert tree == expected[1], "files differ from a fault-free sweep"
        record("crash trials", f"{bench.kind} sweep under transient storage faults", 1)
    assert request_faults >= 1


# ---------------------------------------------------------------------------
# 2. Storage: permanent faults stop (exit 9), are reported, can be ignored (exit 8),
#    and the sweep resumes once they are gone. Library and command line.
# ---------------------------------------------------------------------------


def _run(args: list[str], faults: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    """``gc ARGS`` in a subprocess; with ``faults``, through tests/faulty_gc.py."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ZENML_") and k != PAUSE_ENV}
    command = [GC, *args]
    if faults is not None:
        env["ARTIFACT_GC_TEST_FAULTS"] = json.dumps(faults)
        command = [sys.executable, RUNNER, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300,
                          check=False)


@pytest.mark.parametrize("bench", BACKENDS, indirect=True)
def test_permanent_storage_faults_stop_report_and_resume(bench: Bench, tmp_path: Path) -> None:
    """Three candidates (one in the first batch) are denied for good, with transient
    faults on top. ``gc sweep`` stops at the first (exit 9) naming its path and cause,
    as ``gc status`` does; ``--ignore-errors`` goes on and lists every failure (exit 8,
    ``--json``); the library says the same (``StorageError``, ``report.failures``);
    once the denial is lifted, ``gc sweep`` finishes and the end state is a clean
    sweep's. After every step nothing is lost and no candidate's files went before its
    rows."""
    batch = 20
    expected = bench.reference(batch_size=batch)
    victims = [bench.candidates[2], bench.candidates[len(bench.candidates) // 2],
               bench.candidates[-2]]
    assert len(bench.candidates) // 2 >= 2 * batch
    manifest = str(bench.fresh_manifest())
    denial = "AccessDenied" if bench.kind == "s3" else "Permission denied"
    plan = bench.faults(seed=21, denied=tuple(victims))
    spec: dict[str, Any] = {"counts": str(tmp_path / "counts.json")}
    storage: list[str] = []
    if isinstance(plan, Faults):
        assert bench.moto is not None
        spec["s3"] = plan.as_spec()
        storage = ["--storage-option",
                   f"client_kwargs.endpoint_url={bench.moto.endpoint_url}"]
    else:
        spec["local"] = {"rate": plan.rate, "seed": plan.seed, "denied": list(plan.denied),
                         "scope": plan.scope}
    # --no-undo: the faults are injected into deletes, which the trash would replace.
    sweep = ["sweep", manifest, "--db", bench.url, "--yes", "--json", "--batch-size", str(batch),
             "--workers", "4", "--no-undo", *storage]
    raised: dict[str, int] = {}

    def counted() -> None:
        for kind, n in json.loads(Path(spec["counts"]).read_text()).items():
            raised[kind] = raised.get(kind, 0) + n
            record("faults injected", f"{bench.kind} storage via gc: {kind}", n)

    def status() -> dict[str, Any]:
        shown = _run(["status", manifest, "--json"])
        assert shown.returncode == 0, shown.stderr
        state: dict[str, Any] = json.loads(shown.stdout)
        return state

    # 1. gc sweep stops at the first denied candidate: exit 9, path and cause named.
    stopped = _run(sweep, spec)
    assert stopped.returncode == 9, stopped.stderr[-3000:]
    counted()
    assert "FAILED:" in stopped.stderr and victims[0] in stopped.stderr
    assert bench.path_of(victims[0]) in stopped.stderr and denial in stopped.stderr
    # --json still prints what was done before the stop, the failure included.
    done = json.loads(stopped.stdout)
    assert victims[0] in done["stopped"]
    assert [f["artifact_version_id"] for f in done["summary"]["failures"]] == [victims[0]]
    assert done["summary"]["deleted"] >= 1
    state = status()
    assert [f["artifact_version_id"] for f in state["failures"]] == [victims[0]]
    assert bench.path_of(victims[0]) in state["failures"][0]["cause"]
    after_stop = bench.audit("gc sweep exit 9")
    # It stopped at batch 1, whose files failed while batch 2 went through the
    # database (a batch's files are deleted beside the next batch's transaction):
    # the rows of those two batches are gone, nothing after them was touched.
    assert not set(bench.candidates[:2 * batch]) & after_stop["remaining"]
    assert set(bench.candidates[2 * batch:]) <= after_stop["remaining"]

    # 2. --ignore-errors goes on and lists every failure (the first one, retried and
    # still denied, and the others): exit 8.
    ignored = _run([*sweep, "--ignore-errors"], spec)
    assert ignored.returncode == 8, ignored.stderr[-3000:]
    counted()
    summary = json.loads(ignored.stdout)["summary"]
    listed = {f["artifact_version_id"]: f["cause"] for f in summary["failures"]}
    assert sorted(listed) == sorted(victims), listed
    for vid, cause in listed.items():
        assert bench.path_of(vid) in cause and denial in cause, cause
    assert summary["failed"] == len(victims)
    state = status()
    assert sorted(f["artifact_version_id"] for f in state["failures"]) == sorted(victims)
    assert state["failed"] == state["remaining"] == len(victims)
    middle = bench.audit("gc sweep --ignore-errors exit 8")
    # The victims' rows went first (mode all); their files wait for the resume.
    assert not set(victims) & middle["remaining"]
    assert all(k in middle["listing"] for vid in victims for k in bench.files_of[vid])

    # 3. The library reports the same (denials only): a StorageError naming path and
    # cause when it stops, every failure in the report when it goes on.
    library = bench.faults(seed=22, rate=0.0, denied=tuple(victims))
    with pytest.raises(StorageError) as error:
        bench.sweep(Path(manifest), bench.faulty_fs(library), batch_size=batch)
    assert victims[0] in error.value.message and denial in error.value.message
    assert bench.path_of(victims[0]) in error.value.message
    report = bench.sweep(Path(manifest), bench.faulty_fs(library), batch_size=batch,
                         ignore_errors=True)
    assert sorted(f.artifact_version_id for f in report.failures) == sorted(victims)
    for failure in report.failures:
        assert failure.stage == "files" and denial in failure.cause
        assert bench.path_of(failure.artifact_version_id) in failure.cause, failure
    assert report.deleted == []
    _record_faults(bench.kind, library)
    bench.audit("library sweeps with the denial")
    assert sum(n for k, n in raised.items() if k.startswith(("EACCES", "AccessDenied"))) >= 3
    assert library.total(permanent=True) >= 3
    assert sum(n for k, n in raised.items() if not k.startswith(("EACCES", "AccessDenied"))) >= 1

    # 4. The denial lifted: gc sweep finishes the job, and ends like a clean sweep.
    resumed = _run(sweep)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["summary"]["deleted"] == len(victims)
    assert status()["remaining"] == 0
    bench.audit("gc sweep after the fault was gone")
    assert bench.end_state() == expected
    record("crash trials", f"{bench.kind} sweep under permanent storage faults "
                           "(exit 9, 8, then 0)", 1)


# ---------------------------------------------------------------------------
# 4. SQLite: the write lock held past the busy timeout
# ---------------------------------------------------------------------------


class _WriteLockHolder(threading.Thread):
    """Another connection holding SQLite's write lock (``BEGIN IMMEDIATE``): taken once
    ``ready()`` is true, let go once ``done()`` is true or ``release`` is set."""

    def __init__(self, db: Path, ready: Callable[[], bool],
                 done: Callable[[], bool] = lambda: False) -> None:
        super().__init__(daemon=True)
        self.db, self.ready, self.done = db, ready, done
        self.taken = threading.Event()
        self.release = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        import sqlite3

        try:
            deadline = time.monotonic() + 120
            while not self.ready() and not self.release.is_set():
                assert time.monotonic() < deadline, "the sweep never got going"
                time.sleep(0.01)
            conn = sqlite3.connect(self.db, timeout=30, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                self.taken.set()
                while not self.done() and not self.release.wait(0.02):
                    assert time.monotonic() < deadline, "held too long"
                conn.execute("ROLLBACK")
            finally:
                conn.close()
        except BaseException as exc:  # reported by the test
            self.error = exc


def _row_count(db: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM artifact_version").fetchone()[0])
    finally:
        conn.close()


def _journal_events(manifest: Path, event: str | None = None) -> int:
    journal = Path(str(manifest) + ".journal")
    if not journal.exists() or not any(journal.glob("*.parquet")):
        return 0
    where = f"WHERE event = '{event}'" if event else ""
    return int(_query(f"SELECT count(*) FROM read_parquet('{journal}/*.parquet') {where}"
                      )[0][0])


@pytest.mark.parametrize("bench", [pytest.param("local", id="local")], indirect=True)
def test_sqlite_write_lock_held_past_the_busy_timeout(bench: Bench) -> None:
    expected = bench.reference(batch_size=20)
    url = bench.url + "?timeout=1"

    # (a) Taken before the sweep starts and let go 2.2 s (two busy timeouts) after
    # the first batch's intent is journaled: the batch's BEGIN IMMEDIATE fails
    # ("database is locked") at least once, is retried, and goes through.
    manifest = bench.fresh_manifest()
    intent_at: list[float] = []

    def two_timeouts_after_intent() -> bool:
        if not intent_at and _journal_events(manifest, "intent"):
            intent_at.append(time.monotonic())
        return bool(intent_at) and time.monotonic() - intent_at[0] > 2.2

    holder = _WriteLockHolder(bench.db, lambda: True, two_timeouts_after_intent)
    holder.start()
    assert holder.taken.wait(30)
    try:
        report = bench.sweep(manifest, db_url=url, batch_size=20)
    finally:
        holder.release.set()
        holder.join(30)
    assert holder.error is None, holder.error
    assert report.retries >= 1, report.as_dict()
    record("faults injected", "sqlite write lock past the busy timeout (retried)",
           report.retries)
    assert not report.failures and sorted(report.deleted) == sorted(bench.candidates)
    bench.audit("sqlite lock retried")
    assert bench.end_state() == expected
    bench.restore()

    # (b) Taken once the first batch has committed and held for good: a later batch fails
    # after every retry, rolled back whole; the sweep stops; nothing of that batch or
    # after it is touched.
    manifest = bench.fresh_manifest()
    total = len(bench.all_ids)
    holder = _WriteLockHolder(bench.db, lambda: _row_count(bench.db) < total)
    holder.start()
    try:
        with pytest.raises(DatabaseError, match="database is locked"):
            bench.sweep(manifest, db_url=url, batch_size=20)
    finally:
        holder.release.set()
        holder.join(30)
    assert holder.error is None and holder.taken.is_set(), holder.error
    status = sweep_status(str(manifest)).as_dict()
    assert status["failed"] >= 1 and status["done"] >= 20, status
    assert all("database is locked" in f["cause"] for f in status["failures"])
    stopped = bench.audit("sqlite lock held for good")
    failed = {f["artifact_version_id"] for f in status["failures"]}
    assert failed <= stopped["remaining"]  # rolled back whole: every row is still there
    assert all(k in stopped["listing"] for vid in failed for k in bench.files_of[vid])
    record("faults injected", "sqlite write lock held past every retry", 1)

    final = bench.sweep(manifest, batch_size=20)
    assert not final.failures
    assert sweep_status(str(manifest)).as_dict()["remaining"] == 0
    bench.audit("sqlite resumed")
    assert bench.end_state() == expected
    record("crash trials", "sqlite sweep against a held write lock", 2)


# ---------------------------------------------------------------------------
# 5. MariaDB: the connection killed inside the batch; a lock held past the retries
# ---------------------------------------------------------------------------


@dataclass
class MariaView:
    """A MariaDB store (make_store) and its files, with the same audit as Bench."""

    store: Store
    manifest: Path
    candidates: list[str]
    all_ids: set[str]
    pristine: dict[str, int]
    files_of: dict[str, set[str]]
    dependents: dict[str, tuple[int, int, int]]

    def audit(self, stage: str) -> dict[str, Any]:
        return _audit(stage, self.store.zenml_url, self.all_ids, self.candidates,
                      self.pristine, self.files_of, self.dependents,
                      list_tree(self.store.root))

    def finished(self) -> None:
        remaining = self.audit("finished")["remaining"]
        assert not set(self.candidates) & remaining
        leaked = sum(1 for k in set().union(*self.files_of.values())
                     if k in list_tree(self.store.root))
        assert lost("mariadb candidate files leaked", leaked) == 0


@pytest.fixture
def maria(make_store: Callable[..., Store], tmp_path: Path  # noqa: F811
          ) -> MariaView:
    store = make_store(300, 0.5)
    manifest = tmp_path / "mark.parquet"
    mark(store.sweep_url, str(manifest), MarkOptions(older_than=timedelta(0)))
    candidates = _candidates(manifest, store.sweep_url)
    uris = _uris(store.sweep_url)
    pristine = list_tree(store.root)
    return MariaView(store, manifest, candidates, set(uris), pristine,
                     _files_of(_relative(candidates, uris, str(store.root)), pristine),
                     _dependents(store.sweep_url, candidates))


def _gc_sweep(maria: MariaView, *args: str, url: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    full_env = {**base, **(env or {})}
    return subprocess.Popen(
        [*gc_command(full_env), "sweep", str(maria.manifest), "--db",
         url or maria.store.sweep_url, "--yes", "--json", "--workers", "4", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)


def _sweep_transactions(database: str) -> list[tuple[int, int]]:
    """(connection id, rows modified) of every open InnoDB transaction in ``database``."""
    conn = mariadb_admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT t.trx_mysql_thread_id, t.trx_rows_modified "
                "FROM information_schema.innodb_trx t "
                "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
                "WHERE p.db = %s", (database,))
            return [(int(a), int(b)) for a, b in cur.fetchall()]
    finally:
        conn.close()


def _wait(condition: Callable[[], bool], what: str, proc: subprocess.Popen[str],
          limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert proc.poll() is None, f"the sweep ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_mariadb_connection_killed_inside_the_batch_transaction(maria: MariaView,
                                                                tmp_path: Path) -> None:
    """The sweep pauses in batch 2 with its version rows locked FOR UPDATE and every
    delete of the batch done, not committed. Its connection is KILLed from an admin
    session: InnoDB rolls the batch back whole. Once resumed, the commit meets the
    dead connection (2013/2006), the batch is retried on a new connection from the
    start (re-verified, re-deleted) and the sweep finishes with nothing lost."""
    batch = 40
    second = maria.candidates[batch:2 * batch]
    pause = tmp_path / "pause"
    pause.mkdir()
    proc = _gc_sweep(maria, "--batch-size", str(batch),
                     env={PAUSE_ENV: f"in_db_batch:2:{pause}"})
    try:
        _wait(lambda: (pause / "paused").exists(), "the pause in batch 2", proc)
        open_trx = [t for t in _sweep_transactions(maria.store.database) if t[1] > 0]
        assert len(open_trx) == 1, open_trx
        victim, modified = open_trx[0]
        assert modified >= len(second)  # every delete of the batch was done
        admin = mariadb_admin_connect()
        try:
            with admin.cursor() as cur:
                cur.execute(f"KILL CONNECTION {victim}")
        finally:
            admin.close()
        deadline = time.monotonic() + 30
        while any(t[0] == victim for t in _sweep_transactions(maria.store.database)):
            assert time.monotonic() < deadline, "the killed transaction never went away"
            time.sleep(0.1)
        record("faults injected", "mariadb connection killed inside the batch transaction", 1)
        # Rolled back whole: every row of batch 2 is back, none of its files touched.
        during = maria.audit("connection killed, before the sweep noticed")
        assert set(second) <= during["remaining"]
    finally:
        (pause / "resume").touch()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-4000:]
    summary = json.loads(out)["summary"]
    assert summary["retries"] >= 1, summary
    assert summary["deleted"] == len(maria.candidates) and summary["failed"] == 0, summary
    maria.finished()
    record("crash trials", "mariadb connection killed mid-batch", 1)


def test_mariadb_lock_wait_timeout_outlasting_the_retries(maria: MariaView) -> None:
    """Another session holds FOR UPDATE on a candidate of batch 2 for the whole sweep;
    the sweep's sessions wait 1 s (``innodb_lock_wait_timeout``). Batch 1 goes
    through; batch 2 times out (1205) on every retry, is rolled back and journaled as
    failed, and the sweep stops with exit 3 naming the cause. Nothing of batch 2 is
    deleted, rows or files. Once the lock is gone the next sweep finishes the job."""
    batch = 40
    second = maria.candidates[batch:2 * batch]
    holder = mariadb_admin_connect(maria.store.database)
    try:
        holder.autocommit(False)
        with holder.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT id FROM artifact_version WHERE id = %s FOR UPDATE",
                        (second[len(second) // 2],))
        proc = _gc_sweep(maria, "--batch-size", str(batch),
                         url=maria.store.sweep_url_with(innodb_lock_wait_timeout=1))
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 3, (out[-2000:], err[-4000:])
        assert "Lock wait timeout" in err and "gc sweep again" in err, err[-2000:]
        status = sweep_status(str(maria.manifest)).as_dict()
        assert sorted(f["artifact_version_id"] for f in status["failures"]) == sorted(second)
        assert status["done"] == batch, status
        stopped = maria.audit("lock wait timeout past every retry")
        assert set(second) <= stopped["remaining"]
        assert all(k in stopped["listing"] for vid in second for k in maria.files_of[vid])
        record("faults injected", "mariadb lock wait timeout (1205) past every retry", 1)
    finally:
        holder.rollback()
        holder.close()
    proc = _gc_sweep(maria, "--batch-size", str(batch))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-4000:]
    assert json.loads(out)["summary"]["deleted"] == len(maria.candidates) - batch
    maria.finished()
    record("crash trials", "mariadb batch failed on a held row lock, resumed", 1)


@pytest.fixture(autouse=True)
def _no_leftover_pause_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(PAUSE_ENV, raising=False)
    yield
