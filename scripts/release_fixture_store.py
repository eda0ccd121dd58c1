"""Build a small ZenML store with one release's own ZenML: run INSIDE that release's venv.

Driven by ``scripts/build_release_fixtures.py``, which creates the venv and packs the
result; by hand:

    ZENML_CONFIG_PATH=/tmp/r/config python release_fixture_store.py /tmp/r/expected.json

Everything goes through ZenML's public API (pipelines, ``Client``, ``save_artifact``,
``register_artifact``, ``link_artifact_to_model``, metadata and tags), spelled the way
each release from 0.70 to 0.98 spells it. Each version the store holds is written to
the JSON file with the status a correct GC gives it and why:

- ``deleted_runs``: a pipeline run three times, the first run deleted -> its outputs
  are candidates; the other runs' outputs are reachable.
- ``config_reference``: an ``ExternalArtifact`` uploaded for a run that is then
  deleted: only the stored deployment (snapshot) names it -> reachable; the deleted
  run's own output is a candidate.
- ``model_link``: saved outside a step and linked to a model -> reachable.
- ``tagged_metadata``: saved with tags and run metadata, nothing uses it -> candidate
  (its metadata and tag rows must go with it).
- ``preexisting``: ``register_artifact`` on a folder of the store -> protected.
- ``uri_overlap``: an orphan whose folder holds a model-linked version -> protected;
  the inner one -> reachable.
"""

# No ``from __future__ import annotations``: ZenML before 0.8x reads step
# annotations as types, not strings.
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

for _name, _value in {
    "ZENML_ANALYTICS_OPT_IN": "false",
    "ZENML_DISABLE_STEP_LOGS_STORAGE": "true",
    "ZENML_DISABLE_PIPELINE_LOGS_STORAGE": "true",
    "ZENML_LOGGING_VERBOSITY": "WARN",
    "ZENML_ENABLE_RICH_TRACEBACK": "false",
    "AUTO_OPEN_DASHBOARD": "false",
}.items():
    os.environ.setdefault(_name, _value)

import zenml  # noqa: E402
from zenml import ExternalArtifact, Model, pipeline, save_artifact, step  # noqa: E402
from zenml.client import Client  # noqa: E402


@step(enable_cache=False)
def make_data(seed: int) -> Annotated[dict, "runs_data"]:
    return {"seed": seed, "values": list(range(seed, seed + 3))}


@step(enable_cache=False)
def summarize(data: dict) -> Annotated[int, "runs_summary"]:
    return sum(data["values"])


@pipeline(enable_cache=False)
def gc_runs(seed: int = 0) -> None:
    summarize(make_data(seed))


@step(enable_cache=False)
def consume(value: int) -> Annotated[int, "external_consumer_out"]:
    return value + 1


@pipeline(enable_cache=False)
def gc_external() -> None:
    consume(ExternalArtifact(value=4242))


def _new_run(name: str, seen: set[Any]) -> Any:
    """The one run of pipeline ``name`` that is not in ``seen``. Not "the newest": on
    MySQL/MariaDB ``created`` has whole seconds, and two runs of one second come back
    in either order."""
    new = [r for r in Client().get_pipeline(name).runs if r.id not in seen]
    if len(new) != 1:
        sys.exit(f"expected one new run of {name}, found {len(new)}")
    seen.add(new[0].id)
    return new[0]


def _outputs(run: Any) -> list[str]:
    ids = []
    for step_run in run.steps.values():
        for output in step_run.outputs.values():
            # 0.70-0.8x: one version per output name; later: a list of them.
            for version in output if isinstance(output, list) else [output]:
                ids.append(version.id.hex)
    return ids


def _link(version: Any, model: Model) -> None:
    from zenml import link_artifact_to_model

    params = inspect.signature(link_artifact_to_model).parameters
    if "artifact_version_id" in params:
        link_artifact_to_model(artifact_version_id=version.id, model=model)
    else:
        link_artifact_to_model(artifact_version=version, model=model)


def _log_metadata(version: Any) -> None:
    metadata = {"accuracy": 0.5, "note": "orphan"}
    try:
        from zenml import log_metadata
    except ImportError:
        from zenml import log_artifact_metadata

        log_artifact_metadata(metadata=metadata, artifact_name=version.artifact.name,
                              artifact_version=str(version.version))
        return
    log_metadata(metadata=metadata, artifact_version_id=version.id)


