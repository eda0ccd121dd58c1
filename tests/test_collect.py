"""gc collect on real stores: rules by project and glob, each brake (exit 10, nothing
changed), the jump brake against a previous collection, the metrics file, the API
example, and a full collection of a real ZenML 0.98 store.

Most tests use gc demo's synthetic store (ZenML's real schema, files on disk): built
once per module at a fixed path and restored before each test.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from artifact_gc.cli import cli
from artifact_gc.collect import collect, parse_policy, render_metrics, write_metrics
from artifact_gc.collect.brakes import BRAKES
from artifact_gc.demo.synthetic import SyntheticSpec, SyntheticStore, create_sqlite_store, populate
from artifact_gc.errors import EXIT_BRAKE, BrakeFired
from scenarios.helpers import ScenarioStore, integrity_problems, list_tree, restore_tree
from sweep_support import assert_swept, db_snapshot, uri_paths, version_ids

REPO = Path(__file__).resolve().parent.parent
ALL_OFF = ("[brakes]\nmax_candidates = false\nmax_fraction = false\nmax_bytes = false\n"
           "jump_factor = false\n")


@pytest.fixture(scope="module")
def _pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, SyntheticStore]:
    base = tmp_path_factory.getbasetemp()
    live, copy = base / "collect-store", base / "collect-store.pristine"
    url = create_sqlite_store(live / "zenml.db")
    store = populate(url, SyntheticSpec(versions=200, projects=["default", "research"],
                                        store_root=str(live / "root"), write_files=True,
                                        seed=3))
    shutil.copytree(live, copy)
    return live, copy, store


@pytest.fixture
def store(_pristine: tuple[Path, Path, SyntheticStore]) -> SyntheticStore:
    live, copy, made = _pristine
    restore_tree(copy, live)
    return made


def _versions(url: str) -> dict[str, tuple[str, str, str]]:
    """id -> (project name, artifact name, uri) of every version in the store."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT v.id, p.name, a.name, v.uri FROM artifact_version v "
            "JOIN artifact a ON a.id = v.artifact_id JOIN project p ON p.id = v.project_id"))
        found = {str(r[0]): (str(r[1]), str(r[2]), str(r[3])) for r in rows}
    engine.dispose()
    return found


def _policy(store: SyntheticStore, manifests: Path, body: str, *, sweep: bool) -> str:
    return (f"sweep = {str(sweep).lower()}\n[store]\ndb = \"{store.url}\"\n"
            f"[manifests]\nlocation = \"{manifests}\"\n{body}")


def _manifest_ids(url: str, status: str | None = None) -> set[str]:
    where = f" WHERE status = '{status}'" if status else ""
    rows = duckdb.connect().execute(
        f"SELECT artifact_version_id FROM read_parquet('{url}'){where}").fetchall()
    return {r[0] for r in rows}


def test_collect_sweeps_by_project_and_glob_rules(store: SyntheticStore, tmp_path: Path) -> None:
    """Research keeps everything (a grace period longer than the store's age), model*
    keeps its 100 newest versions (all of them), the rest goes after a day."""
    versions = _versions(store.url)
    policy = parse_policy(_policy(store, tmp_path / "m", """
        [defaults]
        older_than = "1d"
        [[rules]]
        project = "research"
        older_than = "1000d"
        [[rules]]
        artifact = "model*"
        keep_latest = 100
    """ + ALL_OFF, sweep=True), {})
    report = collect(policy)
    assert report.outcome == "swept" and report.error is None and report.exit_code == 0
    expected = {vid for vid in store.expected_candidates
                if versions[vid][0] == "default" and not fnmatch.fnmatch(versions[vid][1],
                                                                         "model*")}
    assert expected and report.sweep is not None and report.sweep.deleted == len(expected)
    # The marks' scopes are disjoint and cover the store.
    assert sum(m.versions_in_scope for m in report.marks) == len(versions)
    seen: set[str] = set()
    for marked in report.marks:
        ids = _manifest_ids(marked.manifest)
        assert not ids & seen
        seen |= ids
        candidates = _manifest_ids(marked.manifest, "candidate")
        if marked.rule != "defaults":
            assert candidates == set(), marked
    assert seen == set(versions)
    assert version_ids(store.url) == set(versions) - expected
    assert integrity_problems(store.url) == []
    for vid, (_, _, uri) in versions.items():
        assert Path(uri).exists() == (vid not in expected), vid
    # The record beside the manifests, for gc history's neighbours and the next run.
    record = json.loads(Path(report.record or "").read_text())
    assert record["outcome"] == "swept" and record["counters"]["versions_deleted"] == len(expected)


