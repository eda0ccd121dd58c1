"""gc sweep on an S3 artifact store (moto server) beside a bare boto3 delete loop.

    .venv/bin/python benchmarks/bench_s3.py [--orphans 10000,100000] [--mariadb]
                                            [--strategies-up-to 10000]
                                            [--moto-list walk|index] [--lock FILE]
                                            [--profile DIR] [--no-readme]

The sweep runs with --no-undo: the bare loop deletes for good (bench_undo.py measures
the undo window's cost).

For each size: a SQLite store (ZenML's migrations, then bulk inserts; cached) whose
artifact store root is ``s3://<bucket>/store`` on a moto server this script starts
on 127.0.0.1 (its own process). Every version gets three objects (two files and its
visualization). Two identical buckets are filled (straight into moto's backend):

- gc side: ``gc mark --sizes`` then ``gc sweep --yes`` (each a fresh process);
- bare side: the same keys (the candidates' objects, known in advance), deleted by a
  boto3 ``delete_objects`` loop of 1,000 keys per request, 16 threads.

Then, on smaller copies (``--strategies-up-to``), the S3 backend with the per-prefix
LIST strategy beside the ranged listing (the default), on the same paths.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from artifact_gc.demo.synthetic import SyntheticSpec, populate  # noqa: E402
from generate_store import create_schema_with_zenml  # noqa: E402
from harness import BARE_ROW_DELETE, gc, markdown_table, run, write_section  # noqa: E402
from s3_support import list_bucket, object_plan  # noqa: E402
from stores import mariadb_store  # noqa: E402

#: The bare loop deletes for good, and so does the sweep it is compared with. A sweep
#: with its undo window (the default) on a bucket without versioning copies every
#: object into the trash first (one CopyObject per object): bench_undo.py measures that.
NO_UNDO = ("--no-undo",)
BASE = Path(os.environ.get("ARTIFACT_GC_BENCH_DIR", "/tmp/artifact-gc-bench"))
README = Path(__file__).with_name("README.md")
PRISTINE_BUCKET = "pristine"
ORPHAN_SHARE = 0.9
AWS_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
           "AWS_CONFIG_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}

BARE_LOOP = r"""
import sys, boto3, botocore.config
from concurrent.futures import ThreadPoolExecutor
endpoint, bucket, keys_file = sys.argv[1:4]
keys = [line.rstrip("\n") for line in open(keys_file) if line.strip()]
client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      config=botocore.config.Config(max_pool_connections=32))
chunks = [keys[i:i + 1000] for i in range(0, len(keys), 1000)]
def delete(chunk):
    r = client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in chunk],
                                                     "Quiet": True})
    assert not r.get("Errors"), r["Errors"][:1]
with ThreadPoolExecutor(16) as pool:
    list(pool.map(delete, chunks))
print(len(keys))
"""

STRATEGY = r"""
import json, sys, s3fs
from artifact_gc.storage.backend import open_backend
from artifact_gc.storage.limits import RequestLimits
from artifact_gc.storage.retry import RetryCounter
from artifact_gc.zenml.stores import ArtifactStore
endpoint, bucket, paths_file, strategy = sys.argv[1:5]
paths = sorted(json.load(open(paths_file)))
fs = s3fs.S3FileSystem(skip_instance_cache=True, client_kwargs={"endpoint_url": endpoint})
root = f"s3://{bucket}/store"
files = open_backend(ArtifactStore("a" * 32, "s3", "s3", root, "bench"), root, fs, workers=16,
                     retries=RetryCounter(), limits=RequestLimits(s3_strategy=strategy))
deleted = 0
for i in range(0, len(paths), 1000):
    out = files.delete(paths[i:i + 1000])
    assert not out.failed, list(out.failed.items())[:1]
    deleted += len(out.deleted)
