"""The orphan-file classification (mark/orphans/classify.py) against a plain Python
model of its rules, on hostile listings.

The model spells each rule the slow, obvious way (every ancestor of every path, every
named path against every root); the classification does the same in DuckDB with
joins on generated keys. Random listings over a small vocabulary of segments (UUIDs
dashed and not, step suffixes, ZenML's folders, reserved and trash folders, ``.``,
``..``, empty segments, trailing slashes) and named paths taken from their prefixes
(and the roots, their ancestors, paths elsewhere) make every rule meet its edge
cases: a live path protects everything inside it and every path containing it; an
unknown layout is never a candidate; the grace period and a running step protect.
"""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from artifact_gc.manifest import reasons as r
from artifact_gc.manifest.views import connect_duckdb
from artifact_gc.mark.orphans import layout
from artifact_gc.mark.orphans.classify import (
    FAILED_STATUSES,
    FINISHED_STATUSES,
    KEYED_STORES_DDL,
    OBJECTS_DDL,
    OrphanSummary,
    classify_objects,
    summarize_objects,
)
from artifact_gc.paths import directory_key, inside_root

ROOTS = {"local": "/srv/store", "s3": "s3://bucket/zenml"}
KEYED = {"s3"}
CUTOFF = datetime(2026, 6, 1)
RESERVED = (*layout.RESERVED_TOP_LEVEL, layout.UNDO_TRASH_DIR)
STEP_KINDS = set(layout.STEP_KINDS)
EMPTY_KINDS = {layout.KIND_STEP_EMPTY, layout.KIND_CUSTOM_EMPTY, layout.KIND_HOOK_EMPTY}
CLASS_OF_KIND = {
    layout.KIND_LOGS: r.ORPHAN_RUN_LOGS, layout.KIND_CUSTOM: r.ORPHAN_CUSTOM_ARTIFACT,
    layout.KIND_EXTERNAL: r.ORPHAN_EXTERNAL_ARTIFACT, layout.KIND_HOOK: r.ORPHAN_HOOK_OUTPUT,
    layout.KIND_CODE_UPLOAD: r.ORPHAN_CODE_UPLOAD,
}

Obj = tuple[str, str, str, int, datetime, bool]


def _full(pattern: str, segment: str | None) -> bool:
    return re.fullmatch(pattern, segment or "") is not None


def _kind(seg: list[str], is_dir: bool, code_uploads: bool) -> tuple[str | None, int]:
    """layout.py's table, row by row, in its order."""
    n = len(seg)

    def s(i: int) -> str | None:
        return seg[i - 1] if i <= n else None

    uuid_re, suffix = layout.UUID_RE, layout.SUFFIX_RE
    if (code_uploads and s(1) == layout.CODE_UPLOADS_DIR and n == 2 and not is_dir
            and _full(layout.CODE_ARCHIVE_RE, s(2))):
        return layout.KIND_CODE_UPLOAD, 2
    if s(1) in RESERVED:
        return None, 0
    rows: list[tuple[bool, int, str]] = [
        (s(1) == "logs" and n == 2 and not is_dir and _full(uuid_re + "[.]log", s(2)),
         2, layout.KIND_LOGS),
        (s(1) == "logs" and n >= 2 and _full(uuid_re, s(2)), 2, layout.KIND_LOGS),
        (s(1) == "custom_artifacts" and n >= 3 and _full(uuid_re, s(3)), 3, layout.KIND_CUSTOM),
        (s(1) == "custom_artifacts" and n == 2 and is_dir, 2, layout.KIND_CUSTOM_EMPTY),
        (s(1) == "external_artifacts" and n >= 2 and _full("external_" + uuid_re, s(2)),
         2, layout.KIND_EXTERNAL),
        (n >= 3 and _full(uuid_re, s(1)) and _full(uuid_re, s(2)), 3, layout.KIND_HOOK),
        (n == 2 and is_dir and _full(uuid_re, s(1)) and _full(uuid_re, s(2)),
         2, layout.KIND_HOOK_EMPTY),
        (n >= 4 and _full(uuid_re, s(3)) and _full(suffix, s(4)), 4, layout.KIND_STEP),
        (n == 3 and is_dir and _full(uuid_re, s(3)), 3, layout.KIND_STEP_EMPTY),
    ]
    for matches, length, kind in rows:
        if matches:
            return kind, length
    return None, 0


def _ancestors(root: str, seg: list[str]) -> list[str]:
    return [root + "/" + "/".join(seg[:j]) + "/" for j in range(1, len(seg) + 1)]


