"""gc sweep and gc status through click's CliRunner: confirmation, --yes, --dry-run,
every refusal and its exit code (invariant 5 on the sweep side)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from artifact_gc.cli import cli
from artifact_gc.manifest import format as mf
from artifact_gc.manifest.publish import write_manifest
from artifact_gc.sweep.journal import Journal
from scenarios.helpers import ScenarioStore, list_tree
from sweep_support import db_snapshot, mark_store


def _run(*args: str, input: str | None = None) -> object:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def marked(scenario_store: ScenarioStore, tmp_path: Path) -> tuple[ScenarioStore, Path]:
    return scenario_store, mark_store(scenario_store, tmp_path / "mark.parquet")


def _rewrite(source: Path, target: Path, **changes: object) -> Path:
    """A copy of a manifest with changed metadata (checksum recomputed by write_manifest
    unless ``raw`` is given, in which case the metadata is written as is)."""
    table = pq.read_table(source)
    info = mf.read_info(str(source))
    raw = changes.pop("raw", False)
    for key, value in changes.items():
        if key == "database":
            info.database = {**info.database, **value}  # type: ignore[dict-item]
        else:
            setattr(info, key, value)
    if raw:
        meta = {mf.METADATA_KEY: json.dumps(info.as_dict()).encode()}
        pq.write_table(table.replace_schema_metadata(meta), target)
    else:
        write_manifest(table.replace_schema_metadata({}), info, str(target))
    return target


def test_confirmation_declined_deletes_nothing(marked: tuple[ScenarioStore, Path]) -> None:
    store, manifest = marked
    before = db_snapshot(store.sqlalchemy_url), list_tree(store.store_root)
    result = _run("sweep", str(manifest), "--db", store.db_url, input="n\n")
    assert result.exit_code == 6, result.output  # type: ignore[attr-defined]
    assert f"{len(store.candidates)} of {len(store.candidates)} candidate versions" in \
        result.output  # type: ignore[attr-defined]
    assert (db_snapshot(store.sqlalchemy_url), list_tree(store.store_root)) == before


def test_confirmation_accepted_and_yes(marked: tuple[ScenarioStore, Path]) -> None:
    store, manifest = marked
    result = _run("sweep", str(manifest), "--db", store.db_url, "--batch-size", "4",
                  input="y\n")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "Sweep summary" in result.output  # type: ignore[attr-defined]
    again = _run("sweep", str(manifest), "--db", store.db_url, "--yes", "--json")
    assert again.exit_code == 0
    data = json.loads(again.output)  # type: ignore[attr-defined]
    # Nothing left: "already complete", no summary of zeros (issue 14, item 7).
    assert data["plan"]["versions"] == 0 and data["complete"] is True
    assert data["summary"] is None
    status = _run("status", str(manifest), "--json")
    assert json.loads(status.output)["done"] == len(store.candidates)  # type: ignore[attr-defined]
    text = _run("status", str(manifest))
    assert f"done {len(store.candidates)}" in text.output  # type: ignore[attr-defined]


def test_dry_run_cli_changes_nothing(marked: tuple[ScenarioStore, Path]) -> None:
    store, manifest = marked
    before = db_snapshot(store.sqlalchemy_url), list_tree(store.store_root, include_dirs=True)
    result = _run("sweep", str(manifest), "--db", store.db_url, "--dry-run", "--json")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    summary = json.loads(result.output)["summary"]  # type: ignore[attr-defined]
    assert summary["dry_run"] and summary["deleted"] == len(store.candidates)
    assert (db_snapshot(store.sqlalchemy_url),
            list_tree(store.store_root, include_dirs=True)) == before
    assert not Path(Journal(str(manifest)).url).exists()


def test_refusals_and_exit_codes(marked: tuple[ScenarioStore, Path], tmp_path: Path) -> None:
    store, manifest = marked
    db = ("--db", store.db_url)
    before = db_snapshot(store.sqlalchemy_url), list_tree(store.store_root)
    cases = {
        "incomplete": _rewrite(manifest, tmp_path / "incomplete.parquet", complete=False,
                               raw=True),
        "checksum": _tampered(manifest, tmp_path / "tampered.parquet"),
        "unknown_format_version": _rewrite(manifest, tmp_path / "v2.parquet",
                                           format_version="2.0"),
        "unknown_schema_version": _rewrite(manifest, tmp_path / "schema.parquet",
                                           database={"schema_version": "0.50.0"}),
        "other_database": _rewrite(manifest, tmp_path / "other.parquet",
                                   database={"store_id": "f" * 32}),
    }
    for reason, path in cases.items():
        result = _run("sweep", str(path), *db, "--yes")
        assert result.exit_code == 5, (reason, result.output)  # type: ignore[attr-defined]
    too_old = _run("sweep", str(manifest), *db, "--yes", "--max-manifest-age", "0s")
    assert too_old.exit_code == 5 and "older than" in too_old.output  # type: ignore[attr-defined]
    # Another database: a copy of the store at another path is not the marked store.
    copy = tmp_path / "copy.db"
    shutil.copy(store.config_dir / "local_stores" / "default_zen_store" / "zenml.db", copy)
    other = _run("sweep", str(manifest), "--db", f"sqlite:///{copy}", "--yes")
    assert other.exit_code == 5 and "not on the database" in other.output  # type: ignore[attr-defined]
    both = _run("sweep", str(manifest), *db, "--only-artifact", "--only-metadata")
    assert both.exit_code == 2
    with Journal(str(manifest)).locked():
        locked = _run("sweep", str(manifest), *db, "--yes")
    assert locked.exit_code == 7, locked.output  # type: ignore[attr-defined]
    assert (db_snapshot(store.sqlalchemy_url), list_tree(store.store_root)) == before


def test_a_journal_location_that_holds_manifests_is_refused(
    marked: tuple[ScenarioStore, Path], tmp_path: Path
) -> None:
    """``--journal`` naming the folder the manifests live in (one shared location for
    both, say): a journal is read as every Parquet file of its folder, so the manifests
    would be read as journal segments. A usage error naming the files, not an
    unexpected failure; nothing is deleted or written there."""
    store, manifest = marked
    assert manifest.parent == tmp_path
    before = db_snapshot(store.sqlalchemy_url), list_tree(store.store_root)
    files = sorted(p.name for p in tmp_path.iterdir())
    for args in (("sweep", str(manifest), "--db", store.db_url, "--yes"),
                 ("sweep", str(manifest), "--db", store.db_url, "--dry-run"),
                 ("status", str(manifest))):
        result = _run(*args, "--journal", str(tmp_path))
        output = result.output  # type: ignore[attr-defined]
        assert result.exit_code == 2, (args, output)  # type: ignore[attr-defined]
        assert "not sweep journal segments" in output and "mark.parquet" in output, output
        assert "unexpected" not in output, output
    assert (db_snapshot(store.sqlalchemy_url), list_tree(store.store_root)) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files


def _tampered(source: Path, target: Path) -> Path:
    """Point one candidate at another directory without recomputing the checksum."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pq.read_table(source)
    meta = table.schema.metadata
    is_candidate = pc.equal(table["status"], "candidate")
    uris = table["uri"].to_pylist()
    first = is_candidate.to_pylist().index(True)
    uris[first] = uris[first].rsplit("/", 2)[0]
    table = table.set_column(table.schema.get_field_index("uri"), "uri", pa.array(uris))
    pq.write_table(table.replace_schema_metadata(meta), target)
    return target


