"""The rows every project shares (the user, the artifact store and its stack, the tags),
and the project rows themselves. ZenML's default user, project and tags are reused when
their names match."""

from __future__ import annotations

import random
from dataclasses import dataclass

from artifact_gc.demo.synthetic.encoding import Row, b64json, flavor, new_id
from artifact_gc.demo.synthetic.spec import SyntheticSpec
from artifact_gc.demo.synthetic.vocabulary import COLORS, TAGS
from artifact_gc.demo.synthetic.writer import RowWriter

_USER_COLUMNS = (
    "id",
    "created",
    "updated",
    "name",
    "is_service_account",
    "full_name",
    "active",
    "is_admin",
    "oidc_claims",
)
_COMPONENT_COLUMNS = (
    "id",
    "created",
    "updated",
    "name",
    "type",
    "flavor",
    "configuration",
    "labels",
    "environment",
    "user_id",
)
_STACK_COLUMNS = (
    "id",
    "created",
    "updated",
    "name",
    "description",
    "labels",
    "environment",
    "user_id",
)


@dataclass
class Shared:
    user_id: str
    store_id: str
    stack_id: str
    tag_ids: list[str]


def insert_shared(
    writer: RowWriter, spec: SyntheticSpec, rng: random.Random, now: str, root: str
) -> Shared:
    """Insert (or find) the user, the artifact store, its stack, and the tags."""
    user_id = _user(writer, spec, rng, now)
    store_id, stack_id = _stack(writer, spec, rng, now, root, user_id)
    tag_ids = _tags(writer, rng, now, user_id)
    return Shared(user_id=user_id, store_id=store_id, stack_id=stack_id, tag_ids=tag_ids)


def insert_project(writer: RowWriter, name: str, rng: random.Random, now: str) -> str:
    """The id of project ``name``, inserted unless it exists."""
    existing = writer.fetch_one("SELECT id FROM project WHERE name = ?", (name,))
    if existing is not None:
        return str(existing)
    project_id = new_id(rng)
    writer.insert(
        "project",
        ("id", "created", "updated", "name", "display_name", "description", "project_metadata"),
        [(project_id, now, now, name, name, "", "{}")],
    )
    return project_id


def _user(writer: RowWriter, spec: SyntheticSpec, rng: random.Random, now: str) -> str:
    user_id = writer.fetch_one(
        f"SELECT id FROM {writer.quote('user')} WHERE name = ? AND is_service_account = ?",
        (spec.user_name, False),
    )
    if user_id is None:
        user_id = new_id(rng)
        writer.insert(
            "user",
            _USER_COLUMNS,
            [(user_id, now, now, spec.user_name, False, "Synthetic User", True, True, "null")],
        )
    return str(user_id)


def _stack(
    writer: RowWriter, spec: SyntheticSpec, rng: random.Random, now: str, root: str, user_id: str
) -> tuple[str, str]:
    """The artifact store at ``root`` and a local orchestrator, in one stack."""
    store_id = spec.artifact_store_id or new_id(rng)
    orchestrator_id = new_id(rng)
    stack_id = new_id(rng)
    name = f"synthetic-{store_id[:8]}"
    configuration = {"path": root} if spec.root_in_configuration else {}
    null = b64json(None)
    writer.insert(
        "stack_component",
        _COMPONENT_COLUMNS,
        [
            (
                store_id,
                now,
                now,
                name,
                "artifact_store",
                flavor(root),
                b64json(configuration),
                null,
                null,
                user_id,
            ),
            (
                orchestrator_id,
                now,
                now,
                name,
                "orchestrator",
                "local",
                b64json({}),
                null,
                null,
                user_id,
            ),
        ],
    )
    writer.insert(
        "stack",
        _STACK_COLUMNS,
        [(stack_id, now, now, name, "", b64json({}), null, user_id)],
    )
    writer.insert(
        "stack_composition",
        ("stack_id", "component_id", "default_for_type"),
        [(stack_id, store_id, "artifact_store"), (stack_id, orchestrator_id, "orchestrator")],
    )
    return store_id, stack_id


def _tags(writer: RowWriter, rng: random.Random, now: str, user_id: str) -> list[str]:
    tag_ids: list[str] = []
    new_tags: list[Row] = []
    for i, tag in enumerate(TAGS):
        existing = writer.fetch_one("SELECT id FROM tag WHERE name = ?", (tag,))
        if existing is not None:
            tag_ids.append(str(existing))
            continue
        tag_id = new_id(rng)
        tag_ids.append(tag_id)
        new_tags.append((tag_id, now, now, tag, user_id, COLORS[i % len(COLORS)], False))
    writer.insert(
        "tag", ("id", "created", "updated", "name", "user_id", "color", "exclusive"), new_tags
    )
    return tag_ids
