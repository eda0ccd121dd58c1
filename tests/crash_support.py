"""Support for the randomized crash suite (tests/test_reliability_crash.py).

- :class:`Kill` is one SIGKILL drawn from a seeded RNG: at a named crash point of the
  sweep after a random number of hits (``ARTIFACT_GC_TEST_KILL_AT``), or from outside
  after a random delay, so that the instants between the named points are hit too.
- :func:`run_gc` runs the real ``gc`` console script and delivers the kill.
- :class:`Footprints` reads a manifest: which versions are candidates, which are kept,
  and which paths each one owns; :meth:`Footprints.file_losses` turns a listing of the
  store into the two figures that matter (live files lost, files leaked).
- MariaDB: a database restored to a pristine twin by copying back only the tables
  whose checksum changed (the twin's name must stay, a manifest names its database).
- S3: a moto server on loopback for a whole module, and a bucket restored by putting
  back the objects a sweep deleted.

Everything runs against real engines; nothing here stands in for a component.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artifact_gc.mark.sizes import footprint_paths
from artifact_gc.sweep.hooks import POINTS
from scenarios.helpers import mariadb_admin_connect
from sweep_hooks import KILL_ENV, PAUSE_ENV, gc_command

CRASH_SEED_ENV = "ARTIFACT_GC_CRASH_SEED"
DEFAULT_CRASH_SEED = 20261128

#: The sweep's named crash points (gc/artifact_gc/sweep/hooks.py).
KILL_POINTS = POINTS


def crash_seed() -> int:
    """The suite's seed: ``ARTIFACT_GC_CRASH_SEED`` or a fixed default."""
    raw = os.environ.get(CRASH_SEED_ENV, "").strip()
    return int(raw) if raw else DEFAULT_CRASH_SEED


def trial_rng(seed: int, suite: str, trial: int) -> random.Random:
    """One RNG per trial, so that a single trial replays on its own (``-k``)."""
    return random.Random(f"{seed}:{suite}:{trial}")


def gc_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment minus ZenML's variables and the sweep's test hooks."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ZENML_") and k not in (KILL_ENV, PAUSE_ENV)}
    env.update(extra or {})
    return env


# ---------------------------------------------------------------------------
# Kills
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Kill:
    """One SIGKILL: ``point`` (named point, ``hit``-th time) or ``timed``.

    A timed kill waits ``delay`` seconds after its anchor: ``start`` (the process
    started) or ``work`` (the first journal segment appeared, i.e. the sweep has
    begun deleting), so that most timed kills land while batches are in flight.
    """

    kind: str
    point: str = ""
    hit: int = 0
    anchor: str = "start"
    delay: float = 0.0

    def describe(self) -> str:
        if self.kind == "point":
            return f"{self.point}:{self.hit}"
        return f"kill -9 {self.delay:.3f}s after {self.anchor}"


def draw_kill(rng: random.Random, batches: int, startup: float, work: float,
              named: bool) -> Kill:
    """A kill for a sweep of ``batches`` batches that takes ``startup`` seconds to
    begin and ``work`` seconds to delete (measured on an uninterrupted sweep):
    at a named point (``named``) or timed."""
    if named:
        point = rng.choice(KILL_POINTS)
        # in_files is reached once per chunk of paths, at least once per batch.
        return Kill("point", point=point, hit=rng.randint(1, max(1, batches)))
    if rng.random() < 0.2:
        return Kill("timed", anchor="start", delay=rng.uniform(0, startup + work))
    return Kill("timed", anchor="work", delay=rng.uniform(0, 0.85 * work))


