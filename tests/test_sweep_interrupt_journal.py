"""Ctrl-C, where the journal lives, and whose it is (issue 14, items 2 to 7).

- Ctrl-C: one exit code (130); a sweep says what it finished and the command that
  resumes it, and lets go of its lock; a mark publishes and exits 0, or publishes
  nothing and exits 130. A real SIGINT, sent at the sweep's hook points
  (tests/sweep_hooks.py) or around the publishing of a manifest
  (tests/interrupted_publish_gc.py), to a real ``gc`` process.
- ``--journal LOCATION`` for a manifest in a read-only folder; exit 9 with that hint.
- A journal belongs to one mark: a manifest published over a swept one sets it aside,
  and a crash-left intent of an older mark at the same path is never resumed.
- Versions another sweep deleted are ``already gone``, not deleted again.
- The dry run's plan and summary count the same units; a finished manifest is
  "already complete".
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from artifact_gc.cli import cli
from artifact_gc.manifest import format as mf
from artifact_gc.sweep.status import sweep_status
from scenarios.helpers import ScenarioStore, integrity_problems, list_tree, restore_tree
from sweep_hooks import INTERRUPT_ENV, KILL_ENV, PAUSE_ENV, gc_command
from sweep_support import db_snapshot, mark_store

SWEEP_ARGS = ["--yes", "--batch-size", "3", "--workers", "2"]
PUBLISH_GC = str(Path(__file__).with_name("interrupted_publish_gc.py"))
PUBLISH_ENV = "ARTIFACT_GC_TEST_INTERRUPT_PUBLISH"


@pytest.fixture(autouse=True)
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own index of journals put elsewhere (``--journal``)."""
    home = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


def _env(store: ScenarioStore, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ZENML_") and k not in (KILL_ENV, PAUSE_ENV, INTERRUPT_ENV,
                                                       PUBLISH_ENV)}
    env.update(store.env())
    env.update(extra or {})
    return env


def _gc(store: ScenarioStore, *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    full = _env(store, env)
    return subprocess.run([*gc_command(full), *args], env=full, capture_output=True,
                          text=True, timeout=300, check=False)


def _cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False, env=env)


def _text(result: Result) -> str:
    """The output as one line: a table or a long line may wrap at 80 columns."""
    return " ".join(result.output.split())


