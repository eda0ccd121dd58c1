"""ZenML actions run in a subprocess against a scenario store (ZenML keeps global state).

    python tests/sweep_zenml.py load                      # load() every artifact version
    python tests/sweep_zenml.py revive CONSUME LINK NEST  # act between mark and sweep

``load`` prints ``{"loaded": n, "failed": {id: error}}`` as JSON. ``revive`` runs a new
pipeline that consumes the version CONSUME, links the version LINK to a model, and
saves a new version whose URI lies inside the directory of the version NEST.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")
os.environ.setdefault("ZENML_LOGGING_VERBOSITY", "WARN")


def load_all() -> None:
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
    print(json.dumps({"loaded": loaded, "failed": failed}))


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


if __name__ == "__main__":
    if sys.argv[1] == "load":
        load_all()
    elif sys.argv[1] == "revive":
        revive(*sys.argv[2:5])
    else:
        sys.exit(f"unknown action {sys.argv[1]}")