def test_refusal_reasons_in_the_library(marked: tuple[ScenarioStore, Path],
                                        tmp_path: Path) -> None:
    from artifact_gc.errors import ManifestRefused
    from artifact_gc.sweep.options import SweepOptions
    from artifact_gc.sweep.plan import plan_sweep

    store, manifest = marked
    with pytest.raises(ManifestRefused) as refused:
        plan_sweep(str(_tampered(manifest, tmp_path / "t.parquet")), store.sqlalchemy_url)
    assert refused.value.reason == "checksum"
    assert plan_sweep(str(manifest), store.sqlalchemy_url,
                      SweepOptions(max_manifest_age=None)).versions == len(store.candidates)
    with pytest.raises(ManifestRefused) as refused:
        plan_sweep(str(_rewrite(manifest, tmp_path / "o.parquet",
                                database={"store_id": "e" * 32})), store.sqlalchemy_url)
    assert refused.value.reason == "other_database"


def test_candidates_of_a_kind_the_sweep_cannot_sweep_are_refused(
    marked: tuple[ScenarioStore, Path], tmp_path: Path
) -> None:
    """A manifest may carry candidates of another item kind (format 1.1, a valid
    checksum). This release sweeps artifact versions and orphan files only (a kind of a later
    release, here pipeline_run, is unknown to it): it must refuse such a
    manifest (exit 5), not act on those rows as versions by their artifact_version_id
    and journal them under a key their own item never reads."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from artifact_gc.errors import ManifestRefused
    from artifact_gc.sweep.options import SweepOptions
    from artifact_gc.sweep.plan import plan_sweep

    store, manifest = marked
    table = pq.read_table(manifest)
    kinds = table.column("item_kind").to_pylist()
    kinds[pc.equal(table["status"], "candidate").to_pylist().index(True)] = "pipeline_run"
    table = table.set_column(table.schema.get_field_index("item_kind"), "item_kind",
                             pa.array(kinds, pa.string()))
    other_kind = tmp_path / "other-kind.parquet"
    write_manifest(table.replace_schema_metadata({}), mf.read_info(str(manifest)),
                   str(other_kind))
    mf.verify(str(other_kind))  # its checksum holds
    before = db_snapshot(store.sqlalchemy_url), list_tree(store.store_root)
    for dry_run in (True, False):
        with pytest.raises(ManifestRefused, match="pipeline_run") as refused:
            plan_sweep(str(other_kind), store.sqlalchemy_url, SweepOptions(dry_run=dry_run))
        assert refused.value.reason == "unknown_item_kind"
    result = _run("sweep", str(other_kind), "--db", store.db_url, "--yes")
    assert result.exit_code == 5, result.output  # type: ignore[attr-defined]
    assert (db_snapshot(store.sqlalchemy_url), list_tree(store.store_root)) == before
    assert not Path(Journal(str(other_kind)).url).exists()
