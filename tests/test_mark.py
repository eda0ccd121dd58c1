"""gc mark against real ZenML 0.98.0 stores: every scenario checked row by row."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from artifact_gc.cli import cli
from artifact_gc.errors import ManifestRefused, SchemaError
from artifact_gc.manifest import format as mf
from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.run import mark
from scenarios.helpers import ScenarioStore, list_tree


def _rows(url: str) -> dict[str, dict[str, Any]]:
    table = pq.read_table(url)
    return {row["artifact_version_id"]: row for row in table.to_pylist()}


def _mark(store: ScenarioStore, tmp_path: Path, **options: Any) -> tuple[Path, mf.ManifestInfo]:
    out = tmp_path / "mark.parquet"
    options.setdefault("older_than", timedelta(0))
    result = mark(store.sqlalchemy_url, str(out), MarkOptions(**options))
    return out, result.info


def _assert_matches_expectations(rows: dict[str, dict[str, Any]], store: ScenarioStore) -> None:
    assert set(rows) == store.all_ids
    mismatches = []
    for vid, expected in store.versions.items():
        row = rows[vid]
        if row["status"] != expected["status"] or sorted(row["reasons"]) != expected["reasons"]:
            mismatches.append(
                f"{expected['scenario']}/{expected['artifact_name']} {vid}: expected "
                f"{expected['status']} {expected['reasons']}, got {row['status']} "
                f"{sorted(row['reasons'])}"
            )
    assert not mismatches, "\n".join(mismatches)


def test_every_scenario_row_by_row(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    out, info = _mark(scenario_store, tmp_path)
    rows = _rows(str(out))
    _assert_matches_expectations(rows, scenario_store)
    root = str(scenario_store.store_root)
    for row in rows.values():
        assert row["store_root"] == root
        assert row["artifact_store_id"] == scenario_store.artifact_store_id
        assert row["project"] == scenario_store.expected["project"]
    assert info.counts["candidate"] == scenario_store.expected["counts"]["candidate"]
    assert info.complete and info.checksum and info.checksum.startswith("sha256:")
    mf.verify(str(out))


def test_model_linked_and_config_only_versions_are_kept(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    """The two versions `zenml artifact prune` deletes (verified) must be reachable."""
    out, _ = _mark(scenario_store, tmp_path)
    rows = _rows(str(out))
    model_only = scenario_store.ids(reason="model_link") - scenario_store.ids(reason="step_output")
    config_only = {vid for vid, v in scenario_store.versions.items()
                   if v["reasons"] == ["config_reference"]}
    assert model_only and config_only
    for vid in model_only:
        assert rows[vid]["status"] == "reachable"
        assert "model_link" in rows[vid]["reasons"]
    for vid in config_only:
        assert rows[vid]["status"] == "reachable"
        assert rows[vid]["reasons"] == ["config_reference"]


def test_grace_period_protects_young_versions(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    out, info = _mark(scenario_store, tmp_path, older_than=timedelta(hours=24))
    rows = _rows(str(out))
    assert info.counts["candidate"] == 0
    for vid in scenario_store.ids("candidate"):
        assert rows[vid]["status"] == "protected"
        assert rows[vid]["reasons"] == ["grace_period"]
    assert info.parameters["older_than"] == "1d"


def test_grace_period_boundary(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    """A version created just before the cutoff is a candidate, one just after is not."""
    candidates = sorted(scenario_store.ids("candidate"))
    old, young = candidates[0], candidates[1]
    db = sqlite3.connect(scenario_store.db_url.removeprefix("sqlite:///"))
    db.execute("UPDATE artifact_version SET created = datetime('now', '-3 days') WHERE id = ?",
               (old,))
    db.execute("UPDATE artifact_version SET created = datetime('now', '-47 hours') WHERE id = ?",
               (young,))
    db.commit()
    db.close()
    out, _ = _mark(scenario_store, tmp_path, older_than=timedelta(days=2))
    rows = _rows(str(out))
    assert rows[old]["status"] == "candidate"
    assert rows[young]["status"] == "protected" and rows[young]["reasons"] == ["grace_period"]


def test_keep_latest(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    out, _ = _mark(scenario_store, tmp_path, keep_latest=1)
    rows = _rows(str(out))
    by_artifact: dict[str, list[dict[str, Any]]] = {}
    for row in rows.values():
        by_artifact.setdefault(row["artifact_id"], []).append(row)
    checked = 0
    for versions in by_artifact.values():
        newest = max(versions, key=lambda r: (r["created"], r["version_number"] or 0))
        for row in versions:
            kept = "keep_latest" in row["reasons"]
            assert kept == (row is newest), row
            if len(versions) > 1 and row is not newest and not row["reasons"]:
                checked += 1
            if kept and row["status"] != "reachable":
                assert row["status"] == "protected"
    assert checked > 0, "the scenario store needs artifacts with several orphaned versions"
    assert sum(r["status"] == "candidate" for r in rows.values()) < len(
        scenario_store.ids("candidate")
    )


def test_scope_filters(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    names = {v["artifact_name"] for v in scenario_store.versions.values()}
    some = sorted(names)[0]
    out, info = _mark(scenario_store, tmp_path, artifacts=(some,))
    rows = _rows(str(out))
    assert {r["artifact_name"] for r in rows.values()} == {some}
    assert info.counts["versions_out_of_scope"] == len(scenario_store.all_ids) - len(rows)

    out2, _ = _mark(scenario_store, tmp_path / "2", exclude_artifacts=(some,))
    assert some not in {r["artifact_name"] for r in _rows(str(out2)).values()}

    project = scenario_store.expected["project"]
    out3, info3 = _mark(scenario_store, tmp_path / "3", projects=(project,))
    assert len(_rows(str(out3))) == len(scenario_store.all_ids)
    assert info3.parameters["projects"] == [project]


def test_unknown_project_is_a_usage_error(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["mark", "--db", scenario_store.sqlalchemy_url,
                                      "--older-than", "0s", "--project", "nope",
                                      "--out", str(tmp_path / "m.parquet")])
    assert result.exit_code == 2, result.output
    assert "no project named 'nope'" in result.output
    assert not (tmp_path / "m.parquet").exists()


def test_out_of_scope_versions_still_protect_overlapping_candidates(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    """Scoping must not hide a live version whose files lie inside a candidate's."""
    overlap = scenario_store.ids(reason="uri_overlap")
    assert overlap
    outer = sorted(overlap)[0]
    name = scenario_store.versions[outer]["artifact_name"]
    out, _ = _mark(scenario_store, tmp_path, artifacts=(name,))
    rows = _rows(str(out))
    assert rows[outer]["status"] == "protected"
    assert "uri_overlap" in rows[outer]["reasons"]


