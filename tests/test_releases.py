"""Every ZenML release from 0.70 to 0.98: schema profiles against fixture stores.

The fixtures (tests/fixtures/releases/<X>/) were made by each release's own ZenML with
real pipelines and client calls (scripts/build_release_fixtures.py). On each one, mark
decides what expected.json says, and after the sweep every DESIGN.md invariant holds:
exactly the candidates are gone, nothing dangles (polymorphic rows included), every
other file is intact.
"""

from __future__ import annotations

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
    candidate_paths,
    fixture_releases,
    mark_release,
    restore,
    statuses,
    sweep_release,
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
    assert covered >= {"0.70.0", "0.71.0", "0.80.0", "0.90.0"}, covered


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
    """--project names the store's workspace before 0.80."""
    store = restore(RELEASES[0], tmp_path)
    schema = _discover(store.sqlalchemy_url)
    assert schema.scope_noun == "workspace"  # type: ignore[attr-defined]
    found = statuses(mark_release(store, tmp_path / "m.parquet",
                                  projects=(store.expected["project"],)))
    assert set(found) == store.all_ids


def _unused(store: ReleaseStore) -> None:  # keeps the import used for type checkers
    del store
