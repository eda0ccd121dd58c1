"""ZenML actions that leave orphan files, run in a subprocess against a fresh store.

    ZENML_CONFIG_PATH=<dir> python tests/orphan_zenml.py build       # every leak source
    ZENML_CONFIG_PATH=<dir> python tests/orphan_zenml.py killed      # a step SIGKILLed
    ZENML_CONFIG_PATH=<dir> python tests/orphan_zenml.py register PATH NAME
    ZENML_CONFIG_PATH=<dir> python tests/orphan_zenml.py load

``build`` uses only ZenML's public API and CLI, with step and pipeline logs stored in
the artifact store (ZenML's default), and prints one JSON object: the store root, the
artifact store id, and what each action left (``leaks``: name -> details). ``killed``
runs a pipeline whose step kills its own process with SIGKILL and is expected to die.
``register`` registers PATH as an artifact (``register_artifact``). ``load`` loads
every artifact version and prints ``{"loaded": n, "failed": {...}}``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Annotated, Any

os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
os.environ.setdefault("ZENML_LOGGING_VERBOSITY", "WARN")
os.environ.setdefault("ZENML_ENABLE_RICH_TRACEBACK", "false")
os.environ.setdefault("AUTO_OPEN_DASHBOARD", "false")

from zenml import pipeline, save_artifact, step  # noqa: E402
from zenml.client import Client  # noqa: E402


@step(enable_cache=False)
def produce(n: int) -> Annotated[dict[str, int], "numbers"]:
    print(f"producing {n}")  # something for the step's log file
    return {"n": n, "square": n * n}


@step(enable_cache=False)
def boom(numbers: dict[str, int]) -> Annotated[str, "never_written"]:
    raise RuntimeError("this step fails on purpose")


@step(enable_cache=False)
def killed_step() -> Annotated[str, "killed_output"]:
    os.kill(os.getpid(), signal.SIGKILL)
    return "unreachable"


@pipeline(enable_cache=False)
def numbers_pipeline(n: int) -> None:
    produce(n)


@pipeline(enable_cache=False)
def failing_pipeline() -> None:
    boom(produce(7))


@pipeline(enable_cache=False)
def killed_pipeline() -> None:
    killed_step()


def _outputs(run_id: object) -> dict[str, str]:
    run = Client().get_pipeline_run(run_id)
    out = {}
    for step_run in run.steps.values():
        for name, versions in step_run.outputs.items():
            for version in versions:
                out[f"{step_run.name}.{name}"] = version.id.hex
    return out


def build() -> None:
    client = Client()
    store = client.active_stack.artifact_store
    leaks: dict[str, dict[str, object]] = {}

    keep = numbers_pipeline.with_options(run_name="keep")(n=1)
    keep_outputs = _outputs(keep.id)

    # delete_pipeline_run never touches storage: its logs stay. ZenML refuses to
    # delete a version that a run uses, so the run goes first; then
    # delete_artifact_version with its default keeps the version's files.
    deleted_version = numbers_pipeline.with_options(run_name="deleted_version")(n=2)
    run = client.get_pipeline_run(deleted_version.id)
    log_uris = [log.uri for holder in (run, *run.steps.values())
                for log in (holder.log_collection or []) if log.uri]
    vid = _outputs(deleted_version.id)["produce.numbers"]
    version = client.get_artifact_version(vid)
    client.delete_pipeline_run(deleted_version.id)
    client.delete_artifact_version(vid)
    leaks["delete_pipeline_run"] = {"log_uris": log_uris}
    leaks["delete_artifact_version"] = {"uri": version.uri, "id": vid}

    # A run deleted, whose version prune --only-metadata deletes below.
    deleted_run = numbers_pipeline.with_options(run_name="deleted_run")(n=3)
    run_vid = _outputs(deleted_run.id)["produce.numbers"]
    run_uri = client.get_artifact_version(run_vid).uri
    client.delete_pipeline_run(deleted_run.id)
    leaks["prune_only_metadata"] = {"uri": run_uri, "id": run_vid}

    # A step that raises.
    try:
        failing_pipeline.with_options(run_name="failing")()
    except Exception:  # noqa: BLE001 - the failure is the point
        pass
    failed = client.get_pipeline_run("failing")
    leaks["step_raises"] = {
        "step_run_ids": [s.id.hex for s in failed.steps.values()],
        "statuses": {s.name: str(s.status) for s in failed.steps.values()},
    }

    # A second failing run, deleted: ZenML flushed its log files (a step that fails
    # logs its traceback), and delete_pipeline_run leaves them with no logs row.
    try:
        failing_pipeline.with_options(run_name="failing_deleted")()
    except Exception:  # noqa: BLE001 - the failure is the point
        pass
    gone = client.get_pipeline_run("failing_deleted")
    gone_logs = [log.uri for holder in (gone, *gone.steps.values())
                 for log in (holder.log_collection or []) if log.uri]
    gone_steps = [s.id.hex for s in gone.steps.values()]
    client.delete_pipeline_run(gone.id)
    leaks["delete_pipeline_run"].update(log_uris=gone_logs, step_run_ids=gone_steps)

    # A step whose process is killed with SIGKILL: its step run stays "running".
    killed_proc = subprocess.run([sys.executable, __file__, "killed"], capture_output=True,
                                 text=True, check=False, env=os.environ.copy())
    killed_run = client.get_pipeline_run("killed")
    leaks["step_killed"] = {
        "returncode": killed_proc.returncode,
        "step_run_ids": [s.id.hex for s in killed_run.steps.values()],
        "statuses": {s.name: str(s.status) for s in killed_run.steps.values()},
    }

    # save_artifact outside a step (custom_artifacts/<name>/<uuid>), then deleted
    # with delete_artifact_version's default.
    custom = save_artifact({"custom": True}, name="custom_orphan")
    client.delete_artifact_version(custom.id)
    leaks["custom_artifact"] = {"uri": custom.uri, "id": custom.id.hex}

    # zenml artifact prune --only-metadata: every unused version loses its row only
    # (the deleted run's output, the custom artifact).
    proc = subprocess.run(
        [sys.executable, "-m", "zenml.cli.cli", "artifact", "prune", "--only-metadata",
         "-y"], capture_output=True, text=True, check=False, env=os.environ.copy())
    if proc.returncode != 0:
        # Older entry points: the console script next to this interpreter.
        zenml_bin = os.path.join(os.path.dirname(sys.executable), "zenml")
        proc = subprocess.run([zenml_bin, "artifact", "prune", "--only-metadata", "-y"],
                              capture_output=True, text=True, check=False,
                              env=os.environ.copy())
    leaks["prune_only_metadata"].update(returncode=proc.returncode,
                                        stderr=proc.stderr[-2000:])

    # Traps: registered data in the store, and a registered folder that holds a path
    # shaped like a step output (its parent is named, so it is live).
    from zenml import register_artifact

    registered_dir = os.path.join(store.path, "registered_data")
    os.makedirs(registered_dir)
    with open(os.path.join(registered_dir, "table.csv"), "w") as handle:
        handle.write("a,b\n1,2\n")
    registered = register_artifact(folder_or_file_uri=registered_dir, name="registered")
    parent_dir = os.path.join(store.path, "parent_dir")
    nested = os.path.join(parent_dir, "inner_step", "output",
                          "0b6c2f2e-6a8e-4e0c-9a55-3f5a0f0f9c11", "abcdef12")
    os.makedirs(nested)
    with open(os.path.join(nested, "data.bin"), "wb") as handle:
        handle.write(b"x" * 100)
    parent = register_artifact(folder_or_file_uri=parent_dir, name="parent_of_layout")
    traps = {"registered": registered.uri, "parent_dir": parent.uri, "nested": nested}
    leaks["code_uploads"] = code_uploads(client)
    # The deleted run's log files (if it wrote any) are log files of a deleted run.
    leaks["delete_pipeline_run"]["log_uris"] += leaks["code_uploads"].pop("log_uris")

    print(json.dumps({
        "traps": traps,
        "root": store.path,
        "artifact_store_id": store.id.hex,
        "keep_run": keep.id.hex,
        "keep_outputs": keep_outputs,
        "leaks": leaks,
    }))


#: A pipeline of its own ZenML repository, run by code_uploads(): ZenML archives the
#: repository (its source root) and names the archive in the run's snapshot.
CODE_PIPELINE = """
import sys
from zenml import pipeline, step
from zenml.pipelines import build_utils

