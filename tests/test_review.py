"""Offline review (gc show, query, filter, diff, report, history) of manifests marked
from a real ZenML 0.98.0 store, on local paths and on S3 (moto on loopback)."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from artifact_gc.cli import cli
from artifact_gc.errors import EXIT_MANIFEST_REFUSED, EXIT_USAGE, ManifestRefused, UsageError
from artifact_gc.manifest import format as mf
from artifact_gc.manifest.reasons import (
    ITEM_KIND_VERSION,
    PROTECT_FILTERED_OUT,
    STATUS_CANDIDATE,
    STATUS_PROTECTED,
)
from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.run import mark
from artifact_gc.review.diff import DIFF_CATEGORIES, diff
from artifact_gc.review.filter import filter_manifest
from artifact_gc.review.history import history
from artifact_gc.review.progress import SWEEP_DONE
from artifact_gc.review.query import query
from artifact_gc.review.report import build_report
from artifact_gc.review.session import query_names
from artifact_gc.review.show import DIMENSIONS, show
from artifact_gc.storage.urls import url_to_fs
from artifact_gc.sweep.journal import Event, Journal
from scenarios.helpers import ScenarioStore, load_scenario_store, require_server, restore_tree

REPO = Path(__file__).resolve().parents[1]
QUERIES = REPO / "manifests" / "queries"
PACKAGED_QUERIES = REPO / "gc" / "artifact_gc" / "review" / "queries"
PACKAGED_STATE = REPO / "gc" / "artifact_gc" / "sweep" / "sweep_state.sql"
FIXTURE = Path(__file__).parent / "fixtures" / "manifest-format-1.0-tool-0.1.0.parquet"
COMMANDS = ("show", "query", "filter", "diff", "report", "history")


# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Marked:
    """Marks of the session's scenario store: with sizes (``url``) and without."""

    store: ScenarioStore
    url: str
    info: mf.ManifestInfo
    plain_url: str

    def rows(self) -> dict[str, dict[str, Any]]:
        return _rows(self.url)


def _restore_pristine(request: pytest.FixtureRequest) -> ScenarioStore:
    """Put the session's scenario store back as built, and load it.

    Other modules' tests mutate the store (sweeps) and only restore it before their
    own next test, so a module that reads it restores it first."""
    pristine = request.getfixturevalue("_sqlite_pristine")
    if pristine.error:
        pytest.fail(f"building the SQLite scenario store failed:\n{pristine.error}")
    restore_tree(pristine.copy, pristine.live)
    return load_scenario_store(pristine.live)


@pytest.fixture(scope="module")
def marked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Marked:
    store = _restore_pristine(request)
    directory = tmp_path_factory.mktemp("review")
    sized = mark(store.sqlalchemy_url, str(directory / "mark.parquet"),
                 MarkOptions(older_than=timedelta(0), sizes=True))
    plain = mark(store.sqlalchemy_url, str(directory / "plain.parquet"),
                 MarkOptions(older_than=timedelta(0)))
    return Marked(store, sized.url, sized.info, plain.url)


@pytest.fixture
def manifest_copy(marked: Marked, tmp_path: Path) -> str:
    """A private copy of the mark, in its own directory (journals can be added)."""
    target = tmp_path / "manifests" / "mark.parquet"
    target.parent.mkdir()
    shutil.copy(marked.url, target)
    return str(target)


