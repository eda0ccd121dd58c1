"""Concurrent writers: real ZenML pipelines and model links while ``gc sweep`` runs.

The sweep runs as a real ``gc sweep`` subprocess, one version per batch, against a
real ZenML store (SQLite, then MariaDB) to which 48 more orphans were added, so that
it has some 60 batches to go through. Writers are real ZenML processes
(``sweep_zenml.py writer``, started ahead so that ZenML is loaded) that take the
manifest's candidates as step inputs of new pipeline runs
(``Client().get_artifact_version(id)`` in the pipeline body) or link them to models
(``link_artifact_to_model``).

The overlap is made certain with the sweep's pause hook: the sweep stops after
journaling the intent of batch ``PAUSE_BATCH``, with the batches before it deleted and
the rest untouched, and the writers are released then:

- on versions whose batch is done, they must fail cleanly (ZenML raises) and the
  versions stay gone;
- on versions whose batch has not reached the database yet (the paused batch
  included, its intent already journaled), they must succeed, and the sweep must keep
  those versions and journal them ``revived``;
- one pipeline run is held between its steps: its snapshot names a candidate that
  its next step takes only after the sweep has ended. The sweep must keep that
  version (``config_reference``), and the step must then succeed.

One more writer is released at the same moment as the sweep, and races it through the
rest of the batches: whichever gets to a version first, the store must be consistent.

What is proved afterwards, measured from the store and recorded with ``lost``:
no live version or live file lost, every revival journaled (and in the sweep's
``--json`` summary and ``gc status``), every candidate either gone with its files or
kept with them, no dangling row (``PRAGMA foreign_key_check`` on SQLite), and ZenML's
own client loads every version that is left.
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
import pytest
import sqlalchemy as sa

from artifact_gc.sweep.journal import (
    EVENT_DELETED,
    EVENT_INTENT,
    EVENT_PROTECTED,
    EVENT_REVIVED,
    Journal,
)
from artifact_gc.sweep.status import sweep_status
from reliability import lost, record, trials
from scenarios.helpers import ScenarioStore, integrity_problems, list_tree, make_engine
from sweep_hooks import HOOKED_GC, KILL_ENV, PAUSE_ENV
from sweep_support import ZENML_SCRIPT, mark_store, version_ids, zenml

#: The sweep pauses once the intent of this batch (one version a batch) is journaled,
#: before its database step: batches 1..PAUSE_BATCH-1 are deleted by then.
PAUSE_BATCH = 4

#: Longest the pause hook waits for ``resume`` before it carries on by itself.
PAUSE_LIMIT = 120.0

#: Longest a writer, the sweep or a pause point may take before the test gives up.
WAIT = 240.0

#: Orphans added to the scenario store before the mark, so that the sweep (one version
#: a batch) still runs for a few seconds after it resumes, long enough for the racing
#: writers to win some batches and lose others.
EXTRA_ORPHANS = 48
RACE_LINKS = 5
RACE_CONSUMES = 1


@dataclass
class Roles:
    """What the writers do to each candidate, by the candidate's place in the sweep."""

    order: list[str]  # every candidate, in the order the sweep takes them
    #: Before the sweep resumes: these batches are done, the writers must fail.
    gone: dict[str, str] = field(default_factory=dict)  # id -> kind
    #: Before the sweep resumes: these batches are ahead, the writers must succeed.
    revive: dict[str, str] = field(default_factory=dict)
    #: Named in the snapshot of a pipeline run that is running while the sweep passes
    #: by, and consumed by the run's next step once the sweep has ended: must be kept.
    held: dict[str, str] = field(default_factory=dict)
    #: Released with the sweep: either outcome, as long as it is a consistent one.
    race: dict[str, str] = field(default_factory=dict)

    @property
    def touched(self) -> dict[str, str]:
        return {**self.gone, **self.revive, **self.held, **self.race}


