"""Concurrent writers: real ZenML pipelines and model links while ``gc sweep`` runs.

The sweep runs as a real ``gc sweep`` subprocess, one version per batch, against a
real ZenML store (SQLite, then MariaDB). Writers are real ZenML processes
(``sweep_zenml.py writer``) that take the manifest's candidates as step inputs of new
pipeline runs (``Client().get_artifact_version(id)`` in the pipeline body) or link
them to models (``link_artifact_to_model``).

The overlap is made certain with the sweep's pause hook: the sweep stops after
journaling the intent of batch ``PAUSE_BATCH``, with the batches before it deleted and
the rest untouched, and the writers run then:

- on versions whose batch is done, they must fail cleanly (ZenML raises) and the
  versions stay gone;
- on versions whose batch has not reached the database yet (the paused batch
  included, its intent already journaled), they must succeed, and the sweep must keep
  those versions and journal them ``revived``.

Then one more writer is released at the same moment as the sweep, and races it to
the last batches: whichever wins, the store must be consistent.

What is proved afterwards, measured from the store and recorded with ``lost``:
no live version or live file lost, every revival journaled (and in the sweep's
``--json`` summary), every candidate either gone with its files or kept with them, no
dangling row (``PRAGMA foreign_key_check`` on SQLite), and ZenML's own client loads
every version that is left.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import sqlalchemy as sa

from artifact_gc import manifest as mf
from artifact_gc.journal import EVENT_DELETED, EVENT_PROTECTED, EVENT_REVIVED, Journal
from artifact_gc.sweep import KILL_ENV, PAUSE_ENV, sweep_status
from reliability import lost, record
from scenarios.helpers import ScenarioStore, integrity_problems, list_tree, make_engine
from sweep_support import GC, ZENML_SCRIPT, mark_store, uri_paths, version_ids, zenml

#: The sweep pauses once the intent of this batch (one version a batch) is journaled,
#: before its database step: batches 1..PAUSE_BATCH-1 are deleted by then.
PAUSE_BATCH = 4

#: Longest the pause hook waits for ``resume`` before it carries on by itself.
PAUSE_LIMIT = 120.0

WAIT = 240.0


@dataclass
class Roles:
    """What the writers do to each candidate, by the candidate's place in the sweep."""

    order: list[str]  # every candidate, in the order the sweep takes them
    #: Before the sweep resumes: these batches are done, the writers must fail.
    gone: dict[str, str] = field(default_factory=dict)  # id -> kind
    #: Before the sweep resumes: these batches are ahead, the writers must succeed.
    revive: dict[str, str] = field(default_factory=dict)
    #: Released with the sweep: either outcome, as long as it is a consistent one.
    race: dict[str, str] = field(default_factory=dict)

    @property
    def touched(self) -> dict[str, str]:
        return {**self.gone, **self.revive, **self.race}


def _roles(order: list[str]) -> Roles:
    assert len(order) >= 9, f"the scenario store has {len(order)} candidates, 9 expected"
    roles = Roles(order)
    # order[2] and order[4] are left alone: plain deletes among the revivals.
    roles.gone = {order[0]: "consume", order[1]: "link"}
    roles.revive = {order[3]: "consume", order[5]: "consume", order[6]: "link"}
    roles.race = {order[8]: "link", order[7]: "consume"}
    return roles


def _sweep_order(manifest: Path) -> list[str]:
    """Candidates in the sweep's batch order (``_read_pending``: by URI, then id)."""
    with mf.duckdb_for(str(manifest)) as con:
        rows = con.execute(
            f"SELECT artifact_version_id FROM read_parquet({mf.parquet_source(str(manifest))}) "
            f"WHERE status = '{mf.STATUS_CANDIDATE}' ORDER BY uri, artifact_version_id"
        ).fetchall()
    return [str(r[0]) for r in rows]


