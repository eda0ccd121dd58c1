"""The rows of artifacts and their versions, and what hangs off a version: its
visualization, its files, its metadata and its tags."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from artifact_gc.demo.synthetic.context import ProjectContext
from artifact_gc.demo.synthetic.encoding import Row, dashed, new_id
from artifact_gc.demo.synthetic.files import write_files
from artifact_gc.demo.synthetic.plan import (
    JSON_ONLY,
    LOADED_MANUAL,
    MODEL_ONLY,
    ORPHAN_MANUAL,
    ORPHANS,
    PREEXISTING,
    ProjectPlan,
)
from artifact_gc.demo.synthetic.vocabulary import (
    KINDS,
    PREEXISTING_KIND,
    VIS_FILE,
    artifact_name,
    output_name,
    step_of,
)

_VERSION_COLUMNS = (
    "id",
    "created",
    "updated",
    "version",
    "version_number",
    "type",
    "uri",
    "materializer",
    "data_type",
    "save_type",
    "content_hash",
    "item_count",
    "artifact_id",
    "artifact_store_id",
    "user_id",
    "project_id",
)


@dataclass
class Location:
    """Where a version lives: its URI and its visualization type."""

    uri: str
    vis_type: str


def insert_artifacts(ctx: ProjectContext, plan: ProjectPlan) -> None:
    """Each artifact is created a second before its first version."""
    first_created: dict[int, float] = {}
    for i, a in enumerate(plan.artifact_of):
        if a not in first_created:
            first_created[a] = plan.created[i]

    def rows() -> Iterator[Row]:
        for a, aid in enumerate(plan.artifact_ids):
            t = plan.ts(first_created.get(a, 0.0) - 1.0)
            if a >= plan.n_artifacts:
                name = f"external_{plan.external_uuid[a]}"
                yield (aid, t, t, name, False, ctx.project_id, ctx.shared.user_id)
            else:
                name = artifact_name(a)
                yield (aid, t, t, name, True, ctx.project_id, ctx.shared.user_id)

    ctx.writer.insert(
        "artifact",
        ("id", "created", "updated", "name", "has_custom_name", "project_id", "user_id"),
        rows(),
    )


def insert_versions(ctx: ProjectContext, plan: ProjectPlan) -> list[Location]:
    """The ``artifact_version`` rows; returns where each version lives."""
    locations: list[Location] = []
    n_save: dict[str, int] = {}

    def rows() -> Iterator[Row]:
        for i, a in enumerate(plan.artifact_of):
            kind_index = (a * 7 + 3) % len(KINDS)
            save_type, kind, uri = _version_kind(ctx, plan, i, kind_index)
            n_save[save_type] = n_save.get(save_type, 0) + 1
            # An external version keeps the visualization of its would-be kind.
            vis_type = PREEXISTING_KIND[3] if kind is PREEXISTING_KIND else KINDS[kind_index][3]
            locations.append(Location(uri, vis_type))
            t = plan.ts(plan.created[i])
            number = plan.version_no[i]
            yield (
                plan.ids[i],
                t,
                t,
                str(number),
                number,
                kind[0],
                uri,
                kind[1],
                kind[2],
                save_type,
                f"{ctx.rng.getrandbits(128):032x}",
                None,
                plan.artifact_ids[a],
                ctx.shared.store_id,
                ctx.shared.user_id,
                ctx.project_id,
            )

    ctx.writer.insert("artifact_version", _VERSION_COLUMNS, rows())
    for key, value in n_save.items():
        ctx.tally.add(f"save_type:{key}", value)
    return locations


def _version_kind(
    ctx: ProjectContext, plan: ProjectPlan, i: int, kind_index: int
) -> tuple[str, tuple[str, str, str, str], str]:
    """Version ``i``'s save type, kind and URI, laid out as ZenML lays them out."""
    root = ctx.root
    cat = plan.cats[i]
    a = plan.artifact_of[i]
    if cat in PREEXISTING:
        uri = f"{root}/user_data/{artifact_name(a)}/v{plan.version_no[i]}"
        return "preexisting", PREEXISTING_KIND, uri
    if cat == JSON_ONLY:
        uri = f"{root}/external_artifacts/external_{plan.external_uuid[a]}"
        return "external", KINDS[4], uri
    if cat in (LOADED_MANUAL, ORPHAN_MANUAL) or (cat == MODEL_ONLY and i % 2 == 0):
        uri = f"{root}/custom_artifacts/{artifact_name(a)}/{dashed(new_id(ctx.rng))}"
        return "manual", KINDS[kind_index], uri
    uri = f"{root}/{step_of(a)}/{output_name(a)}/{plan.uri_run[i]}/{ctx.rng.getrandbits(32):08x}"
    return "step_output", KINDS[kind_index], uri