def _roles(order: list[str], done: list[str], paused: str, ahead: list[str]) -> Roles:
    """Roles from where the paused sweep really is: ``done`` (rows gone), the ``paused``
    batch's version (intent journaled, row still there), and the versions ``ahead``."""
    assert len(done) == PAUSE_BATCH - 1, done
    rest = ahead[4:]
    assert len(rest) >= 2 * (RACE_LINKS + RACE_CONSUMES), f"{len(order)} candidates"
    roles = Roles(order)
    # done[2] and ahead[0] are left alone: plain deletes among the revivals.
    roles.gone = {done[0]: "consume", done[1]: "link"}
    roles.revive = {paused: "consume", ahead[1]: "link", ahead[2]: "link"}
    roles.held = {ahead[3]: "consume"}
    # The racers' targets are spread over the rest of the sweep, so that some of their
    # batches come before the writer gets there and some after. Pipelines take
    # seconds, links a fraction of one, and the racer does its links first: its
    # pipelines aim at the last quarter.
    for n in range(RACE_LINKS):
        roles.race[rest[len(rest) * (2 * n + 1) // (2 * RACE_LINKS)]] = "link"
    late = [vid for vid in rest[len(rest) * 3 // 4:] if vid not in roles.race]
    for n in range(RACE_CONSUMES):
        roles.race[late[len(late) * (2 * n + 1) // (2 * RACE_CONSUMES)]] = "consume"
    return roles


def _sweep_order(store: ScenarioStore, manifest: Path) -> list[str]:
    """Candidates in the order the sweep takes them (``plan.sweep_order``: by URI on
    SQLite, by id on MariaDB). Only the racers' aim depends on it: what the writers
    must see follows from the database and the journal at the pause."""
    from artifact_gc.sweep.plan import sweep_order

    return sweep_order(str(manifest), store.sqlalchemy_url)


def _clean_env(store: ScenarioStore | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ZENML_") and k not in (KILL_ENV, PAUSE_ENV)}
    if store is not None:
        env.update(store.env())
    return env


@dataclass
class Writer:
    """A ``sweep_zenml.py writer`` process: ZenML loaded, waiting for its actions."""

    name: str
    spec: Path
    ready: Path
    go: Path
    proc: subprocess.Popen[str]

    @classmethod
    def start(cls, store: ScenarioStore, work: Path, name: str, *, load_after: bool = False
              ) -> Writer:
        """``load_after``: once its actions are done, load every version (its output's
        ``load``); only for the writer that finishes last."""
        spec, ready, go = (work / f"writer-{name}{ext}" for ext in (".json", ".ready", ".go"))
        spec.write_text(json.dumps({"name": name, "actions": [], "ready": str(ready),
                                    "go": str(go), "load_after": load_after}))
        proc = subprocess.Popen([sys.executable, str(ZENML_SCRIPT), "writer", str(spec)],
                                env=_clean_env(store), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        return cls(name, spec, ready, go, proc)

    def release(self, actions: list[dict[str, str]]) -> None:
        """Hand the writer its actions and let it go (it re-reads its spec at ``go``)."""
        _wait_for(self.ready, self.proc, f"writer {self.name}")
        spec = json.loads(self.spec.read_text())
        spec["actions"] = actions
        tmp = self.spec.with_suffix(".tmp")
        tmp.write_text(json.dumps(spec))
        tmp.replace(self.spec)
        self.go.touch()

    def output(self) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=WAIT)
        assert self.proc.returncode == 0, f"writer {self.name} crashed:\n{err[-4000:]}"
        output: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return output

    def results(self) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = self.output()["results"]
        return results

    def stop(self) -> None:
        self.go.touch()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


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


def _footprints(store: ScenarioStore) -> dict[str, list[str]]:
    """Every version's paths (its URI and its visualizations' URIs), from the database."""
    engine = make_engine(store.sqlalchemy_url)
    out: dict[str, list[str]] = {}
    try:
        with engine.connect() as conn:
            for vid, uri in conn.execute(sa.text("SELECT id, uri FROM artifact_version")):
                out.setdefault(str(vid), []).append(str(uri))
            for vid, uri in conn.execute(sa.text(
                    "SELECT artifact_version_id, uri FROM artifact_visualization")):
                out.setdefault(str(vid), []).append(str(uri))
    finally:
        engine.dispose()
    return out


@dataclass
class Outcome:
    """What the writers and the sweep reported, beside what the roles asked for."""

    roles: Roles
    results: dict[str, dict[str, Any]]
    summary: dict[str, Any]
    paused_for: float
    load: dict[str, Any]  # ZenML's client loading every version at the end


def _race(store: ScenarioStore, manifest: Path, work: Path, writers: dict[str, Writer]
          ) -> Outcome:
    """Run the sweep, pause it, release the writers, release the racer with it."""
    consumer, linker, racer = writers["consumer"], writers["linker"], writers["racer"]
    pause, gate = work / "pause", work / "gate"
    pause.mkdir()
    sweep = subprocess.Popen(
        [*HOOKED_GC, "sweep", str(manifest), "--db", store.db_url, "--yes", "--json",
         "--batch-size", "1", "--workers", "2"],
        env={**_clean_env(), PAUSE_ENV: f"after_intent:{PAUSE_BATCH}:{pause}"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(pause / "paused", sweep, "the sweep")
        paused_at = time.monotonic()
        order, now = _sweep_order(store, manifest), version_ids(store.sqlalchemy_url)
        journal = _journal_state(manifest)
        intent = [v for v in order if v in now and journal.get(v, ("",))[0] == EVENT_INTENT]
        assert len(intent) == 1, intent  # one version a batch
        roles = _roles(order, [v for v in order if v not in now], intent[0],
                       [v for v in order if v in now and v != intent[0]])
        # The sweep is paused mid-run (batches before PAUSE_BATCH done, the rest ahead):
        # the writers act now.
        before = {**roles.gone, **roles.revive}
        consumer.release([{"kind": k, "id": v} for v, k in before.items() if k == "consume"]
                         + [{"kind": k, "id": v, "gate": str(gate)}
                            for v, k in roles.held.items()])
        linker.release([{"kind": k, "id": v} for v, k in before.items() if k == "link"])
        results = linker.results()
        # The consumer has used or tried its versions when its held run is waiting.
        _wait_for(Path(f"{gate}.holding"), consumer.proc, "the held pipeline run")
        _wait_for(racer.ready, racer.proc, "the racing writer")
        paused_for = time.monotonic() - paused_at
        # The pause hook gives up after PAUSE_LIMIT: only before that is the overlap the
        # one described above.
        assert paused_for < PAUSE_LIMIT - 5, "the writers outlasted the pause"
        assert sweep.poll() is None
        # Links first, then pipelines, each in the sweep's order, from the moment the
        # sweep goes on.
        racer.release([{"kind": k, "id": v} for v, k in sorted(
            roles.race.items(), key=lambda vk: (vk[1] != "link", roles.order.index(vk[0])))])
        (pause / "resume").touch()
        results += racer.results()
        out, err = sweep.communicate(timeout=WAIT)
        assert sweep.returncode == 0, f"gc sweep failed ({sweep.returncode}):\n{err[-4000:]}"
        # The sweep is over: the held run's next step now takes its version. Then, with
        # every writer done, the consumer loads every version with ZenML's client.
        gate.touch()
        last = consumer.output()
        results += last["results"]
    finally:
        (pause / "resume").touch()
        gate.touch()
        if sweep.poll() is None:
            sweep.kill()
            sweep.communicate()
    by_id = {r["id"]: r for r in results}
    assert set(by_id) == set(roles.touched) and len(results) == len(by_id)
    return Outcome(roles, by_id, json.loads(out)["summary"], paused_for, last["load"])


def _run_concurrently(store: ScenarioStore, tmp_path: Path, backend: str) -> None:
    # The writers load ZenML while the store is prepared and marked; they act only
    # when released.
    writers = {name: Writer.start(store, tmp_path, name, load_after=name == "consumer")
               for name in ("consumer", "linker", "racer")}
    try:
        extra = set(zenml(store, "orphans", str(EXTRA_ORPHANS), "gc_race_orphan")["ids"])
        manifest = mark_store(store, tmp_path / "mark.parquet")
        all_ids = version_ids(store.sqlalchemy_url)
        candidates = store.candidates | extra
        before = list_tree(store.store_root)
        footprints = _footprints(store)
        assert set(footprints) == all_ids
        outcome = _race(store, manifest, tmp_path, writers)
    finally:
        for writer in writers.values():
            writer.stop()
    roles, results, summary = outcome.roles, outcome.results, outcome.summary
    assert set(roles.order) == candidates

    remaining = version_ids(store.sqlalchemy_url)
    journal = _journal_state(manifest)
    inputs, links = _references(store)
    record("concurrent writers", f"pipelines run {backend}",
           sum(1 for r in results.values() if r["kind"] == "consume"))
    record("concurrent writers", f"model links tried {backend}",
           sum(1 for r in results.values() if r["kind"] == "link"))
    record("concurrent writers", f"writes refused, the sweep first {backend}",
           sum(1 for r in results.values() if not r["ok"]))
    record("concurrent writers", f"races won by the writer {backend}",
           sum(1 for vid in roles.race if results[vid]["ok"]))

    # -- the writers: a success is a revival, a failure a clean refusal --------------
    for vid in roles.gone:
        assert not results[vid]["ok"], f"a writer used {vid}, deleted before it started"
    for vid in {**roles.revive, **roles.held}:
        assert results[vid]["ok"], f"writer failed on {vid}: {results[vid].get('error')}"
    succeeded = {vid for vid, r in results.items() if r["ok"]}
    for vid in set(results) - succeeded:
        error = results[vid]["error"]
        # ZenML raised, and only because the sweep got there first: the version is gone.
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
    kept = {vid for vid, (event, _) in journal.items()
            if event in (EVENT_REVIVED, EVENT_PROTECTED)}
    unjournaled = {vid for vid in candidates if vid in remaining and vid not in kept}
    assert lost("revivals not journaled", len(unjournaled)) == 0, unjournaled
    journaled_but_gone = {vid for vid in kept if vid not in remaining}
    assert lost("journaled revivals lost", len(journaled_but_gone)) == 0, journaled_but_gone
    assert succeeded <= revived, succeeded - revived
    # Nothing but the writers revived anything.
    assert revived <= succeeded, revived - succeeded
    for vid in roles.revive:
        assert journal[vid][1] in ("step_input", "model_link", "config_reference"), journal[vid]
    for vid in roles.held:
        # Only the run's snapshot named it when its batch came.
        assert journal[vid] == (EVENT_REVIVED, "config_reference"), journal[vid]
    gone = candidates - remaining
    assert {vid for vid in gone if journal.get(vid, ("",))[0] != EVENT_DELETED} == set()
    assert set(summary["revived_versions"]) == revived
    assert summary["deleted"] == len(gone) and summary["failed"] == 0
    record("concurrent writers", "revivals journaled", len(revived))
    status = sweep_status(str(manifest)).as_dict()
    assert status["revived"] == len(revived) and status["remaining"] == 0
    assert status["done"] == len(gone) and not status["running"]

    # -- the store: nothing live lost, nothing leaked, nothing dangling --------------
    live_lost = (all_ids - candidates) - remaining
    assert lost("live versions lost", len(live_lost)) == 0, live_lost
    after = list_tree(store.store_root)
    root = str(store.store_root)

    def files_of(vid: str) -> list[str]:
        prefixes = [os.path.relpath(p, root) for p in footprints[vid]]
        return [rel for rel in before
                if any(rel == p or rel.startswith(p + "/") for p in prefixes)]

    live_files_lost = [rel for vid in all_ids & remaining for rel in files_of(vid)
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
    loaded = outcome.load
    assert lost("versions ZenML cannot load", len(loaded["failed"])) == 0, loaded["failed"]
    assert loaded["loaded"] == len(remaining)


#: One race per backend in CI; ARTIFACT_GC_SOAK=N runs N, each on a fresh store.
ROUNDS = range(trials(1))


@pytest.mark.parametrize("round_", ROUNDS)
def test_writers_race_the_sweep_sqlite(scenario_store: ScenarioStore, tmp_path: Path,
                                       round_: int) -> None:
    _run_concurrently(scenario_store, tmp_path, "sqlite")


@pytest.mark.parametrize("round_", ROUNDS)
def test_writers_race_the_sweep_mariadb(mariadb_scenario_store: ScenarioStore,
                                        tmp_path: Path, round_: int) -> None:
    _run_concurrently(mariadb_scenario_store, tmp_path, "mariadb")