def model(objects: list[Obj], named: list[str], step_runs: dict[str, str | None],
          logs: set[str], code_uploads: bool) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    """The rows (sorted) and the summary the classification must produce."""
    # A directory row with anything listed under it is no row: it is implied by its
    # contents (an object store's marker over objects is not an empty directory).
    objects = [o for o in objects
               if not (o[5] and any(p[0] == o[0] and p[1] == o[1]
                                    and p[2].rstrip("/").startswith(o[2].rstrip("/") + "/")
                                    for p in objects))]
    roots = sorted({o[1] for o in objects})
    named_keys = {directory_key(n) for n in named}
    named_inside: set[str] = set()
    for n in named:
        for root in roots:
            if inside_root(n, root):
                named_inside.update(_ancestors(root, n.rstrip("/")[len(root) + 1:].split("/")))
    root_named = {root for root in roots
                  if any(directory_key(root).startswith(k) for k in named_keys)}
    units: dict[tuple[str, str, str], list[Obj]] = defaultdict(list)
    unit_kind: dict[tuple[str, str, str], str] = {}
    loose: list[tuple[Obj, list[str] | None]] = []
    for o in objects:
        store_id, root, path, _size, _mtime, is_dir = o
        trimmed = path.rstrip("/")
        seg = trimmed[len(root) + 1:].split("/") if inside_root(path, root) else None
        kind, length = _kind(seg, is_dir, code_uploads) if seg is not None else (None, 0)
        row = (store_id, root, trimmed, o[3], o[4], is_dir)
        if kind is not None and seg is not None:
            key = (store_id, root, "/".join(seg[:length]))
            units[key].append(row)
            unit_kind[key] = kind
        else:
            loose.append((row, seg))

    rows: list[tuple[Any, ...]] = []
    live_objects = live_bytes = 0
    for (store_id, root, unit), members in units.items():
        kind = unit_kind[(store_id, root, unit)]
        path = root + "/" + unit
        useg = unit.split("/")
        nbytes = sum(m[3] for m in members)
        count = sum(1 for m in members if not m[5])
        newest = max(m[4] for m in members)
        logs_id = (re.sub("[.]log$", "", useg[1]).replace("-", "").lower()
                   if kind == layout.KIND_LOGS else None)
        live = (any(k in named_keys for k in _ancestors(root, useg)) or root in root_named
                or (logs_id is not None and logs_id in logs))
        if live:
            live_objects += count
            live_bytes += nbytes
            continue
        run_id = useg[2].replace("-", "").lower() if kind in STEP_KINDS else None
        has_run = run_id is not None and run_id in step_runs
        status = (step_runs.get(run_id) if run_id is not None else None) or ""
        running = kind in STEP_KINDS and has_run and status.lower() not in FINISHED_STATUSES
        young = newest >= CUTOFF
        inside = path + "/" in named_inside
        if kind in EMPTY_KINDS:
            cls = r.ORPHAN_EMPTY_DIR
        elif kind in CLASS_OF_KIND:
            cls = CLASS_OF_KIND[kind]
        elif not has_run:
            cls = r.ORPHAN_DELETED_RUN
        elif status.lower() in FAILED_STATUSES:
            cls = r.ORPHAN_FAILED_STEP
        else:
            cls = r.ORPHAN_DELETED_VERSION
        reasons = [reason for flag, reason in ((inside, r.PROTECT_NAMED_INSIDE),
                                               (running, r.PROTECT_STEP_RUNNING),
                                               (young, r.PROTECT_GRACE)) if flag]
        state = r.STATUS_PROTECTED if reasons else r.STATUS_CANDIDATE
        keys = None
        if store_id in KEYED and state == r.STATUS_CANDIDATE:
            listed = sorted(m[2] + ("/" if m[5] else "") for m in members)
            keys = [x[len(path) + 1:] if x.startswith(path + "/") else x for x in listed]
        rows.append((path, state, cls, reasons, nbytes, count, newest, store_id, root, keys))

    groups: dict[tuple[str, str, str, bool], list[tuple[Any, ...]]] = defaultdict(list)
    for row, seg in loose:
        store_id, root, path = row[0], row[1], row[2]
        if seg is not None and any(k in named_keys for k in _ancestors(root, seg)):
            live_objects += 0 if row[5] else 1
            live_bytes += row[3]
            continue
        trash = seg is not None and seg[0] == layout.UNDO_TRASH_DIR
        uri = root + "/" + seg[0] if seg is not None else path
        groups[(store_id, root, uri, trash)].append(row)
    summary: dict[str, Any] = {"objects": sum(1 for o in objects if not o[5]),
                               "bytes": sum(o[3] for o in objects),
                               "live": {"objects": live_objects, "bytes": live_bytes}}
    for trash in (False, True):
        members = [m for (_s, _r, _u, t), ms in groups.items() if t == trash for m in ms]
        summary["undo_trash" if trash else "unknown"] = {
            "objects": sum(1 for m in members if not m[5]), "bytes": sum(m[3] for m in members)}
    for (store_id, root, uri, trash), members in groups.items():
        rows.append((uri, r.STATUS_PROTECTED,
                     r.ORPHAN_UNDO_TRASH if trash else r.ORPHAN_UNKNOWN,
                     [r.PROTECT_UNDO_TRASH if trash else r.PROTECT_UNKNOWN_LAYOUT],
                     sum(m[3] for m in members), sum(1 for m in members if not m[5]),
                     max(m[4] for m in members), store_id, root, None))
    return sorted(rows, key=repr), summary


