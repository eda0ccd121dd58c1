"""ZenML actions run in a subprocess against a scenario store (ZenML keeps global state).

    python tests/sweep_zenml.py load                      # load() every artifact version
    python tests/sweep_zenml.py revive CONSUME LINK NEST  # act between mark and sweep
    python tests/sweep_zenml.py writer SPEC.json          # a writer racing a sweep
    python tests/sweep_zenml.py orphans N NAME            # save N unlinked versions
    python tests/sweep_zenml.py delete_runs RUN_ID...     # delete pipeline runs
    python tests/sweep_zenml.py add_tags TAG VERSION ART  # tag a version and an artifact
    python tests/sweep_zenml.py run_snapshot SNAPSHOT_ID  # start a run of a snapshot
    python tests/sweep_zenml.py describe                  # tags, metadata, model links

``load`` prints ``{"loaded": n, "failed": {id: error}}`` as JSON. ``revive`` runs a new
pipeline that consumes the version CONSUME, links the version LINK to a model, and
saves a new version whose URI lies inside the directory of the version NEST.

``writer`` reads ``{"name": str, "actions": [{"kind": "consume"|"link", "id": hex,
"gate": path (optional)}], "ready": path|null, "go": path|null}``. Once ZenML is
loaded and its store connected it creates ``ready``, waits for ``go`` (both optional)
and reads SPEC.json again (so its actions can be written last), then acts on each
version in turn: ``consume`` runs a pipeline whose step takes the
version as its input (``Client().get_artifact_version(id)`` in the pipeline body,
which ZenML keeps as a lazy loader in the snapshot and resolves when the step starts),
``link`` links it to a model of its own. A ``consume`` with a ``gate`` runs a first
step that creates ``GATE.holding`` and waits for the file ``GATE`` before the
consuming step starts. Every action is tried, whatever became of the previous one; it
prints ``{"results": [{"kind", "id", "ok", "error", "run_id", "model_version_id",
"started", "ended"}]}`` (times from ``time.time()``); with ``"load_after": true`` it
then loads every version like ``load`` and adds ``"load": {"loaded", "failed"}``.

``delete_runs RUN_ID...`` deletes pipeline runs with ``Client().delete_pipeline_run``.
``add_tags TAG VERSION_ID ARTIFACT`` tags the version VERSION_ID and the artifact named
ARTIFACT (``-`` for neither) with ``zenml.add_tags``. ``run_snapshot SNAPSHOT_ID``
starts a run of an existing snapshot the way ZenML does before it hands a snapshot to
its orchestrator (``create_placeholder_run``), and prints ``{"run_id": hex}``.

``orphans`` saves N versions of the artifact NAME with ``save_artifact`` outside any
step (nothing references them) and prints ``{"ids": [hex, ...]}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
os.environ.setdefault("ZENML_LOGGING_VERBOSITY", "WARN")


def load_all() -> None:
    print(json.dumps(_load_every_version()))


def _load_every_version() -> dict[str, object]:
    from zenml.client import Client

    client = Client()
    failed: dict[str, str] = {}
    loaded = 0
    page = 1
    while True:
        versions = client.list_artifact_versions(page=page, size=100, hydrate=True)
        for version in versions.items:
            try:
                version.load()
                loaded += 1
            except Exception as exc:  # noqa: BLE001 - reported to the test
                failed[version.id.hex] = f"{type(exc).__name__}: {exc}"
        if page >= versions.total_pages:
            break
        page += 1
    return {"loaded": loaded, "failed": failed}


try:
    from typing import Annotated, Any

    from zenml import pipeline, step

    @step(enable_cache=False)
    def take(value: Any) -> Annotated[str, "revival_out"]:
        return f"took {type(value).__name__}"

    @pipeline(enable_cache=False)
    def gc_revival(version_id: str) -> None:
        from zenml.client import Client

        take(Client().get_artifact_version(version_id))

    @step(enable_cache=False)
    def hold(gate: str) -> None:
        """Signal ``GATE.holding``, then wait for ``GATE``: the run's snapshot exists by
        now, naming the version its next step will take."""
        Path(gate + ".holding").touch()
        deadline = time.monotonic() + 180
        while not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    @pipeline(enable_cache=False)
    def gc_held_revival(version_id: str, gate: str) -> None:
        from zenml.client import Client

        hold(gate)
        take(Client().get_artifact_version(version_id), after="hold")
except ImportError:  # imported for its helpers without ZenML: steps are not needed
    pass


def revive(consume: str, link: str, nest: str) -> None:
    from zenml import Model, link_artifact_to_model, save_artifact
    from zenml.client import Client

    client = Client()
    gc_revival(consume)
    link_artifact_to_model(client.get_artifact_version(link),
                           model=Model(name="gc_revival_model", version="r1"))
    host = client.get_artifact_version(nest)
    save_artifact({"nested": True}, name="sweep_nested_new",
                  uri=os.path.join(host.uri, "nested_since_mark"))
    print(json.dumps({"ok": True}))


def _consume(version_id: str, run_name: str, gate: str | None = None) -> dict[str, str]:
    """Run ``gc_revival`` on the version (``gc_held_revival`` with a gate); ZenML raises
    if it cannot take it as input."""
    from zenml.enums import ExecutionStatus

    if gate is None:
        run = gc_revival.with_options(run_name=run_name)(version_id)
    else:
        run = gc_held_revival.with_options(run_name=run_name)(version_id, gate)
    if run is None:
        raise RuntimeError("the pipeline returned no run")
    from zenml.client import Client

    run = Client().get_pipeline_run(run.id)
    if run.status != ExecutionStatus.COMPLETED:
        raise RuntimeError(f"run {run.id} ended {run.status}")
    return {"run_id": run.id.hex}


def _link(version_id: str, model_name: str) -> dict[str, str]:
    from zenml import Model, link_artifact_to_model
    from zenml.client import Client

    client = Client()
    version = client.get_artifact_version(version_id)
    model = Model(name=model_name, version="linked")
    link_artifact_to_model(version, model=model)
    model_version = client.get_model_version(model_name, "linked")
    return {"model_version_id": model_version.id.hex}


def _wait_file(path: str, name: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if time.monotonic() > deadline:
            sys.exit(f"writer {name}: {path} never came")
        time.sleep(0.02)


def writer(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    from zenml.client import Client

    client = Client()
    # Connect to the store and load the stack before signalling: what follows is only
    # the writes themselves.
    client.active_stack_model  # noqa: B018
    if spec.get("ready"):
        Path(spec["ready"]).touch()
    if spec.get("go"):
        _wait_file(spec["go"], spec["name"])
        # The actions may be written only now: a writer can be started (and ZenML
        # loaded) before the versions it will act on exist.
        spec = json.loads(Path(spec_path).read_text())
    results = []
    for n, action in enumerate(spec["actions"]):
        result: dict[str, object] = {"kind": action["kind"], "id": action["id"],
                                     "started": time.time()}
        try:
            if action["kind"] == "consume":
                result.update(_consume(action["id"], f"gc_writer_{spec['name']}_{n}",
                                       action.get("gate")))
            elif action["kind"] == "link":
                result.update(_link(action["id"], f"gc_writer_{spec['name']}"))
            else:
                raise ValueError(f"unknown writer action {action['kind']!r}")
            result["ok"] = True
        except Exception as exc:  # noqa: BLE001 - reported to the test, which judges it
            result["ok"] = False
            result["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        result["ended"] = time.time()
        results.append(result)
    if spec.get("load_after"):
        # The caller's check that ZenML's own client loads every version, in a process
        # that has ZenML loaded already (the caller makes sure nothing writes now).
        print(json.dumps({"results": results, "load": _load_every_version()}))
        return
    print(json.dumps({"results": results}))


def orphans(count: int, name: str) -> None:
    from zenml import save_artifact

    ids = [save_artifact({"orphan": n}, name=name, extract_metadata=False,
                         include_visualizations=False).id.hex for n in range(count)]
    print(json.dumps({"ids": ids}))


def delete_runs(run_ids: list[str]) -> None:
    from zenml.client import Client

    client = Client()
    for run_id in run_ids:
        client.delete_pipeline_run(run_id)
    print(json.dumps({"deleted": run_ids}))


def tag(name: str, version_id: str, artifact: str) -> None:
    from uuid import UUID

    from zenml import add_tags

    if version_id != "-":
        add_tags(tags=[name], artifact_version_id=UUID(version_id))
    if artifact != "-":
        add_tags(tags=[name], artifact=artifact)
    print(json.dumps({"ok": True}))


def describe() -> None:
    """Every version as ZenML's client sees it: its tags, its artifact's tags, its run
    metadata and the model versions it is linked to (by id)."""
    from zenml.client import Client

    client = Client()
    out: dict[str, object] = {}
    links: dict[str, list[str]] = {}
    for model in client.list_models(size=1000).items:
        for model_version in client.list_model_versions(model.id, size=1000).items:
            for link in client.list_model_version_artifact_links(
                    model_version_id=model_version.id, size=1000).items:
                links.setdefault(link.artifact_version.id.hex, []).append(
                    model_version.id.hex)
    page = 1
    while True:
        versions = client.list_artifact_versions(page=page, size=100, hydrate=True)
        for version in versions.items:
            artifact = client.get_artifact(version.artifact.id)
            out[version.id.hex] = {
                "name": version.artifact.name, "version": str(version.version),
                "uri": version.uri,
                "tags": sorted(t.name for t in version.tags),
                "artifact_tags": sorted(t.name for t in artifact.tags),
                "metadata": {k: repr(v) for k, v in sorted(version.run_metadata.items())},
                "models": sorted(links.get(version.id.hex, [])),
                "visualizations": len(version.visualizations or []),
            }
        if page >= versions.total_pages:
            break
        page += 1
    print(json.dumps(out))


def run_snapshot(snapshot_id: str) -> None:
    from zenml.client import Client
    from zenml.pipelines.run_utils import create_placeholder_run

    snapshot = Client().get_snapshot(snapshot_id)
    run = create_placeholder_run(snapshot=snapshot)
    print(json.dumps({"run_id": run.id.hex}))


if __name__ == "__main__":
    if sys.argv[1] == "load":
        load_all()
    elif sys.argv[1] == "revive":
        revive(*sys.argv[2:5])
    elif sys.argv[1] == "writer":
        writer(sys.argv[2])
    elif sys.argv[1] == "delete_runs":
        delete_runs(sys.argv[2:])
    elif sys.argv[1] == "add_tags":
        tag(*sys.argv[2:5])
    elif sys.argv[1] == "run_snapshot":
        run_snapshot(sys.argv[2])
    elif sys.argv[1] == "describe":
        describe()
    elif sys.argv[1] == "orphans":
        orphans(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(f"unknown action {sys.argv[1]}")
