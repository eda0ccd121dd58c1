"""gc on a MariaDB metadata store at scale, next to a live ZenML (issue 5, MariaDB part).

- Mark streams its reads: the Python memory a table read needs is bounded by the chunk,
  not by the table (tracemalloc over 10x the rows).
- A sweep of 20k orphans holds only short transactions (every InnoDB transaction of
  the sweep's connections is watched from outside through ``information_schema``),
  and a real ZenML pipeline run completes while a sweep transaction is open, with
  every invariant holding afterwards.
- A real lock-wait timeout (1205) and a real deadlock (1213) are retried, and the
  retries show in ``gc sweep --json``.

The stores are synthetic (bulk inserts) on the schema ZenML's own migrations create.
The sweep runs as a subprocess under its own MariaDB user, so that the transaction
watcher can tell its connections from ZenML's and the test's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from artifact_gc.demo.synthetic import SyntheticSpec, populate
from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.run import mark
from artifact_gc.metadb import reader
from scenarios.helpers import (
    BUILD_ENV,
    MARIADB_HOST,
    MARIADB_PORT,
    integrity_problems,
    make_engine,
    mariadb_admin_connect,
    mariadb_available,
    mariadb_clone_database,
    mariadb_create_database,
    mariadb_drop_database,
    mariadb_grant,
    require_server,
)
from sweep_hooks import PAUSE_ENV, gc_command

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]

GC = str(Path(sys.executable).with_name("gc"))

#: The sweep's own MariaDB user: the transaction watcher follows this user's sessions.
SWEEP_USER, SWEEP_PASSWORD = "gc_sweeper", "artifact-gc-sweeper-pw"

#: InnoDB's default ``innodb_lock_wait_timeout``: a transaction of ours that ran this
#: long would make a concurrent ZenML writer fail. A safety bound, not a speed target.
INNODB_DEFAULT_LOCK_WAIT = 50.0


# ---------------------------------------------------------------------------
# Stores
# ---------------------------------------------------------------------------


def _zenml_env(config_dir: Path, store_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env.update(BUILD_ENV)
    env.update(ZENML_CONFIG_PATH=str(config_dir), ZENML_STORE_URL=store_url)
    return env


@pytest.fixture(scope="module")
def zenml_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database whose schema (and default rows) ZenML's own migrations created; each
    test clones it instead of migrating again."""
    why = mariadb_available()
    if why:
        require_server(why)
    name = f"gc_schema_{uuid.uuid4().hex[:12]}"
    url = mariadb_create_database(name)
    try:
        config = tmp_path_factory.mktemp("zenml-schema-config")
        proc = subprocess.run(
            [sys.executable, "-c", "from zenml.client import Client; Client().zen_store"],
            env=_zenml_env(config, url), capture_output=True, text=True, timeout=300,
            check=False,
        )
        assert proc.returncode == 0, f"ZenML could not migrate {name}:\n{proc.stderr[-4000:]}"
        yield name
    finally:
        mariadb_drop_database(name)


@dataclass
class Store:
    database: str
    zenml_url: str  # mysql://zenml:pw@host:port/db, as ZenML takes it
    sweep_url: str  # mysql+pymysql://gc_sweeper:pw@host:port/db
    root: Path
    config_dir: Path
    orphans: set[str]
    live: set[str]

    def sweep_url_with(self, **session: int) -> str:
        """The sweep URL with session variables set on every connection it opens."""
        init = "SET SESSION " + ", ".join(f"{k} = {v}" for k, v in session.items())
        return f"{self.sweep_url}?init_command={urllib.parse.quote(init)}"


def _grant_sweeper(database: str) -> None:
    mariadb_grant(SWEEP_USER, SWEEP_PASSWORD, database)


@pytest.fixture
def make_store(
    zenml_schema: str, mariadb_url_factory: Callable[..., str], tmp_path: Path
) -> Callable[..., Store]:
    def make(versions: int, orphan_share: float) -> Store:
        zenml_url = mariadb_url_factory("gc_scale")
        database = zenml_url.rsplit("/", 1)[1]
        mariadb_clone_database(zenml_schema, database)
        _grant_sweeper(database)
        root = tmp_path / "artifacts"
        ids = tmp_path / "ids"
        populate("mysql+pymysql://" + zenml_url[len("mysql://"):], SyntheticSpec(
            versions=versions, orphan_share=orphan_share, store_root=str(root),
            write_files=True, recent_share=0.0, ids_dir=ids,
        ))
        config_dir = tmp_path / "zenml-config"
        config_dir.mkdir()
        return Store(
            database=database,
            zenml_url=zenml_url,
            sweep_url=(f"mysql+pymysql://{SWEEP_USER}:{SWEEP_PASSWORD}@{MARIADB_HOST}:"
                       f"{MARIADB_PORT}/{database}"),
            root=root,
            config_dir=config_dir,
            orphans=set((ids / "orphans.txt").read_text().split()),
            live=set((ids / "live.txt").read_text().split()),
        )

    return make