def test_metrics_parse_and_counters_carry_forward(store: SyntheticStore, tmp_path: Path) -> None:
    text = _policy(store, tmp_path / "m", "[defaults]\nolder_than = \"1d\"\n" + ALL_OFF,
                   sweep=True)
    first = collect(parse_policy(text, {}))
    assert first.outcome == "swept"
    metrics = tmp_path / "gc.prom"
    write_metrics(first, metrics)
    values = _samples(metrics.read_text())
    assert values[("artifact_gc_versions_deleted_total", ())] == len(store.expected_candidates)
    assert values[("artifact_gc_bytes_deleted_total", ())] == first.sweep.bytes_freed > 0  # type: ignore[union-attr]
    assert values[("artifact_gc_versions_revived_total", ())] == 0
    assert values[("artifact_gc_versions_failed_total", ())] == 0
    assert values[("artifact_gc_last_run_success", ())] == 1
    assert all(values[("artifact_gc_brake_fired", (("brake", b),))] == 0 for b in BRAKES)
    assert values[("artifact_gc_last_success_timestamp_seconds", ())] == \
        values[("artifact_gc_last_run_timestamp_seconds", ())]
    # A second collection finds nothing new: the counters stay, the collections count.
    second = collect(parse_policy(text, {}))
    assert second.outcome == "swept" and second.totals and second.totals.candidates == 0
    again = _samples(render_metrics(second))
    assert again[("artifact_gc_versions_deleted_total", ())] == len(store.expected_candidates)
    assert again[("artifact_gc_collections_total", ())] == 2
    assert again[("artifact_gc_last_success_timestamp_seconds", ())] > \
        values[("artifact_gc_last_success_timestamp_seconds", ())]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gc.prom", "m"]  # no temp file left


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("artifact_gc_")
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@pytest.mark.parametrize(("brake", "setting"), [
    ("max_candidates", "max_candidates = 5"),
    ("max_fraction", "max_fraction = 0.05"),
    ("max_bytes", "max_bytes = 100"),
])
def test_each_brake_stops_before_the_sweep(store: SyntheticStore, tmp_path: Path,
                                           brake: str, setting: str) -> None:
    policy = tmp_path / "p.toml"
    brakes = "\n".join(line for line in ALL_OFF.splitlines()
                       if not line.startswith(brake)) + f"\n{setting}\n"
    policy.write_text(_policy(store, tmp_path / "m", "[defaults]\nolder_than = \"1d\"\n"
                              + brakes, sweep=True))
    db_before = db_snapshot(store.url)
    tree_before = list_tree(store.store_root, include_dirs=True)
    result = CliRunner().invoke(cli, ["collect", "--policy", str(policy), "--summary",
                                      str(tmp_path / "s.json"), "--metrics",
                                      str(tmp_path / "gc.prom")])
    assert result.exit_code == EXIT_BRAKE, result.output
    assert f"FAILED: brake {brake}: " in result.output and "Nothing was swept" in result.output
    assert db_snapshot(store.url) == db_before
    assert list_tree(store.store_root, include_dirs=True) == tree_before
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["outcome"] == "braked" and summary["brakes_fired"] == [brake]
    assert summary["exit_code"] == EXIT_BRAKE and summary["sweep"] is None
    assert summary["next"] == [f"gc show {summary['manifests'][0]}",
                               f"gc sweep {summary['manifests'][0]}"]
    # The manifest is left for review, with the candidates the brake refused.
    (manifest,) = summary["manifests"]
    assert _manifest_ids(manifest, "candidate") == set(store.expected_candidates)
    values = _samples((tmp_path / "gc.prom").read_text())
    assert values[("artifact_gc_brake_fired", (("brake", brake),))] == 1
    assert values[("artifact_gc_last_run_success", ())] == 0
    assert ("artifact_gc_last_success_timestamp_seconds", ()) not in values


def test_jump_brake_against_the_previous_collection(store: SyntheticStore,
                                                    tmp_path: Path) -> None:
    brakes = ALL_OFF.replace("jump_factor = false", "jump_factor = 2\njump_min = 5")
    narrow = _policy(store, tmp_path / "m", "[defaults]\nolder_than = \"80d\"\n" + brakes,
                     sweep=False)
    first = collect(parse_policy(narrow, {}))
    assert first.outcome == "marked" and first.totals is not None
    assert first.totals.candidates < len(store.expected_candidates) / 2
    assert [b.checked for b in first.brakes if b.name == "jump"] == [False]  # nothing before
    # The same store, a grace period that lost a digit: far more candidates than before.
    wide = _policy(store, tmp_path / "m", "[defaults]\nolder_than = \"1d\"\n" + brakes,
                   sweep=True)
    db_before = db_snapshot(store.url)
    tree_before = list_tree(store.store_root, include_dirs=True)
    second = collect(parse_policy(wide, {}))
    assert second.outcome == "braked" and second.exit_code == EXIT_BRAKE
    assert isinstance(second.error, BrakeFired) and second.error.brakes == ("jump",)
    assert "brake jump:" in second.error.message
    assert second.previous is not None and second.previous["record"] == first.record
    assert second.previous["candidates"] == first.totals.candidates
    assert db_snapshot(store.url) == db_before
    assert list_tree(store.store_root, include_dirs=True) == tree_before
    with pytest.raises(BrakeFired):
        second.raise_for_outcome()
    # Compared with the braked collection, the same candidates are no jump.
    third = collect(parse_policy(wide.replace("sweep = true", "sweep = false"), {}))
    assert third.outcome == "marked" and not third.fired
    assert third.previous is not None and third.previous["record"] == second.record