# What a remote orchestrator decides for an image without the code: upload the code
# archive to the artifact store (code_uploads/<sha1>.tar.gz) and name it in the
# snapshot's code_path. The local orchestrator decides otherwise; the upload and the
# snapshot are ZenML's own.
build_utils.should_upload_code = lambda **_: True

# No output: the runs add no artifact version, only the archives and their snapshots.
@step(enable_cache=False)
def shipped() -> None:
    print("shipped")

@pipeline(enable_cache=False)
def shipped_code() -> None:
    shipped()

shipped_code.with_options(run_name=sys.argv[1])()
"""


def code_uploads(client: Client) -> dict[str, Any]:
    """Two runs whose snapshots name two code archives (the code differs between them);
    then the first run and its snapshot are deleted, which leaves its archive named by
    no snapshot. Returns both archives' paths."""
    import tempfile
    from pathlib import Path

    project = Path(tempfile.mkdtemp(prefix="code-project-"))
    Client.initialize(root=project)
    (project / "shipped.py").write_text(CODE_PIPELINE)
    paths = {}
    for run_name in ("code_unreferenced", "code_referenced"):
        (project / "version.txt").write_text(run_name)
        subprocess.run([sys.executable, "shipped.py", run_name], cwd=project, check=True,
                       capture_output=True, text=True, env=os.environ.copy())
        run = client.get_pipeline_run(run_name)
        paths[run_name] = run.snapshot.code_path if run.snapshot else None
    gone = client.get_pipeline_run("code_unreferenced")
    log_uris = [log.uri for holder in (gone, *gone.steps.values())
                for log in (holder.log_collection or []) if log.uri]
    snapshot_id = gone.snapshot.id if gone.snapshot else None
    client.delete_pipeline_run(gone.id)
    if snapshot_id is not None:
        client.delete_snapshot(snapshot_id)
    return {"unreferenced": paths["code_unreferenced"], "referenced": paths["code_referenced"],
            "log_uris": log_uris}


def killed() -> None:
    killed_pipeline.with_options(run_name="killed")()


def register(path: str, name: str) -> None:
    from zenml import register_artifact

    version = register_artifact(folder_or_file_uri=path, name=name)
    print(json.dumps({"id": version.id.hex, "uri": version.uri}))


def load() -> None:
    client = Client()
    failed: dict[str, str] = {}
    loaded = 0
    for version in client.list_artifact_versions(size=1000, hydrate=True).items:
        if version.save_type == "preexisting":
            continue
        try:
            version.load()
            loaded += 1
        except Exception as exc:  # noqa: BLE001 - reported to the test
            failed[version.id.hex] = f"{type(exc).__name__}: {exc}"
    print(json.dumps({"loaded": loaded, "failed": failed}))


if __name__ == "__main__":
    action = sys.argv[1]
    if action == "build":
        build()
    elif action == "killed":
        killed()
    elif action == "register":
        register(sys.argv[2], sys.argv[3])
    elif action == "load":
        load()
    else:
        sys.exit(f"unknown action {action}")