stats = files.client.stats
files.close()
print(json.dumps({"deleted": deleted, "lists": stats.lists, "deletes": stats.deletes}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: moto's S3 in its own process, its buckets filled straight into its in-memory backend
#: before it starts serving (moto accepts uploads over HTTP at about 140 objects/s, and
#: a 100k-version store has 333k objects a side); the sweeps reach it over HTTP.
MOTO_SERVER = r"""
import collections, json, logging, os, sys, threading, time
from urllib.parse import parse_qs
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.moto_server.werkzeug_app import (DomainDispatcherApplication, MotoRequestHandler,
                                            create_backend_app)
from werkzeug.serving import make_server
port, spec, listing = int(sys.argv[1]), json.load(open(sys.argv[2])), sys.argv[3]
logging.getLogger("werkzeug").setLevel(logging.ERROR)
backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
if listing == "index":
    # ListObjectsV2 (without a delimiter) from a sorted index of each bucket's keys, as
    # S3 serves it: a page costs its own keys, not the whole bucket (moto's own walks
    # and sorts every key of the bucket for every page). Same answers, pages and
    # continuation tokens; the index follows every put.
    import bisect
    from moto.s3.models import FakeDeleteMarker
    index, walk = {}, backend.list_objects_v2
    put = backend.put_object
    def names(bucket):
        # Deletes leave their names in the index (a list's del moves the whole tail:
        # at 333k keys that cost moto more than the deletes themselves); a page skips
        # the names no longer in the bucket. A key added past the wrappers rebuilds it.
        found = index.get(bucket.name)
        if found is None or len(found) < len(bucket.keys):
            found = index[bucket.name] = sorted(bucket.keys.keys())
        return found
    def put_object(bucket_name, key_name, *args, **kwargs):
        key = put(bucket_name, key_name, *args, **kwargs)
        found = index.get(bucket_name)
        if found is not None:
            at = bisect.bisect_left(found, key_name)
            if at == len(found) or found[at] != key_name:
                found.insert(at, key_name)
        return key
    def list_objects_v2(bucket, prefix, delimiter, continuation_token, start_after,
                        max_keys):
        if delimiter:
            return walk(bucket, prefix, delimiter, continuation_token, start_after, max_keys)
        ordered, prefix = names(bucket), prefix or ""
        after = backend._pagination_tokens.get(continuation_token) if continuation_token \
            else start_after
        at = bisect.bisect_left(ordered, prefix)
        if after:
            at = max(at, bisect.bisect_right(ordered, after))
        keys = []
        while at < len(ordered) and len(keys) <= max_keys:
            name, at = ordered[at], at + 1
            if not name.startswith(prefix):
                break
            key = bucket.keys.get(name)
            if key is not None and not isinstance(key, FakeDeleteMarker):
                keys.append(key)
        return backend._truncate_result(keys, max_keys)
    backend.put_object = put_object
    backend.list_objects_v2 = list_objects_v2
for bucket, objects in spec.items():
    backend.create_bucket(bucket, "us-east-1")
    for key, body in objects:
        backend.put_object(bucket, key, body.encode("latin-1"), disable_notification=True)
# Every HTTP request served, by S3 operation, as the server sees it, and the wall time
# the server spent answering each kind (requests overlap: summed, not shares of a wall).
counts, seconds, lock = collections.Counter(), collections.Counter(), threading.Lock()
app = DomainDispatcherApplication(create_backend_app)
def kind(environ):
    method, query = environ["REQUEST_METHOD"], parse_qs(environ.get("QUERY_STRING", ""),
                                                        keep_blank_values=True)
    path = environ.get("PATH_INFO", "/").strip("/")
    if method == "POST" and "delete" in query:
        return "DeleteObjects"
    if method == "GET" and "/" not in path:
        return "LIST"
    return {"GET": "GET", "HEAD": "HEAD", "PUT": "PUT", "DELETE": "DELETE"}.get(method, method)
def counted(environ, start_response):
    operation, started = kind(environ), time.perf_counter()
    try:
        return app(environ, start_response)
    finally:
        with lock:
            counts[operation] += 1
            seconds[operation] += time.perf_counter() - started
server = make_server("127.0.0.1", port, counted, True, request_handler=MotoRequestHandler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print("ready", flush=True)
# One line in, the counts so far out (and reset), with the server's seconds by
# operation and its process CPU time: the measured phases read them.
for _ in sys.stdin:
    with lock:
        cpu = os.times()
        print(json.dumps({"counts": counts, "seconds": seconds,
                          "cpu": cpu.user + cpu.system}), flush=True)
        counts.clear()
        seconds.clear()
server.shutdown()
"""


class Moto:
    """A moto S3 server on 127.0.0.1 in its own process (so that the peak RSS of the
    measured processes is their own), started with its buckets already filled."""

    def __init__(self, listing: str = "walk") -> None:
        self.listing = listing
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        #: Of the last :meth:`requests` interval: the server's summed seconds by
        #: operation, and its CPU seconds.
        self.seconds: dict[str, float] = {}
        self.cpu = 0.0
        self._cpu_total = 0.0

    def start(self, buckets: dict[str, list[tuple[str, bytes]]], scratch: Path) -> None:
        spec = scratch / "moto-buckets.json"
        spec.write_text(json.dumps({b: [(k, v.decode("latin-1")) for k, v in objects]
                                    for b, objects in buckets.items()}))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", MOTO_SERVER, str(self.port), str(spec), self.listing],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, bufsize=1)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("moto server did not start")
        spec.unlink()

    def requests(self) -> dict[str, int]:
        """The requests the server has served since the last call, by operation."""
        assert self.proc is not None and self.proc.stdin is not None \
            and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        self.seconds = answer["seconds"]
        self.cpu, self._cpu_total = answer["cpu"] - self._cpu_total, answer["cpu"]
        counts: dict[str, int] = answer["counts"]
        return counts

    def served(self) -> str:
        """What the server did in the last interval: CPU, and seconds by operation."""
        return f"moto CPU {self.cpu:.1f} s; " + ", ".join(
            f"{k} {v:.1f} s" for k, v in sorted(self.seconds.items()))

    def client(self) -> Any:
        import boto3
        import botocore.config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            config=botocore.config.Config(max_pool_connections=64))

    def rss_mb(self) -> float:
        if self.proc is None:
            return 0.0
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def sqlite_s3_store(orphans: int) -> tuple[Path, int]:
    """A cached pristine SQLite store whose root is s3://pristine/store."""
    versions = int(orphans / ORPHAN_SHARE)
    directory = BASE / f"s3-sqlite-{versions}"
    done = directory / "versions.count"
    if not done.exists():
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        url = f"sqlite:///{directory / 'zenml.db'}"
        print(f"[stores] creating {directory.name}", flush=True)
        create_schema_with_zenml(url, sys.executable)
        populate(url, SyntheticSpec(versions=versions, store_root=f"s3://{PRISTINE_BUCKET}/store",
                                    orphan_share=ORPHAN_SHARE, recent_share=0.0,
                                    ids_dir=directory / "ids"))
        done.write_text(str(versions))
    return directory / "zenml.db", int(done.read_text())


def retarget(db: Path | str, bucket: str, endpoint: str) -> str:
    """Point the copy's rows and its store component at ``bucket`` (as sqlite_copy does).
    ``db``: a SQLite file, or any SQLAlchemy URL."""
    url = db if isinstance(db, str) and "://" in db else f"sqlite:///{db}"
    engine = sa.create_engine(url)
    old, new = f"s3://{PRISTINE_BUCKET}/", f"s3://{bucket}/"
    with engine.begin() as connection:
        for table in ("artifact_version", "artifact_visualization"):
            connection.execute(sa.text(f"UPDATE {table} SET uri = replace(uri, :o, :n)"),
                               {"o": old, "n": new})
        for component_id, raw in connection.execute(sa.text(
                "SELECT id, configuration FROM stack_component WHERE type='artifact_store'")):
            config = json.loads(base64.b64decode(raw))
            if str(config.get("path", "")).startswith(old):
                config["path"] = config["path"].replace(old, new, 1)
                config["client_kwargs"] = {"endpoint_url": endpoint}
                connection.execute(
                    sa.text("UPDATE stack_component SET configuration=:c WHERE id=:i"),
                    {"c": base64.b64encode(json.dumps(config).encode()), "i": component_id})
    engine.dispose()
    return url


def candidates(manifest: str) -> list[tuple[str, str]]:
    import duckdb

    with duckdb.connect() as con:
        return [(str(a), str(b)) for a, b in con.execute(
            f"SELECT artifact_version_id, uri FROM '{manifest}' WHERE status='candidate'"
        ).fetchall()]


#: The request columns of both tables (per 1,000 objects deleted).
REQUEST_HEADERS = ["gc LIST / 1k", "gc DeleteObjects / 1k", "gc other", "bare requests / 1k",
                   "gc extra / 1k"]


def request_cells(gc_requests: dict[str, int], bare_requests: dict[str, int], objects: int
                  ) -> list[str]:
    """Requests per 1,000 objects deleted, as moto served them: the sweep's LIST and
    DeleteObjects, anything else it sent, the bare loop's, and the sweep's beyond it."""
    def per_1000(n: int) -> str:
        return f"{n * 1000 / objects:.2f}"

    other = {k: v for k, v in gc_requests.items() if k not in ("LIST", "DeleteObjects")}
    extra = sum(gc_requests.values()) - sum(bare_requests.values())
    return [per_1000(gc_requests.get("LIST", 0)), per_1000(gc_requests.get("DeleteObjects", 0)),
            ", ".join(f"{k} {v}" for k, v in sorted(other.items())) or "0",
            per_1000(sum(bare_requests.values())), per_1000(extra)]


def profiled_sweep(out: Path, manifest: str, url: str, env: dict[str, str]) -> Any:
    """The sweep in sweep_phases.py (plan + execute, as gc sweep --yes runs them) under
    cProfile, its per-phase and per-request timings printed."""
    measured = run("gc sweep, profiled", [
        sys.executable, "-m", "cProfile", "-o", str(out),
        str(Path(__file__).with_name("sweep_phases.py")), manifest, url, *NO_UNDO], env=env)
    print(measured.stdout, flush=True)
    return measured


@contextmanager
def measuring(lock: Path | None) -> Iterator[None]:
    """Hold ``lock`` (flock, exclusive) around the measured sides only: filling moto and
    the mark (setup, not measured here) run before it is taken."""
    if lock is None:
        yield
        return
    with open(lock, "a") as handle:
        print(f"[lock] waiting for {lock} (load {os.getloadavg()[0]:.1f})", flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)
        print(f"[lock] taken at {time.strftime('%H:%M:%S')} (load "
              f"{os.getloadavg()[0]:.1f})", flush=True)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            print(f"[lock] released at {time.strftime('%H:%M:%S')} (load "
                  f"{os.getloadavg()[0]:.1f})", flush=True)


def one_size(moto: Moto, orphans: int, strategies_up_to: int, scratch: Path,
             profile: Path | None = None, lock: Path | None = None) -> list[list[str]]:
    pristine, versions = sqlite_s3_store(orphans)
    client = moto.client()
    gc_db = scratch / "gc.db"
    shutil.copy(pristine, gc_db)
    url = retarget(gc_db, "gc-side", moto.endpoint)
    plan = object_plan(url, "gc-side")
    keys_by_dir: dict[str, list[str]] = {}
    for key, _ in plan:
        keys_by_dir.setdefault(key.rsplit("/", 1)[0], []).append(key)
    t0 = time.perf_counter()
    buckets = ["gc-side", "bare-side"]
    if orphans <= strategies_up_to:
        buckets += ["strategy-prefix", "strategy-range"]
    moto.start(dict.fromkeys(buckets, plan), scratch)  # keys are bucket-relative
    upload_s = time.perf_counter() - t0
    print(f"[{orphans:,}] filled {len(buckets)} x {len(plan):,} objects in {upload_s:.0f} s "
          f"(moto RSS {moto.rss_mb():,.0f} MB)", flush=True)
    manifest = str(scratch / "mark.parquet")
    env = dict(AWS_ENV)
    mark = gc("gc mark --sizes", "mark", "--db", url, "--older-than", "0s", "--sizes",
              "--out", manifest, "--json", env=env)
    cands = candidates(manifest)
    doomed = sorted(k for _, uri in cands for k in keys_by_dir.get(
        uri.split("://", 1)[1].split("/", 1)[1], []))
    keys_file = scratch / "keys.txt"
    keys_file.write_text("\n".join(doomed) + "\n")
    moto.requests()  # the mark's listing is not the sweep's
    with measuring(lock):
        return _measure(moto, orphans, versions, cands, doomed, keys_file, manifest, url,
                        client, env, mark, profile, strategies_up_to, plan, scratch)


def _measure(moto: Moto, orphans: int, versions: int, cands: list[tuple[str, str]],
             doomed: list[str], keys_file: Path, manifest: str, url: str, client: Any,
             env: dict[str, str], mark: Any, profile: Path | None, strategies_up_to: int,
             plan: list[tuple[str, bytes]], scratch: Path) -> list[list[str]]:
    load_before = os.getloadavg()[0]
    if profile is None:
        sweep = gc("gc sweep", "sweep", manifest, "--db", url, "--yes", "--json", *NO_UNDO,
                   env=env)
        summary = json.loads(sweep.stdout)["summary"]
        assert summary["deleted"] == len(cands) and summary["failed"] == 0, summary
    else:
        sweep = profiled_sweep(profile / f"sweep-{orphans}.prof", manifest, url, env)
        assert f"deleted {len(cands):,}, failed 0" in sweep.stdout, sweep.stdout
    gc_requests = moto.requests()
    print(f"[{orphans:,}] gc sweep {sweep.seconds:.1f} s (CPU {sweep.cpu_seconds:.1f} s): "
          f"{moto.served()}", flush=True)
    left = list_bucket(client, "gc-side")
    assert not set(doomed) & set(left)
    moto.requests()
    bare = run("bare boto3 delete_objects", [sys.executable, "-c", BARE_LOOP, moto.endpoint,
                                             "bare-side", str(keys_file)], env=env)
    bare_requests = moto.requests()
    print(f"[{orphans:,}] bare {bare.seconds:.1f} s (CPU {bare.cpu_seconds:.1f} s): "
          f"{moto.served()}", flush=True)
    assert set(list_bucket(client, "bare-side")) == set(left)
    rows = [[
        f"{len(cands):,}", f"{versions:,}", f"{len(doomed):,}",
        f"{sweep.seconds:.1f}", f"{len(doomed) / sweep.seconds:,.0f}",
        f"{len(cands) / sweep.seconds:,.0f}", f"{sweep.peak_rss_mb:,.0f}",
        f"{bare.seconds:.1f}", f"{len(doomed) / bare.seconds:,.0f}",
        f"{bare.peak_rss_mb:,.0f}",
        f"{(len(doomed) / sweep.seconds) / (len(doomed) / bare.seconds):.0%}",
        *request_cells(gc_requests, bare_requests, len(doomed)),
        f"{sweep.cpu_seconds:.1f}", f"{mark.seconds:.1f}",
        f"{load_before:.1f} / {os.getloadavg()[0]:.1f}",
    ]]
    print(" | ".join(rows[0]), flush=True)
    strategy_rows: list[list[str]] = []
    if orphans <= strategies_up_to:
        paths = sorted(uri for _, uri in cands)
        for strategy in ("prefix", "range"):
            bucket = f"strategy-{strategy}"
            paths_file = scratch / f"{strategy}.json"
            paths_file.write_text(json.dumps([p.replace("s3://gc-side/", f"s3://{bucket}/")
                                              for p in paths]))
            measured = run(
                f"S3Backend {strategy}", [sys.executable, "-c", STRATEGY, moto.endpoint,
                                          bucket, str(paths_file), strategy], env=env)
            stats = json.loads(measured.stdout.strip().splitlines()[-1])
            strategy_rows.append([
                f"{len(cands):,}", f"{len(plan):,}", strategy, f"{measured.seconds:.1f}",
                f"{len(cands) / measured.seconds:,.0f}", f"{stats['lists']:,}",
                f"{stats['deletes']:,}", f"{measured.peak_rss_mb:,.0f}",
            ])
            print(" | ".join(strategy_rows[-1]), flush=True)
    return rows + [["strategies"] + r for r in strategy_rows]


#: The bare MariaDB + S3 sweep: the candidates' keys (known in advance) deleted with
#: boto3 ``delete_objects`` (1,000 keys a request, 16 threads), then one bulk DELETE
#: per table with the ids in a temporary table, children before parents.
BARE_MARIADB = BARE_LOOP.replace("print(len(keys))", """
import json, sqlalchemy as sa
ids = json.load(open(sys.argv[4]))
engine = sa.create_engine(sys.argv[5])
""" + BARE_ROW_DELETE + """print(len(keys), len(ids))
""")


def one_size_mariadb(moto: Moto, orphans: int, scratch: Path, prefix: str) -> list[str]:
    """gc mark + gc sweep of a MariaDB store whose artifact store is S3 (moto), beside
    the bare boto3 + bulk DELETE loop, each on its own clone of the database and its
    own bucket."""
    from bench_mariadb import _clone

    versions = int(orphans / ORPHAN_SHARE)
    pristine = mariadb_store(BASE, versions, root=f"s3://{PRISTINE_BUCKET}/store",
                             orphan_share=ORPHAN_SHARE,
                             database=f"{prefix}_{versions}_pristine")
    source = pristine.url.rsplit("/", 1)[1]
    sides = {}
    for side in ("gc", "bare"):
        database = f"{prefix}_{versions}_{side}"
        _clone(source, database)
        url = pristine.url.rsplit("/", 1)[0] + "/" + database
        sides[side] = retarget(url, f"{side}-side", moto.endpoint)
    plan = object_plan(sides["gc"], "gc-side")
    t0 = time.perf_counter()
    moto.start({"gc-side": plan, "bare-side": plan}, scratch)
    print(f"[mariadb {orphans:,}] filled 2 x {len(plan):,} objects in "
          f"{time.perf_counter() - t0:.0f} s (moto RSS {moto.rss_mb():,.0f} MB)", flush=True)
    keys_by_dir: dict[str, list[str]] = {}
    for key, _ in plan:
        keys_by_dir.setdefault(key.rsplit("/", 1)[0], []).append(key)
    manifest = str(scratch / "mark-mariadb.parquet")
    env = dict(AWS_ENV)
    mark = gc("gc mark --sizes", "mark", "--db", sides["gc"], "--older-than", "0s", "--sizes",
              "--out", manifest, "--json", env=env)
    cands = candidates(manifest)
    doomed = sorted(k for _, uri in cands for k in keys_by_dir.get(
        uri.split("://", 1)[1].split("/", 1)[1], []))
    keys_file = scratch / "keys-mariadb.txt"
    keys_file.write_text("\n".join(doomed) + "\n")
    ids_file = scratch / "ids-mariadb.json"
    ids_file.write_text(json.dumps([vid for vid, _ in cands]))
    moto.requests()  # the mark's listing is not the sweep's
    load_before = os.getloadavg()[0]
    sweep = gc("gc sweep", "sweep", manifest, "--db", sides["gc"], "--yes", "--json", *NO_UNDO,
               env=env)
    gc_requests = moto.requests()
    summary = json.loads(sweep.stdout)["summary"]
    assert summary["deleted"] == len(cands) and summary["failed"] == 0, summary
    client = moto.client()
    left = list_bucket(client, "gc-side")
    assert not set(doomed) & set(left)
    moto.requests()
    bare = run("bare boto3 delete_objects + bulk DELETE",
               [sys.executable, "-c", BARE_MARIADB, moto.endpoint, "bare-side", str(keys_file),
                str(ids_file), sides["bare"]], env=env)
    bare_requests = moto.requests()
    assert set(list_bucket(client, "bare-side")) == set(left)
    row = [
        f"{len(cands):,}", f"{versions:,}", f"{len(doomed):,}",
        f"{sweep.seconds:.1f}", f"{len(cands) / sweep.seconds:,.0f}",
        f"{len(doomed) / sweep.seconds:,.0f}", f"{sweep.peak_rss_mb:,.0f}",
        f"{bare.seconds:.1f}", f"{len(cands) / bare.seconds:,.0f}",
        f"{bare.peak_rss_mb:,.0f}", f"{bare.seconds / sweep.seconds:.0%}",
        *request_cells(gc_requests, bare_requests, len(doomed)),
        f"{sweep.cpu_seconds:.1f}", f"{mark.seconds:.1f}",
        f"{load_before:.1f} / {os.getloadavg()[0]:.1f}",
    ]
    print("mariadb+s3 | " + " | ".join(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orphans", default="10000,100000")
    parser.add_argument("--strategies-up-to", type=int, default=10000)
    parser.add_argument("--mariadb", action="store_true",
                        help="MariaDB + S3 instead: gc mark + sweep against boto3 "
                             "delete_objects + one bulk DELETE per table")
    parser.add_argument("--moto-list", choices=("walk", "index"), default="walk",
                        help="walk: moto's own ListObjectsV2 (every page walks and sorts "
                             "the whole bucket); index: pages served from a sorted key "
                             "index, a page costing its own keys as on S3")
    parser.add_argument("--lock", type=Path, default=None,
                        help="SQLite + S3: take this flock only around the measured sides "
                             "(the sweep and the bare loop); filling moto and the mark "
                             "run before it (with --mariadb, take the lock outside)")
    parser.add_argument("--no-readme", action="store_true",
                        help="print the tables only (README.md's sections stay as they are)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="run the SQLite + S3 sweeps under cProfile (sweep_phases.py: "
                             "per-phase timings too), profiles to DIR/sweep-N.prof; "
                             "the rows are then a profile's, not the table's")
    parser.add_argument("--db-prefix", default="gcbench_s3",
                        help="name prefix of the MariaDB databases this run creates")
    args = parser.parse_args()
    os.environ.update(AWS_ENV)  # dummy credentials for moto, for this process and its children
    counts = [int(n) for n in args.orphans.split(",")]
    sweep_rows: list[list[str]] = []
    strategy_rows: list[list[str]] = []
    mariadb_rows: list[list[str]] = []
    for orphans in counts:
        moto = Moto(args.moto_list)
        try:
            with tempfile.TemporaryDirectory(prefix="gc-bench-s3-") as scratch:
                if args.mariadb:
                    mariadb_rows.append(one_size_mariadb(moto, orphans, Path(scratch),
                                                         args.db_prefix))
                    continue
                for row in one_size(moto, orphans, args.strategies_up_to, Path(scratch),
                                    args.profile, args.lock):
                    (strategy_rows if row[0] == "strategies" else sweep_rows).append(
                        row[1:] if row[0] == "strategies" else row)
        finally:
            moto.stop()
    if args.mariadb:
        table = markdown_table(
            ["candidates", "versions", "objects deleted", "gc sweep s", "gc versions/s",
             "gc objects/s", "gc peak RSS MB", "bare s", "bare versions/s", "bare RSS MB",
             "gc / bare (rate)", *REQUEST_HEADERS, "gc sweep CPU s", "gc mark --sizes s",
             "load avg before / after"], mariadb_rows)
        print(table)
        if not args.no_readme:
            write_section(README, "s3-mariadb", table)
        return 0
    table = markdown_table(
        ["candidates", "versions", "objects deleted", "gc sweep s", "gc objects/s",
         "gc versions/s", "gc peak RSS MB", "bare s", "bare objects/s", "bare RSS MB",
         "gc / bare", *REQUEST_HEADERS, "gc sweep CPU s", "gc mark --sizes s",
         "load avg before / after"], sweep_rows)
    if strategy_rows:
        table += "\n\nFinding the keys of the candidates (S3Backend, batches of 1,000 " \
                 "URI-sorted paths):\n\n" + markdown_table(
                     ["candidates", "objects in bucket", "strategy", "seconds", "versions/s",
                      "LIST requests", "DeleteObjects requests", "peak RSS MB"],
                     strategy_rows)
    print(table)
    if args.profile is None and not args.no_readme:
        write_section(README, "s3", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
