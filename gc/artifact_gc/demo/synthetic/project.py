"""One project's rows: draw its plan, then write its rows step by step.

The steps run in a fixed order: parents before children, and the random draws in the
order that fixes every store's content (the same spec and seed give the same rows and
files, byte for byte; ``tests/test_synthetic.py`` pins a digest).
"""

from __future__ import annotations

from artifact_gc.demo.synthetic.context import ProjectContext
from artifact_gc.demo.synthetic.links import (
    insert_inputs,
    insert_model_links,
    insert_models,
    insert_outputs,
    insert_run_outputs,
)
from artifact_gc.demo.synthetic.plan import (
    JSON_ONLY,
    MODEL_ONLY,
    ORPHANS,
    PREEXISTING,
    ProjectPlan,
    plan_project,
)
from artifact_gc.demo.synthetic.runs import (
    insert_pipelines,
    insert_runs,
    insert_snapshots,
    insert_step_configurations,
    insert_step_runs,
)
from artifact_gc.demo.synthetic.versions import (
    insert_artifacts,
    insert_metadata,
    insert_tags,
    insert_versions,
    insert_visualizations,
    write_version_files,
)


def generate_project(ctx: ProjectContext, n: int, n_artifacts: int) -> None:
    """Write ``n`` versions over ``n_artifacts`` artifacts, and everything around them."""
    if n == 0:
        return
    plan = plan_project(ctx.spec, ctx.rng, ctx.now, n, n_artifacts)
    ctx.tally.add("artifacts", n_artifacts + plan.n_externals)
    insert_artifacts(ctx, plan)
    locations = insert_versions(ctx, plan)
    insert_visualizations(ctx, plan, locations)
    write_version_files(ctx, plan, locations)
    insert_pipelines(ctx, plan)
    insert_snapshots(ctx, plan)
    insert_step_configurations(ctx, plan)
    insert_runs(ctx, plan)
    insert_step_runs(ctx, plan)
    links = insert_outputs(ctx, plan) + insert_run_outputs(ctx, plan)
    links += insert_model_links(ctx, plan, insert_models(ctx, plan))
    insert_inputs(ctx, plan, links)
    insert_metadata(ctx, plan)
    insert_tags(ctx, plan)
    count_versions(ctx, plan)


def count_versions(ctx: ProjectContext, plan: ProjectPlan) -> None:
    """Record the project's orphans, live, recent and preexisting versions."""
    cats, ids, tally = plan.cats, plan.ids, ctx.tally
    recent_cut = (ctx.now - plan.base).total_seconds() - 86400.0
    for i, cat in enumerate(cats):
        (tally.orphans if cat in ORPHANS else tally.live).append(ids[i])
        if plan.created[i] > recent_cut:
            tally.recent.append(ids[i])
        if cat in PREEXISTING:
            tally.preexisting.append(ids[i])
    tally.add("versions", plan.n)
    tally.add("orphans", sum(1 for c in cats if c in ORPHANS))
    tally.add("live", sum(1 for c in cats if c not in ORPHANS))
    tally.add("model_only", cats.count(MODEL_ONLY))
    tally.add("json_only", cats.count(JSON_ONLY))