def _rows(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    fs, path = url_to_fs(url, storage_options)
    with fs.open(path, "rb") as handle:
        table = pq.read_table(handle)
    return {row["artifact_version_id"]: row for row in table.to_pylist()}


def _ids(rows: dict[str, dict[str, Any]], status: str) -> set[str]:
    return {vid for vid, row in rows.items() if row["status"] == status}


def _invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def _tamper(source: str, target: Path, change: dict[str, Any] | None = None,
            flip_to_candidate: bool = False) -> str:
    """Copy a manifest, changing its metadata and/or turning a protected row into a
    candidate while keeping the old checksum: what an attacker or a careless edit does."""
    table = pq.read_table(source)
    metadata = dict(table.schema.metadata)
    info = json.loads(metadata[mf.METADATA_KEY])
    for key, value in (change or {}).items():
        info[key] = value
    metadata[mf.METADATA_KEY] = json.dumps(info).encode()
    if flip_to_candidate:
        status = table.column("status").to_pylist()
        status[status.index(STATUS_PROTECTED)] = STATUS_CANDIDATE
        table = table.set_column(table.schema.get_field_index("status"), "status",
                                 pa.array(status, pa.string()))
    pq.write_table(table.replace_schema_metadata(metadata), str(target))
    return str(target)


def _journal(url: str, events: list[tuple[str, str]], *, sweep_id: str = "sweep0001",
             storage_options: dict[str, Any] | None = None, bytes_each: int = 10) -> None:
    """Journal ``(artifact_version_id, event)`` pairs through the sweep's own writer."""
    Journal(url, storage_options).append(
        sweep_id, 0, "all",
        [Event(ITEM_KIND_VERSION, vid, event, bytes=bytes_each if event == "deleted" else None,
               error="boom" if event == "failed" else None) for vid, event in events],
    )


# ---------------------------------------------------------------------------
# The shipped queries
# ---------------------------------------------------------------------------


def test_shipped_queries_are_identical_to_the_packaged_copy() -> None:
    shipped = sorted(p.name for p in QUERIES.glob("*.sql"))
    packaged = sorted(p.name for p in PACKAGED_QUERIES.glob("*.sql"))
    assert shipped == packaged and len(shipped) >= 8
    _, mismatch, errors = filecmp.cmpfiles(QUERIES, PACKAGED_QUERIES, shipped, shallow=False)
    assert not mismatch and not errors, f"manifests/queries and artifact_gc/sql differ: {mismatch}"
    assert query_names() == [Path(n).stem for n in shipped]
    for name in DIMENSIONS.values():
        assert f"{name}.sql" in shipped


def test_the_item_state_view_ships_identically_to_the_packaged_copy() -> None:
    """The one definition of an item's sweep state: the sweep, gc status and the review
    read the packaged file; duckdb CLI users read manifests/sweep_state.sql."""
    assert filecmp.cmp(REPO / "manifests" / "sweep_state.sql", PACKAGED_STATE, shallow=False)


def test_every_shipped_query_runs_against_a_real_manifest(marked: Marked, tmp_path: Path) -> None:
    url = shutil.copy(marked.url, tmp_path / "mark.parquet")
    candidates = sorted(_ids(marked.rows(), STATUS_CANDIDATE))
    _journal(str(url), [(candidates[0], "intent"), (candidates[0], "deleted"),
                        (candidates[1], "failed")])
    connection = duckdb.connect()
    # Exactly what FORMAT.md tells a duckdb CLI user to type.
    connection.execute(f"CREATE VIEW manifest AS SELECT * FROM read_parquet('{url}')")
    connection.execute(
        "CREATE VIEW journal AS SELECT * FROM "
        f"read_parquet('{url}.journal/*.parquet', union_by_name = true)"
    )
    connection.execute((REPO / "manifests" / "sweep_state.sql").read_text())
    results = {}
    for path in sorted(QUERIES.glob("*.sql")):
        results[path.stem] = connection.sql(path.read_text()).to_arrow_table().to_pylist()
        assert results[path.stem], f"{path.name} returned no rows"
    counts = marked.info.counts
    assert {r["status"]: r["versions"] for r in results["by_status"]} == {
        s: counts[s] for s in ("reachable", "protected", "candidate") if counts[s]
    }
    assert sum(r["versions"] for r in results["candidate_age"]) == counts["candidate"]
    assert sum(r["candidates"] for r in results["by_project"]) == counts["candidate"]
    assert sum(r["versions"] for r in results["largest_candidates"]) == counts["candidate"]
    progress = {r["state"]: r["versions"] for r in results["sweep_progress"]}
    assert progress == {"deleted": 1, "failed": 1, "pending": counts["candidate"] - 2}


# ---------------------------------------------------------------------------
# gc show
# ---------------------------------------------------------------------------


def test_show_every_dimension(marked: Marked) -> None:
    rows = marked.rows()
    candidates = _ids(rows, STATUS_CANDIDATE)
    candidate_bytes = sum(rows[v]["size_bytes"] or 0 for v in candidates)
    for by in DIMENSIONS:
        result = show(marked.url, by=by, top=3)
        assert result.checksum_ok and result.sizes_measured
        assert result.rows and all("bucket_order" not in r for r in result.rows)
        assert result.info["mark_id"] == marked.info.mark_id
        assert result.info["database"]["store_id"] == marked.info.database["store_id"]
        assert len(result.largest_candidates) <= 3
        assert sum(r["versions"] for r in result.candidate_age) == len(candidates)
        assert sum(r["bytes"] or 0 for r in result.candidate_age) == candidate_bytes
        assert result.sweep.state == "none"
    by_status = {r["status"]: r for r in show(marked.url, by="status").rows}
    assert by_status["candidate"]["versions"] == len(candidates)
    assert by_status["candidate"]["bytes"] == candidate_bytes
    by_artifact = show(marked.url, by="artifact", top=50).rows
    names = {(rows[v]["artifact_name"], rows[v]["project"]) for v in rows}
    assert {(r["artifact_name"], r["project"]) for r in by_artifact} == names
    largest = show(marked.url, top=50).largest_candidates
    sizes = [r["bytes"] for r in largest]
    assert sizes == sorted(sizes, reverse=True)
    with pytest.raises(UsageError):
        show(marked.url, by="colour")


def test_show_cli_formats(marked: Marked) -> None:
    table = _invoke("show", marked.url, "--by", "reason")
    assert table.exit_code == 0, table.output
    for text in (marked.info.mark_id, "checksum ok", "By reason", "Largest candidate",
                 "Candidates by age", "sweep: none", "older_than"):
        assert text in table.output
    as_json = _invoke("show", marked.url, "--by", "project", "--format", "json")
    data = json.loads(as_json.output)
    assert data["by"] == "project" and data["info"]["mark_id"] == marked.info.mark_id
    assert data["info"]["parameters"]["older_than_seconds"] == 0
    as_csv = _invoke("show", marked.url, "--by", "status", "--format", "csv")
    lines = as_csv.output.strip().splitlines()
    assert lines[0] == "status,versions,bytes" and len(lines) == 4


def test_show_flags_a_tampered_manifest(marked: Marked, tmp_path: Path) -> None:
    tampered = _tamper(marked.url, tmp_path / "t.parquet", flip_to_candidate=True)
    assert show(tampered).checksum_ok is False
    assert "MISMATCH" in _invoke("show", tampered).output


# ---------------------------------------------------------------------------
# gc query
# ---------------------------------------------------------------------------


def test_query_formats_and_outputs(marked: Marked, tmp_path: Path) -> None:
    sql = "SELECT status, count(*) AS n FROM manifest GROUP BY status ORDER BY status"
    expected = {s: marked.info.counts[s] for s in ("candidate", "protected", "reachable")}
    table = query(marked.url, sql)
    assert dict(zip(*table.to_pydict().values(), strict=True)) == expected
    as_json = json.loads(_invoke("query", marked.url, sql, "--format", "json").output)
    assert {r["status"]: r["n"] for r in as_json} == expected
    as_csv = _invoke("query", marked.url, sql, "--format", "csv").output.splitlines()
    assert as_csv[0] == "status,n" and len(as_csv) == 4
    shown = _invoke("query", marked.url, sql)
    assert shown.exit_code == 0 and "candidate" in shown.output
    for fmt in ("parquet", "csv", "json"):
        out = tmp_path / f"out.{fmt}"
        result = _invoke("query", marked.url, "SELECT * FROM manifest", "--format", fmt,
                         "-o", str(out))
        assert result.exit_code == 0, result.output
        assert out.stat().st_size > 0
    written = pq.read_table(tmp_path / "out.parquet")
    assert written.num_rows == marked.info.counts["versions_in_scope"]
    assert len(json.loads((tmp_path / "out.json").read_text())) == written.num_rows


def test_query_sees_the_journal(manifest_copy: str) -> None:
    sql = "SELECT count(*) AS n FROM journal"
    assert _invoke("query", manifest_copy, sql).exit_code == EXIT_USAGE  # no journal yet
    vid = sorted(_ids(_rows(manifest_copy), STATUS_CANDIDATE))[0]
    _journal(manifest_copy, [(vid, "intent"), (vid, "deleted")])
    assert query(manifest_copy, sql).column("n").to_pylist() == [2]


def test_query_errors(marked: Marked, tmp_path: Path) -> None:
    bad = _invoke("query", marked.url, "SELECT nope FROM manifest")
    assert bad.exit_code == EXIT_USAGE and "nope" in bad.output
    assert _invoke("query", marked.url, "SELECT 1", "--format", "parquet").exit_code == 2
    missing = _invoke("query", str(tmp_path / "missing.parquet"), "SELECT 1")
    assert missing.exit_code == EXIT_MANIFEST_REFUSED and "no manifest" in missing.output
    not_ours = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1]}), not_ours)
    assert _invoke("query", str(not_ours), "SELECT 1").exit_code == EXIT_MANIFEST_REFUSED


