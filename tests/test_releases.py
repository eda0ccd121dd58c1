"""Every ZenML release from 0.70 to 0.98: schema profiles against fixture stores.

The fixtures (tests/fixtures/releases/<X>/) were made by each release's own ZenML with
real pipelines and client calls (scripts/build_release_fixtures.py). On each one, mark
decides what expected.json says, and after the sweep every DESIGN.md invariant holds:
exactly the candidates are gone, nothing dangles (polymorphic rows included), every
other file is intact.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import sqlalchemy as sa

from artifact_gc.metadb.engine import create_engine
from artifact_gc.zenml.profiles import (
    PROFILES,
    profile_for,
    release_key,
    supported_releases,
    tables_at,
)
from artifact_gc.zenml.schema import discover
from releases_support import (
    REPO,
    ReleaseStore,
    assert_swept,
    build_release_store,
    candidate_paths,
    fixture_releases,
    load_with_release,
    mark_release,
    restore,
    statuses,
    sweep_release,
    upgrade_with_current_zenml,
)
from scenarios.helpers import list_tree, make_engine

RELEASES = fixture_releases()


def _discover(url: str) -> object:
    engine = create_engine(url, readonly=True)
    try:
        return discover(engine)
    finally:
        engine.dispose()


def test_revision_table_is_generated_from_the_installed_zenml() -> None:
    """revisions.py is what scripts/zenml_revisions.py reads from ZenML's migrations."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "zenml_revisions.py"), "--check",
         "--python", sys.executable], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_every_release_has_a_profile_whose_tables_its_migrations_create() -> None:
    releases = supported_releases()
    assert releases[0] == "0.70.0" and releases[-1] == "0.98.0"
    assert {"0.83.1", "0.94.4", "0.95.1"} <= set(releases)  # patch releases too
    for release in releases:
        profile = profile_for(release)
        assert profile is not None and profile.known
        tables = tables_at(release)
        needed = {profile.scope_table, profile.deployment_table, *profile.dependents,
                  *(t for t, _ in profile.config_sources), *profile.polymorphic_tables,
                  *(t for t, _, _ in profile.references)}
        assert needed <= tables, (release, needed - tables)
    # Each boundary is where the migrations change what a profile reads.
    assert "run_metadata_resource" not in tables_at("0.70.0")
    assert "workspace" in tables_at("0.75.0") and "project" in tables_at("0.80.0")
    assert "step_configuration" not in tables_at("0.83.0")
    assert "pipeline_snapshot" not in tables_at("0.85.0")
    assert "pipeline_run_output" not in tables_at("0.94.3")
    assert "hook_invocation_output_artifact" not in tables_at("0.94.6")
    assert [p.first_release for p in PROFILES] == sorted(
        (p.first_release for p in PROFILES), key=release_key)
    for unknown in ("0.99.0", "0.68.1", "cc269488e5a9", None):
        assert profile_for(unknown) is None


def test_fixtures_cover_every_profile() -> None:
    covered = {profile_for(r).first_release for r in RELEASES}  # type: ignore[union-attr]
    assert covered == {p.first_release for p in PROFILES}, covered


