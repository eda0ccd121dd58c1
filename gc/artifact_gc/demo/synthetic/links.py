"""The link rows that keep versions alive: step outputs, pipeline run outputs, model
links (with the model and its versions) and step inputs."""

from __future__ import annotations

from collections.abc import Iterator

from artifact_gc.demo.synthetic.context import ProjectContext
from artifact_gc.demo.synthetic.encoding import Row, new_id
from artifact_gc.demo.synthetic.plan import (
    LOADED,
    MODEL_ONLY,
    OUTPUT,
    STEP_LINKED,
    ProjectPlan,
)
from artifact_gc.demo.synthetic.vocabulary import output_name

_MODEL_COLUMNS = (
    "id",
    "created",
    "updated",
    "name",
    "project_id",
    "user_id",
    "description",
    "save_models_to_registry",
)
_MODEL_VERSION_COLUMNS = (
    "id",
    "created",
    "updated",
    "name",
    "project_id",
    "user_id",
    "model_id",
    "number",
    "producer_run_id_if_numeric",
)


def insert_outputs(ctx: ProjectContext, plan: ProjectPlan) -> int:
    def rows() -> Iterator[Row]:
        for sid, _name, _j, outs in plan.step_runs:
            for i in outs:
                yield (output_name(plan.artifact_of[i]), sid, plan.ids[i])

    return ctx.writer.insert("step_run_output_artifact", ("name", "step_id", "artifact_id"), rows())


def insert_run_outputs(ctx: ProjectContext, plan: ProjectPlan) -> int:
    """Pipeline outputs: the first output of the last step run of ~30% of runs."""
    last_step_run: dict[int, int] = {}
    for s, (_sid, _name, j, outs) in enumerate(plan.step_runs):
        if outs:
            last_step_run[j] = s
    rows: list[Row] = []
    for j, s in sorted(last_step_run.items()):
        if ctx.rng.random() < 0.3:
            i = plan.step_runs[s].outputs[0]
            t = plan.ts(plan.created[i] + 1.0)
            name = output_name(plan.artifact_of[i])
            rows.append((new_id(ctx.rng), t, t, name, 0, plan.run_ids[j], plan.ids[i]))
    return ctx.writer.insert(
        "pipeline_run_output",
        ("id", "created", "updated", "name", "output_index", "pipeline_run_id", "artifact_id"),
        rows,
    )


def insert_models(ctx: ProjectContext, plan: ProjectPlan) -> list[str]:
    """One model with up to 100 versions; returns the model version ids."""
    rng = ctx.rng
    user, project = ctx.shared.user_id, ctx.project_id
    t0 = plan.ts(0.0)
    model_id = new_id(rng)
    n_model_versions = max(1, min(100, plan.n // 5000))
    model_version_ids = [new_id(rng) for _ in range(n_model_versions)]
    ctx.writer.insert(
        "model",
        _MODEL_COLUMNS,
        [(model_id, t0, t0, "classifier", project, user, "Synthetic model", True)],
    )
    ctx.writer.insert(
        "model_version",
        _MODEL_VERSION_COLUMNS,
        [
            (
                mv,
                t0,
                t0,
                str(k + 1),
                project,
                user,
                model_id,
                k + 1,
                f"{rng.getrandbits(128):032x}",
            )
            for k, mv in enumerate(model_version_ids)
        ],
    )
    return model_version_ids


def insert_model_links(ctx: ProjectContext, plan: ProjectPlan, model_version_ids: list[str]) -> int:
    """Every model-only version gets one model link, and ~1% of the step-linked ones."""
    rng = ctx.rng

    def rows() -> Iterator[Row]:
        for i, cat in enumerate(plan.cats):
            if cat == MODEL_ONLY or (cat in STEP_LINKED and rng.random() < 0.01):
                t = plan.ts(plan.created[i] + 2.0)
                yield (new_id(rng), t, t, rng.choice(model_version_ids), plan.ids[i])

    return ctx.writer.insert(
        "model_versions_artifacts",
        ("id", "created", "updated", "model_version_id", "artifact_version_id"),
        rows(),
    )


def insert_inputs(ctx: ProjectContext, plan: ProjectPlan, other_links: int) -> None:
    """Inputs fill the links up to ``links_per_version``.

    Every loaded (manual or preexisting) live version is consumed at least once; the
    rest pick step-linked versions at random.
    """
    cats = plan.cats
    step_linked = [i for i, c in enumerate(cats) if c in STEP_LINKED]
    must_load = [i for i, c in enumerate(cats) if c in LOADED]
    target = round(ctx.spec.links_per_version * plan.n)
    n_inputs = max(len(must_load), target - other_links)
    if not plan.step_runs or not step_linked:
        n_inputs = 0
    n_consumers = len(plan.step_runs)

    def rows() -> Iterator[Row]:
        for k in range(n_inputs):
            i = must_load[k] if k < len(must_load) else ctx.rng.choice(step_linked)
            kind = "step_output" if cats[i] == OUTPUT else "manual"
            consumer = plan.step_runs[k % n_consumers].id
            yield (f"input_{k // n_consumers}", kind, 0, consumer, plan.ids[i])

    ctx.writer.insert(
        "step_run_input_artifact",
        ("name", "type", "input_index", "step_id", "artifact_id"),
        rows(),
    )