def insert_visualizations(
    ctx: ProjectContext, plan: ProjectPlan, locations: list[Location]
) -> None:
    """One ``artifact_visualization`` row per version (files need them too)."""
    if not (ctx.spec.visualizations or ctx.spec.write_files):
        return

    def rows() -> Iterator[Row]:
        for i, where in enumerate(locations):
            t = plan.ts(plan.created[i] + 0.5)
            uri = f"{where.uri}/{VIS_FILE[where.vis_type]}"
            yield (new_id(ctx.rng), t, t, where.vis_type, uri, plan.ids[i])

    ctx.writer.insert(
        "artifact_visualization",
        ("id", "created", "updated", "type", "uri", "artifact_version_id"),
        rows(),
    )


def write_version_files(ctx: ProjectContext, plan: ProjectPlan,
                        locations: list[Location]) -> None:
    if ctx.spec.write_files:
        files = [(where.uri, VIS_FILE[where.vis_type])
                 for where, cat in zip(locations, plan.cats, strict=True)
                 if not ctx.spec.orphan_files_only or cat in ORPHANS]
        write_files(files, ctx.root, ctx.shared.store_id)


def insert_metadata(ctx: ProjectContext, plan: ProjectPlan) -> None:
    """``run_metadata`` rows owned by versions, orphans included (they die with them)."""
    rng = ctx.rng
    owned: list[tuple[str, str, int]] = []  # (metadata id, version id, index)
    for i in range(plan.n):
        if rng.random() < ctx.spec.metadata_share:
            owned.append((new_id(rng), plan.ids[i], i))

    def rows() -> Iterator[Row]:
        for mid, _vid, i in owned:
            t = plan.ts(plan.created[i] + 1.0)
            size = str(rng.randrange(10, 10**7))
            yield (mid, t, t, ctx.shared.user_id, ctx.project_id, "storage_size", size, "int")

    ctx.writer.insert(
        "run_metadata",
        ("id", "created", "updated", "user_id", "project_id", "key", "value", "type"),
        rows(),
    )
    ctx.writer.insert(
        "run_metadata_resource",
        ("id", "resource_id", "resource_type", "run_metadata_id"),
        ((new_id(rng), vid, "artifact_version", mid) for mid, vid, _i in owned),
    )


def insert_tags(ctx: ProjectContext, plan: ProjectPlan) -> None:
    """Tags on live versions only: a tag is a reference."""
    rng = ctx.rng

    def rows() -> Iterator[Row]:
        for i, cat in enumerate(plan.cats):
            if cat not in ORPHANS and rng.random() < ctx.spec.tag_share:
                t = plan.ts(plan.created[i] + 3.0)
                # The row id is drawn before the tag: the draw order fixes the store.
                row_id = new_id(rng)
                tag_id = rng.choice(ctx.shared.tag_ids)
                yield (row_id, t, t, tag_id, plan.ids[i], "artifact_version")

    ctx.writer.insert(
        "tag_resource",
        ("id", "created", "updated", "tag_id", "resource_id", "resource_type"),
        rows(),
    )