def _tag_artifact(name: str) -> None:
    try:
        from zenml import add_tags
    except ImportError:
        Client().update_artifact(name, add_tags=["orphan-artifact"])
        return
    add_tags(tags=["orphan-artifact"], artifact=name)


def main(out: Path) -> None:
    client = Client()
    root = client.active_stack.artifact_store.path
    scenarios: dict[str, dict[str, list[str]]] = {}

    def claim(scenario: str, status: str, ids: list[str]) -> None:
        scenarios.setdefault(scenario, {}).setdefault(status, []).extend(ids)

    runs = []
    seen: set[Any] = set()
    for seed in range(3):
        gc_runs(seed=seed)
        runs.append(_new_run("gc_runs", seen))
    claim("deleted_runs", "candidate", _outputs(runs[0]))
    claim("deleted_runs", "reachable", _outputs(runs[1]) + _outputs(runs[2]))
    client.delete_pipeline_run(runs[0].id)

    gc_external()
    run = _new_run("gc_external", set())
    step_run = next(iter(run.steps.values()))
    external = [v.id.hex for v in _flatten(step_run.inputs.values())]
    claim("config_reference", "reachable", external)
    claim("config_reference", "candidate", _outputs(run))
    client.delete_pipeline_run(run.id)

    client.create_model(name="gc_model")
    client.create_model_version(model_name_or_id="gc_model", name="v1")
    model = Model(name="gc_model", version="v1")
    linked = save_artifact({"linked": True}, name="model_linked")
    _link(linked, model)
    claim("model_link", "reachable", [linked.id.hex])

    tagged = save_artifact({"tagged": True}, name="tagged_orphan", tags=["orphan-version"])
    _log_metadata(tagged)
    _tag_artifact("tagged_orphan")
    claim("tagged_metadata", "candidate", [tagged.id.hex])

    folder = Path(root) / "user_data" / "preexisting_folder"
    folder.mkdir(parents=True)
    (folder / "data.txt").write_text("the user's own file\n")
    from zenml import register_artifact

    registered = register_artifact(str(folder), name="registered_data")
    claim("preexisting", "protected", [registered.id.hex])

    outer = save_artifact({"outer": True}, name="overlap_outer", uri="nest/outer")
    inner = save_artifact({"inner": True}, name="overlap_inner", uri="nest/outer/inner")
    _link(inner, model)
    claim("uri_overlap", "protected", [outer.id.hex])
    claim("uri_overlap", "reachable", [inner.id.hex])

    (Path(root) / "code_uploads").mkdir(exist_ok=True)
    (Path(root) / "code_uploads" / "not_an_artifact.txt").write_text("keep me\n")

    claimed = [i for s in scenarios.values() for ids in s.values() for i in ids]
    stored = [v.id.hex for v in _every_version(client)]
    if sorted(claimed) != sorted(stored):
        sys.exit(f"claimed {sorted(claimed)} but the store holds {sorted(stored)}")
    counts: dict[str, int] = {}
    for by_status in scenarios.values():
        for status, ids in by_status.items():
            counts[status] = counts.get(status, 0) + len(ids)
    out.write_text(json.dumps({
        "format": 1,
        "zenml_version": zenml.__version__,
        "config_dir": os.environ["ZENML_CONFIG_PATH"],
        "artifact_store": {"id": client.active_stack.artifact_store.id.hex, "root": root},
        "project": _scope_name(client),
        "counts": dict(sorted(counts.items())),
        "candidates": sorted(i for s in scenarios.values() for i in s.get("candidate", [])),
        "scenarios": scenarios,
        "unmanaged_paths": ["code_uploads/not_an_artifact.txt"],
    }, indent=2, sort_keys=True) + "\n")


def _scope_name(client: Client) -> str:
    scope = getattr(client, "active_project", None) or client.active_workspace
    return str(scope.name)


def _flatten(values: Any) -> list[Any]:
    found: list[Any] = []
    for value in values:
        found.extend(value if isinstance(value, list) else [value])
    return found


def _every_version(client: Client) -> list[Any]:
    found: list[Any] = []
    page = 1
    while True:
        batch = client.list_artifact_versions(page=page, size=100)
        found.extend(batch.items)
        if page >= batch.total_pages:
            return found
        page += 1


if __name__ == "__main__":
    main(Path(sys.argv[1]))