def _clean_env(store: ScenarioStore | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ZENML_") and k not in (KILL_ENV, PAUSE_ENV)}
    if store is not None:
        env.update(store.env())
    return env


def _start_writer(store: ScenarioStore, work: Path, name: str, actions: dict[str, str],
                  *, ready: Path | None = None, go: Path | None = None
                  ) -> subprocess.Popen[str]:
    spec = work / f"writer-{name}.json"
    spec.write_text(json.dumps({
        "name": name,
        "actions": [{"kind": kind, "id": vid} for vid, kind in actions.items()],
        "ready": str(ready) if ready else None,
        "go": str(go) if go else None,
    }))
    return subprocess.Popen([sys.executable, str(ZENML_SCRIPT), "writer", str(spec)],
                            env=_clean_env(store), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _writer_results(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, f"writer crashed:\n{err[-4000:]}"
    results: list[dict[str, Any]] = json.loads(out.strip().splitlines()[-1])["results"]
    return results


def _wait_for(path: Path, proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"{what} ended early: {proc.communicate()}")
        assert time.monotonic() < deadline, f"{what} never got to {path.name}"
        time.sleep(0.02)


def _journal_state(manifest: Path) -> dict[str, tuple[str, str | None]]:
    """``{version id: (last event, its reason)}`` from the journal's DuckDB view."""
    con = duckdb.connect()
    try:
        Journal(str(manifest)).register(con)
        rows = con.sql(
            "SELECT artifact_version_id, arg_max(event, seq), arg_max(reason, seq) "
            "FROM journal GROUP BY 1"
        ).fetchall()
    finally:
        con.close()
    return {str(vid): (str(event), reason) for vid, event, reason in rows}


def _references(store: ScenarioStore) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(step input (pipeline run id, version id), model link (model version id, version id))."""
    engine = make_engine(store.sqlalchemy_url)
    try:
        with engine.connect() as conn:
            inputs = {(str(run), str(vid)) for run, vid in conn.execute(sa.text(
                "SELECT s.pipeline_run_id, i.artifact_id FROM step_run_input_artifact i "
                "JOIN step_run s ON s.id = i.step_id"))}
            links = {(str(mv), str(vid)) for mv, vid in conn.execute(sa.text(
                "SELECT model_version_id, artifact_version_id FROM model_versions_artifacts"))}
    finally:
        engine.dispose()
    return inputs, links


def _run_concurrently(store: ScenarioStore, tmp_path: Path, backend: str) -> None:
    manifest = mark_store(store, tmp_path / "mark.parquet")
    order = _sweep_order(manifest)
    assert set(order) == store.candidates
    roles = _roles(order)
    before = list_tree(store.store_root)
    footprints = uri_paths(store, store.all_ids)
    pause = tmp_path / "pause"
    pause.mkdir()
    sweep = subprocess.Popen(
        [GC, "sweep", str(manifest), "--db", store.db_url, "--yes", "--json",
         "--batch-size", "1", "--workers", "2"],
        env={**_clean_env(), PAUSE_ENV: f"after_intent:{PAUSE_BATCH}:{pause}"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writers: list[subprocess.Popen[str]] = []
    try:
        _wait_for(pause / "paused", sweep, "the sweep")
        paused_at = time.monotonic()
        # The sweep is paused mid-run: the writers start now.
        consume = {vid: k for vid, k in {**roles.gone, **roles.revive}.items() if k == "consume"}
        link = {vid: k for vid, k in {**roles.gone, **roles.revive}.items() if k == "link"}
        writers = [_start_writer(store, tmp_path, "consume", consume),
                   _start_writer(store, tmp_path, "link", link)]
        paused_results = [r for w in writers for r in _writer_results(w)]
        # The pause hook gives up after PAUSE_LIMIT: only before that is the overlap the
        # one described above.
        assert time.monotonic() - paused_at < PAUSE_LIMIT - 5, "writers outlasted the pause"
        assert sweep.poll() is None
        ready, go = tmp_path / "racer.ready", tmp_path / "racer.go"
        racer = _start_writer(store, tmp_path, "racer", roles.race, ready=ready, go=go)
        writers.append(racer)
        _wait_for(ready, racer, "the racing writer")
        go.touch()
        (pause / "resume").touch()
        race_results = _writer_results(racer)
        out, err = sweep.communicate(timeout=WAIT)
        assert sweep.returncode == 0, f"gc sweep failed ({sweep.returncode}):\n{err[-4000:]}"
    finally:
        (pause / "resume").touch()
        for proc in (sweep, *writers):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    summary = json.loads(out)["summary"]
    results = {r["id"]: r for r in paused_results + race_results}
    assert set(results) == set(roles.touched)
    record("concurrent writers", f"pipelines run {backend}",
           sum(1 for r in results.values() if r["kind"] == "consume"))
    record("concurrent writers", f"model links tried {backend}",
           sum(1 for r in results.values() if r["kind"] == "link"))
    record("concurrent writers", f"writers refused (sweep first) {backend}",
           sum(1 for r in results.values() if not r["ok"]))
    record("concurrent writers", f"race won by the writer {backend}",
           sum(1 for vid in roles.race if results[vid]["ok"]))

    remaining = version_ids(store.sqlalchemy_url)
    journal = _journal_state(manifest)
    inputs, links = _references(store)

    # -- the writers: a success is a revival, a failure a clean refusal --------------
    for vid in roles.gone:
        assert not results[vid]["ok"], f"a writer used {vid}, deleted before it started"
    for vid in roles.revive:
        assert results[vid]["ok"], f"writer failed on {vid}: {results[vid].get('error')}"
    succeeded = {vid for vid, r in results.items() if r["ok"]}
    refused = set(results) - succeeded
    for vid in refused:
        error = results[vid]["error"]
        # ZenML raised; and only because the sweep got there first (the version is gone).
        assert error and "locked" not in error.lower(), error
        assert vid not in remaining, f"writer failed on {vid}, which survived: {error}"
    consumed_or_linked_lost = {vid for vid in succeeded if vid not in remaining}
    assert lost("consumed or linked versions lost", len(consumed_or_linked_lost)) == 0
    for vid in succeeded:
        r = results[vid]
        if r["kind"] == "consume":
            assert (r["run_id"], vid) in inputs, f"run {r['run_id']} has no input {vid}"
        else:
            assert (r["model_version_id"], vid) in links, f"no model link to {vid}"

    # -- the journal: every revival is there, and agrees with the store --------------
    revived = {vid for vid, (event, _) in journal.items() if event == EVENT_REVIVED}
    kept = {vid for vid, (event, _) in journal.items() if event in (EVENT_REVIVED,
                                                                     EVENT_PROTECTED)}
    unjournaled = {vid for vid in store.candidates if vid in remaining and vid not in kept}
    assert lost("revivals not journaled", len(unjournaled)) == 0, unjournaled
    journaled_but_gone = {vid for vid in kept if vid not in remaining}
    assert lost("journaled revivals lost", len(journaled_but_gone)) == 0
    assert succeeded <= revived, succeeded - revived
    for vid in roles.revive:
        assert journal[vid][1] in ("step_input", "model_link", "config_reference"), journal[vid]
    gone = store.candidates - remaining
    assert {vid for vid in gone if journal.get(vid, ("",))[0] != EVENT_DELETED} == set()
    assert set(summary["revived_versions"]) == revived
    assert summary["deleted"] == len(gone) and summary["failed"] == 0
    record("concurrent writers", "revivals journaled", len(revived))
    status = sweep_status(str(manifest)).as_dict()
    assert status["revived"] == len(revived) and status["remaining"] == 0
    assert not status["running"]

    # -- the store: nothing live lost, nothing leaked, nothing dangling --------------
    live_lost = (store.all_ids - store.candidates) - remaining
    assert lost("live versions lost", len(live_lost)) == 0, live_lost
    after = list_tree(store.store_root)
    root = str(store.store_root)

    def files_of(vid: str) -> list[str]:
        prefixes = [os.path.relpath(p, root) for p in footprints[vid]]
        return [rel for rel in before
                if any(rel == p or rel.startswith(p + "/") for p in prefixes)]

    live_files_lost = [rel for vid in store.all_ids & remaining for rel in files_of(vid)
                       if after.get(rel) != before[rel]]
    assert lost("live files lost", len(live_files_lost)) == 0, live_files_lost
    leaked = [rel for vid in gone for rel in files_of(vid) if rel in after]
    assert lost("leaked files", len(leaked)) == 0, leaked
    for path in store.expected["unmanaged_paths"]:
        assert Path(path).exists()
    problems = integrity_problems(store.sqlalchemy_url)
    assert lost("dangling rows", len(problems)) == 0, problems
    if store.backend == "sqlite":
        db = sa.make_url(store.sqlalchemy_url).database
        assert db
        check = sqlite3.connect(db)
        try:
            assert check.execute("PRAGMA foreign_key_check").fetchall() == []
        finally:
            check.close()
    loaded = zenml(store, "load")
    assert lost("versions ZenML cannot load", len(loaded["failed"])) == 0, loaded["failed"]
    assert loaded["loaded"] == len(remaining)


def test_writers_race_the_sweep_sqlite(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    _run_concurrently(scenario_store, tmp_path, "sqlite")


def test_writers_race_the_sweep_mariadb(mariadb_scenario_store: ScenarioStore,
                                        tmp_path: Path) -> None:
    _run_concurrently(mariadb_scenario_store, tmp_path, "mariadb")
