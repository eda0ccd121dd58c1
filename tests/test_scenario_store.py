"""Tests of the test infrastructure: the scenario stores hold what expected.json claims.

The claims are checked against the raw tables with an independent oracle (plain SQL,
no artifact_gc code), so a ZenML behaviour change or a broken build fails here first.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from scenarios.helpers import (
    REQUIRE_SERVERS_ENV,
    ScenarioStore,
    db_rows,
    integrity_problems,
    list_tree,
    make_engine,
    mariadb_admin_connect,
    mariadb_available,
    mariadb_create_database,
    mariadb_drop_database,
    require_server,
    restore_tree,
    table_counts,
)

HEX32 = re.compile(r"^[0-9a-f]{32}$")
STATUSES = {"reachable", "candidate", "protected"}
LINK_REASONS = {
    "step_output": ("step_run_output_artifact", "artifact_id"),
    "step_input": ("step_run_input_artifact", "artifact_id"),
    "model_link": ("model_versions_artifacts", "artifact_version_id"),
    "run_output": ("pipeline_run_output", "artifact_id"),
    "hook_output": ("hook_invocation_output_artifact", "artifact_version_id"),
}
EXPECTED_SCENARIOS = {
    "deleted_runs",
    "model_link",
    "run_output",
    "hook_output",
    "tagged_metadata",
    "preexisting",
    "uri_overlap",
    "config_reference",
    "versions",
}


def dashed(hex_id: str) -> str:
    return str(uuid.UUID(hex_id))


# ---------------------------------------------------------------------------
# An independent oracle computed from the raw tables
# ---------------------------------------------------------------------------


def observed(store: ScenarioStore) -> dict[str, Any]:
    """Link reasons, config references, save types and URIs straight from the DB."""
    engine = make_engine(store.db_url)
    try:
        with engine.connect() as conn:
            versions = {
                r.id: r
                for r in conn.execute(
                    sa.text("SELECT id, uri, save_type, artifact_store_id FROM artifact_version")
                )
            }
            reasons: dict[str, set[str]] = defaultdict(set)
            for reason, (table, column) in LINK_REASONS.items():
                for (vid,) in conn.execute(sa.text(f"SELECT {column} FROM {table}")):
                    reasons[vid].add(reason)
            configs = [c for (c,) in conn.execute(sa.text("SELECT config FROM step_configuration"))]
    finally:
        engine.dispose()
    blob = "\n".join(configs)
    for vid in versions:
        if dashed(vid) in blob:
            reasons[vid].add("config_reference")
    return {"versions": versions, "reasons": reasons, "config_blob": blob}


def _nested(a: str, b: str) -> bool:
    """a and b are equal or one directory contains the other."""
    a, b = a.rstrip("/") + "/", b.rstrip("/") + "/"
    return a.startswith(b) or b.startswith(a)


def check_store_matches_expected(store: ScenarioStore) -> None:
    exp = store.expected
    obs = observed(store)
    db_ids = set(obs["versions"])

    # ids and bookkeeping
    assert db_ids == store.all_ids == set(store.versions), "expected.json misses versions"
    assert all(HEX32.match(v) for v in db_ids)
    assert set(exp["scenarios"]) == EXPECTED_SCENARIOS
    for name, scenario in exp["scenarios"].items():
        assert scenario["versions"], f"scenario {name} has no versions"
        assert all(store.versions[v]["scenario"] == name for v in scenario["versions"])
    counted = {s: len(store.ids(s)) for s in STATUSES}
    assert counted == exp["counts"]
    assert all(counted.values())

    # the artifact store and its root
    root = store.store_root
    assert root == store.config_dir / "local_stores" / dashed(store.artifact_store_id)
    assert root.is_dir()
    assert HEX32.match(store.artifact_store_id)
    rows = db_rows(store.db_url, "stack_component", ["id", "type", "flavor"])
    assert (store.artifact_store_id, "artifact_store", "local") in rows
    assert (exp["project_id"], exp["project"]) in db_rows(store.db_url, "project", ["id", "name"])

    live_uris = [obs["versions"][v].uri for v in store.reachable]
    for vid, v in store.versions.items():
        row = obs["versions"][vid]
        got = obs["reasons"].get(vid, set())
        assert row.uri == v["uri"] and row.save_type == v["save_type"], vid
        assert row.artifact_store_id == store.artifact_store_id, vid
        assert Path(row.uri).exists(), f"{vid} {row.uri} missing on disk"
        assert row.uri.startswith(str(root) + "/"), vid
        assert v["status"] in STATUSES
        if v["status"] == "reachable":
            assert got == set(v["reasons"]), (vid, v, got)
        else:
            assert not got, f"{v['status']} version {vid} ({v['artifact_name']}) is linked: {got}"
        if v["status"] == "candidate":
            assert v["reasons"] == []
            assert v["save_type"] != "preexisting"
            assert not any(_nested(row.uri, u) for u in live_uris), vid
        if v["status"] == "protected":
            assert v["reasons"] in (["preexisting"], ["uri_overlap"]), vid
            if v["reasons"] == ["preexisting"]:
                assert row.save_type == "preexisting"
            else:
                assert any(_nested(row.uri, u) for u in live_uris), vid
    for path in exp["unmanaged_paths"]:
        assert Path(path).is_file()


def check_scenario_rows(store: ScenarioStore) -> None:
    """Targeted checks, one per scenario, stated the way a reviewer would."""
    exp, url = store.expected, store.db_url
    obs = observed(store)
    step_links = db_rows(url, "step_run_output_artifact", ["artifact_id"]) | db_rows(
        url, "step_run_input_artifact", ["artifact_id"]
    )
    step_linked = {r[0] for r in step_links}
    model_linked = {r[0] for r in db_rows(url, "model_versions_artifacts", ["artifact_version_id"])}

    # deleted runs: gone, their outputs unlinked but still present
    runs = {r[0] for r in db_rows(url, "pipeline_run", ["id"])}
    sc = exp["scenarios"]["deleted_runs"]
    assert not set(sc["deleted_run_ids"]) & runs
    assert set(sc["kept_run_ids"]) <= runs
    orphans = store.ids("candidate", scenario="deleted_runs")
    assert len(orphans) == 4 and not orphans & step_linked

    # model link: linked to a model, to no step
    (linked,) = store.ids(scenario="model_link")
    assert linked in model_linked and linked not in step_linked

    # run output only
    only = store.ids(scenario="run_output", reason="run_output") - store.ids(reason="step_output")
    assert len(only) == 1
    (only_id,) = only
    assert obs["reasons"][only_id] == {"run_output"}
    assert set(exp["scenarios"]["run_output"]["run_ids"]) <= runs

    # hook output
    (hook_id,) = store.ids(reason="hook_output")
    assert obs["reasons"][hook_id] == {"hook_output"}
    hook_rows = db_rows(url, "hook_invocation_output_artifact", ["artifact_version_id"])
    assert (hook_id,) in hook_rows

    # config-only external version: dashed id in step_configuration.config, no link at all
    (cfg_only,) = (
        store.ids(scenario="config_reference")
        - store.ids(reason="step_input")
        - (store.ids(reason="step_output"))
    )
    assert store.versions[cfg_only]["save_type"] == "external"
    assert dashed(cfg_only) in obs["config_blob"]
    assert obs["reasons"][cfg_only] == {"config_reference"}
    for table, column in LINK_REASONS.values():
        assert (cfg_only,) not in db_rows(url, table, [column]), table
    statuses = db_rows(url, "step_run", ["name", "status"])
    assert ("use_external", "cached") in statuses

    # tags and metadata on the manual candidates (polymorphic, no FK)
    tagged = store.ids(scenario="tagged_metadata")
    assert len(tagged) == 2 and tagged <= store.candidates
    tags = db_rows(url, "tag_resource", ["resource_id", "resource_type"])
    meta = db_rows(url, "run_metadata_resource", ["resource_id", "resource_type"])
    for vid in tagged:
        assert (vid, "artifact_version") in tags
        assert (vid, "artifact_version") in meta
    artifact_id = store.versions[next(iter(tagged))]["artifact_id"]
    assert (artifact_id, "artifact") in tags
    # step outputs of deleted runs carry run metadata too
    assert any((vid, "artifact_version") in meta for vid in orphans)

    # preexisting folder
    (pre,) = store.ids(scenario="preexisting")
    folder = Path(exp["scenarios"]["preexisting"]["folder"])
    assert store.versions[pre]["uri"] == str(folder)
    assert list_tree(folder) == {"a.csv": 8, "sub/b.txt": 11}

    # uri overlap, both directions
    overlap = {store.versions[v]["artifact_name"]: v for v in store.ids(scenario="uri_overlap")}
    uri = {name: store.versions[v]["uri"] for name, v in overlap.items()}
    assert uri["overlap_inner"].startswith(uri["overlap_outer"] + "/")
    assert uri["overlap_nested"].startswith(uri["overlap_host"] + "/")
    assert store.versions[overlap["overlap_outer"]]["status"] == "protected"
    assert store.versions[overlap["overlap_nested"]]["status"] == "protected"

    # several versions per artifact, older ones orphaned
    by_artifact: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in store.versions.values():
        by_artifact[v["artifact_name"]].append(v)
    multi = exp["scenarios"]["versions"]["multi_version_artifacts"]
    assert {name for name, vs in by_artifact.items() if len(vs) > 1} == set(multi)
    for name in ("runs_data", "runs_summary"):
        data = sorted(by_artifact[name], key=lambda v: v["version_number"])
        assert [v["status"] for v in data] == ["candidate"] * 2 + ["reachable"] * 2
    manual = sorted(by_artifact["versioned_manual"], key=lambda v: v["version_number"])
    assert [(v["version_number"], v["status"]) for v in manual] == [
        (1, "candidate"),
        (2, "candidate"),
        (3, "candidate"),
    ]


# ---------------------------------------------------------------------------
# SQLite
# ---------------------------------------------------------------------------


def test_sqlite_store_matches_expected(scenario_store: ScenarioStore) -> None:
    store = scenario_store
    assert store.backend == "sqlite"
    assert store.db_url == (f"sqlite:///{store.config_dir}/local_stores/default_zen_store/zenml.db")
    assert store.expected["schema_version"] == "0.98.0"
    check_store_matches_expected(store)


def test_sqlite_scenario_rows(scenario_store: ScenarioStore) -> None:
    check_scenario_rows(scenario_store)


def test_sqlite_integrity_clean(scenario_store: ScenarioStore) -> None:
    assert integrity_problems(scenario_store.db_url) == []


def _orphan_a_version_raw(store: ScenarioStore, vid: str) -> None:
    """Delete a version row with foreign keys OFF, leaving every dependent row dangling."""
    engine = make_engine(store.db_url)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            else:
                conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
            conn.execute(sa.text("DELETE FROM artifact_version WHERE id = :i"), {"i": vid})
            conn.execute(
                sa.text("DELETE FROM run_metadata_resource WHERE resource_id = :i"), {"i": vid}
            )
    finally:
        engine.dispose()


def check_integrity_detects_damage(store: ScenarioStore) -> None:
    assert integrity_problems(store.db_url) == []
    vid = next(iter(store.ids(scenario="tagged_metadata")))
    _orphan_a_version_raw(store, vid)
    problems = integrity_problems(store.db_url)
    text = "\n".join(problems)
    assert f"tag_resource: resource_type=artifact_version resource_id={vid}" in text
    assert "artifact_visualization" in text  # FK check (PRAGMA or LEFT JOIN)
    assert "has no run_metadata_resource left" in text


def test_sqlite_integrity_detects_damage(scenario_store: ScenarioStore) -> None:
    check_integrity_detects_damage(scenario_store)


def test_sqlite_store_is_restored_between_tests(
    scenario_store: ScenarioStore, _sqlite_pristine: Any
) -> None:
    store = scenario_store
    files_before = list_tree(store.config_dir)
    rows_before = db_rows(store.db_url, "artifact_version")
    victim = next(iter(store.candidates))
    shutil.rmtree(store.versions[victim]["uri"])
    engine = make_engine(store.db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        conn.execute(sa.text("DELETE FROM artifact_version WHERE id = :i"), {"i": victim})
    engine.dispose()
    assert len(db_rows(store.db_url, "artifact_version")) == len(rows_before) - 1
    assert list_tree(store.config_dir) != files_before
    # what the fixture does before every test
    restore_tree(_sqlite_pristine.copy, _sqlite_pristine.live)
    assert list_tree(store.config_dir) == files_before
    assert db_rows(store.db_url, "artifact_version") == rows_before


def test_sqlite_mutations_do_not_leak_a(scenario_store: ScenarioStore) -> None:
    shutil.rmtree(scenario_store.store_root)
    (scenario_store.config_dir / "expected.json").write_text("{}")


def test_sqlite_mutations_do_not_leak_b(scenario_store: ScenarioStore) -> None:
    # runs after _a: the fixture restored everything it removed
    assert scenario_store.store_root.is_dir()
    assert json.loads((scenario_store.config_dir / "expected.json").read_text())["versions"]
    for v in scenario_store.versions.values():
        assert Path(v["uri"]).exists()


def test_list_tree_and_table_counts(scenario_store: ScenarioStore) -> None:
    store = scenario_store
    tree = list_tree(store.store_root)
    assert "code_uploads/not_an_artifact.txt" in tree
    assert all(size >= 0 for size in tree.values())
    with_dirs = list_tree(store.store_root, include_dirs=True)
    assert "user_data/preexisting_folder/sub/" in with_dirs
    assert list_tree(store.store_root / "does-not-exist") == {}
    counts = table_counts(store.db_url, ["artifact_version", "artifact"])
    assert counts["artifact_version"] == len(store.all_ids)


# ---------------------------------------------------------------------------
# MariaDB
# ---------------------------------------------------------------------------


def test_mariadb_store_matches_expected(mariadb_scenario_store: ScenarioStore) -> None:
    store = mariadb_scenario_store
    assert store.backend == "mysql"
    assert store.db_url.startswith("mysql://zenml:")
    assert store.sqlalchemy_url.startswith("mysql+pymysql://zenml:")
    assert store.env()["ZENML_STORE_URL"] == store.db_url
    check_store_matches_expected(store)
    check_scenario_rows(store)
    assert integrity_problems(store.db_url) == []


def test_mariadb_clone_keeps_foreign_keys(
    mariadb_scenario_store: ScenarioStore, mariadb_pristine_store: ScenarioStore
) -> None:
    a = sa.inspect(sa_engine := make_engine(mariadb_scenario_store.db_url))
    fks = {
        t: sorted(
            (fk["referred_table"], tuple(fk["constrained_columns"]), fk["options"].get("ondelete"))
            for fk in a.get_foreign_keys(t)
        )
        for t in ("step_run_output_artifact", "model_versions_artifacts", "pipeline_run_output")
    }
    sa_engine.dispose()
    b = sa.inspect(sb_engine := make_engine(mariadb_pristine_store.db_url))
    fks_b = {
        t: sorted(
            (fk["referred_table"], tuple(fk["constrained_columns"]), fk["options"].get("ondelete"))
            for fk in b.get_foreign_keys(t)
        )
        for t in fks
    }
    sb_engine.dispose()
    assert fks == fks_b
    # MariaDB omits "ON DELETE RESTRICT" (its default) from SHOW CREATE TABLE, so
    # SQLAlchemy reflects ondelete=None there, not "RESTRICT".
    assert ("artifact_version", ("artifact_id",), None) in fks["pipeline_run_output"]
    assert mariadb_scenario_store.db_url != mariadb_pristine_store.db_url
    assert table_counts(mariadb_scenario_store.db_url) == table_counts(
        mariadb_pristine_store.db_url
    )


def test_mariadb_integrity_detects_damage(mariadb_scenario_store: ScenarioStore) -> None:
    check_integrity_detects_damage(mariadb_scenario_store)


def test_mariadb_url_factory(mariadb_url_factory: Any) -> None:
    url = mariadb_url_factory("gc_probe")
    assert url.startswith("mysql://zenml:") and "@127.0.0.1:3306/gc_probe_" in url
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (id INT PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    engine.dispose()
    assert db_rows(url, "t") == {(1,)}
    assert mariadb_url_factory() != url


def test_mariadb_drop_database() -> None:
    why = mariadb_available()
    if why:
        require_server(why)
    name = f"gc_drop_{uuid.uuid4().hex[:8]}"
    mariadb_create_database(name)
    mariadb_drop_database(name)
    conn = mariadb_admin_connect()
    with conn.cursor() as cur:
        cur.execute("SHOW DATABASES LIKE %s", (name,))
        assert cur.fetchall() == ()
    conn.close()


# ---------------------------------------------------------------------------
# require_server and moto
# ---------------------------------------------------------------------------


def test_require_server_skips_or_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_SERVERS_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no server"):
        require_server("no server")
    monkeypatch.setenv(REQUIRE_SERVERS_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="no server"):
        require_server("no server")


def test_moto_s3(moto_s3: Any) -> None:
    import boto3
    import fsspec

    fs, path = fsspec.url_to_fs(moto_s3.url("store/a"), **moto_s3.storage_options)
    fs.pipe({f"{path}/x/data.json": b"{}", f"{path}/y.bin": b"12345"})
    assert list_tree(moto_s3.url("store/a"), moto_s3.storage_options) == {
        "x/data.json": 2,
        "y.bin": 5,
    }
    # the env vars alone route boto3 to moto on loopback, with dummy credentials
    assert os.environ["AWS_ENDPOINT_URL"] == moto_s3.endpoint_url
    assert moto_s3.endpoint_url.startswith("http://127.0.0.1:")
    s3 = boto3.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=moto_s3.bucket)["Contents"]}
    assert keys == {"store/a/x/data.json", "store/a/y.bin"}
    moto_s3.client().delete_objects(
        Bucket=moto_s3.bucket, Delete={"Objects": [{"Key": "store/a/y.bin"}]}
    )
    assert list_tree(moto_s3.url("store/a"), moto_s3.storage_options) == {"x/data.json": 2}
    assert moto_s3.filesystem().ls(moto_s3.bucket) == [f"{moto_s3.bucket}/store"]


# ---------------------------------------------------------------------------
# ZenML itself can use the stores (restored SQLite at its fixed path, cloned MariaDB)
# ---------------------------------------------------------------------------

ZENML_PROBE = """
from zenml.client import Client
c = Client()
print(c.list_artifact_versions(size=1).total, c.active_stack.artifact_store.path)
"""


def _zenml_sees(store: ScenarioStore, tmp_path: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env.update(store.env())
    probe = tmp_path / "zenml_probe.py"  # ZenML needs a main module with a file
    probe.write_text(ZENML_PROBE)
    proc = subprocess.run(
        [sys.executable, str(probe)],
        env=env,
        cwd=store.config_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    total, root = proc.stdout.strip().splitlines()[-1].split(" ", 1)
    return int(total), root


def test_zenml_client_reads_sqlite_store(scenario_store: ScenarioStore, tmp_path: Path) -> None:
    assert _zenml_sees(scenario_store, tmp_path) == (
        len(scenario_store.all_ids),
        str(scenario_store.store_root),
    )


def test_zenml_client_reads_mariadb_clone(
    mariadb_scenario_store: ScenarioStore, tmp_path: Path
) -> None:
    assert _zenml_sees(mariadb_scenario_store, tmp_path) == (
        len(mariadb_scenario_store.all_ids),
        str(mariadb_scenario_store.store_root),
    )
