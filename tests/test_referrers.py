"""Tags that protect (``--keep-tag``), referrers in the manifest, ``gc why``, and
``--release-unreachable-snapshots``: on the real ZenML 0.98 scenario store, with the
ZenML actions between mark and sweep run by ZenML itself in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from artifact_gc.cli import cli
from artifact_gc.manifest import format as mf
from artifact_gc.sweep.execute import execute
from artifact_gc.sweep.options import SweepOptions
from artifact_gc.sweep.plan import plan_sweep
from scenarios.helpers import ScenarioStore, list_tree, make_engine
from sweep_support import assert_swept, mark_store, uri_paths, zenml


def _rows(url: Path) -> dict[str, dict[str, Any]]:
    return {r["artifact_version_id"]: r for r in pq.read_table(url).to_pylist()}


def _sql(store: ScenarioStore, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = make_engine(store.sqlalchemy_url)
    try:
        with engine.connect() as connection:
            return [tuple(r) for r in connection.execute(sa.text(sql), params).all()]
    finally:
        engine.dispose()


def _tagged_with(store: ScenarioStore, tag: str) -> set[str]:
    """Versions carrying ``tag`` themselves, by plain SQL."""
    return {str(r[0]) for r in _sql(
        store, "SELECT r.resource_id FROM tag_resource r JOIN tag t ON t.id = r.tag_id "
        "WHERE t.name = :tag AND r.resource_type = 'artifact_version'", tag=tag)}


def _cli(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


# ---------------------------------------------------------------------------
# --keep-tag
# ---------------------------------------------------------------------------


def test_keep_tag_protects_versions_and_artifacts_carrying_it(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    store = scenario_store
    tagged = store.ids(scenario="tagged_metadata")
    assert tagged <= store.candidates
    plain = _rows(mark_store(store, tmp_path / "plain.parquet", sizes=False))
    assert all(plain[v]["status"] == "candidate" for v in tagged)

    kept = _rows(mark_store(store, tmp_path / "kept.parquet", sizes=False,
                            keep_tags=("gc-artifact-tag", "gc-tag-0")))
    own = _tagged_with(store, "gc-tag-0")
    assert own and own < tagged
    for vid in tagged:
        # The artifact's tag protects every version of the artifact; gc-tag-0 only the
        # version that carries it.
        expected = ["tag:gc-artifact-tag"] + (["tag:gc-tag-0"] if vid in own else [])
        assert kept[vid]["status"] == "protected"
        assert kept[vid]["reasons"] == expected
    # Nothing else changes.
    assert {v: r["status"] for v, r in kept.items() if v not in tagged} == \
        {v: r["status"] for v, r in plain.items() if v not in tagged}
    info = mf.read_info(str(tmp_path / "kept.parquet"))
    assert info.parameters["keep_tags"] == ["gc-artifact-tag", "gc-tag-0"]


def test_a_keep_tag_added_after_the_mark_revives_the_version(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    store = scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet", keep_tags=("golden",))
    candidates = store.ids("candidate", scenario="deleted_runs")
    by_name: dict[str, list[str]] = {}
    for vid in sorted(candidates):
        by_name.setdefault(store.versions[vid]["artifact_name"], []).append(vid)
    one_version = by_name["runs_data"][0]
    whole_artifact = set(by_name["runs_summary"])
    before = list_tree(store.store_root)
    footprints = uri_paths(store, store.all_ids)

    # A user tags one version, and another artifact, between mark and sweep.
    zenml(store, "add_tags", "golden", one_version, "runs_summary")

    report = execute(plan_sweep(str(manifest), store.sqlalchemy_url, SweepOptions()))
    assert report.revived == {vid: "tag:golden" for vid in {one_version} | whole_artifact}
    deleted = store.candidates - {one_version} - whole_artifact
    assert set(report.deleted) == deleted
    assert_swept(store, deleted, before, footprints)


# ---------------------------------------------------------------------------
# referrers, gc show --by referrer, gc why
# ---------------------------------------------------------------------------


def test_every_reference_names_its_referrer(scenario_store: ScenarioStore,
                                            tmp_path: Path) -> None:
    store = scenario_store
    manifest = mark_store(store, tmp_path / "mark.parquet", sizes=False)
    rows = _rows(manifest)
    assert mf.read_info(str(manifest)).format_version == "1.2"
    steps = {(str(run), name): str(step) for step, run, name in _sql(
        store, "SELECT id, pipeline_run_id, name FROM step_run")}
    for vid, row in rows.items():
        reasons, referrers = row["reasons"], row["referrers"]
        if row["status"] != "reachable":
            assert referrers == [], (vid, referrers)
            continue
        # Every reference reason has a referrer of its kind, and every referrer names
        # a row that exists.
        kinds = {r.split(":", 1)[0] for r in referrers}
        if "model_link" in reasons:
            assert "model_version" in kinds
        if "config_reference" in reasons:
            assert "snapshot" in kinds
        for referrer in referrers:
            if referrer.startswith("run:") and "/step:" in referrer:
                run, rest = referrer[len("run:"):].split("/step:", 1)
                step, link = rest.split("/", 1)
                assert (run, step) in steps
                assert link.split(":")[0] in {"input", "output"}
                assert ("step_input" if link.startswith("input") else "step_output") in reasons
            elif referrer.startswith("model_version:"):
                assert _sql(store, "SELECT id FROM model_version WHERE id = :id",
                            id=referrer.split(":")[1])
            elif referrer.startswith("snapshot:"):
                assert _sql(store, "SELECT id FROM pipeline_snapshot WHERE id = :id",
                            id=referrer.split(":")[1])
    # The config-only external of the second run names that run's snapshot.
    run2 = store.expected["scenarios"]["config_reference"]["run_ids"][1]
    (snapshot,), = _sql(store, "SELECT snapshot_id FROM pipeline_run WHERE id = :id", id=run2)
    config_only = store.ids(scenario="config_reference", reason="config_reference") - \
        store.ids(scenario="config_reference", reason="step_input")
    (external,) = config_only
    assert rows[external]["referrers"] == [f"snapshot:{snapshot}"]

    shown = json.loads(_cli("show", str(manifest), "--by", "referrer", "--top", "50",
                            "--format", "json"))["rows"]
    by_referrer = {r["referrer"]: r for r in shown}
    assert by_referrer[f"snapshot:{snapshot}"]["kind"] == "snapshot"
    assert by_referrer[f"snapshot:{snapshot}"]["reachable"] == 1
    assert by_referrer["(none)"]["candidates"] == len(store.candidates)

    words = _cli("why", external, str(manifest))
    assert "REACHABLE" in words
    assert f"a step configuration of snapshot {snapshot} names it" in words
    assert "--release-unreachable-snapshots" in words
    candidate = sorted(store.candidates)[0]
    assert "CANDIDATE: nothing refers to it" in _cli("why", candidate[:8], str(manifest))


def test_a_manifest_before_1_2_has_no_referrers_recorded(tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "fixtures" / "manifest-format-1.0-tool-0.1.0.parquet"
    shown = json.loads(_cli("show", str(fixture), "--by", "referrer", "--format", "json"))
    assert [r["referrer"] for r in shown["rows"]] == ["(not recorded)"]
    vid = pq.read_table(fixture).column("artifact_version_id")[0].as_py()
    assert "not recorded (the manifest predates format 1.2)" in _cli("why", vid, str(fixture))


# ---------------------------------------------------------------------------
# --release-unreachable-snapshots
# ---------------------------------------------------------------------------


def _external_runs(store: ScenarioStore) -> tuple[list[str], dict[str, str]]:
    """The gc_external runs, and every external version -> its snapshot."""
    runs = store.expected["scenarios"]["config_reference"]["run_ids"]
    externals = {vid for vid in store.ids(scenario="config_reference")
                 if store.versions[vid]["save_type"] == "external"}
    snapshots = [str(r[0]) for r in _sql(
        store, "SELECT snapshot_id FROM pipeline_run WHERE id IN ('" + "', '".join(runs)
        + "')")]
    named: dict[str, str] = {}
    for snapshot in snapshots:
        for (config,) in _sql(store, "SELECT config FROM step_configuration "
                              "WHERE snapshot_id = :s", s=snapshot):
            for vid in externals:
                dashed = f"{vid[:8]}-{vid[8:12]}-{vid[12:16]}-{vid[16:20]}-{vid[20:]}"
                if dashed in config:
                    named[vid] = snapshot
    assert set(named) == externals and len(set(named.values())) == 2
    return runs, named


def test_release_unreachable_snapshots_lets_deleted_runs_snapshots_go(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    store = scenario_store
    runs, externals = _external_runs(store)
    # While their runs exist, the snapshots can run again: the option changes nothing.
    default = _rows(mark_store(store, tmp_path / "default.parquet", sizes=False))
    released = _rows(mark_store(store, tmp_path / "released.parquet", sizes=False,
                                release_unreachable_snapshots=True))
    assert {v: (r["status"], r["reasons"]) for v, r in released.items()} == \
        {v: (r["status"], r["reasons"]) for v, r in default.items()}

    zenml(store, "delete_runs", *runs)
    default = _rows(mark_store(store, tmp_path / "default-2.parquet", sizes=False))
    released = _rows(mark_store(store, tmp_path / "released-2.parquet", sizes=False,
                                release_unreachable_snapshots=True))
    for vid, snapshot in externals.items():
        # Today's behaviour by default: the snapshot's configuration keeps the upload.
        assert default[vid]["status"] == "reachable"
        assert default[vid]["reasons"] == ["config_reference"]
        assert default[vid]["referrers"] == [f"snapshot:{snapshot}"]
        # Nothing can run the snapshot again: no runs, schedule, name, template,
        # deployment or trigger, and it is older than the grace period (0s here).
        assert released[vid]["status"] == "candidate"
        assert released[vid]["reasons"] == []
        assert released[vid]["referrers"] == [f"released_snapshot:{snapshot}"]
    others = set(default) - set(externals)
    assert {v: released[v]["status"] for v in others} == \
        {v: default[v]["status"] for v in others}

    words = _cli("why", next(iter(externals)), str(tmp_path / "released-2.parquet"))
    assert "CANDIDATE" in words and "nothing can run that snapshot again" in words
    # A grace period longer than the snapshots' age keeps them.
    young = _rows(mark_store(store, tmp_path / "young.parquet", sizes=False,
                             release_unreachable_snapshots=True,
                             older_than=__import__("datetime").timedelta(days=1)))
    assert all(young[v]["status"] == "reachable" and
               young[v]["referrers"] == [f"snapshot:{s}"] for v, s in externals.items())


@pytest.mark.parametrize("backend", ["scenario_store", "mariadb_scenario_store"])
def test_a_new_run_of_a_released_snapshot_revives_its_external_artifact(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store: ScenarioStore = request.getfixturevalue(backend)
    runs, externals = _external_runs(store)
    zenml(store, "delete_runs", *runs)
    manifest = mark_store(store, tmp_path / "mark.parquet",
                          release_unreachable_snapshots=True)
    rows = _rows(manifest)
    assert all(rows[v]["status"] == "candidate" for v in externals)
    before = list_tree(store.store_root)
    footprints = uri_paths(store, store.all_ids)
    revived, snapshot = sorted(externals.items())[0]

    # Between mark and sweep, the snapshot runs again.
    zenml(store, "run_snapshot", snapshot)

    report = execute(plan_sweep(str(manifest), store.sqlalchemy_url, SweepOptions()))
    assert report.revived == {revived: "config_reference"}
    candidates = {v for v, r in rows.items() if r["status"] == "candidate"}
    assert set(report.deleted) == candidates - {revived}
    assert_swept(store, candidates - {revived}, before, footprints)