@dataclass
class Run:
    """How one ``gc`` process ended."""

    args: list[str]
    returncode: int
    kill: Kill | None
    killed: bool  # it died of our SIGKILL
    seconds: float
    work_started: float | None  # seconds from start to the first journal segment
    stdout: str = ""
    stderr: str = ""
    cpu: float = 0.0  # CPU seconds (user + system) the process used

    @property
    def finished_before_kill(self) -> bool:
        return self.kill is not None and not self.killed


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CreationWatch:
    """Linux inotify on one directory: :meth:`wait` returns as soon as a file whose
    name contains ``needle`` is created there. A partial manifest exists for a few
    milliseconds; polling would miss it, the kernel's notification does not."""

    _IN_CREATE = 0x100
    _IN_MOVED_TO = 0x80

    def __init__(self, directory: Path, needle: str) -> None:
        import ctypes

        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if self._libc.inotify_add_watch(self.fd, os.fsencode(directory),
                                        self._IN_CREATE | self._IN_MOVED_TO) < 0:
            os.close(self.fd)
            raise OSError(ctypes.get_errno(), "inotify_add_watch")
        self.needle = needle.encode()

    def wait(self, alive: Any, poll: float = 0.05) -> bool:
        """Block until the file shows up (True) or ``alive()`` turns false (False)."""
        import select
        import struct

        while alive():
            ready, _, _ = select.select([self.fd], [], [], poll)
            if not ready:
                continue
            data = os.read(self.fd, 65536)
            offset = 0
            while offset < len(data):
                _wd, _mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16: offset + 16 + length].rstrip(b"\0")
                offset += 16 + length
                if self.needle in name:
                    return True
        return False

    def close(self) -> None:
        os.close(self.fd)


def _segments(journal: Path | None) -> int:
    """How many finished journal segments there are (a resume starts with some)."""
    if journal is None:
        return 0
    try:
        return sum(1 for name in os.listdir(journal)
                   if name.endswith(".parquet") and not name.startswith("."))
    except FileNotFoundError:
        return 0