def test_a_rule_naming_a_missing_project_is_refused(store: SyntheticStore,
                                                    tmp_path: Path) -> None:
    from artifact_gc.collect import PolicyError

    text = _policy(store, tmp_path / "m", "[[rules]]\nproject = \"reserch\"\n", sweep=True)
    with pytest.raises(PolicyError) as caught:
        collect(parse_policy(text, {}, source="p.toml"))
    assert caught.value.line == 6 and caught.value.key == "rules[1].project"
    assert "research" in caught.value.message  # the projects the store has
    assert not (tmp_path / "m").exists()


def test_the_api_example_runs() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "gc")}
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "collect_api.py")],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "swept:" in proc.stdout and "collect: swept" in proc.stdout
    checked = subprocess.run([sys.executable, str(REPO / "examples" / "collect_api.py"),
                              str(REPO / "examples" / "artifact-gc.toml")],
                             env={**env, "ZENML_DB_PASSWORD": "x", "AWS_ACCESS_KEY_ID": "x",
                                  "AWS_SECRET_ACCESS_KEY": "x"},
                             capture_output=True, text=True, timeout=120, check=False)
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert "3 rule(s)" in checked.stdout


@pytest.mark.slow
def test_collect_on_a_real_zenml_store(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    """A scheduled collection with sweep = true ends where gc mark + gc sweep do: exactly
    the candidates gone, nothing dangling, every file of a live version intact, and
    ZenML's own client loads every remaining version."""
    store = scenario_store
    before = list_tree(store.store_root)
    footprints = uri_paths(store, store.all_ids)
    policy = tmp_path / "artifact-gc.toml"
    policy.write_text(f"""
        sweep = true
        [store]
        db = "{store.sqlalchemy_url}"
        [store.store_roots]
        {store.artifact_store_id} = "{store.store_root}"
        [manifests]
        location = "{tmp_path / 'manifests'}"
        [defaults]
        older_than = "0"
        [brakes]
        max_fraction = false
    """)
    result = CliRunner().invoke(cli, ["collect", "--policy", str(policy),
                                      "--metrics", str(tmp_path / "gc.prom")])
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    assert summary["outcome"] == "swept"
    assert summary["sweep"]["deleted"] == len(store.candidates)
    assert_swept(store, store.candidates, before, footprints)
    values = _samples((tmp_path / "gc.prom").read_text())
    assert values[("artifact_gc_versions_deleted_total", ())] == len(store.candidates)


def test_without_sweep_a_brake_is_reported_and_refuses_nothing(store: SyntheticStore,
                                                               tmp_path: Path) -> None:
    text = _policy(store, tmp_path / "m", "[defaults]\nolder_than = \"1d\"\n"
                   + ALL_OFF.replace("max_candidates = false", "max_candidates = 5"),
                   sweep=False)
    db_before = db_snapshot(store.url)
    report = collect(parse_policy(text, {}))
    assert report.outcome == "marked" and report.exit_code == 0
    assert [b.name for b in report.fired] == ["max_candidates"]
    assert report.as_dict()["brakes_fired"] == ["max_candidates"]
    assert _samples(render_metrics(report))[
        ("artifact_gc_brake_fired", (("brake", "max_candidates"),))] == 1
    assert db_snapshot(store.url) == db_before


def test_keep_tags_of_a_rule_reach_its_mark(store: SyntheticStore, tmp_path: Path) -> None:
    """A candidate tagged "production" is kept by a rule's keep_tags, the rest swept."""
    from artifact_gc.collect.policy import supported_mark_fields

    if "keep_tags" not in supported_mark_fields():
        pytest.skip("this build's gc mark has no --keep-tag (the policy test covers it)")
    tagged = sorted(store.expected_candidates)[0]
    engine = sa.create_engine(store.url)
    with engine.begin() as conn:
        tag_id = conn.execute(sa.text("SELECT id FROM tag WHERE name = 'production'")).scalar()
        conn.execute(sa.text(
            "INSERT INTO tag_resource (id, created, updated, tag_id, resource_id, "
            "resource_type) VALUES (:id, '2026-01-01 00:00:00', '2026-01-01 00:00:00', "
            ":tag, :vid, 'artifact_version')"), {"id": "f" * 32, "tag": tag_id, "vid": tagged})
    engine.dispose()
    text = _policy(store, tmp_path / "m", "[defaults]\nolder_than = \"1d\"\n"
                   "keep_tags = [\"production\"]\n" + ALL_OFF, sweep=True)
    report = collect(parse_policy(text, {}))
    assert report.outcome == "swept", report.error
    assert report.sweep is not None and report.sweep.deleted == len(store.expected_candidates) - 1
    remaining = version_ids(store.url)
    assert tagged in remaining and not (store.expected_candidates - {tagged}) & remaining
