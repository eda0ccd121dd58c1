"""Where a sweep's time goes: wall time per phase, per S3 request kind and per SQL statement.

    .venv/bin/python benchmarks/sweep_phases.py MANIFEST DB_URL [--batch-size N]
                                                [--mode all|only-artifact|only-metadata]
                                                [--no-undo]

Runs ``plan_sweep`` + ``execute`` in this process (it deletes, like ``gc sweep --yes``)
with an injected timing hook around the sweep's phases (``SweepHooks.phase``), and
timers around the S3 client's requests and every SQL statement. Phases overlap and
nest (a batch's files are deleted while the next batch is in the database; S3 requests
run in parallel), so the figures are summed durations, not shares of the wall time.
Used to find the bottlenecks named in README.md.

Also the longest locked transactions (MySQL/MariaDB): from the first statement that
locks (``FOR UPDATE``, ``LOCK IN SHARE MODE``) on a connection to its commit or
rollback, with the statements run inside each, summed by kind.
"""

from __future__ import annotations

import argparse
import collections
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from artifact_gc.storage import s3
from artifact_gc.sweep.execute import execute
from artifact_gc.sweep.hooks import SweepHooks
from artifact_gc.sweep.options import MODE_ALL, MODES, SweepOptions
from artifact_gc.sweep.plan import plan_sweep

TOTALS: dict[str, float] = collections.defaultdict(float)
COUNTS: collections.Counter[str] = collections.Counter()
SQL: dict[str, float] = collections.defaultdict(float)
SQL_COUNTS: collections.Counter[str] = collections.Counter()
_LOCK = threading.Lock()


MAXIMA: dict[str, float] = collections.defaultdict(float)
#: (seconds, statement kind -> summed seconds) of every locked transaction.
LOCKED: list[tuple[float, dict[str, float]]] = []


def _add(name: str, seconds: float) -> None:
    with _LOCK:
        TOTALS[name] += seconds
        COUNTS[name] += 1
        MAXIMA[name] = max(MAXIMA[name], seconds)


class PhaseTimer(SweepHooks):
    """Sums the wall time of every run of each of the sweep's phases."""

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            _add(name, time.perf_counter() - started)


def _timed(owner: Any, attribute: str, label: str) -> None:
    function = getattr(owner, attribute)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            _add(label, time.perf_counter() - started)

    setattr(owner, attribute, wrapper)


def _instrument() -> None:
    # The sweep's phases are timed by PhaseTimer, injected into execute(). The S3
    # client and SQLAlchemy are not the sweep's: their public calls are wrapped.
    _timed(s3, "match_keys", "s3 match_keys")
    call = s3.S3Client.call

    def timed_call(self: s3.S3Client, method: str, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return call(self, method, **kwargs)
        finally:
            _add(f"s3 {method}", time.perf_counter() - started)

    s3.S3Client.call = timed_call  # type: ignore[method-assign]

    @sa.event.listens_for(sa.engine.Engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["_started"] = time.perf_counter()

    @sa.event.listens_for(sa.engine.Engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        key = re.sub(r"\((?:\?|%s)(?:, (?:\?|%s))*\)", "(..)", statement)[:120]
        now = time.perf_counter()
        elapsed = now - conn.info.pop("_started", now)
        with _LOCK:
            SQL[key] += elapsed
            SQL_COUNTS[key] += 1
        locked = conn.info.get("_locked")
        if locked is None and ("FOR UPDATE" in statement or "IN SHARE MODE" in statement):
            locked = conn.info["_locked"] = (now - elapsed, collections.defaultdict(float))
        if locked is not None:
            locked[1][key[:90]] += elapsed

    def ended(conn: Any) -> None:
        locked = conn.info.pop("_locked", None)
        if locked is not None:
            with _LOCK:
                LOCKED.append((time.perf_counter() - locked[0], dict(locked[1])))

    sa.event.listen(sa.engine.Engine, "commit", ended)
    sa.event.listen(sa.engine.Engine, "rollback", ended)


def _rss_mb() -> tuple[float, float]:
    """(resident set now, its high-water mark) of this process, MB."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, kb = line.split()[:2]
                values[key] = int(kb) / 1024
    return values.get("VmRSS:", 0.0), values.get("VmHWM:", 0.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("db")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--mode", default=MODE_ALL, choices=MODES)
    parser.add_argument("--no-undo", action="store_true",
                        help="delete for good, as gc sweep --no-undo (default: the undo window)")
    args = parser.parse_args()
    _instrument()
    started = time.perf_counter()
    plan = plan_sweep(args.manifest, args.db,
                      SweepOptions(mode=args.mode, batch_size=args.batch_size,
                                   **({"undo_window": None} if args.no_undo else {})))
    planned = time.perf_counter()
    planned_rss = _rss_mb()
    report = execute(plan, hooks=PhaseTimer())
    done = time.perf_counter()
    done_rss = _rss_mb()
    print(f"plan {planned - started:.2f} s, execute {done - planned:.2f} s, "
          f"deleted {len(report.deleted):,}, failed {len(report.failures)}, "
          f"{len(report.deleted) / (done - started):,.0f} versions/s, "
          f"batches {report.batches}")
    print(f"RSS MB after plan {planned_rss[0]:,.0f} (peak {planned_rss[1]:,.0f}), after "
          f"execute {done_rss[0]:,.0f} (peak {done_rss[1]:,.0f})")
    for name, seconds in sorted(TOTALS.items(), key=lambda kv: -kv[1]):
        print(f"  {seconds:8.2f} s  n={COUNTS[name]:<5d} max {MAXIMA[name]:6.2f} s  {name}")
    print("SQL statements (summed wall time):")
    for statement, seconds in sorted(SQL.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {seconds:8.2f} s  n={SQL_COUNTS[statement]:<5d} {statement}")
    if LOCKED:
        spans = sorted((seconds for seconds, _ in LOCKED), reverse=True)
        print(f"Locked transactions: {len(spans)}, longest {spans[0]:.2f} s, "
              f"median {spans[len(spans) // 2]:.2f} s, "
              f">= 0.7 s: {sum(1 for x in spans if x >= 0.7)}")
        for seconds, statements in sorted(LOCKED, key=lambda t: -t[0])[:3]:
            print(f"  {seconds:.2f} s, of which statements {sum(statements.values()):.2f} s:")
            for statement, spent in sorted(statements.items(), key=lambda kv: -kv[1])[:8]:
                print(f"    {spent:6.3f} s  {statement}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
