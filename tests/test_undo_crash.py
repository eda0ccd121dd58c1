"""The undo window under SIGKILL: ``gc restore`` and ``gc trash empty`` killed at a
random instant (10 trials each), then run again, end in exactly the state an
uninterrupted run reaches: the database (every table, every column), the store's
files (trash included) and the undo journal's outcome.

One swept store (the SQLite scenario store, swept with an undo window) is built once
for the module and copied back before every trial. Kills are timed, drawn from a
seeded RNG (``ARTIFACT_GC_CRASH_SEED``): from the start of the process, or from the
first undo journal segment it writes (the work has begun), so that most land while
files or rows are being restored or purged.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from artifact_gc.undo.area import UndoArea
from crash_support import Kill, crash_seed, run_gc, trial_rng
from scenarios.helpers import (
    ScenarioStore,
    integrity_problems,
    list_tree,
    load_scenario_store,
    restore_tree,
)
from sweep_support import mark_store, version_ids
from test_undo import full_snapshot

TRIALS = 10


@dataclass(frozen=True)
class Swept:
    store: ScenarioStore
    live: Path  # the store's config dir (paths in the database point here)
    copy: Path  # the swept store, untouched
    manifests: Path  # the manifest, its journal and undo area, untouched
    work: Path  # where each trial's manifest lives

    def reset(self) -> Path:
        restore_tree(self.copy, self.live)
        if self.work.exists():
            shutil.rmtree(self.work)
        shutil.copytree(self.manifests, self.work)
        return self.work / "mark.parquet"


@pytest.fixture(scope="module")
def swept(_sqlite_pristine: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swept]:
    """The scenario store after a sweep with an undo window (batches of 3)."""
    if _sqlite_pristine.error:
        pytest.fail(f"building the SQLite scenario store failed:\n{_sqlite_pristine.error}")
    restore_tree(_sqlite_pristine.copy, _sqlite_pristine.live)
    store = load_scenario_store(_sqlite_pristine.live)
    base = tmp_path_factory.mktemp("undo-crash")
    manifests = base / "manifests"
    manifests.mkdir()
    manifest = mark_store(store, manifests / "mark.parquet")
    run = run_gc(["sweep", str(manifest), "--db", store.db_url, "--yes", "--batch-size", "3",
                  "--undo-window", "1h"])
    assert run.returncode == 0, run.stderr
    copy = base / "swept-store"
    shutil.copytree(_sqlite_pristine.live, copy, symlinks=True)
    yield Swept(store, _sqlite_pristine.live, copy, manifests, base / "work")
    restore_tree(_sqlite_pristine.copy, _sqlite_pristine.live)


def _state(store: ScenarioStore, manifest: Path) -> tuple[Any, ...]:
    area = UndoArea(str(manifest) + ".journal")
    events = area.events()
    outcome = sorted({(e, s or "", k or "", i or "") for e, s, k, i in zip(
        events.column("event").to_pylist(), events.column("sweep_id").to_pylist(),
        events.column("item_kind").to_pylist(), events.column("item_id").to_pylist(),
        strict=True) if e in ("restored", "purged")})
    return (full_snapshot(store.sqlalchemy_url), list_tree(store.store_root),
            outcome, [Path(p).name for p in area.row_segments()])


def _trials(swept: Swept, suite: str, args: list[str]) -> None:
    """Run ``args`` uninterrupted for the reference, then TRIALS killed-and-resumed
    runs, each compared with it."""
    manifest = swept.reset()
    command = [a.replace("MANIFEST", str(manifest)) for a in args]
    events = Path(str(manifest) + ".journal") / "undo" / "events"
    reference = run_gc(command, journal=events)
    assert reference.returncode == 0, reference.stderr
    expected = _state(swept.store, manifest)
    startup = reference.work_started or reference.seconds / 2
    work = max(0.05, reference.seconds - startup)
    kills = 0
    seed = crash_seed()
    for trial in range(TRIALS):
        rng = trial_rng(seed, suite, trial)
        kill = (Kill("timed", anchor="start", delay=rng.uniform(0, startup + work))
                if rng.random() < 0.3 else
                Kill("timed", anchor="work", delay=rng.uniform(0, work)))
        manifest = swept.reset()
        killed = run_gc(command, kill=kill, journal=events)
        kills += killed.killed
        assert killed.killed or killed.returncode == 0, (kill.describe(), killed.stderr)
        # Whatever the kill left: no dangling row, nothing live lost.
        assert integrity_problems(swept.store.sqlalchemy_url) == []
        assert swept.store.all_ids - swept.store.candidates <= version_ids(
            swept.store.sqlalchemy_url)
        resumed = run_gc(command)
        assert resumed.returncode == 0, (kill.describe(), resumed.stderr)
        assert _state(swept.store, manifest) == expected, kill.describe()
    assert kills >= TRIALS // 2, f"only {kills} of {TRIALS} kills landed before the end"


def test_restore_killed_then_resumed_ends_like_an_uninterrupted_restore(swept: Swept
                                                                         ) -> None:
    _trials(swept, "restore", ["restore", "MANIFEST", "--db", swept.store.db_url, "--yes"])
    # The reference state is the store before the sweep.
    assert version_ids(swept.store.sqlalchemy_url) == swept.store.all_ids


def test_trash_empty_killed_then_resumed_ends_like_an_uninterrupted_purge(swept: Swept
                                                                           ) -> None:
    _trials(swept, "trash-empty", ["trash", "empty", "MANIFEST", "--db", swept.store.db_url,
                                   "--older-than", "0", "--yes"])
    assert version_ids(swept.store.sqlalchemy_url) == \
        swept.store.all_ids - swept.store.candidates