def test_mark_never_writes_to_the_store(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    db_file = Path(scenario_store.db_url.removeprefix("sqlite:///"))
    before = hashlib.sha256(db_file.read_bytes()).hexdigest()
    tree_before = list_tree(scenario_store.store_root)
    _mark(scenario_store, tmp_path, sizes=True)
    assert hashlib.sha256(db_file.read_bytes()).hexdigest() == before
    assert list_tree(scenario_store.store_root) == tree_before


def test_sizes_are_measured_for_candidates(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    out, info = _mark(scenario_store, tmp_path, sizes=True)
    rows = _rows(str(out))
    root = scenario_store.store_root
    tree = {str(root / rel): size for rel, size in list_tree(root).items()}
    for row in rows.values():
        if row["status"] != "candidate":
            assert row["size_bytes"] is None
            continue
        uri = row["uri"].rstrip("/")
        expected = sum(size for path, size in tree.items()
                       if str(path) == uri or str(path).startswith(uri + "/"))
        assert row["size_bytes"] == expected
        assert row["file_count"] >= 1
    assert info.bytes["candidate"] == sum(
        r["size_bytes"] for r in rows.values() if r["status"] == "candidate"
    )


def test_a_table_nobody_anticipated_keeps_versions_alive(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    victim = sorted(scenario_store.ids("candidate"))[0]
    db = sqlite3.connect(scenario_store.db_url.removeprefix("sqlite:///"))
    db.execute(
        "CREATE TABLE future_feature (id CHAR(32) PRIMARY KEY, av CHAR(32) "
        "REFERENCES artifact_version (id) ON DELETE CASCADE)"
    )
    db.execute("INSERT INTO future_feature VALUES ('x', ?)", (victim,))
    db.commit()
    db.close()
    out, info = _mark(scenario_store, tmp_path)
    row = _rows(str(out))[victim]
    assert row["status"] == "reachable"
    assert row["reasons"] == ["fk:future_feature"]
    future = {"table": "future_feature", "column": "av", "reason": "fk:future_feature"}
    assert future in info.schema["references"]


def test_unknown_schema_version_warns_and_reflects(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    db = sqlite3.connect(scenario_store.db_url.removeprefix("sqlite:///"))
    db.execute("UPDATE alembic_version SET version_num = '0.99.0'")
    db.commit()
    db.close()
    with pytest.warns(UserWarning, match="0.99.0"):
        out, info = _mark(scenario_store, tmp_path)
    assert any("0.99.0" in w for w in info.warnings)
    _assert_matches_expectations(_rows(str(out)), scenario_store)


def test_missing_core_table_is_an_error_and_writes_nothing(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    db = sqlite3.connect(scenario_store.db_url.removeprefix("sqlite:///"))
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute("DROP TABLE artifact_version")
    db.commit()
    db.close()
    with pytest.raises(SchemaError, match="artifact_version"):
        _mark(scenario_store, tmp_path)
    assert list(tmp_path.iterdir()) == []
    result = CliRunner().invoke(cli, ["mark", "--db", scenario_store.sqlalchemy_url,
                                      "--out", str(tmp_path / "m.parquet")])
    assert result.exit_code == 4
    assert "missing core table" in result.output


def test_failed_mark_leaves_no_manifest(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    """A mark that fails half-way (here: measuring sizes on an unknown protocol)."""
    out = tmp_path / "mark.parquet"
    options = MarkOptions(older_than=timedelta(0), sizes=True,
                          store_roots={scenario_store.artifact_store_id: "nosuchfs://x"})
    with pytest.raises(Exception, match="nosuchfs"):
        mark(scenario_store.sqlalchemy_url, str(out), options)
    assert list(tmp_path.iterdir()) == []


def test_store_root_override_protects_everything_outside(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    out, _ = _mark(scenario_store, tmp_path,
                   store_roots={scenario_store.artifact_store_id: str(elsewhere)})
    rows = _rows(str(out))
    assert not [r for r in rows.values() if r["status"] == "candidate"]
    for vid in scenario_store.ids("candidate"):
        assert "outside_store_root" in rows[vid]["reasons"]


def test_a_visualization_outside_the_store_root_protects_its_version(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    """Issue 10, defect 2: every URI a version names, its visualizations' too, must lie
    inside its store's root. A version with a visualization at /etc/... was listed as
    a candidate (the sweep refuses it, so the review overstated what it deletes) and
    --sizes measured the files outside the root."""
    etc = tmp_path / "etc"  # stands for /etc: outside the store root
    etc.mkdir()
    (etc / "passwd").write_bytes(b"x" * 4096)
    outside, climbing = sorted(scenario_store.ids("candidate"))[:2]
    db = sqlite3.connect(scenario_store.db_url.removeprefix("sqlite:///"))
    (uri,) = db.execute("SELECT uri FROM artifact_version WHERE id = ?", (climbing,)).fetchone()
    # Spelled inside the version's directory, but its '..' segments climb out to /etc.
    climbed = uri.rstrip("/") + "/.." * uri.count("/") + str(etc / "passwd")
    for version_id, viz_uri in ((outside, str(etc / "passwd")), (climbing, climbed)):
        db.execute(
            "INSERT INTO artifact_visualization (id, created, updated, type, uri, "
            "artifact_version_id) VALUES (?, datetime('now'), datetime('now'), 'html', ?, ?)",
            (uuid.uuid4().hex, viz_uri, version_id))
    db.commit()
    db.close()
    out, info = _mark(scenario_store, tmp_path / "m", sizes=True)
    rows = _rows(str(out))
    for version_id in (outside, climbing):
        assert rows[version_id]["status"] == "protected", rows[version_id]
        assert rows[version_id]["reasons"] == ["outside_store_root"]
        assert rows[version_id]["size_bytes"] is None
    assert info.counts["candidate"] == scenario_store.expected["counts"]["candidate"] - 2


def test_fingerprint_and_metadata(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    out, info = _mark(scenario_store, tmp_path)
    stored = mf.read_info(str(out))
    assert stored.mark_id == info.mark_id
    assert stored.format_version == mf.FORMAT_VERSION
    assert stored.database["dialect"] == "sqlite"
    assert stored.database["schema_version"] == "0.98.0"
    assert stored.database["store_id"]
    assert stored.database["database"] == str(
        Path(scenario_store.db_url.removeprefix("sqlite:///")).resolve()
    )
    reasons = {r["reason"] for r in stored.schema["references"]}
    assert {"step_input", "step_output", "model_link", "run_output", "hook_output"} <= reasons
    with duckdb.connect() as con:
        raw = con.execute(
            f"SELECT decode(value) FROM parquet_kv_metadata('{out}') "
            "WHERE decode(key) = 'artifact_gc'"
        ).fetchone()
    assert raw is not None and json.loads(raw[0])["mark_id"] == info.mark_id


def _rewrite(src: Path, dst: Path, change_rows: Any = None, change_info: Any = None) -> None:
    table = pq.read_table(src)
    info = json.loads(table.schema.metadata[mf.METADATA_KEY])
    if change_rows:
        table = change_rows(table)
    if change_info:
        change_info(info)
    table = table.replace_schema_metadata({mf.METADATA_KEY: json.dumps(info).encode()})
    pq.write_table(table, dst)


def test_tampered_incomplete_and_unknown_manifests_are_refused(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    out, _ = _mark(scenario_store, tmp_path)

    def reachable_to_candidate(table: Any) -> Any:
        import pyarrow as pa

        statuses = table["status"].to_pylist()
        statuses[statuses.index("reachable")] = "candidate"
        return table.set_column(table.schema.get_field_index("status"), "status",
                                pa.array(statuses))

    cases = {
        "checksum": dict(change_rows=reachable_to_candidate),
        "incomplete": dict(change_info=lambda i: i.update(complete=False)),
        "unknown_format_version": dict(change_info=lambda i: i.update(format_version="2.0")),
    }
    for reason, change in cases.items():
        bad = tmp_path / f"{reason}.parquet"
        _rewrite(out, bad, **change)
        with pytest.raises(ManifestRefused) as refused:
            mf.verify(str(bad))
        assert refused.value.reason == reason
    moved = tmp_path / "moved.parquet"
    _rewrite(out, moved, change_info=lambda i: i["database"].update(store_id="0" * 32))
    with pytest.raises(ManifestRefused, match="checksum"):
        mf.verify(str(moved))
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    with pytest.raises(ManifestRefused) as refused:
        mf.verify(str(truncated))
    assert refused.value.reason == "unreadable"


def test_cli_mark_json_and_summary(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["mark", "--db", scenario_store.sqlalchemy_url, "--older-than",
                                 "0s", "--out", str(tmp_path) + "/", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert Path(data["manifest"]).parent == tmp_path
    assert data["counts"]["candidate"] == scenario_store.expected["counts"]["candidate"]
    assert "password" not in result.output
    table = runner.invoke(cli, ["mark", "--db", scenario_store.sqlalchemy_url, "--older-than",
                                "0s", "--out", str(tmp_path / "t.parquet")])
    assert table.exit_code == 0, table.output
    assert "Decision by status and reason" in table.output
    assert f"Manifest: {tmp_path / 't.parquet'}" in table.output


def test_default_database_is_zenml_global_config(
    scenario_store: ScenarioStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ZENML_STORE_URL", raising=False)
    monkeypatch.setenv("ZENML_CONFIG_PATH", str(scenario_store.config_dir))
    monkeypatch.setenv("ARTIFACT_GC_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli, ["mark", "--older-than", "0s", "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.output)["manifest"]
    assert manifest.startswith(str(tmp_path / "home"))
    assert mf.read_info(manifest).database["database"] == str(
        Path(scenario_store.db_url.removeprefix("sqlite:///")).resolve()
    )


def test_the_manifest_file_is_named_after_the_mark_id_it_records(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    """Issue 10, defect 3: the CLI named the file after one id and mark() recorded
    another. Through the real ``gc`` console script, into the default directory and
    into a directory given with --out, the id in the name is the recorded one."""
    gc = str(Path(sys.executable).with_name("gc"))
    home, given = tmp_path / "home", tmp_path / "given"
    given.mkdir()
    env = {**os.environ, "ARTIFACT_GC_HOME": str(home)}
    for out in ([], ["--out", str(given)]):
        done = subprocess.run(
            [gc, "mark", "--db", scenario_store.sqlalchemy_url, "--older-than", "0s",
             "--json", *out], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        manifest = Path(json.loads(done.stdout)["manifest"])
        assert manifest.parent == (given if out else home)
        # mark-<started>-<first 8 hex of the mark id>.parquet
        named = manifest.name.removesuffix(".parquet").rsplit("-", 1)[1]
        recorded = json.loads(pq.read_schema(manifest).metadata[b"artifact_gc"])["mark_id"]
        assert len(named) == 8 and recorded.startswith(named), (manifest.name, recorded)
        assert json.loads(done.stdout)["mark_id"] == recorded


def test_rest_url_and_bad_options_are_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    rest = runner.invoke(cli, ["mark", "--db", "https://zenml.example.invalid"])
    assert rest.exit_code == 3 and "database URL" in rest.output
    postgres = runner.invoke(cli, ["mark", "--db", "postgresql://x/y"])
    assert postgres.exit_code == 2 and "unsupported database URL" in postgres.output
    missing = runner.invoke(cli, ["mark", "--db", f"sqlite:///{tmp_path}/nope.db"])
    assert missing.exit_code == 3 and "does not exist" in missing.output
    duration = runner.invoke(cli, ["mark", "--older-than", "soon"])
    assert duration.exit_code == 2 and "cannot read duration" in duration.output
    keep = runner.invoke(cli, ["mark", "--keep-latest", "-1"])
    assert keep.exit_code == 2
    root = runner.invoke(cli, ["mark", "--db", f"sqlite:///{tmp_path}/nope.db",
                               "--store-root", "garbage"])
    assert root.exit_code in (2, 3)


@pytest.mark.parametrize(("value", "words"), [
    # "M" is a month to systemd, pandas and most people, and a minute nowhere else:
    # read as minutes, "6M" would turn a six-month grace period into six minutes.
    ("6M", "ambiguous"),
    ("1d6M", "ambiguous"),
    # Too long for a timedelta: a usage error, not an unexpected failure (exit 1).
    ("99999999999w", "too long"),
    ("1" * 400 + "s", "too long"),
])
def test_older_than_that_cannot_mean_what_it_says_is_a_usage_error(value: str,
                                                                    words: str) -> None:
    result = CliRunner().invoke(cli, ["mark", "--older-than", value])
    assert result.exit_code == 2, result.output
    assert words in result.output and "Traceback" not in result.output


@pytest.mark.mariadb
def test_mark_on_mariadb_created_by_zenml(
    mariadb_scenario_store: ScenarioStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = mariadb_scenario_store
    monkeypatch.setenv("ZENML_CONFIG_PATH", str(store.config_dir))
    out = tmp_path / "mark.parquet"
    result = mark(store.sqlalchemy_url, str(out), MarkOptions(older_than=timedelta(0)))
    _assert_matches_expectations(_rows(str(out)), store)
    assert result.info.database["dialect"] == "mysql"
    assert result.info.database["host"] == "127.0.0.1"
    assert "artifact-gc-test-pw" not in json.dumps(result.info.as_dict())
    mf.verify(str(out))


def test_copy_of_store_is_a_different_store(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    """The fingerprint tells a copy at another path from the original."""
    from artifact_gc.metadb.engine import create_engine
    from artifact_gc.metadb.fingerprint import DatabaseFingerprint, fingerprint

    original = Path(scenario_store.db_url.removeprefix("sqlite:///"))
    copy = tmp_path / "copy.db"
    shutil.copy(original, copy)
    a = fingerprint(create_engine(f"sqlite:///{original}"), "0.98.0")
    b = fingerprint(create_engine(f"sqlite:///{copy}"), "0.98.0")
    assert a.store_id == b.store_id
    assert not a.same_store(b)
    assert a.same_store(DatabaseFingerprint.from_dict(a.as_dict()))


def test_an_id_that_is_not_a_uuid_stops_the_mark(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    """A reference that cannot be read must not silently turn into "no reference"."""
    db = sqlite3.connect(scenario_store.db_url.removeprefix("sqlite:///"))
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute("UPDATE step_run_output_artifact SET artifact_id = 'not-an-id' "
               "WHERE rowid = (SELECT min(rowid) FROM step_run_output_artifact)")
    db.commit()
    db.close()
    with pytest.raises(SchemaError, match="step_run_output_artifact.artifact_id"):
        _mark(scenario_store, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_lazy_loader_in_a_snapshot_keeps_the_version_it_names(
    scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    """``Client().get_artifact_version(id)`` in a pipeline body is stored in the
    snapshot's step configuration as a lazy loader, resolved only when the step starts:
    a schedule or a rerun of that snapshot will consume the version, so mark keeps it
    (32 hex or dashed, as the user wrote it). A longer hex run that merely contains a
    candidate's id is not a reference."""
    import json
    import uuid

    store = scenario_store
    named_hex, named_dashed, near_miss = sorted(store.ids("candidate"))[:3]

    def loader(version_id: str) -> dict[str, Any]:
        # The shape of zenml.client_lazy_loader.ClientLazyLoader, as pydantic dumps it.
        return {"method_name": "get_artifact_version", "exclude_next_call": False,
                "call_chain": [{"attribute_name": None, "is_call": True,
                                "call_args": [version_id], "call_kwargs": {},
                                "selector": None}]}

    db = sqlite3.connect(store.db_url.removeprefix("sqlite:///"))
    row_id, config_text = db.execute(
        "SELECT id, config FROM step_configuration WHERE config LIKE "
        "'%\"client_lazy_loaders\":{}%' LIMIT 1").fetchone()
    config = json.loads(config_text)
    overrides = config["step_config_overrides"]
    assert overrides.get("client_lazy_loaders") == {}, "ZenML's key moved: see CONFIG_ID_KEYS"
    overrides["client_lazy_loaders"] = {
        "a": loader(named_hex),
        "b": loader(str(uuid.UUID(named_dashed))),
        "c": loader("00ff" + near_miss + "00ff"),
    }
    # Serialized as ZenML writes it (pydantic's compact JSON), so the empty-map filter
    # sees the same spelling it sees in a real store.
    db.execute("UPDATE step_configuration SET config = ? WHERE id = ?",
               (json.dumps(config, separators=(",", ":")), row_id))
    db.commit()
    db.close()
    out, info = _mark(store, tmp_path)
    rows = _rows(str(out))
    for vid in (named_hex, named_dashed):
        assert rows[vid]["status"] == "reachable", vid
        assert rows[vid]["reasons"] == ["config_reference"]
    assert rows[near_miss]["status"] == "candidate"
    assert info.counts["candidate"] == store.expected["counts"]["candidate"] - 2