def classified(objects: list[Obj], named: list[str], step_runs: dict[str, str | None],
               logs: set[str], code_uploads: bool
               ) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    con = connect_duckdb()
    con.execute(OBJECTS_DDL)
    con.execute(KEYED_STORES_DDL)
    columns = list(zip(*objects, strict=True))
    con.register("_objects", pa.table(
        {name: list(values) for name, values in zip(
            ("store_id", "root", "path", "size", "mtime", "is_dir"), columns, strict=True)}))
    con.execute("INSERT INTO orphan_objects SELECT * FROM _objects")
    con.register("_named", pa.table({"path": pa.array(named, pa.string())}))
    con.execute("CREATE TEMP TABLE orphan_named AS SELECT path FROM _named")
    con.register("_runs", pa.table({"id": pa.array(list(step_runs), pa.string()),
                                    "status": pa.array(list(step_runs.values()), pa.string())}))
    con.execute("CREATE TEMP TABLE orphan_step_runs AS SELECT * FROM _runs")
    con.register("_logs", pa.table({"id": pa.array(sorted(logs), pa.string())}))
    con.execute("CREATE TEMP TABLE orphan_logs AS SELECT * FROM _logs")
    for store_id in KEYED:
        con.execute("INSERT INTO orphan_keyed_stores VALUES (?)", [store_id])
    classify_objects(con, CUTOFF, code_uploads=code_uploads)
    rows = [(row[0], row[1], row[2], list(row[3]), int(row[4]), int(row[5]), row[6], row[7],
             row[8], None if row[9] is None else list(row[9]))
            for row in con.execute(
                "SELECT item_id, status, orphan_class, reasons, size_bytes, file_count, "
                "newest_mtime, artifact_store_id, store_root, object_keys FROM orphan_rows"
            ).fetchall()]
    summary = OrphanSummary(source="listing")
    summarize_objects(con, summary)
    con.close()
    return sorted(rows, key=repr), {"objects": summary.objects, "bytes": summary.bytes,
                                    "live": summary.live, "unknown": summary.unknown,
                                    "undo_trash": summary.undo_trash}


def hostile_store(seed: int) -> tuple[list[Obj], list[str], dict[str, str | None], set[str]]:
    rng = random.Random(seed)

    def new_uuid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    uuids = [new_uuid() for _ in range(6)]
    sha = hashlib.sha1(str(seed).encode()).hexdigest()

    def segment() -> str:
        u = rng.choice(uuids)
        return rng.choice([
            u, u, u.replace("-", ""), u.upper(), f"{rng.getrandbits(32):08x}", "0badcafe",
            "logs", "logs", "custom_artifacts", "custom_artifacts", "external_artifacts",
            f"external_{u}", f"{u}.log", f"{u}.log.gz", f"{sha}.tar.gz", "code_uploads",
            "mlflow", layout.UNDO_TRASH_DIR, "step", "output", "data.bin", "", ".", "..",
        ])

    objects: list[Obj] = []
    for _ in range(rng.randint(80, 250)):
        store_id = rng.choice(list(ROOTS))
        root = ROOTS[store_id]
        if rng.random() < 0.6:
            # ZenML-shaped, so that units (and so candidates) are common.
            u = rng.choice(uuids)
            segs = rng.choice([
                ["step", "output", u, f"{rng.getrandbits(32):08x}"],
                ["logs", f"{u}.log"], ["logs", u], ["custom_artifacts", "name", u],
                ["external_artifacts", f"external_{u}"], [u, rng.choice(uuids), "output"],
                ["code_uploads", f"{sha}.tar.gz"], ["step", "output", u], ["custom_artifacts",
                                                                           "name"],
            ])
            segs += [segment() for _ in range(rng.randint(0, 2))]
        else:
            segs = [segment() for _ in range(rng.randint(1, 6))]
        path = root + "/" + "/".join(segs) + rng.choice(["", "", "", "/", "//"])
        if rng.random() < 0.03:
            path = rng.choice([root, root + "/", "/srv/other/x", "/srv/storex/y"])
        mtime = CUTOFF + timedelta(days=rng.choice([-30, -30, -30, -1, 0, 2]))
        objects.append((store_id, root, path, rng.randint(0, 1000), mtime,
                        rng.random() < 0.15))

    # A named root (or an ancestor of it) makes its whole store live: only a few
    # stores get one, so that the others have candidates.
    whole = rng.random() < 0.15
    named: list[str] = []
    for _ in range(rng.randint(5, 40)):
        store_id, root, path = rng.choice(objects)[:3]
        segs = path[len(root) + 1:].split("/")
        cut = rng.randint(0 if whole else 1, len(segs))
        spelled = root + ("/" + "/".join(segs[:cut]) if cut else "")
        named.append(spelled + rng.choice(["", "", "/", "//"]))
    named += rng.sample([
        "/srv/store/../store/x", "/srv/storex", "s3://other/zenml/logs",
        f"/srv/store/logs/{uuids[0]}.log", "/srv/store/./step", "s3://bucket/zenml//step",
        "relative/path", "s3://bucket/zenml/step/output/",
    ], k=rng.randint(0, 3))
    if whole:
        named.append(rng.choice(["/srv", "/srv/", "/srv/store", "s3://bucket",
                                 "s3://bucket/", "s3://bucket/zenml//"]))
    step_runs = {u.replace("-", ""): rng.choice(["running", "completed", "failed", "COMPLETED",
                                                 "retried", "initializing", None])
                 for u in rng.sample(uuids, k=3)}
    logs = {u.replace("-", "") for u in rng.sample(uuids, k=2)}
    return objects, named, step_runs, logs