# ---------------------------------------------------------------------------
# gc filter
# ---------------------------------------------------------------------------


def _assert_narrowed(parent: dict[str, dict[str, Any]], child: dict[str, dict[str, Any]],
                     kept: set[str]) -> None:
    """``child`` is ``parent`` with exactly the candidates outside ``kept`` protected."""
    assert set(child) == set(parent)
    for vid, row in child.items():
        before = parent[vid]
        if before["status"] == STATUS_CANDIDATE and vid not in kept:
            assert row["status"] == STATUS_PROTECTED
            assert row["reasons"] == [PROTECT_FILTERED_OUT]
        else:
            assert row == before, vid


def test_filter_narrows_and_the_sweep_accepts_it(marked: Marked, tmp_path: Path) -> None:
    parent = marked.rows()
    out = tmp_path / "narrow.parquet"
    predicate = "artifact_name NOT IN ('runs_data', 'versioned_manual')"
    result = _invoke("filter", marked.url, "--where", predicate, "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    child = _rows(str(out))
    kept = {v for v in _ids(parent, STATUS_CANDIDATE)
            if parent[v]["artifact_name"] not in ("runs_data", "versioned_manual")}
    assert 0 < len(kept) < len(_ids(parent, STATUS_CANDIDATE))
    _assert_narrowed(parent, child, kept)
    assert _ids(child, STATUS_CANDIDATE) == kept
    assert summary["candidates_after"] == len(kept)
    info = mf.verify(str(out))  # what gc sweep checks first
    assert info.mark_id != marked.info.mark_id and info.checksum != marked.info.checksum
    assert info.database == marked.info.database and info.started_at == marked.info.started_at
    assert info.counts["candidate"] == len(kept)
    assert info.counts["protected"] == marked.info.counts["protected"] + (
        marked.info.counts["candidate"] - len(kept))
    (entry,) = info.lineage
    assert entry["parent_mark_id"] == marked.info.mark_id
    assert entry["parent_checksum"] == marked.info.checksum
    assert entry["predicate"] == predicate and entry["at"]
    # A filter of a filter keeps the whole lineage and still verifies.
    twice = tmp_path / "twice.parquet"
    filter_manifest(str(out), "project IS NOT NULL AND artifact_name <> 'runs_summary'",
                    str(twice))
    chained = mf.verify(str(twice))
    assert [e["parent_mark_id"] for e in chained.lineage] == [marked.info.mark_id, info.mark_id]
    assert _ids(_rows(str(twice)), STATUS_CANDIDATE) == {
        v for v in kept if parent[v]["artifact_name"] != "runs_summary"}


@pytest.mark.parametrize("predicate", [
    "true",
    "status = 'reachable'",
    "status <> 'candidate'",
    "status IN ('protected', 'reachable', 'candidate') OR true",
    "len(reasons) > 0",
    "project = NULL",
    "save_type = 'preexisting' OR 1 = 1",
])
def test_filter_cannot_widen(marked: Marked, tmp_path: Path, predicate: str) -> None:
    parent = marked.rows()
    out = tmp_path / "f.parquet"
    filter_manifest(marked.url, predicate, str(out))
    child = _rows(str(out))
    assert _ids(child, STATUS_CANDIDATE) <= _ids(parent, STATUS_CANDIDATE)
    kept = _ids(child, STATUS_CANDIDATE)
    _assert_narrowed(parent, child, kept)
    if predicate in ("true", "status IN ('protected', 'reachable', 'candidate') OR true"):
        assert kept == _ids(parent, STATUS_CANDIDATE)
    if predicate in ("status = 'reachable'", "project = NULL", "len(reasons) > 0"):
        assert kept == set()  # NULL or false: no longer a candidate
    mf.verify(str(out))


@pytest.mark.parametrize("predicate, message", [
    ("project = ", "does not parse"),
    ("true; DROP TABLE manifest", "does not parse"),
    ("1", "boolean"),
    ("artifact_name", "boolean"),
    ("no_such_column = 1", "not a valid predicate"),
    ("  ", "needs a predicate"),
])
def test_filter_rejects_bad_predicates(marked: Marked, tmp_path: Path, predicate: str,
                                       message: str) -> None:
    out = tmp_path / "f.parquet"
    result = _invoke("filter", marked.url, "--where", predicate, "-o", str(out))
    assert result.exit_code == EXIT_USAGE, result.output
    assert message in result.output
    assert not out.exists()


def test_filter_refuses_a_tampered_parent_and_overwrites_only_with_force(
    marked: Marked, tmp_path: Path
) -> None:
    tampered = _tamper(marked.url, tmp_path / "t.parquet", flip_to_candidate=True)
    out = tmp_path / "f.parquet"
    result = _invoke("filter", tampered, "--where", "true", "-o", str(out))
    assert result.exit_code == EXIT_MANIFEST_REFUSED and "checksum" in result.output
    assert not out.exists()
    assert _invoke("filter", marked.url, "--where", "true", "-o", str(out)).exit_code == 0
    again = _invoke("filter", marked.url, "--where", "true", "-o", str(out))
    assert again.exit_code == EXIT_USAGE and "--force" in again.output
    assert _invoke("filter", marked.url, "--where", "true", "-o", str(out),
                   "--force").exit_code == 0
    same = _invoke("filter", str(out), "--where", "true", "-o", str(out), "--force")
    assert same.exit_code == EXIT_USAGE


# ---------------------------------------------------------------------------
# gc diff
# ---------------------------------------------------------------------------


def test_diff_of_a_manifest_against_itself_is_empty(marked: Marked, tmp_path: Path) -> None:
    result = diff(marked.url, marked.url)
    assert result.empty
    assert all(t["versions"] == 0 for t in result.totals.values())
    copy = shutil.copy(marked.url, tmp_path / "copy.parquet")
    assert diff(marked.url, str(copy)).empty
    cli_result = _invoke("diff", marked.url, str(copy))
    assert cli_result.exit_code == 0 and "No difference" in cli_result.output
    assert json.loads(_invoke("diff", marked.url, marked.url, "--format", "json").output)[
        "rows"] == []


def test_diff_refuses_marks_of_different_stores(marked: Marked, tmp_path: Path) -> None:
    other = _tamper(marked.url, tmp_path / "other.parquet",
                    {"database": {**marked.info.database, "store_id": "0" * 32}})
    with pytest.raises(ManifestRefused) as refused:
        diff(marked.url, other)
    assert refused.value.reason == "different_store"
    assert _invoke("diff", marked.url, other).exit_code == EXIT_MANIFEST_REFUSED
    assert _invoke("diff", marked.url, str(tmp_path / "nope.parquet")).exit_code == 5


_MUTATE = r"""
import json, sys
from zenml import Model, link_artifact_to_model, save_artifact
from zenml.client import Client

plan = json.loads(sys.argv[1])
client = Client()
client.delete_pipeline_run(plan["delete_run"])
client.delete_artifact_version(plan["delete_version"], delete_metadata=True,
                               delete_from_artifact_store=False)
model = Model(name="gc_model", version="v1")
link_artifact_to_model(client.get_artifact_version(plan["revive"]), model=model)
orphan = save_artifact({"new": 1}, name="diff_new_orphan")
linked = save_artifact({"new": 2}, name="diff_new_linked")
link_artifact_to_model(linked, model=model)
print(json.dumps({"orphan": orphan.id.hex, "linked": linked.id.hex}))
"""


@pytest.fixture
def changed_store(request: pytest.FixtureRequest) -> Iterator[ScenarioStore]:
    """The scenario store, to be changed by ZenML itself; restored afterwards so that
    the module's later marks see the store as built."""
    yield _restore_pristine(request)
    _restore_pristine(request)


def test_diff_between_two_real_marks(changed_store: ScenarioStore, tmp_path: Path) -> None:
    store = changed_store
    a = tmp_path / "a.parquet"
    mark(store.sqlalchemy_url, str(a), MarkOptions(older_than=timedelta(0), sizes=True))
    rows_a = _rows(str(a))
    candidates_a = _ids(rows_a, STATUS_CANDIDATE)
    engine = sqlite3.connect(f"file:{store.db_url.removeprefix('sqlite:///')}?mode=ro",
                             uri=True)
    # The newest remaining run of gc_runs: its outputs lose their last references.
    run_id, = engine.execute(
        "SELECT r.id FROM pipeline_run r JOIN pipeline p ON p.id = r.pipeline_id "
        "WHERE p.name = 'gc_runs' ORDER BY r.created DESC LIMIT 1").fetchall()[0]
    outputs = {v for (v,) in engine.execute(
        "SELECT o.artifact_id FROM step_run_output_artifact o "
        "JOIN step_run s ON s.id = o.step_id WHERE s.pipeline_run_id = ?",
        [run_id]).fetchall()}
    consumed_elsewhere = {v for (v,) in engine.execute(
        "SELECT i.artifact_id FROM step_run_input_artifact i "
        "JOIN step_run s ON s.id = i.step_id WHERE s.pipeline_run_id <> ?",
        [run_id]).fetchall()}
    engine.close()
    born = outputs - consumed_elsewhere
    assert born and not born & candidates_a
    ordered = sorted(candidates_a, key=lambda v: (rows_a[v]["artifact_name"], v))
    deleted, revived = ordered[0], ordered[-1]
    plan = {"delete_run": run_id, "delete_version": deleted, "revive": revived}
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env.update(store.env())
    script = tmp_path / "mutate.py"  # ZenML wants its main module to be a file
    script.write_text(_MUTATE)
    proc = subprocess.run([sys.executable, str(script), json.dumps(plan)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=240,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    created = json.loads(proc.stdout.strip().splitlines()[-1])
    b = tmp_path / "b.parquet"
    mark(store.sqlalchemy_url, str(b), MarkOptions(older_than=timedelta(0), sizes=True))
    rows_b = _rows(str(b))

    result = diff(str(a), str(b))
    by_change: dict[str, set[str]] = {c: set() for c in DIFF_CATEGORIES}
    for row in result.rows.to_pylist():
        by_change[row["change"]].add(row["artifact_version_id"])
    # Exactly the set relations between the two manifests...
    candidates_b = _ids(rows_b, STATUS_CANDIDATE)
    assert by_change["new_candidate"] == candidates_b - candidates_a
    assert by_change["revived"] == {v for v in candidates_a if v in rows_b} - candidates_b
    assert by_change["disappeared"] == set(rows_a) - set(rows_b)
    assert by_change["appeared"] == set(rows_b) - set(rows_a) - candidates_b
    # ...and they are what ZenML did to the store.
    assert by_change["new_candidate"] >= born | {created["orphan"]}
    assert revived in by_change["revived"] and "model_link" in rows_b[revived]["reasons"]
    assert deleted in by_change["disappeared"]
    assert created["linked"] in by_change["appeared"]
    assert result.totals["revived"]["bytes"] == rows_a[revived]["size_bytes"]
    assert result.totals["new_candidate"]["versions"] == len(by_change["new_candidate"])
    shown = _invoke("diff", str(a), str(b))
    assert shown.exit_code == 0
    for change in DIFF_CATEGORIES:
        assert change in shown.output
    as_csv = _invoke("diff", str(a), str(b), "--format", "csv").output.splitlines()
    assert len(as_csv) == 1 + result.rows.num_rows


# ---------------------------------------------------------------------------
# gc history
# ---------------------------------------------------------------------------


def _history_location(marked: Marked, directory: Path) -> dict[str, str]:
    """A manifests location with one mark in every sweep state, a derived manifest and
    a stray Parquet file."""
    directory.mkdir(parents=True, exist_ok=True)
    candidates = sorted(_ids(marked.rows(), STATUS_CANDIDATE))
    urls = {}
    for state in ("none", "partial", "done", "failed"):
        urls[state] = str(shutil.copy(marked.url, directory / f"mark-{state}.parquet"))
    _journal(urls["partial"], [(candidates[0], "intent"), (candidates[0], "deleted"),
                               (candidates[1], "intent")])
    _journal(urls["done"], [(v, "intent") for v in candidates])
    _journal(urls["done"], [(v, "deleted") for v in candidates[:-1]]
             + [(candidates[-1], "revived")], sweep_id="sweep0002")
    _journal(urls["failed"], [(candidates[0], "deleted"), (candidates[1], "failed")])
    filter_manifest(marked.url, "artifact_name <> 'runs_data'",
                    str(directory / "derived.parquet"))
    pq.write_table(pa.table({"x": [1]}), directory / "stray.parquet")
    return {k: str(v) for k, v in urls.items()}


def test_history_lists_marks_and_sweep_states(marked: Marked, tmp_path: Path) -> None:
    location = tmp_path / "manifests"
    _history_location(marked, location)
    entries = {Path(e.url).name: e for e in history(str(location))}
    assert set(entries) == {"mark-none.parquet", "mark-partial.parquet", "mark-done.parquet",
                            "mark-failed.parquet", "derived.parquet", "stray.parquet"}
    for state in ("none", "partial", "done", "failed"):
        entry = entries[f"mark-{state}.parquet"]
        assert entry.sweep == state and entry.mark_id == marked.info.mark_id
        assert entry.store_id == marked.info.database["store_id"]
        assert entry.counts["candidate"] == marked.info.counts["candidate"]
        assert entry.bytes["candidate"] == marked.info.bytes["candidate"]
    assert entries["mark-done.parquet"].swept == marked.info.counts["candidate"] - 1
    assert entries["derived.parquet"].derived and entries["derived.parquet"].error is None
    assert entries["stray.parquet"].error and entries["stray.parquet"].mark_id is None
    shown = _invoke("history", "--dir", str(location))
    assert shown.exit_code == 0, shown.output
    for text in ("partial", "done", "failed", "derived by gc filter", "unreadable"):
        assert text in shown.output
    as_json = json.loads(_invoke("history", "--dir", str(location), "--json").output)
    assert len(as_json) == 6


def test_history_default_location_is_printed(marked: Marked, tmp_path: Path) -> None:
    home = tmp_path / "home"
    empty = _invoke("history", env={"ARTIFACT_GC_HOME": str(home)})
    assert empty.exit_code == 0 and str(home) in empty.output and "No manifests" in empty.output
    home.mkdir()
    shutil.copy(marked.url, home / "m.parquet")
    listed = _invoke("history", env={"ARTIFACT_GC_HOME": str(home)})
    assert listed.exit_code == 0 and "m.parquet" in listed.output
    missing = _invoke("history", "--dir", str(tmp_path / "nowhere"))
    assert missing.exit_code == EXIT_USAGE and "does not exist" in missing.output


# ---------------------------------------------------------------------------
# gc report, in a real headless Chromium
# ---------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Chromium's own service traffic (updates, time, accounts), not the page's.
_BROWSER_HOSTS = ("google.com", "googleapis.com", "gvt1.com", "gstatic.com")


def _png_distinct_pixels(data: bytes, limit: int = 16) -> int:
    """Distinct pixel values of an 8-bit RGB/RGBA PNG (stops counting at ``limit``)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, header = 8, b"", b""
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        chunk = data[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6)
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    previous, seen = bytearray(stride), set()
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa_, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                best = left if pa_ <= pb and pa_ <= pc else up if pb <= pc else corner
                line[i] = (line[i] + best) & 0xFF
        for x in range(0, stride, bpp * 7):
            seen.add(bytes(line[x:x + bpp]))
        if len(seen) >= limit:
            return len(seen)
        previous = line
    return len(seen)


def _chromium(page: Path, tmp_path: Path,
              screenshot: bool = True) -> tuple[str, str, bytes, list[str]]:
    """Render ``page``: its DOM after scripts ran, the log, a screenshot (if asked),
    and every URL the browser requested on the page's behalf."""
    if not Path(CHROMIUM).exists():
        require_server("chromium is not installed (apt-get install -y chromium)")
    shot, netlog = tmp_path / "shot.png", tmp_path / "net.json"
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--enable-logging=stderr", "--v=0", "--window-size=1280,2000",
            # Any request the page makes fails, and the net log shows it.
            "--host-resolver-rules=MAP * ~NOTFOUND", f"--log-net-log={netlog}"]
    dump = subprocess.run(
        [*base, f"--user-data-dir={tmp_path / 'profile-dom'}", "--virtual-time-budget=5000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert dump.returncode == 0, dump.stderr[-3000:]
    events = json.loads(netlog.read_text()).get("events", [])
    urls = {event.get("params", {}).get("url") for event in events}
    requested = sorted(u for u in urls if u and not any(h in u for h in _BROWSER_HOSTS))
    if not screenshot:
        return dump.stdout, dump.stderr, b"", requested
    shooting = subprocess.run(
        [*base, f"--user-data-dir={tmp_path / 'profile-shot'}", f"--screenshot={shot}",
         page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert shooting.returncode == 0, shooting.stderr[-3000:]
    return dump.stdout, dump.stderr + shooting.stderr, shot.read_bytes(), requested


def _assert_report_renders(page: Path, tmp_path: Path, charts: list[str],
                           keep: Path | None = None, screenshot: bool = True) -> None:
    html = page.read_text()
    assert "<script src" not in html and "<link " not in html  # nothing to fetch
    dom, log, png, requested = _chromium(page, tmp_path, screenshot)
    for chart in charts:
        assert f'id="{chart}"' in dom
    # Every chart is an inline SVG (pygal) inside its container, with drawn marks.
    for chart in charts:
        start = dom.index(f'id="{chart}"')
        box = dom[start:dom.index("</svg>", start)]
        assert "<svg" in box and ("<path" in box or "<rect" in box), chart
    console = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, "\n".join(console)
    assert not [u for u in requested if not u.startswith("file:")], requested
    if not screenshot:
        return
    assert len(png) > 20_000 and _png_distinct_pixels(png) > 3
    if keep is not None:
        keep.write_bytes(png)


def test_report_renders_in_headless_chromium(marked: Marked, manifest_copy: str,
                                             tmp_path: Path) -> None:
    candidates = sorted(_ids(marked.rows(), STATUS_CANDIDATE))
    _journal(manifest_copy, [(candidates[0], "intent"), (candidates[0], "deleted"),
                             (candidates[1], "intent")])
    out = tmp_path / "report.html"
    result = _invoke("report", manifest_copy, "-o", str(out), "--top", "5")
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert marked.info.mark_id in html and "Sweep progress: partial" in html
    assert html.count('<tr><td') >= len(candidates)  # the sortable table
    assert 'class="sortable"' in html
    charts = ["chart-status", "chart-artifacts", "chart-projects", "chart-age", "chart-sweep"]
    _assert_report_renders(out, tmp_path, charts,
                           keep=Path(os.environ["REPORT_SCREENSHOT"])
                           if os.environ.get("REPORT_SCREENSHOT") else None)
    # Default output name, and a manifest without sizes or journal: counts, four charts.
    plain = Path(shutil.copy(marked.plain_url, tmp_path / "plain.parquet"))
    assert _invoke("report", str(plain)).exit_code == 0
    assert "Sizes not measured" in (tmp_path / "plain.html").read_text()
    assert _invoke("report", str(tmp_path / "nope.parquet")).exit_code == 5


# ---------------------------------------------------------------------------
# A manifest of the first release
# ---------------------------------------------------------------------------


def test_first_release_manifest_is_still_read(tmp_path: Path) -> None:
    info = mf.verify(str(FIXTURE))
    assert info.format_version == "1.0" and info.tool_version == "0.1.0"
    assert set(mf.SCHEMA.names) <= set(pq.read_schema(FIXTURE).names)
    shown = show(str(FIXTURE), by="reason")
    assert shown.checksum_ok
    assert sum(r["versions"] for r in show(str(FIXTURE)).rows) == \
        info.counts["versions_in_scope"]
    assert query(str(FIXTURE), "SELECT count(*) AS n FROM manifest").column(
        "n").to_pylist() == [info.counts["versions_in_scope"]]
    out = tmp_path / "f.parquet"
    filter_manifest(str(FIXTURE), "true", str(out))
    mf.verify(str(out))
    assert diff(str(FIXTURE), str(out)).empty
    build_report(str(FIXTURE), str(tmp_path / "r.html"))


# ---------------------------------------------------------------------------
# Item columns (format 1.1)
# ---------------------------------------------------------------------------


def _checksum_by_the_1_0_rule(url: str) -> str:
    """FORMAT.md's checksum rule of format 1.0, in plain Python over the file alone:
    what a release that knows only 1.0 recomputes before it sweeps."""
    table = pq.read_table(url)
    info = json.loads(table.schema.metadata[mf.METADATA_KEY])
    identity = {k: info[k] for k in ("mark_id", "database", "format_version", "lineage")}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode())
    candidates = sorted((r for r in table.to_pylist() if r["status"] == STATUS_CANDIDATE),
                        key=lambda r: r["artifact_version_id"])
    for row in candidates:
        fields = [row["artifact_version_id"], row["artifact_id"],
                  *(row[c] or "" for c in ("uri", "artifact_store_id", "store_root",
                                           "save_type")),
                  "\x1e".join(row["visualization_uris"] or [])]
        digest.update(("\x1f".join(fields) + "\n").encode())
    digest.update(str(len(candidates)).encode())
    return "sha256:" + digest.hexdigest()


def _item_keys(url: str) -> dict[str, tuple[str, str]]:
    return {vid: (row["item_kind"], row["item_id"]) for vid, row in _rows(url).items()}


def test_a_mark_writes_format_1_1_that_a_1_0_release_accepts(marked: Marked) -> None:
    # Both writers: the whole-table one (--sizes) and the one that writes parts.
    for url in (marked.url, marked.plain_url):
        info = mf.verify(url)
        assert info.format_version == mf.FORMAT_VERSION == "1.2"
        assert pq.read_schema(url).names == mf.FILE_SCHEMA.names
        assert pq.read_schema(url).names[:len(mf.SCHEMA)] == mf.SCHEMA.names
        assert _item_keys(url) == {v: ("artifact_version", v) for v in _rows(url)}
        assert info.counts["candidate"] > 0
        # The 1.0 rule gives the same checksum: a release that reads only 1.0 verifies it.
        assert _checksum_by_the_1_0_rule(url) == info.checksum


def test_a_1_0_manifest_reads_with_its_implied_item_columns(tmp_path: Path) -> None:
    info = mf.verify(str(FIXTURE))
    assert _checksum_by_the_1_0_rule(str(FIXTURE)) == info.checksum
    assert "item_kind" not in pq.read_schema(FIXTURE).names
    sql = ("SELECT count(*) AS n, count(*) FILTER (WHERE item_kind = 'artifact_version' "
           "AND item_id = artifact_version_id) AS keyed FROM manifest")
    assert query(str(FIXTURE), sql).to_pylist() == [
        {"n": info.counts["versions_in_scope"], "keyed": info.counts["versions_in_scope"]}]
    # gc filter writes the current format, with the item columns the parent implies.
    out = tmp_path / "derived.parquet"
    filter_manifest(str(FIXTURE), "artifact_name <> 'runs_data'", str(out))
    derived = mf.verify(str(out))
    assert derived.format_version == mf.FORMAT_VERSION
    assert _item_keys(str(out)) == {v: ("artifact_version", v) for v in _rows(str(FIXTURE))}


def test_item_keys_are_checked_and_carried_through(marked: Marked, tmp_path: Path) -> None:
    from artifact_gc.manifest.publish import write_manifest

    table = pq.read_table(marked.url)
    status = table.column("status").to_pylist()
    first = status.index(STATUS_CANDIDATE)
    vid = table.column("artifact_version_id")[first].as_py()

    def with_key(column: str, value: str, every_row: bool = False) -> pa.Table:
        values = table.column(column).to_pylist()
        for index in range(len(values)) if every_row else [first]:
            values[index] = value
        return table.set_column(table.schema.get_field_index(column), column,
                                pa.array(values, pa.string()))

    # An item key edited after the mark: this release refuses the manifest. The edits
    # keep the candidates' order, so only the lines' item key can tell.
    for column, value, every_row in (("item_kind", "artifact_versions", True),
                                     ("item_id", vid + "0", False)):
        edited = tmp_path / f"edited-{column}.parquet"
        pq.write_table(with_key(column, value, every_row), edited)  # the mark's metadata
        with pytest.raises(ManifestRefused) as refused:
            mf.verify(str(edited))
        assert refused.value.reason == "checksum"
    # Candidates of another kind, written with their own checksum: this release accepts
    # them, a release that knows only 1.0 refuses them.
    for every_row in (True, False):
        other_kind = tmp_path / f"other-kind-{every_row}.parquet"
        write_manifest(with_key("item_kind", "orphan_file", every_row)
                       .replace_schema_metadata({}), mf.read_info(marked.url), str(other_kind))
        info = mf.verify(str(other_kind))
        assert _checksum_by_the_1_0_rule(str(other_kind)) != info.checksum
    # gc filter carries the item columns through, and gc diff matches rows on them.
    derived = tmp_path / "derived.parquet"
    filter_manifest(str(other_kind), "true", str(derived))
    assert _item_keys(str(derived)) == _item_keys(str(other_kind))
    assert _item_keys(str(derived))[vid] == ("orphan_file", vid)
    changes = diff(marked.url, str(derived)).rows.to_pylist()
    assert {(r["change"], r["item_kind"], r["item_id"]) for r in changes} == {
        ("disappeared", "artifact_version", vid), ("new_candidate", "orphan_file", vid)}


def test_parts_out_of_item_order_are_refused(marked: Marked, tmp_path: Path) -> None:
    from artifact_gc.manifest.publish import write_manifest_parts
    from artifact_gc.manifest.views import connect_duckdb

    # Rows in mark's shape (no item columns), in two parts of candidate id ranges.
    table = pq.read_table(marked.url).drop_columns(["item_kind", "item_id"]).sort_by(
        "artifact_version_id")
    half = table.num_rows // 2
    low, high = table.slice(0, half), table.slice(half)
    connection = connect_duckdb()
    try:
        in_order = tmp_path / "in-order.parquet"
        write_manifest_parts(connection, [low, high], mf.read_info(marked.url), str(in_order))
        assert mf.verify(str(in_order)).checksum == mf.read_info(marked.url).checksum
        reversed_ = tmp_path / "reversed.parquet"
        with pytest.raises(RuntimeError, match="not in candidate id order"):
            write_manifest_parts(connection, [high, low], mf.read_info(marked.url),
                                 str(reversed_))
    finally:
        connection.close()
    assert not reversed_.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in-order.parquet"]


# ---------------------------------------------------------------------------
# Every command on S3 (moto on loopback)
# ---------------------------------------------------------------------------


def _options(moto: Any) -> list[str]:
    return ["--storage-option", "key=testing", "--storage-option", "secret=TOPSECRETVALUE",
            "--storage-option", f"client_kwargs.endpoint_url={moto.endpoint_url}",
            "--storage-option", "client_kwargs.region_name=us-east-1"]


def test_every_command_on_s3(marked: Marked, moto_s3: Any, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    # No ambient credentials: everything must come through --storage-option.
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL",
                "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    options = {**moto_s3.storage_options, "secret": "TOPSECRETVALUE"}
    prefix = moto_s3.url("team/manifests")
    a = f"{prefix}/mark.parquet"
    mark(marked.store.sqlalchemy_url, a, MarkOptions(older_than=timedelta(0), sizes=True,
                                                     storage_options={**moto_s3.storage_options}))
    flags = _options(moto_s3)
    outputs = []

    shown = _invoke("show", a, "--format", "json", *flags)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["checksum_ok"] is True
    outputs.append(shown.output)

    sql = "SELECT count(*) AS n FROM manifest WHERE status = 'candidate'"
    queried = _invoke("query", a, sql, "--format", "json", *flags)
    assert json.loads(queried.output) == [{"n": marked.info.counts["candidate"]}]
    exported = _invoke("query", a, "SELECT * FROM manifest", "--format", "parquet",
                       "-o", f"{prefix}/export.parquet", *flags)
    assert exported.exit_code == 0, exported.output

    narrowed = f"{prefix}/narrowed.parquet"
    filtered = _invoke("filter", a, "--where", "artifact_name <> 'runs_data'", "-o",
                       narrowed, *flags)
    assert filtered.exit_code == 0, filtered.output
    mf.verify(narrowed, options)
    _assert_narrowed(_rows(a, options), _rows(narrowed, options),
                     _ids(_rows(narrowed, options), STATUS_CANDIDATE))

    assert "No difference" in _invoke("diff", a, a, *flags).output
    # One manifest on S3, the other local: both read in place.
    local = tmp_path / "narrowed.parquet"
    with moto_s3.filesystem().open(narrowed.removeprefix("s3://"), "rb") as handle:
        local.write_bytes(handle.read())
    diffed = json.loads(_invoke("diff", a, str(local), "--format", "json", *flags).output)
    assert diffed["totals"]["revived"]["versions"] == len(
        [r for r in _rows(a, options).values()
         if r["status"] == "candidate" and r["artifact_name"] == "runs_data"])

    candidates = sorted(_ids(_rows(a, options), STATUS_CANDIDATE))
    _journal(a, [(candidates[0], "intent"), (candidates[0], "deleted")],
             storage_options=options)
    history = _invoke("history", "--dir", prefix, "--json", *flags)
    states = {Path(e["url"]).name: e["sweep"] for e in json.loads(history.output)}
    assert states == {"mark.parquet": "partial", "narrowed.parquet": "none",
                      "export.parquet": "none"}
    outputs.append(history.output)
    journal_query = _invoke("query", a, "SELECT count(*) AS n FROM journal",
                            "--format", "json", *flags)
    assert json.loads(journal_query.output) == [{"n": 2}]

    report = f"{prefix}/report.html"
    reported = _invoke("report", a, "-o", report, *flags)
    assert reported.exit_code == 0, reported.output
    page = tmp_path / "report.html"
    with moto_s3.filesystem().open(report.removeprefix("s3://"), "rb") as handle:
        page.write_bytes(handle.read())
    _assert_report_renders(page, tmp_path, ["chart-status", "chart-artifacts",
                                            "chart-projects", "chart-age", "chart-sweep"])
    for output in [*outputs, shown.output, filtered.output, reported.output, page.read_text()]:
        assert "TOPSECRETVALUE" not in output
    bad = _invoke("show", a, "--storage-option", "novalue")
    assert bad.exit_code == EXIT_USAGE


def test_storage_option_parsing() -> None:
    from artifact_gc.cli.review import parse_storage_options

    assert parse_storage_options(()) is None
    assert parse_storage_options((
        "key=k", "anon=false", "client_kwargs.endpoint_url=http://h:1",
        "client_kwargs.region_name=eu", "config_kwargs.retries.max_attempts=3",
    )) == {"key": "k", "anon": False,
           "client_kwargs": {"endpoint_url": "http://h:1", "region_name": "eu"},
           "config_kwargs": {"retries": {"max_attempts": 3}}}


# ---------------------------------------------------------------------------
# Help and errors of every command
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command: str) -> None:
    result = _invoke(command, "--help")
    assert result.exit_code == 0
    assert "Usage: " in result.output and len(result.output.splitlines()) > 8
    assert "--storage-option" in result.output


@pytest.mark.parametrize("args", [
    ["show", "{missing}"],
    ["query", "{missing}", "SELECT 1"],
    ["filter", "{missing}", "--where", "true", "-o", "{tmp}/out.parquet"],
    ["diff", "{missing}", "{missing}"],
    ["report", "{missing}", "-o", "{tmp}/r.html"],
])
def test_missing_manifest_is_refused(args: list[str], tmp_path: Path) -> None:
    filled = [a.format(missing=tmp_path / "missing.parquet", tmp=tmp_path) for a in args]
    result = _invoke(*filled)
    assert result.exit_code == EXIT_MANIFEST_REFUSED, result.output
    assert "FAILED: no manifest at" in result.output
    assert not (tmp_path / "out.parquet").exists() and not (tmp_path / "r.html").exists()


# ---------------------------------------------------------------------------
# A sweep of a filtered manifest (end to end)
# ---------------------------------------------------------------------------


def test_sweep_of_a_filtered_manifest_keeps_what_the_review_kept(
    changed_store: ScenarioStore, tmp_path: Path
) -> None:
    from artifact_gc.sweep.execute import execute
    from artifact_gc.sweep.plan import plan_sweep

    store = changed_store
    parent = tmp_path / "mark.parquet"
    mark(store.sqlalchemy_url, str(parent), MarkOptions(older_than=timedelta(0), sizes=True))
    narrowed = tmp_path / "narrowed.parquet"
    # "Keep everything of runs_data" after a review.
    filter_manifest(str(parent), "artifact_name <> 'runs_data'", str(narrowed))
    rows = _rows(str(narrowed))
    kept = {v for v, r in rows.items() if PROTECT_FILTERED_OUT in (r["reasons"] or [])}
    swept = _ids(rows, STATUS_CANDIDATE)
    assert kept and swept
    execute(plan_sweep(str(narrowed), store.sqlalchemy_url))
    engine = sqlite3.connect(store.db_url.removeprefix("sqlite:///"))
    alive = {v for (v,) in engine.execute("SELECT id FROM artifact_version").fetchall()}
    engine.close()
    assert kept <= alive and not swept & alive
    assert all(Path(rows[v]["uri"]).exists() for v in kept)
    assert not any(Path(rows[v]["uri"]).exists() for v in swept)
    (entry,) = [e for e in history(str(tmp_path)) if e.url.endswith("narrowed.parquet")]
    assert entry.sweep == SWEEP_DONE and entry.swept == len(swept)
    shown = show(str(narrowed))
    assert shown.sweep.state == "done" and shown.sweep.by_state == {"deleted": len(swept)}


def test_report_escapes_hostile_names(tmp_path: Path) -> None:
    """Artifact names and URIs are user data: the page shows them, never runs them."""
    hostile = "</script><img src=x onerror=console.error('pwned')>"
    table = pq.read_table(FIXTURE)
    status = table.column("status").to_pylist()
    names = table.column("artifact_name").to_pylist()
    uris = table.column("uri").to_pylist()
    first = status.index(STATUS_CANDIDATE)
    names[first], uris[first] = hostile, f"/store/{hostile}"
    table = table.set_column(table.schema.get_field_index("artifact_name"), "artifact_name",
                             pa.array(names, pa.string()))
    table = table.set_column(table.schema.get_field_index("uri"), "uri",
                             pa.array(uris, pa.string()))
    edited = tmp_path / "hostile.parquet"
    pq.write_table(table, edited)  # keeps the fixture's metadata (checksum now fails)
    out = tmp_path / "hostile.html"
    build_report(str(edited), str(out))
    html = out.read_text()
    assert "<img src=x" not in html and "&lt;img src=x" in html
    assert "MISMATCH" in html  # the uri is covered by the checksum
    _assert_report_renders(out, tmp_path, ["chart-status", "chart-artifacts",
                                           "chart-projects", "chart-age"], screenshot=False)