def run_gc(args: Iterable[str], env: Mapping[str, str] | None = None, *,
           kill: Kill | None = None, journal: Path | None = None,
           watch: Path | None = None, timeout: float = 240) -> Run:
    """Run ``gc ARGS``; deliver ``kill``. ``journal`` is the sweep's journal directory:
    the ``work`` anchor is the first segment this process adds to it. ``watch``: a
    directory; the ``file`` anchor is the creation of a ``*.partial*`` file in it."""
    full_env = gc_env(env)
    if kill is not None and kill.kind == "point":
        full_env[KILL_ENV] = f"{kill.point}:{kill.hit}"
    command = [*gc_command(full_env), *args]
    watcher = None
    if kill is not None and kill.anchor == "file":
        assert watch is not None
        watcher = CreationWatch(watch, ".partial")  # before the process can write
    already = _segments(journal)
    cpu_before = _children_cpu()
    started = time.monotonic()
    proc = subprocess.Popen(command, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    work_started: float | None = None
    killed_by_us = False
    try:
        if kill is not None and kill.kind == "timed":
            anchor = started
            if kill.anchor == "work":
                while proc.poll() is None and _segments(journal) <= already:
                    time.sleep(0.002)
                anchor = time.monotonic()
                work_started = anchor - started
            elif watcher is not None:
                watcher.wait(lambda: proc.poll() is None)
                anchor = time.monotonic()
            deadline = anchor + kill.delay
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(min(0.002, max(0.0, deadline - time.monotonic())))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed_by_us = True
        elif journal is not None:
            while proc.poll() is None and _segments(journal) <= already:
                time.sleep(0.002)
            if _segments(journal) > already:
                work_started = time.monotonic() - started
        out, err = proc.communicate(timeout=timeout)
    finally:
        if watcher is not None:
            watcher.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    killed = proc.returncode == -signal.SIGKILL and (
        killed_by_us or (kill is not None and kill.kind == "point"))
    return Run(command, proc.returncode, kill, killed, time.monotonic() - started,
               work_started, out, err, cpu=_children_cpu() - cpu_before)


# ---------------------------------------------------------------------------
# What a manifest says each version owns
# ---------------------------------------------------------------------------


@dataclass
class Footprints:
    """From a manifest: candidates, kept versions and each version's paths.

    Paths are relative to ``base`` (a local store root, or ``s3://bucket`` so that
    they are bucket keys)."""

    candidates: set[str]
    kept: set[str]
    paths: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def read(cls, manifest: Path, base: str) -> Footprints:
        import duckdb

        base = base.rstrip("/") + "/"
        con = duckdb.connect()
        try:
            rows = con.execute(
                "SELECT artifact_version_id, status, uri, visualization_uris "
                "FROM read_parquet(?)", [str(manifest)]).fetchall()
        finally:
            con.close()
        out = cls(set(), set())
        for vid, status, uri, vis in rows:
            (out.candidates if status == "candidate" else out.kept).add(str(vid))
            out.paths[str(vid)] = [
                p[len(base):] if p.startswith(base) else p
                for p in footprint_paths(str(uri), list(vis or []))
            ]
        return out

    def doomed(self, files: Iterable[str], deleted: set[str]) -> set[str]:
        """The files of ``files`` that the deletion of ``deleted`` must remove: under a
        deleted version's paths and under no remaining version's paths (a live version
        nested inside an orphan's directory keeps its files)."""
        gone = {p.rstrip("/") for vid in deleted for p in self.paths.get(vid, [])}
        staying = {p.rstrip("/") for vid, paths in self.paths.items() if vid not in deleted
                   for p in paths}

        def under(rel: str, prefixes: set[str]) -> bool:
            parts = rel.split("/")
            return any("/".join(parts[:n]) in prefixes for n in range(1, len(parts) + 1))

        return {f for f in files if under(f, gone) and not under(f, staying)}

    def file_losses(self, before: Mapping[str, int], after: Mapping[str, int],
                    deleted: set[str]) -> tuple[list[str], list[str]]:
        """(live files lost or changed, files of deleted versions still there)."""
        files = [f for f in before if not f.endswith("/")]
        doomed = self.doomed(files, deleted)
        lost = sorted(f for f in files if f not in doomed and after.get(f) != before[f])
        leaked = sorted(f for f in doomed if f in after)
        return lost, leaked


#: As sweep_support.db_snapshot: columns that change on their own are left out.
_VOLATILE = ("updated", "last_login", "expires")


def rows_snapshot(db_url: str) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table (volatile columns left out), sorted, through the raw
    DB-API driver: ``sweep_support.db_snapshot`` without SQLAlchemy's per-table
    reflection, which costs seconds a call and would eat the suite's time budget.
    The fixtures check once that it sees the tables and row counts SQLAlchemy sees."""
    from scenarios.helpers import make_engine

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            cur = raw.cursor()
            if engine.dialect.name == "sqlite":
                cur.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                            "AND name NOT LIKE 'sqlite_%'")
                tables = sorted(str(r[0]) for r in cur.fetchall())
                columns = {}
                for table in tables:
                    cur.execute(f'PRAGMA table_info("{table}")')
                    columns[table] = [str(r[1]) for r in cur.fetchall()]
                quote = '"{}"'.format
            else:
                cur.execute("SELECT table_name, column_name FROM information_schema.columns "
                            "WHERE table_schema = DATABASE() ORDER BY table_name, "
                            "ordinal_position")
                columns = {}
                for table, column in cur.fetchall():
                    columns.setdefault(str(table), []).append(str(column))
                tables = sorted(columns)
                quote = "`{}`".format
            snapshot: dict[str, list[tuple[str, ...]]] = {}
            for table in tables:
                cols = [c for c in columns[table] if c not in _VOLATILE]
                cur.execute(f"SELECT {', '.join(quote(c) for c in cols)} FROM {quote(table)}")
                snapshot[table] = sorted(tuple(map(repr, r)) for r in cur.fetchall())
            cur.close()
            return snapshot
    finally:
        engine.dispose()


def snapshot_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Tables whose rows differ between two ``db_snapshot`` results."""
    return sorted(t for t in set(a) | set(b) if a.get(t) != b.get(t))


def tree_differences(a: Mapping[str, int], b: Mapping[str, int]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def sync_tree(pristine: Path, live: Path) -> int:
    """Make ``live`` an exact copy of ``pristine`` again, copying only the files that
    are missing or differ (size or mtime: ``copy2`` keeps mtimes) and removing what
    pristine does not have; return how many entries changed. A sweep deletes a few
    hundred directories out of thousands: this is a fraction of a full copy's cost."""
    def entries(root: Path) -> dict[str, tuple[int, int] | None]:
        out: dict[str, tuple[int, int] | None] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, root)
            for d in dirnames:
                out[os.path.normpath(os.path.join(rel, d))] = None
            for f in filenames:
                st = os.lstat(os.path.join(dirpath, f))
                out[os.path.normpath(os.path.join(rel, f))] = (st.st_size, st.st_mtime_ns)
        return out

    want, have = entries(pristine), entries(live)
    changed = 0
    for rel in sorted((r for r in have if r not in want), reverse=True):
        target = live / rel
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        changed += 1
    for rel, stat in sorted(want.items()):
        if have.get(rel, "missing") == stat:
            continue
        if stat is None:
            (live / rel).mkdir(parents=True, exist_ok=True)
        else:
            (live / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(pristine / rel, live / rel)
        changed += 1
    return changed


# ---------------------------------------------------------------------------
# MariaDB: restore a database to its pristine twin, in place
# ---------------------------------------------------------------------------


def _tables(cur: Any, database: str) -> list[str]:
    cur.execute("SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = %s AND table_type = 'BASE TABLE'", (database,))
    return sorted(str(r[0]) for r in cur.fetchall())


def table_checksums(database: str) -> dict[str, int]:
    conn = mariadb_admin_connect()
    try:
        with conn.cursor() as cur:
            tables = _tables(cur, database)
            cur.execute("CHECKSUM TABLE " + ", ".join(f"`{database}`.`{t}`" for t in tables))
            return {str(name).split(".", 1)[1]: int(value or 0)
                    for name, value in cur.fetchall()}
    finally:
        conn.close()


def restore_database(pristine: str, target: str, pristine_sums: Mapping[str, int]) -> list[str]:
    """Make ``target`` hold ``pristine``'s rows again; return the tables copied back.

    Only rows change in a sweep (never the schema), so the tables whose checksum
    differs are emptied and refilled, with foreign key checks off for the copy."""
    changed = [t for t, s in table_checksums(target).items() if pristine_sums.get(t) != s]
    if not changed:
        return []
    conn = mariadb_admin_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION foreign_key_checks = 0")
            try:
                for table in changed:
                    cur.execute(f"DELETE FROM `{target}`.`{table}`")
                    cur.execute(f"INSERT INTO `{target}`.`{table}` "
                                f"SELECT * FROM `{pristine}`.`{table}`")
            finally:
                cur.execute("SET SESSION foreign_key_checks = 1")
    finally:
        conn.close()
    return changed


# ---------------------------------------------------------------------------
# S3: a moto server for a module, a bucket restored by re-putting what went
# ---------------------------------------------------------------------------


@dataclass
class MotoServer:
    """A moto S3 server on 127.0.0.1 and the environment a ``gc`` process needs for it
    (dummy credentials, no profile files, the endpoint)."""

    server: Any
    endpoint_url: str

    @classmethod
    def start(cls) -> MotoServer:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        return cls(server, f"http://{host}:{port}")

    def stop(self) -> None:
        self.server.stop()

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url,
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            region_name="us-east-1")

    def storage_option(self) -> list[str]:
        return ["--storage-option", f"client_kwargs.endpoint_url={self.endpoint_url}"]


def restore_bucket(client: Any, bucket: str, pristine: Mapping[str, bytes],
                   known: Mapping[str, int] | None = None) -> int:
    """Put back every pristine object that is missing or changed, delete the extra
    ones; return how many objects that took. ``known``: the bucket's listing, if the
    caller has just taken it."""
    from s3_support import list_bucket, upload

    now = dict(known) if known is not None else list_bucket(client, bucket)
    missing = [(k, b) for k, b in pristine.items() if now.get(k) != len(b)]
    extra = [k for k in now if k not in pristine]
    if missing:
        upload(client, bucket, missing, threads=16)
    for start in range(0, len(extra), 1000):
        client.delete_objects(Bucket=bucket, Delete={
            "Objects": [{"Key": k} for k in extra[start:start + 1000]]})
    return len(missing) + len(extra)