@pytest.mark.parametrize("seed", range(60))
def test_classification_matches_the_model_of_its_rules(seed: int) -> None:
    objects, named, step_runs, logs = hostile_store(seed)
    code_uploads = seed % 2 == 0
    expected_rows, expected_summary = model(objects, named, step_runs, logs, code_uploads)
    rows, summary = classified(objects, named, step_runs, logs, code_uploads)
    assert rows == expected_rows
    assert summary == expected_summary


def test_the_hostile_stores_reach_every_rule() -> None:
    """The random stores are not vacuous: together they hold candidates of every class
    the layout has, and paths protected by each reason."""
    classes: set[str] = set()
    reasons: set[str] = set()
    statuses: set[str] = set()
    for seed in range(60):
        objects, named, step_runs, logs = hostile_store(seed)
        rows, _ = model(objects, named, step_runs, logs, seed % 2 == 0)
        for row in rows:
            statuses.add(row[1])
            reasons.update(row[3])
            if row[1] == r.STATUS_CANDIDATE:
                classes.add(row[2])
    assert statuses == {r.STATUS_CANDIDATE, r.STATUS_PROTECTED}
    assert reasons == {r.PROTECT_NAMED_INSIDE, r.PROTECT_STEP_RUNNING, r.PROTECT_GRACE,
                       r.PROTECT_UNKNOWN_LAYOUT, r.PROTECT_UNDO_TRASH}
    assert classes == {r.ORPHAN_DELETED_VERSION, r.ORPHAN_FAILED_STEP, r.ORPHAN_DELETED_RUN,
                       r.ORPHAN_CUSTOM_ARTIFACT, r.ORPHAN_EXTERNAL_ARTIFACT,
                       r.ORPHAN_HOOK_OUTPUT, r.ORPHAN_RUN_LOGS, r.ORPHAN_EMPTY_DIR,
                       r.ORPHAN_CODE_UPLOAD}


def test_a_directory_marker_with_contents_is_not_an_empty_directory() -> None:
    """An object store lists a "directory marker" whatever lies under it (the S3 listing
    gives each an ``is_dir`` row): a marker over a user's file is implied by the file,
    never an empty-directory candidate whose delete would take the file."""
    root = ROOTS["s3"]
    old = datetime(2026, 1, 1)
    objects: list[Obj] = [
        ("s3", root, f"{root}/custom_artifacts/filled", 0, old, True),
        ("s3", root, f"{root}/custom_artifacts/filled/notes.txt", 10, old, False),
        ("s3", root, f"{root}/custom_artifacts/filled2", 0, old, True),
        ("s3", root, f"{root}/custom_artifacts/filled2/sub", 0, old, True),
        ("s3", root, f"{root}/custom_artifacts/empty/", 0, old, True),
        # Sorts between a marker and its contents, and is no content of it.
        ("s3", root, f"{root}/custom_artifacts/empty-x", 10, old, False),
    ]
    rows, _ = classified(objects, [], {}, set(), False)
    status = {row[0]: (row[1], row[2]) for row in rows}
    assert f"{root}/custom_artifacts/filled" not in status
    assert f"{root}/custom_artifacts/filled2" not in status
    assert status[f"{root}/custom_artifacts/empty"] == ("candidate", r.ORPHAN_EMPTY_DIR)
    assert status[f"{root}/custom_artifacts"][0] == "protected"