@pytest.mark.parametrize("release", RELEASES)
def test_release_profile_matches_the_store(release: str, tmp_path: Path) -> None:
    """The profile chosen by the store's revision is what reflection sees in a store that
    release made: its foreign keys into artifact_version, its JSON and polymorphic tables."""
    store = restore(release, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        schema = _discover(store.sqlalchemy_url)
    profile = schema.profile  # type: ignore[attr-defined]
    assert profile.known and schema.version == release  # type: ignore[attr-defined]
    reflected = {(r.table, r.column) for r in schema.references}  # type: ignore[attr-defined]
    assert reflected == {(t, c) for t, c, _ in profile.references}
    assert {d.table for d in schema.dependents} == set(profile.dependents)  # type: ignore[attr-defined]
    engine = make_engine(store.sqlalchemy_url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert tables - {"alembic_version"} == tables_at(release)


@pytest.mark.parametrize("release", RELEASES)
def test_release_fixture_mark_and_sweep(release: str, tmp_path: Path) -> None:
    store = restore(release, tmp_path / "store")
    manifest = mark_release(store, tmp_path / "m.parquet")
    found = statuses(manifest)
    assert set(found) == store.all_ids
    for scenario, by_status in store.expected["scenarios"].items():
        for status, ids in by_status.items():
            for vid in ids:
                assert found[vid][0] == status, (scenario, vid, found[vid])
    before = list_tree(store.store_root)
    report = sweep_release(store, manifest)
    assert report.as_dict()["deleted"] == len(store.expected["candidates"])
    assert_swept(store, before, candidate_paths(manifest))


@pytest.mark.parametrize("release", [r for r in RELEASES if release_key(r) < (0, 83, 1)])
def test_pre_0831_deployment_json_keeps_the_external_artifact(release: str,
                                                              tmp_path: Path) -> None:
    """Before 0.83.1 an ExternalArtifact's id lives in
    pipeline_deployment.step_configurations (one JSON document for every step); its run
    was deleted, so that document is the only thing that names it."""
    store = restore(release, tmp_path)
    found = statuses(mark_release(store, tmp_path / "m.parquet"))
    (external,) = store.ids("config_reference", "reachable")
    assert found[external] == ("reachable", ["config_reference"])


def test_070_sweep_leaves_no_dangling_run_metadata(tmp_path: Path) -> None:
    """0.70's run_metadata rows name their version themselves (resource_id,
    resource_type); there is no run_metadata_resource to delete them through."""
    store = restore("0.70.0", tmp_path)
    (orphan,) = store.ids("tagged_metadata", "candidate")
    engine = make_engine(store.sqlalchemy_url)

    def metadata_rows() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM run_metadata WHERE resource_type = 'artifact_version' "
                "AND resource_id = :v"), {"v": orphan}).scalar_one())

    try:
        assert metadata_rows() > 0
        manifest = mark_release(store, tmp_path / "m.parquet")
        sweep_release(store, manifest)
        assert metadata_rows() == 0
        with engine.connect() as conn:
            dangling = conn.execute(sa.text(
                "SELECT count(*) FROM run_metadata m WHERE m.resource_type = 'artifact_version' "
                "AND NOT EXISTS (SELECT 1 FROM artifact_version v WHERE v.id = m.resource_id)"
            )).scalar_one()
        assert dangling == 0
    finally:
        engine.dispose()


def test_project_scope_on_a_workspace_store(tmp_path: Path) -> None:
    """--project names the store's workspace before 0.80, and the output says workspace."""
    from click.testing import CliRunner

    from artifact_gc.cli import cli

    store = restore(RELEASES[0], tmp_path)
    schema = _discover(store.sqlalchemy_url)
    assert schema.scope_noun == "workspace"  # type: ignore[attr-defined]
    found = statuses(mark_release(store, tmp_path / "m.parquet",
                                  projects=(store.expected["project"],)))
    assert set(found) == store.all_ids
    root = f"{store.expected['artifact_store']['id']}={store.store_root}"
    base = ["mark", "--db", store.sqlalchemy_url, "--older-than", "0s", "--store-root", root]
    shown = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "cli.parquet"),
                                     "--project", store.expected["project"]])
    assert shown.exit_code == 0, shown.output
    # The largest-candidates table heads its scope column as the store names it.
    assert re.search(r"[┃│ ]workspace[ ┃│]", shown.output), shown.output
    assert not re.search(r"[┃│ ]project[ ┃│]", shown.output), shown.output
    wrong = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "x.parquet"),
                                     "--project", "nope"])
    assert wrong.exit_code == 2 and "no workspace named 'nope'" in wrong.output, wrong.output


# --- A release newer than the last profile -----------------------------------------


def _as_release(store: ReleaseStore, revision: str, *statements: str) -> None:
    engine = make_engine(store.sqlalchemy_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"),
                         {"v": revision})
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def _sweep_cli(store: ReleaseStore, manifest: Path, *args: str) -> object:
    from click.testing import CliRunner

    from artifact_gc.cli import cli

    return CliRunner().invoke(cli, ["sweep", str(manifest), "--db", store.sqlalchemy_url,
                                    "--yes", *args], catch_exceptions=False)