def _json(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


# ---------------------------------------------------------------------------
# 2. Ctrl-C
# ---------------------------------------------------------------------------


def test_gc_help_lists_the_interrupt_exit_code() -> None:
    text = _cli("--help").output
    assert re.search(r"^\s*130\s+interrupted \(Ctrl-C\)", text, re.MULTILINE), text


@pytest.mark.parametrize("point", ["after_commit:2", "in_files:2"])
def test_ctrl_c_stops_a_sweep_with_130_says_how_to_resume_and_releases_the_lock(
    scenario_store: ScenarioStore, tmp_path: Path, point: str
) -> None:
    store = scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet")
    stopped = _gc(store, "sweep", str(manifest), "--db", store.db_url, *SWEEP_ARGS,
                  env={INTERRUPT_ENV: point})
    assert stopped.returncode == 130, stopped.stderr
    assert "Aborted!" not in stopped.stderr
    failed = [line for line in stopped.stderr.splitlines() if line.startswith("FAILED:")]
    assert len(failed) == 1 and failed[0].startswith("FAILED: interrupted (Ctrl-C) after")
    assert "Sweep summary" in stopped.stdout  # what it finished, as a table
    command = shlex.split(failed[0].split("Resume with: ", 1)[1])
    assert command[:3] == ["gc", "sweep", str(manifest)]
    assert "--yes" not in command and command[command.index("--batch-size") + 1] == "3"
    # The lock is let go, and its file with it.
    assert not (tmp_path / "mark.parquet.journal" / ".sweep.lock").exists()
    assert integrity_problems(store.sqlalchemy_url) == []
    midway = sweep_status(str(manifest))
    assert midway.states.get("deleted", 0) >= 3 and midway.remaining > 0

    resumed = _gc(store, *command[1:], "--yes")
    assert resumed.returncode == 0, resumed.stderr
    done = sweep_status(str(manifest))
    assert done.remaining == 0 and done.states.get("failed", 0) == 0
    assert integrity_problems(store.sqlalchemy_url) == []


@pytest.mark.parametrize(("when", "code", "publishes"), [
    ("before", 130, False),  # Ctrl-C before the rename: nothing published
    ("after", 0, True),      # right after it: published, and that is a success
    ("render", 0, True),     # while the summary prints
])
def test_ctrl_c_during_a_mark_publishes_and_exits_0_or_publishes_nothing_and_exits_130(
    scenario_store: ScenarioStore, tmp_path: Path, when: str, code: int, publishes: bool
) -> None:
    out = tmp_path / "out" / "m.parquet"
    env = _env(scenario_store, {PUBLISH_ENV: when})
    run = subprocess.run([sys.executable, PUBLISH_GC, "mark", "--db", scenario_store.db_url,
                          "--out", str(out), "--older-than", "0s"], env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == code, (run.stdout, run.stderr)
    assert out.exists() == publishes
    assert ("Next: gc show" in run.stdout) == publishes, run.stdout
    if publishes:
        assert mf.read_info(str(out)).complete
    else:
        assert "FAILED: interrupted (Ctrl-C); no manifest was published" in run.stderr
        assert [p.name for p in out.parent.iterdir()] == []  # no partial file either


# ---------------------------------------------------------------------------
# 3. A manifest in a read-only folder: --journal
# ---------------------------------------------------------------------------


@pytest.fixture(params=["read_only_mount", "file_in_the_way"])
def unwritable_journal(request: pytest.FixtureRequest, scenario_store: ScenarioStore,
                       tmp_path: Path) -> Iterator[Path]:
    """A manifest whose journal cannot be written beside it: in a read-only mount (as
    a user's read-only folder), or with a file where its journal's folder would go."""
    source = mark_store(scenario_store, tmp_path / "source.parquet")
    folder = tmp_path / "manifests"
    folder.mkdir()
    manifest = folder / "m.parquet"
    if request.param == "file_in_the_way":
        shutil.copy(source, manifest)
        (folder / "m.parquet.journal").write_text("not a folder")
        yield manifest
        return
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(folder)],
                                           capture_output=True, check=False).returncode:
        pytest.skip("mounting a read-only folder needs root (the other case still runs)")
    try:
        shutil.copy(source, manifest)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield manifest
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_journal_that_cannot_be_written_is_exit_9_and_journal_puts_it_elsewhere(
    scenario_store: ScenarioStore, unwritable_journal: Path, tmp_path: Path,
    state_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, manifest = scenario_store, unwritable_journal
    before = db_snapshot(store.sqlalchemy_url), list_tree(store.store_root)

    dry = _cli("sweep", manifest, "--db", store.db_url, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "warning: a sweep could not write its journal at" in _text(dry)
    assert "--journal LOCATION" in _text(dry)

    refused = _cli("sweep", manifest, "--db", store.db_url, "--yes")
    assert refused.exit_code == 9, refused.output
    assert _text(refused).startswith(f"FAILED: cannot write the sweep journal to {manifest}"
                                     ".journal")
    assert "put the journal elsewhere with gc sweep --journal LOCATION" in _text(refused)
    assert (db_snapshot(store.sqlalchemy_url), list_tree(store.store_root)) == before

    journal = tmp_path / "journals" / "m.journal"
    swept = _cli("sweep", manifest, "--db", store.db_url, "--yes", "--journal", journal)
    assert swept.exit_code == 0, swept.output
    assert f"Journal: {journal}" in _text(swept)
    deleted = sweep_status(str(manifest)).states.get("deleted", 0)
    assert deleted > 0 and list(journal.glob("*.parquet"))

    # On this machine, status, history and report find it by the mark's id.
    status = _cli("status", manifest)
    assert f"done {deleted:,}," in _text(status) and f"Journal: {journal}" in _text(status)
    entries = _json(_cli("history", "--dir", manifest.parent, "--json"))
    assert [(e["sweep"], e["swept"]) for e in entries] == [("done", deleted)]
    report = _cli("report", manifest, "-o", tmp_path / "r.html")
    assert report.exit_code == 0 and "Sweep progress" in (tmp_path / "r.html").read_text()
    # Elsewhere (no index), --journal finds it.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "elsewhere"))
    assert "done 0," in _text(_cli("status", manifest))
    assert f"done {deleted:,}," in _text(_cli("status", manifest, "--journal", journal))


# ---------------------------------------------------------------------------
# 4. A journal belongs to one mark
# ---------------------------------------------------------------------------


def test_a_new_mark_over_a_swept_manifest_sets_it_aside_and_sweeps_from_scratch(
    scenario_store: ScenarioStore, _sqlite_pristine: Any, tmp_path: Path
) -> None:
    """Mark, sweep, restore the store from a backup, mark again to the same file, sweep:
    the second sweep deletes again, and gc history still shows the first."""
    store = scenario_store
    manifest = tmp_path / "latest.parquet"
    mark_store(store, manifest)
    first_mark = mf.read_info(str(manifest)).mark_id
    first = _json(_cli("sweep", manifest, "--db", store.db_url, "--yes", "--json"))
    assert first["summary"]["deleted"] > 0

    restore_tree(_sqlite_pristine.copy, _sqlite_pristine.live)
    again = _cli("mark", "--db", store.db_url, "--out", manifest, "--older-than", "0s",
                 env=store.env())
    assert again.exit_code == 0, again.output
    aside = tmp_path / f"latest.{first_mark[:8]}.parquet"
    assert f"Set aside: the swept manifest of mark {first_mark[:8]}" in _text(again)
    assert aside.exists() and (tmp_path / f"{aside.name}.journal").is_dir()

    second = _json(_cli("sweep", manifest, "--db", store.db_url, "--yes", "--json"))
    assert second["plan"]["resuming"] == 0
    assert set(second["plan"]["journal_states"]) == {"pending"}
    assert second["summary"]["deleted"] == first["summary"]["deleted"]
    assert integrity_problems(store.sqlalchemy_url) == []
    entries = _json(_cli("history", "--dir", tmp_path, "--json"))
    assert sorted((Path(e["url"]).name, e["sweep"], e["swept"]) for e in entries) == sorted([
        (aside.name, "done", first["summary"]["deleted"]),
        ("latest.parquet", "done", second["summary"]["deleted"]),
    ])
    assert f"done {first['summary']['deleted']:,}," in _text(_cli("status", aside))


def test_publishing_over_a_manifest_being_swept_is_refused_before_marking(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    store = scenario_store
    manifest = mark_store(store, tmp_path / "latest.parquet")
    gate = tmp_path / "gate"
    gate.mkdir()
    env = _env(store, {PAUSE_ENV: f"after_intent:1:{gate}"})
    sweeping = subprocess.Popen([*gc_command(env), "sweep", str(manifest), "--db",
                                 store.db_url, *SWEEP_ARGS], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(1200):
            if (gate / "paused").exists() or sweeping.poll() is not None:
                break
            subprocess.run(["sleep", "0.1"], check=False)
        assert (gate / "paused").exists(), sweeping.stderr.read() if sweeping.stderr else ""
        refused = _cli("mark", "--db", store.db_url, "--out", manifest, "--older-than", "0s",
                       env=store.env())
        assert refused.exit_code == 7, refused.output
        assert "another gc sweep of" in _text(refused)
    finally:
        (gate / "resume").touch()
        sweeping.communicate(timeout=300)
    assert sweeping.returncode == 0


def test_a_crash_left_intent_of_an_older_mark_at_the_same_path_is_never_resumed(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    store = scenario_store
    manifest = mark_store(store, tmp_path / "m.parquet")
    older = mf.read_info(str(manifest)).mark_id
    newer = mark_store(store, tmp_path / "newer.parquet")
    killed = _gc(store, "sweep", str(manifest), "--db", store.db_url, *SWEEP_ARGS,
                 env={KILL_ENV: "after_intent:1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # The manifest replaced by hand (not through gc mark): the old journal stays.
    shutil.copy(newer, manifest)

    text = _cli("sweep", manifest, "--db", store.db_url, "--dry-run")
    assert f"Ignored: 3 journal event(s) of mark {older[:8]}" in _text(text)
    assert "Journal so far" not in _text(text)
    result = _json(_cli("sweep", manifest, "--db", store.db_url, "--yes", "--json"))
    plan, summary = result["plan"], result["summary"]
    assert plan["resuming"] == 0 and set(plan["journal_states"]) == {"pending"}
    assert plan["foreign_events"] == {older: 3}
    assert summary["deleted"] + summary["revived"] + summary["protected"] == plan["versions"]
    status = sweep_status(str(manifest))
    assert status.remaining == 0 and status.states.get("in_progress", 0) == 0
    assert integrity_problems(store.sqlalchemy_url) == []


# ---------------------------------------------------------------------------
# 5. Already gone; 6. one unit; 7. already complete
# ---------------------------------------------------------------------------


def test_versions_another_sweep_deleted_are_already_gone_not_deleted_twice(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    store = scenario_store
    first = mark_store(store, tmp_path / "first.parquet")
    older = mark_store(store, tmp_path / "older.parquet")
    gone = _json(_cli("sweep", first, "--db", store.db_url, "--yes", "--json"))["summary"]
    assert gone["deleted"] > 0

    again = _json(_cli("sweep", older, "--db", store.db_url, "--yes", "--json"))["summary"]
    assert again["deleted"] == 0 and again["already_gone"] == gone["deleted"]
    assert again["paths_deleted"] == 0 and again["bytes_freed"] == 0
    status = _text(_cli("status", older))
    assert f"done 0, already gone {gone['deleted']:,}," in status
    text = _text(_cli("sweep", older, "--db", store.db_url, "--yes"))
    assert "already complete" in text and f"already gone {gone['deleted']:,}" in text


def _table_value(output: str, label: str) -> str:
    match = re.search(rf"^\W*{label}\s+\W*\s*([\d,]+)", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def test_the_dry_run_plan_and_its_summary_name_the_same_units(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    store = scenario_store
    manifest = mark_store(store, tmp_path / "m.parquet")
    data = _json(_cli("sweep", manifest, "--db", store.db_url, "--dry-run", "--json"))
    plan, summary = data["plan"], data["summary"]
    assert summary["revived"] == summary["protected"] == 0  # so every candidate counts
    assert plan["paths"] == summary["paths_deleted"] and plan["files"] == summary[
        "files_deleted"]
    text = _cli("sweep", manifest, "--db", store.db_url, "--dry-run").output
    to_do = re.search(r"To do: .* ([\d,]+) paths, ([\d,]+) files,", " ".join(text.split()))
    assert to_do, text
    assert _table_value(text, "paths") == to_do.group(1) == f"{plan['paths']:,}"
    assert _table_value(text, "files") == to_do.group(2) == f"{plan['files']:,}"


def test_sweeping_a_finished_manifest_again_says_already_complete(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    store = scenario_store
    manifest = mark_store(store, tmp_path / "m.parquet")
    first = _cli("sweep", manifest, "--db", store.db_url, "--yes")
    assert first.exit_code == 0 and "Sweep summary" in _text(first)
    again = _cli("sweep", manifest, "--db", store.db_url, "--yes")
    assert again.exit_code == 0, again.output
    assert f"{manifest} is already complete" in _text(again)
    assert "Sweep summary" not in _text(again) and "To do:" not in _text(again)
    assert _json(_cli("sweep", manifest, "--db", store.db_url, "--json"))["complete"] is True
