"""Build a real ZenML 0.98.0 store holding every scenario the GC must get right.

Run it as a subprocess (ZenML keeps global state), never import it from a test:

    ZENML_CONFIG_PATH=<dir> ZENML_ANALYTICS_OPT_IN=false \\
        [ZENML_STORE_URL=mysql://zenml:<pw>@127.0.0.1/<db>] \\
        python tests/scenarios/build_store.py <dir>

Without ``ZENML_STORE_URL`` the store is SQLite at
``<dir>/local_stores/default_zen_store/zenml.db``. The default local artifact store
lives under ``<dir>/local_stores/<component uuid>`` in both cases.

It writes ``<dir>/expected.json`` (see ``tests/scenarios/README.md``): for every
artifact version in the store, what a correct GC decides and why. Every version in
the database must be claimed by exactly one scenario, or the build fails.

Everything is produced through ZenML's public API (pipelines, ``zenml.Client``,
``save_artifact``, ``register_artifact``, ``link_artifact_to_model``, ``run_hook``,
``log_metadata``, ``add_tags``), then checked against the raw tables, so that a
scenario whose rows are not what we claim fails here rather than in a GC test.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

T0 = time.monotonic()

for _name, _value in {
    "ZENML_ANALYTICS_OPT_IN": "false",
    "ZENML_DISABLE_STEP_LOGS_STORAGE": "true",
    "ZENML_DISABLE_PIPELINE_LOGS_STORAGE": "true",
    "ZENML_LOGGING_VERBOSITY": "WARN",
    "ZENML_ENABLE_RICH_TRACEBACK": "false",
    "ZENML_DEBUG": "false",
    "AUTO_OPEN_DASHBOARD": "false",
}.items():
    os.environ.setdefault(_name, _value)

if "ZENML_CONFIG_PATH" not in os.environ:
    sys.exit("build_store.py: set ZENML_CONFIG_PATH")

import sqlalchemy as sa  # noqa: E402
from zenml import (  # noqa: E402
    ExternalArtifact,
    Model,
    add_tags,
    link_artifact_to_model,
    log_metadata,
    pipeline,
    register_artifact,
    run_hook,
    save_artifact,
    step,
)
from zenml.client import Client  # noqa: E402

FORMAT_VERSION = 1
REACHABLE, CANDIDATE, PROTECTED = "reachable", "candidate", "protected"

# ---------------------------------------------------------------------------
# Steps and pipelines (tiny; every output is a small builtin object).
# ---------------------------------------------------------------------------


@step(enable_cache=False)
def make_data(seed: int) -> Annotated[dict, "runs_data"]:
    return {"seed": seed, "values": list(range(seed, seed + 5))}


@step(enable_cache=False)
def summarize(data: dict) -> Annotated[int, "runs_summary"]:
    return sum(data["values"])


@pipeline(enable_cache=False)
def gc_runs(seed: int = 0) -> None:
    summarize(make_data(seed=seed))


@step(enable_cache=True)
def use_external(x: int) -> Annotated[int, "external_consumer_out"]:
    return x + 1


@pipeline(enable_cache=True)
def gc_external() -> None:
    use_external(x=ExternalArtifact(value=4242))


def _hook_body() -> Annotated[str, "hook_report"]:
    return "report written by a tracked hook"


@step(enable_cache=False)
def step_with_hook() -> Annotated[int, "hook_step_out"]:
    # A tracked hook with store_return=True materializes its return value as an
    # artifact version linked only through hook_invocation_output_artifact.
    run_hook(_hook_body, name="gc_hook", store_return=True)
    return 7


@pipeline(enable_cache=False)
def gc_hook() -> None:
    step_with_hook()


@step(enable_cache=False)
def make_run_output() -> Annotated[str, "run_output_step_out"]:
    return "returned by a dynamic pipeline"


@pipeline(dynamic=True, enable_cache=False)
def gc_dynamic_output() -> Any:
    # The returned step output is recorded in pipeline_run_output.
    return make_run_output()


@pipeline(dynamic=True, enable_cache=False)
def gc_dynamic_manual_output() -> Any:
    # save_artifact in a dynamic pipeline body (not in a step) makes no link; the
    # returned version is then referenced ONLY by pipeline_run_output.
    return save_artifact("saved in a dynamic pipeline body", name="run_output_only")


# ---------------------------------------------------------------------------
# Bookkeeping
# ---------------------------------------------------------------------------


def hx(value: Any) -> str:
    """A UUID (or its string) in storage form: 32 lowercase hex digits."""
    return str(value).replace("-", "").lower()


class Expectations:
    def __init__(self) -> None:
        self.versions: dict[str, dict[str, Any]] = {}
        self.scenarios: dict[str, dict[str, Any]] = {}
        self.timings: dict[str, float] = {}
        self._lap_name, self._lap_start = "startup", T0

    def lap(self, next_name: str) -> None:
        """Close the current timing section (seconds per scenario, for the record)."""
        now = time.monotonic()
        self.timings[self._lap_name] = round(now - self._lap_start, 2)
        self._lap_name, self._lap_start = next_name, now

    def scenario(self, name: str, description: str, **extra: Any) -> dict[str, Any]:
        self.lap(name)
        entry = {"description": description, "versions": [], **extra}
        self.scenarios[name] = entry
        return entry

    def claim(self, scenario: str, av: Any, status: str, reasons: list[str], note: str = "") -> str:
        vid = hx(av.id)
        if vid in self.versions:
            raise AssertionError(f"version {vid} claimed twice")
        self.versions[vid] = {
            "scenario": scenario,
            "status": status,
            "reasons": sorted(reasons),
            "artifact_name": av.artifact.name,
            "artifact_id": hx(av.artifact.id),
            "version": str(av.version),
            "save_type": str(getattr(av.save_type, "value", av.save_type)),
            "uri": av.uri,
            "note": note,
        }
        self.scenarios[scenario]["versions"].append(vid)
        return vid


def output_version(run: Any, step_name: str) -> Any:
    step_run = run.steps[step_name]
    outputs = step_run.outputs
    (name,) = outputs
    (av,) = outputs[name]
    return av


def main(config_dir: Path) -> None:
    client = Client()
    client.activate_stack(client.active_stack_model.id)  # initializes the store
    store = client.active_stack.artifact_store
    root = store.path
    exp = Expectations()

    # 1. Several runs, half of them deleted afterwards.
    exp.scenario(
        "deleted_runs",
        "gc_runs ran 4 times; runs 0 and 1 were deleted with Client().delete_pipeline_run, "
        "so their outputs lost every link (candidates). Runs 2 and 3 are kept.",
    )
    runs = [gc_runs.with_options(run_name=f"gc_runs_{i}")(seed=i) for i in range(4)]
    runs = [client.get_pipeline_run(r.id) for r in runs]
    deleted, kept = runs[:2], runs[2:]
    for run in deleted:
        data = output_version(run, "make_data")
        summary = output_version(run, "summarize")
        client.delete_pipeline_run(run.id)
        exp.claim("deleted_runs", data, CANDIDATE, [], "output of a deleted run")
        exp.claim("deleted_runs", summary, CANDIDATE, [], "output of a deleted run")
    for run in kept:
        exp.claim(
            "deleted_runs",
            output_version(run, "make_data"),
            REACHABLE,
            ["step_output", "step_input"],
        )
        exp.claim("deleted_runs", output_version(run, "summarize"), REACHABLE, ["step_output"])
    exp.scenarios["deleted_runs"]["deleted_run_ids"] = [hx(r.id) for r in deleted]
    exp.scenarios["deleted_runs"]["kept_run_ids"] = [hx(r.id) for r in kept]

    # 2. A manual artifact linked to a model version and to no step.
    exp.scenario(
        "model_link",
        "save_artifact outside a step, then link_artifact_to_model; no step uses it. "
        "ZenML's own prune deletes it.",
    )
    model = Model(name="gc_model", version="v1")
    linked = save_artifact({"weights": [0.1, 0.2]}, name="model_linked")
    link_artifact_to_model(linked, model=model)
    exp.claim("model_link", linked, REACHABLE, ["model_link"])

    # 3. Pipeline run outputs (dynamic pipelines record them in pipeline_run_output).
    exp.scenario(
        "run_output",
        "Dynamic pipelines returning an artifact: one returns a step output "
        "(step_output + run_output); one returns a version saved in the pipeline body, "
        "referenced ONLY by pipeline_run_output.",
    )
    dyn = gc_dynamic_output()
    dyn = client.get_pipeline_run(dyn.id)
    exp.claim(
        "run_output",
        output_version(dyn, "make_run_output"),
        REACHABLE,
        ["step_output", "run_output"],
    )
    dyn2 = gc_dynamic_manual_output()
    only_out = client.get_artifact_version("run_output_only")
    exp.claim("run_output", only_out, REACHABLE, ["run_output"], "only pipeline_run_output")
    exp.scenarios["run_output"]["run_ids"] = [hx(dyn.id), hx(dyn2.id)]

    # 4. A hook output.
    exp.scenario(
        "hook_output",
        "zenml.run_hook(..., store_return=True) inside a step: the hook's return value "
        "is referenced only by hook_invocation_output_artifact.",
    )
    hook_run = client.get_pipeline_run(gc_hook().id)
    exp.claim("hook_output", output_version(hook_run, "step_with_hook"), REACHABLE, ["step_output"])
    hook_av = client.get_artifact_version("hook_report")
    exp.claim("hook_output", hook_av, REACHABLE, ["hook_output"], "only a hook output link")

    # 5. Manual artifacts with tags and run metadata, referenced by nothing.
    exp.scenario(
        "tagged_metadata",
        "save_artifact outside a step with tags and log_metadata; no link, so candidates. "
        "They own tag_resource and run_metadata_resource rows that a sweep must remove.",
    )
    for i in range(2):
        av = save_artifact(
            {"tagged": i},
            name="tagged_manual",
            tags=["gc-tag", f"gc-tag-{i}"],
            user_metadata={"origin": "build_store"},
        )
        log_metadata(metadata={"accuracy": 0.5 + i / 10}, artifact_version_id=av.id)
        exp.claim("tagged_metadata", av, CANDIDATE, [])
    add_tags(tags=["gc-artifact-tag"], artifact="tagged_manual")

    # 6. A user's preexisting folder registered inside the store root.
    exp.scenario(
        "preexisting",
        "register_artifact of a folder the user created in the store root: "
        "save_type preexisting, never deleted.",
    )
    folder = Path(root) / "user_data" / "preexisting_folder"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text("x,y\n1,2\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.txt").write_text("user bytes\n")
    pre = register_artifact(str(folder), name="preexisting_folder")
    exp.claim("preexisting", pre, PROTECTED, ["preexisting"])
    exp.scenarios["preexisting"]["folder"] = str(folder)

    # 7. URI overlap in both directions.
    exp.scenario(
        "uri_overlap",
        "An orphan whose directory contains a live version's directory, and an orphan "
        "nested inside a live version's directory: both protected.",
    )
    outer_uri = os.path.join(root, "overlap", "outer")
    outer = save_artifact({"outer": True}, name="overlap_outer", uri=outer_uri)
    inner = save_artifact(
        {"inner": True}, name="overlap_inner", uri=os.path.join(outer_uri, "inner")
    )
    link_artifact_to_model(inner, model=model)
    exp.claim("uri_overlap", outer, PROTECTED, ["uri_overlap"], "contains a live version")
    exp.claim("uri_overlap", inner, REACHABLE, ["model_link"], "nested in an orphan")
    host_uri = os.path.join(root, "overlap", "host")
    host = save_artifact({"host": True}, name="overlap_host", uri=host_uri)
    link_artifact_to_model(host, model=model)
    nested = save_artifact(
        {"nested": True}, name="overlap_nested", uri=os.path.join(host_uri, "nested")
    )
    exp.claim("uri_overlap", host, REACHABLE, ["model_link"], "contains an orphan")
    exp.claim("uri_overlap", nested, PROTECTED, ["uri_overlap"], "inside a live version")

    # 8. External artifacts: consumed once, then named only by snapshot JSON.
    exp.scenario(
        "config_reference",
        "ExternalArtifact(value=...) consumed by a step (step_input), then a second, fully "
        "cached run uploaded a new external version that no step links: its dashed id "
        "appears only in step_configuration.config.",
    )
    ext_run1 = client.get_pipeline_run(gc_external().id)
    ext_run2 = client.get_pipeline_run(gc_external().id)
    consumer = output_version(ext_run1, "use_external")
    consumed = ext_run1.steps["use_external"].inputs["x"]
    consumed = consumed[0] if isinstance(consumed, list) else consumed
    exp.claim("config_reference", consumer, REACHABLE, ["step_output"], "cached in run 2")
    exp.claim(
        "config_reference",
        consumed,
        REACHABLE,
        ["step_input", "config_reference"],
        "external version consumed by run 1",
    )
    # Each ExternalArtifact(value=...) upload is its own artifact "external_<uuid4>";
    # the run 2 snapshot names its upload in the step configuration.
    ext_ids = {
        run.snapshot.step_configurations["use_external"].config.external_input_artifacts["x"].id
        for run in (ext_run1, ext_run2)
    }
    config_only = [client.get_artifact_version(i) for i in ext_ids if i != consumed.id]
    if len(config_only) != 1:
        raise AssertionError(f"expected one config-only external version, got {config_only}")
    exp.claim(
        "config_reference",
        config_only[0],
        REACHABLE,
        ["config_reference"],
        "uploaded by the cached run 2, linked by no step",
    )
    exp.scenarios["config_reference"]["run_ids"] = [hx(ext_run1.id), hx(ext_run2.id)]
    exp.scenarios["config_reference"]["run2_status"] = str(
        getattr(ext_run2.status, "value", ext_run2.status)
    )

    # 9. Several versions of one artifact, the older ones orphaned. runs_data and
    #    runs_summary (scenario deleted_runs) have 4 versions each: v1, v2 orphaned by
    #    the run deletions, v3, v4 live. versioned_manual has 3, all unlinked, so its
    #    latest version is a candidate too.
    exp.scenario(
        "versions",
        "versioned_manual: 3 manual versions, all unlinked (the latest is a candidate). "
        "With runs_data/runs_summary (deleted_runs: v1, v2 orphaned, v3, v4 live) these "
        "are the multi-version artifacts for --keep-latest (multi_version_artifacts lists "
        "every artifact with more than one version, e.g. tagged_manual too).",
    )
    for i in range(3):
        manual = save_artifact(f"manual v{i}", name="versioned_manual")
        exp.claim("versions", manual, CANDIDATE, [])

    # Something in the store root that no version names (like logs/ or code_uploads/).
    unmanaged = Path(root) / "code_uploads" / "not_an_artifact.txt"
    unmanaged.parent.mkdir(parents=True, exist_ok=True)
    unmanaged.write_text("not referenced by the database; a GC must never touch it\n")

    exp.lap("write_expected")
    write_expected(client, config_dir, exp, [str(unmanaged)])


def write_expected(
    client: Client, config_dir: Path, exp: Expectations, unmanaged: list[str]
) -> None:
    store_cfg = client.zen_store.config
    url = os.environ.get("ZENML_STORE_URL") or store_cfg.url
    backend = "mysql" if url.startswith("mysql") else "sqlite"
    sa_url = url.replace("mysql://", "mysql+pymysql://", 1) if backend == "mysql" else url
    component = client.active_stack_model.components
    from zenml.enums import StackComponentType

    (art_store_model,) = component[StackComponentType.ARTIFACT_STORE]
    art_store = client.active_stack.artifact_store

    engine = sa.create_engine(sa_url)
    with engine.connect() as conn:
        db_ids = {r[0] for r in conn.execute(sa.text("SELECT id FROM artifact_version"))}
        rows = conn.execute(
            sa.text("SELECT id, version_number, created, artifact_store_id FROM artifact_version")
        ).all()
        schema_version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    claimed = set(exp.versions)
    if db_ids != claimed:
        raise AssertionError(
            f"unclaimed versions in the DB: {sorted(db_ids - claimed)}; "
            f"claimed but absent: {sorted(claimed - db_ids)}"
        )
    for vid, version_number, created, store_id in rows:
        entry = exp.versions[vid]
        entry["version_number"] = version_number
        entry["created"] = str(created)
        entry["artifact_store_id"] = store_id

    per_artifact: dict[str, int] = {}
    for entry in exp.versions.values():
        per_artifact[entry["artifact_name"]] = per_artifact.get(entry["artifact_name"], 0) + 1
    exp.scenarios["versions"]["multi_version_artifacts"] = sorted(
        name for name, n in per_artifact.items() if n > 1
    )

    project = client.active_project
    expected = {
        "format": FORMAT_VERSION,
        "zenml_version": __import__("zenml").__version__,
        "schema_version": schema_version,
        "backend": backend,
        "db_url": url,
        "sqlalchemy_url": sa_url,
        "config_dir": str(config_dir),
        "project": project.name,
        "project_id": hx(project.id),
        "artifact_store": {
            "id": hx(art_store_model.id),
            "name": art_store_model.name,
            "flavor": art_store_model.flavor_name,
            "root": art_store.path,
        },
        "unmanaged_paths": unmanaged,
        "all_artifact_version_ids": sorted(db_ids),
        "counts": {
            status: sum(1 for v in exp.versions.values() if v["status"] == status)
            for status in (REACHABLE, CANDIDATE, PROTECTED)
        },
        "scenarios": exp.scenarios,
        "versions": dict(sorted(exp.versions.items())),
        "build_seconds": round(time.monotonic() - T0, 2),
        "timings": exp.timings,
    }
    out = config_dir / "expected.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(expected, indent=2, sort_keys=False) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ["ZENML_CONFIG_PATH"])
    if target.resolve() != Path(os.environ["ZENML_CONFIG_PATH"]).resolve():
        sys.exit("build_store.py: the target directory must be ZENML_CONFIG_PATH")
    main(target.resolve())
