"""Invariants 1, 6 and 8 under fire: SIGKILL at every stage, a concurrent writer, a
second sweep. ``gc sweep`` runs as a real subprocess; crash and pause points are
reached through ``ARTIFACT_GC_TEST_KILL_AT`` / ``ARTIFACT_GC_TEST_PAUSE_AT``, which
tests/hooked_gc.py turns into the sweep's injected hooks (tests/sweep_hooks.py)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from artifact_gc.storage.trash import TRASH_DIR
from artifact_gc.sweep.status import sweep_status
from scenarios.helpers import ScenarioStore, integrity_problems, list_tree, restore_tree
from sweep_hooks import KILL_ENV, PAUSE_ENV, gc_command
from sweep_support import GC, db_snapshot, mark_store, version_ids

SWEEP_ARGS = ["--yes", "--batch-size", "3", "--workers", "2"]


def _gc(store: ScenarioStore, *args: str, env: dict[str, str] | None = None,
        wait: bool = True) -> Any:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith("ZENML_") and k not in (KILL_ENV, PAUSE_ENV)}
    full_env.update(env or {})
    command = [*gc_command(full_env), *args]
    if not wait:
        return subprocess.Popen(command, env=full_env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=180,
                          check=False)


def _end_state(store: ScenarioStore) -> tuple[dict[str, Any], dict[str, int]]:
    """The database and every file and folder of the store, the undo trash included,
    with the trash's sweep folders named alike: a killed sweep and its resume trash
    their halves under two sweep ids, an uninterrupted sweep under one."""
    tree = list_tree(store.store_root, include_dirs=True)
    return db_snapshot(store.sqlalchemy_url), {_any_sweep(k): v for k, v in tree.items()}


def _any_sweep(path: str) -> str:
    parts = path.split("/")
    if parts[0] == TRASH_DIR and len(parts) > 2:
        parts[1] = "<sweep>"
    return "/".join(parts)


@pytest.fixture
def reference(scenario_store: ScenarioStore, _sqlite_pristine: Any, tmp_path: Path
              ) -> tuple[Path, tuple[dict[str, Any], dict[str, int]]]:
    """One manifest, and the end state of an uninterrupted sweep of it."""
    manifest = mark_store(scenario_store, tmp_path / "mark.parquet")
    pristine_manifest = tmp_path / "pristine.parquet"
    shutil.copy(manifest, pristine_manifest)
    run = _gc(scenario_store, "sweep", str(manifest), "--db", scenario_store.db_url,
              *SWEEP_ARGS)
    assert run.returncode == 0, run.stderr
    state = _end_state(scenario_store)
    assert integrity_problems(scenario_store.sqlalchemy_url) == []
    restore_tree(_sqlite_pristine.copy, _sqlite_pristine.live)
    return pristine_manifest, state


@pytest.mark.parametrize("point", [
    "after_intent:2",   # intent journaled, nothing deleted yet
    "in_db_batch:2",    # rows deleted, transaction not committed
    "after_commit:2",   # rows committed, files not yet deleted
    "in_files:3",       # some files of a batch deleted, others not
    "before_final:2",   # rows and files deleted, outcome not journaled
])
def test_kill_9_then_resume_ends_like_an_uninterrupted_sweep(
    scenario_store: ScenarioStore, reference: tuple[Path, Any], tmp_path: Path, point: str
) -> None:
    store = scenario_store
    pristine_manifest, expected = reference
    work = tmp_path / point.replace(":", "-")
    work.mkdir()
    manifest = work / "mark.parquet"
    shutil.copy(pristine_manifest, manifest)
    killed = _gc(store, "sweep", str(manifest), "--db", store.db_url, *SWEEP_ARGS,
                 env={KILL_ENV: point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # Mid-way: whatever the crash left, nothing live is lost and no row dangles.
    assert store.all_ids - store.candidates <= version_ids(store.sqlalchemy_url)
    assert integrity_problems(store.sqlalchemy_url) == []
    status = sweep_status(str(manifest))
    assert status.remaining > 0 and not status.running  # kill -9 leaves no stale lock
    resumed = _gc(store, "sweep", str(manifest), "--db", store.db_url, *SWEEP_ARGS)
    assert resumed.returncode == 0, resumed.stderr
    assert _end_state(store) == expected
    final = sweep_status(str(manifest)).as_dict()
    assert final["done"] == len(store.candidates) and final["remaining"] == 0


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"sweep ended early: {proc.communicate()}")
        assert time.monotonic() < deadline, "the sweep never reached its pause point"
        time.sleep(0.05)


def test_writer_is_blocked_by_the_lock_and_cannot_link_a_deleted_version(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    """Invariants 1 and 8 for the foreign-keys-off fast path on SQLite.

    The sweep is paused after deleting a batch's rows and before committing. A ZenML
    writer trying to link one of those versions to a model cannot write (the write
    lock of BEGIN IMMEDIATE); once the sweep commits, the link fails on the foreign
    key, and PRAGMA foreign_key_check finds nothing dangling. A second sweep of the
    same manifest is refused meanwhile (exit 7) and gc status reports it running."""
    store = scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet")
    pause = tmp_path / "pause"
    pause.mkdir()
    proc = _gc(store, "sweep", str(manifest), "--db", store.db_url, "--yes",
               "--batch-size", "100", env={PAUSE_ENV: f"in_db_batch:1:{pause}"}, wait=False)
    try:
        _wait_for(pause / "paused", proc)
        victim = sorted(store.candidates)[0]
        db = str(store.config_dir / "local_stores" / "default_zen_store" / "zenml.db")
        writer = sqlite3.connect(db, timeout=0.5, isolation_level=None)
        writer.execute("PRAGMA foreign_keys=ON")
        columns = [r[1] for r in writer.execute("PRAGMA table_info(model_versions_artifacts)")]
        select = ", ".join(
            f"'{os.urandom(16).hex()}'" if c == "id" else f"'{victim}'"
            if c == "artifact_version_id" else c for c in columns)
        link = (f"INSERT INTO model_versions_artifacts ({', '.join(columns)}) "
                f"SELECT {select} FROM model_versions_artifacts LIMIT 1")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            writer.execute(link)
        second = _gc(store, "sweep", str(manifest), "--db", store.db_url, "--yes")
        assert second.returncode == 7, second.stderr
        assert sweep_status(str(manifest)).running
        (pause / "resume").touch()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            writer.execute(link)
        writer.close()
    finally:
        (pause / "resume").touch()
        if proc.poll() is None:
            proc.kill()
    assert victim not in version_ids(store.sqlalchemy_url)
    assert integrity_problems(store.sqlalchemy_url) == []
    check = sqlite3.connect(db)
    assert check.execute("PRAGMA foreign_key_check").fetchall() == []
    check.close()


def test_sweep_uses_the_current_interpreter() -> None:
    assert Path(GC).exists(), f"gc entry point next to {sys.executable}"