def test_unknown_release_marks_with_a_warning_and_sweeps_only_when_accepted(
        tmp_path: Path) -> None:
    from artifact_gc.zenml.schema import UnknownSchemaVersion

    store = restore(RELEASES[-1], tmp_path / "store")
    _as_release(store, "0.99.0")
    with pytest.warns(UnknownSchemaVersion, match="0.99.0 is newer than the last supported"):
        manifest = mark_release(store, tmp_path / "m.parquet")
    found = statuses(manifest)
    assert {v for v, (s, _) in found.items() if s == "candidate"} == set(
        store.expected["candidates"])
    refused = _sweep_cli(store, manifest)
    assert refused.exit_code == 5  # type: ignore[attr-defined]
    assert "0.99.0" in refused.output and "--accept-schema 0.99.0" in refused.output  # type: ignore[attr-defined]
    assert "--accept-schema" in _sweep_cli(store, manifest, "--help").output  # type: ignore[attr-defined]
    before = list_tree(store.store_root)
    accepted = _sweep_cli(store, manifest, "--accept-schema", "0.99.0")
    assert accepted.exit_code == 0, accepted.output  # type: ignore[attr-defined]
    assert_swept(store, before, candidate_paths(manifest))


@pytest.mark.parametrize(("statement", "named"), [
    ("CREATE TABLE model_card (id CHAR(32) PRIMARY KEY, artifact_version_id CHAR(32) "
     "REFERENCES artifact_version (id) ON DELETE CASCADE)", "model_card.artifact_version_id"),
    ("CREATE TABLE eval_result (id CHAR(32) PRIMARY KEY, best_artifact_id CHAR(32))",
     "eval_result.best_artifact_id"),
    ("CREATE TABLE note_resource (id CHAR(32) PRIMARY KEY, resource_id CHAR(32), "
     "resource_type VARCHAR(255))", "note_resource.resource_id"),
])
def test_unknown_release_with_an_unexplained_reference_is_refused_even_when_accepted(
        statement: str, named: str, tmp_path: Path) -> None:
    store = restore(RELEASES[-1], tmp_path / "store")
    _as_release(store, "0.99.0", statement)
    with pytest.warns(UserWarning):
        manifest = mark_release(store, tmp_path / "m.parquet")
    before = list_tree(store.store_root)
    refused = _sweep_cli(store, manifest, "--accept-schema", "0.99.0")
    assert refused.exit_code == 5  # type: ignore[attr-defined]
    assert named in refused.output, refused.output  # type: ignore[attr-defined]
    assert list_tree(store.store_root) == before


# --- Live: the release's own ZenML, after the sweep --------------------------------


def _mark_sweep_and_check(store: ReleaseStore, tmp_path: Path, load_release: str) -> None:
    manifest = mark_release(store, tmp_path / "m.parquet")
    found = statuses(manifest)
    assert {v for v, (s, _) in found.items() if s == "candidate"} == set(
        store.expected["candidates"])
    before = list_tree(store.store_root)
    sweep_release(store, manifest)
    assert_swept(store, before, candidate_paths(manifest))
    loaded = load_with_release(store, load_release)
    assert loaded["failed"] == {}
    assert loaded["loaded"] == len(store.all_ids) - len(store.expected["candidates"])


@pytest.mark.slow
@pytest.mark.parametrize("release", ["0.70.0", "0.90.0"])
def test_swept_store_loads_in_its_own_release(release: str, tmp_path: Path) -> None:
    """After the sweep, the release's own client (its cached venv) loads every version
    left: one release before 0.80 (workspaces, run_metadata without links, deployment
    JSON), one between 0.85 and 0.93 (snapshots)."""
    store = restore(release, tmp_path / "store")
    _mark_sweep_and_check(store, tmp_path, release)


@pytest.mark.slow
@pytest.mark.mariadb
def test_older_release_on_mariadb(mariadb_url_factory: object, tmp_path: Path) -> None:
    """A MariaDB store made by ZenML 0.75 (workspaces, run_metadata_resource, deployment
    JSON): mark, sweep, no dangling row, and 0.75's own client loads what is left."""
    url = mariadb_url_factory("releases_075")  # type: ignore[operator]
    store = build_release_store("0.75.0", tmp_path / "config", url)
    assert _discover(store.sqlalchemy_url).profile.first_release == "0.71.0"  # type: ignore[attr-defined]
    _mark_sweep_and_check(store, tmp_path, "0.75.0")


@pytest.mark.slow
def test_store_migrated_from_an_older_release(tmp_path: Path) -> None:
    """A store made by 0.75 and upgraded by this environment's ZenML's migrations."""
    store = restore("0.75.0", tmp_path / "store")
    upgrade_with_current_zenml(store)
    schema = _discover(store.sqlalchemy_url)
    assert schema.version == "0.98.0" and schema.profile.known  # type: ignore[attr-defined]
    _mark_sweep_and_check(store, tmp_path, "current")