def _mark(store: Store, out: Path) -> set[str]:
    """Mark ``store``; return the candidates' ids."""
    import duckdb

    mark(store.sweep_url, str(out), MarkOptions(older_than=timedelta(0)))
    rows = duckdb.sql(f"SELECT artifact_version_id FROM read_parquet('{out}') "
                      "WHERE status = 'candidate'").fetchall()
    return {str(r[0]) for r in rows}


def _version_ids(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {str(r[0]) for r in conn.execute(sa.text("SELECT id FROM artifact_version"))}
    finally:
        engine.dispose()


def _uris(url: str, ids: set[str]) -> dict[str, str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {str(i): str(u) for i, u in conn.execute(
                sa.text("SELECT id, uri FROM artifact_version")) if str(i) in ids}
    finally:
        engine.dispose()


def _sweep(store: Store, manifest: Path, url: str | None = None,
           env: dict[str, str] | None = None, *args: str) -> subprocess.Popen[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen(
        [*gc_command(full_env), "sweep", str(manifest), "--db", url or store.sweep_url, "--yes",
         "--json", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
    )


def _summary(proc: subprocess.Popen[str], timeout: float = 300) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"gc sweep exited {proc.returncode}:\n{err[-4000:]}"
    summary: dict[str, Any] = json.loads(out)["summary"]
    return summary


# ---------------------------------------------------------------------------
# Watching InnoDB transactions from outside
# ---------------------------------------------------------------------------


@dataclass
class Trx:
    first_seen: float
    last_seen: float
    started_age: float  # NOW() - trx_started at the last sighting (whole seconds: <= +1 s)
    locking: bool = False
    lock_wait: bool = False
    during_pause: bool = False

    @property
    def observed(self) -> float:
        return self.last_seen - self.first_seen


@dataclass
class TrxWatcher:
    """Polls ``information_schema.innodb_trx`` for ``user``'s sessions in ``database``.

    InnoDB serves that table from a cache that it refreshes only when nobody has read
    it for 100 ms: polling every few ms would freeze it. So it is polled every 120 ms,
    and a transaction's observed duration is exact to about a poll interval; the age
    from ``trx_started`` (whole seconds) is an upper bound, at most 1 s too high.
    A transaction is keyed by (session, trx_id, trx_started), and one that disappears
    for a poll and comes back is a new one (read-only ones reuse a pseudo id)."""

    user: str
    database: str
    interval: float = 0.12
    paused: Callable[[], bool] = lambda: False
    seen: dict[tuple[Any, ...], Trx] = field(default_factory=dict)
    polls: int = 0
    paused_polls: int = 0
    max_gap: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: BaseException | None = None

    def __enter__(self) -> TrxWatcher:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)

    def _run(self) -> None:
        try:
            conn = mariadb_admin_connect()
        except BaseException as exc:  # reported by the test
            self.error = exc
            return
        previous: set[tuple[Any, ...]] = set()
        counter: dict[tuple[Any, ...], int] = {}
        last = time.monotonic()
        try:
            with conn.cursor() as cur:
                while not self._stop.is_set():
                    cur.execute(
                        "SELECT t.trx_mysql_thread_id, t.trx_id, t.trx_started, t.trx_state,"
                        " t.trx_lock_structs, t.trx_rows_modified,"
                        " TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6)) / 1e6"
                        " FROM information_schema.innodb_trx t"
                        " JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id"
                        " WHERE p.user = %s AND p.db = %s",
                        (self.user, self.database),
                    )
                    now = time.monotonic()
                    self.max_gap, last = max(self.max_gap, now - last), now
                    paused = self.paused()
                    self.paused_polls += paused
                    current: set[tuple[Any, ...]] = set()
                    for thread, trx_id, started, state, locks, modified, age in cur.fetchall():
                        base = (thread, trx_id, started)
                        if base not in previous:
                            counter[base] = counter.get(base, 0) + 1
                        key = (*base, counter[base])
                        current.add(base)
                        trx = self.seen.setdefault(key, Trx(now, now, float(age)))
                        trx.last_seen, trx.started_age = now, float(age)
                        trx.locking |= bool(locks or modified)
                        trx.lock_wait |= state == "LOCK WAIT"
                        trx.during_pause |= paused
                    previous = current
                    self.polls += 1
                    time.sleep(self.interval)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            conn.close()

    def longest(self, *, locking: bool = False, include_paused: bool = False) -> Trx | None:
        chosen = [t for t in self.seen.values()
                  if (t.locking or not locking) and (include_paused or not t.during_pause)]
        return max(chosen, key=lambda t: t.observed, default=None)

    def lock_waits(self) -> int:
        return sum(1 for t in self.seen.values() if t.lock_wait)


def _report(label: str, watcher: TrxWatcher) -> str:
    parts = [f"{label}: {len(watcher.seen)} sweep transactions seen in {watcher.polls} polls "
             f"({watcher.paused_polls} while paused; longest gap {watcher.max_gap:.3f} s)"]
    for name, trx in (("longest", watcher.longest()),
                      ("longest locking", watcher.longest(locking=True)),
                      ("held open by the test's pause",
                       watcher.longest(include_paused=True))):
        if trx is not None:
            parts.append(f"{name} {trx.observed:.3f} s observed "
                         f"(NOW()-trx_started {trx.started_age:.3f} s)")
    return "; ".join(parts)


# ---------------------------------------------------------------------------
# A real ZenML pipeline, in a subprocess
# ---------------------------------------------------------------------------

PIPELINE = textwrap.dedent('''
    import json, sys
    from typing import Annotated

    from zenml import pipeline, step
    from zenml.client import Client


    @step(enable_cache=False)
    def produce() -> Annotated[dict[str, int], "gc_live_writer_data"]:
        return {"a": 1, "b": 2, "c": 39}


    @step(enable_cache=False)
    def total(data: dict[str, int]) -> Annotated[int, "gc_live_writer_total"]:
        return sum(data.values())


    @pipeline(enable_cache=False)
    def gc_live_writer() -> None:
        total(produce())


    client = Client()
    if sys.argv[1] == "run":
        run = client.get_pipeline_run(gc_live_writer().id)
        versions = {name: [v.id.hex for v in vs][0]
                    for s in run.steps.values() for name, vs in s.outputs.items()}
        print(json.dumps({"run": run.id.hex, "status": run.status.value,
                          "versions": versions}))
    else:
        run = client.get_pipeline_run(sys.argv[2])
        values = {name: client.get_artifact_version(vid).load()
                  for name, vid in json.loads(sys.argv[3]).items()}
        print(json.dumps({"status": run.status.value,
                          "steps": {n: s.status.value for n, s in run.steps.items()},
                          "values": values}))
''')


def _zenml(store: Store, tmp_path: Path, *args: str) -> dict[str, Any]:
    script = tmp_path / "live_writer.py"
    script.write_text(PIPELINE)
    proc = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path,
                          env=_zenml_env(store.config_dir, store.zenml_url),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"ZenML {args[0]} failed:\n{proc.stderr[-6000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------------------
# 1. Streaming reads
# ---------------------------------------------------------------------------


def test_streaming_read_memory_does_not_grow_with_the_table(
    make_store: Callable[..., Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``reader.load_table`` on MySQL holds one chunk of rows in Python at a time.

    The same read over 10x the rows (the versions table joined with MariaDB's sequence
    engine) must not need more Python memory: tracemalloc counts every Python object
    the driver and the reader make (DuckDB's and Arrow's buffers are not Python's)."""
    import duckdb

    store = make_store(2000, 0.3)
    monkeypatch.setattr(reader, "CHUNK_ROWS", 2000)
    engine = sa.create_engine(store.sweep_url)
    columns = [("id", "UUID"), ("uri", "VARCHAR"), ("version", "VARCHAR"),
               ("created", "TIMESTAMP"), ("n", "BIGINT")]
    peaks: dict[int, int] = {}
    try:
        for copies in (10, 100):
            sql = ("SELECT CAST(v.id AS CHAR), CAST(v.uri AS CHAR), CAST(v.version AS CHAR), "
                   "CAST(v.created AS CHAR), CAST(s.seq AS CHAR) "
                   f"FROM artifact_version v CROSS JOIN seq_1_to_{copies} s")
            con = duckdb.connect()
            tracemalloc.start()
            try:
                reader.load_table(con, "t", engine, store.sweep_url, sql, columns)
                peaks[copies] = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            row = con.execute("SELECT count(*), count(DISTINCT id), count(created) "
                              "FROM t").fetchone()
            con.close()
            assert row == (2000 * copies, 2000, 2000 * copies)
    finally:
        engine.dispose()
    print(f"\nPython peak during load_table: 20k rows {peaks[10] / 1e6:.1f} MB, "
          f"200k rows {peaks[100] / 1e6:.1f} MB")
    # Flat: 10x the rows may not cost even 1.5x the Python memory.
    assert peaks[100] < 1.5 * peaks[10], peaks


# ---------------------------------------------------------------------------
# 2. Short transactions, and a live ZenML writer
# ---------------------------------------------------------------------------


def test_sweep_of_20k_orphans_holds_short_transactions_beside_a_live_pipeline(
    make_store: Callable[..., Store], tmp_path: Path
) -> None:
    """(a) Every transaction the sweep holds is far below InnoDB's lock wait timeout.
    (b) A real ZenML pipeline runs to completion while a sweep transaction is open
    (the sweep paused inside batch 3, its version rows locked FOR UPDATE and its
    deletes not yet committed); afterwards the run and its artifacts are intact, every
    live version and its files too, and no row dangles."""
    store = make_store(25_500, 0.8)
    manifest = tmp_path / "mark.parquet"
    candidates = _mark(store, manifest)
    assert len(candidates) >= 20_000 and candidates <= store.orphans
    uris = _uris(store.zenml_url, store.live | candidates)
    existed = {vid: Path(uri).exists() for vid, uri in uris.items()}
    pause = tmp_path / "pause"
    pause.mkdir()

    def paused() -> bool:
        return (pause / "paused").exists() and not (pause / "resume").exists()

    with TrxWatcher(SWEEP_USER, store.database, paused=paused) as watcher:
        sweep = _sweep(store, manifest, env={
            PAUSE_ENV: f"in_db_batch:3:{pause}"})
        try:
            while not (pause / "paused").exists():
                assert sweep.poll() is None, f"the sweep ended early: {sweep.communicate()}"
                time.sleep(0.05)
            run = _zenml(store, tmp_path, "run")
        finally:
            (pause / "resume").touch()
        summary = _summary(sweep)
    assert watcher.error is None, watcher.error
    print("\n" + _report("sweep of 20k orphans", watcher))
    held = watcher.longest(include_paused=True)
    assert held is not None and held.during_pause  # the watcher did see the open batch
    longest = watcher.longest(locking=True)
    # Transactions shorter than a poll may go unseen; those seen are all far below
    # the bound (None: every other one was shorter than a poll).
    if longest is not None:
        assert longest.observed < INNODB_DEFAULT_LOCK_WAIT
        assert longest.started_age < INNODB_DEFAULT_LOCK_WAIT

    # The pipeline completed while the batch was open, and the batch then went through.
    assert run["status"] == "completed", run
    assert summary["deleted"] == len(candidates) and summary["failed"] == 0, summary
    assert summary["revived"] == 0
    remaining = _version_ids(store.zenml_url)
    assert not candidates & remaining
    assert store.live <= remaining
    assert set(run["versions"].values()) <= remaining
    assert integrity_problems(store.zenml_url) == []
    assert all(existed[vid] for vid in candidates)
    for vid, uri in uris.items():
        assert Path(uri).exists() == (existed[vid] and vid not in candidates), uri
    # ZenML's own client still reads the run and loads what it wrote.
    check = _zenml(store, tmp_path, "check", run["run"], json.dumps(run["versions"]))
    assert check == {
        "status": "completed",
        "steps": {"produce": "completed", "total": "completed"},
        "values": {"gc_live_writer_data": {"a": 1, "b": 2, "c": 39},
                   "gc_live_writer_total": 42},
    }


# ---------------------------------------------------------------------------
# 3. Lock-wait timeouts and deadlocks are retried
# ---------------------------------------------------------------------------


def _first_candidates(store: Store, manifest: Path, n: int) -> list[str]:
    """The first ``n`` candidates in the sweep's order (``plan.sweep_order``: on
    MariaDB, a local store's versions by id)."""
    from artifact_gc.sweep.plan import sweep_order

    return sweep_order(str(manifest), store.sweep_url)[:n]


def _wait_for(condition: Callable[[], bool], what: str, sweep: subprocess.Popen[str],
              limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert sweep.poll() is None, f"the sweep ended before {what}: {sweep.communicate()}"
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def test_lock_wait_timeout_is_retried(make_store: Callable[..., Store], tmp_path: Path) -> None:
    """Another session holds a row lock on a candidate of the first batch. The sweep's
    ``SELECT ... FOR UPDATE`` times out (1205, after 1 s: the sweep's sessions get
    ``innodb_lock_wait_timeout=1`` through the URL's ``init_command``); the sweep rolls
    the batch back and retries it; once the lock is let go the retry goes through and
    the sweep finishes with everything deleted and the retry in its summary."""
    store = make_store(600, 0.5)
    manifest = tmp_path / "mark.parquet"
    candidates = _mark(store, manifest)
    target = _first_candidates(store, manifest, 1)[0]
    holder = mariadb_admin_connect(store.database)
    try:
        holder.autocommit(False)
        with holder.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT id FROM artifact_version WHERE id = %s FOR UPDATE", (target,))
        with TrxWatcher(SWEEP_USER, store.database) as watcher:
            sweep = _sweep(store, manifest,
                           store.sweep_url_with(innodb_lock_wait_timeout=1),
                           None, "--batch-size", "100")
            try:
                # Two waiting transactions: the first timed out, and the retry waits.
                _wait_for(lambda: watcher.lock_waits() >= 2, "a retried lock wait", sweep)
            finally:
                holder.rollback()
            summary = _summary(sweep)
        assert watcher.error is None, watcher.error
    finally:
        holder.close()
    assert summary["retries"] >= 1, summary
    assert summary["deleted"] == len(candidates) and summary["failed"] == 0, summary
    remaining = _version_ids(store.zenml_url)
    assert target not in remaining and not candidates & remaining
    assert store.live <= remaining
    assert integrity_problems(store.zenml_url) == []


def test_deadlock_is_retried(make_store: Callable[..., Store], tmp_path: Path) -> None:
    """A real deadlock (1213) with the sweep as InnoDB's victim: another session locks
    the last row of the first batch, the sweep locks the rows before it and waits,
    then the other session asks for the first row. InnoDB rolls back the lighter
    transaction, and the other session made itself the heavier one by modifying a few
    thousand rows first. The sweep retries the batch and finishes."""
    store = make_store(600, 0.5)
    manifest = tmp_path / "mark.parquet"
    candidates = _mark(store, manifest)
    batch = sorted(_first_candidates(store, manifest, 100))
    first, last = batch[0], batch[-1]
    holder = mariadb_admin_connect(store.database)
    try:
        holder.autocommit(False)
        with holder.cursor() as cur:
            cur.execute("CREATE TABLE gc_test_ballast (n INT PRIMARY KEY) ENGINE=InnoDB")
            cur.execute("BEGIN")
            cur.execute("INSERT INTO gc_test_ballast SELECT seq FROM seq_1_to_20000")
            cur.execute("SELECT id FROM artifact_version WHERE id = %s FOR UPDATE", (last,))
            with TrxWatcher(SWEEP_USER, store.database) as watcher:
                sweep = _sweep(store, manifest, None, None, "--batch-size", "100")
                try:
                    _wait_for(lambda: watcher.lock_waits() >= 1, "the sweep's lock wait",
                              sweep)
                    # Closes the cycle. This returns only once the sweep's transaction,
                    # which holds ``first``, is gone: InnoDB rolled it back as the
                    # deadlock's victim (it changed fewer rows), with error 1213.
                    cur.execute("SELECT id FROM artifact_version WHERE id = %s FOR UPDATE",
                                (first,))
                finally:
                    holder.rollback()
                summary = _summary(sweep)
            assert watcher.error is None, watcher.error
            cur.execute("DROP TABLE gc_test_ballast")
    finally:
        holder.close()
    assert summary["retries"] >= 1, summary
    assert summary["deleted"] == len(candidates) and summary["failed"] == 0, summary
    remaining = _version_ids(store.zenml_url)
    assert not candidates & remaining and store.live <= remaining
    assert integrity_problems(store.zenml_url) == []
