"""The rows of pipelines and their runs: pipelines, snapshots, step configurations
(where external artifacts are referenced by id), pipeline runs and step runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from artifact_gc.demo.synthetic.context import ProjectContext
from artifact_gc.demo.synthetic.encoding import Row, dashed, new_id
from artifact_gc.demo.synthetic.plan import JSON_ONLY, ProjectPlan, split
from artifact_gc.demo.synthetic.schema import ZENML_VERSION
from artifact_gc.demo.synthetic.vocabulary import (
    CLIENT_ENVIRONMENT,
    PIPELINES,
    STEP_NAMES,
    pipeline_configuration,
    step_config,
)

_PIPELINE_COLUMNS = (
    "id",
    "created",
    "updated",
    "name",
    "description",
    "project_id",
    "user_id",
    "run_count",
)
_SNAPSHOT_COLUMNS = (
    "id",
    "created",
    "updated",
    "is_dynamic",
    "pipeline_configuration",
    "client_environment",
    "run_name_template",
    "client_version",
    "server_version",
    "pipeline_version_hash",
    "user_id",
    "project_id",
    "stack_id",
    "pipeline_id",
    "step_count",
)
_RUN_COLUMNS = (
    "id",
    "created",
    "updated",
    "name",
    "orchestrator_run_id",
    "start_time",
    "end_time",
    "in_progress",
    "status",
    "index",
    "enable_heartbeat",
    "snapshot_id",
    "user_id",
    "project_id",
    "pipeline_id",
    "stack_id",
)
_STEP_RUN_COLUMNS = (
    "id",
    "created",
    "updated",
    "name",
    "start_time",
    "end_time",
    "status",
    "cache_key",
    "version",
    "is_retriable",
    "snapshot_id",
    "pipeline_run_id",
    "user_id",
    "project_id",
)


def insert_pipelines(ctx: ProjectContext, plan: ProjectPlan) -> None:
    runs_per_pipeline = split(plan.n_runs, plan.n_pipelines)
    t0 = plan.ts(0.0)
    user, project = ctx.shared.user_id, ctx.project_id
    ctx.writer.insert(
        "pipeline",
        _PIPELINE_COLUMNS,
        [
            (pid, t0, t0, PIPELINES[p], None, project, user, runs_per_pipeline[p])
            for p, pid in enumerate(plan.pipeline_ids)
        ],
    )


def insert_snapshots(ctx: ProjectContext, plan: ProjectPlan) -> None:
    t0 = plan.ts(0.0)
    rows: list[Row] = []
    for p, pid in enumerate(plan.pipeline_ids):
        for sid in plan.snapshot_ids[p]:
            rows.append(
                (
                    sid,
                    t0,
                    t0,
                    False,
                    pipeline_configuration(PIPELINES[p]),
                    CLIENT_ENVIRONMENT,
                    f"{PIPELINES[p]}-{{date}}-{{time}}",
                    ZENML_VERSION,
                    ZENML_VERSION,
                    f"{ctx.rng.getrandbits(128):032x}",
                    ctx.shared.user_id,
                    ctx.project_id,
                    ctx.shared.stack_id,
                    pid,
                    len(STEP_NAMES),
                )
            )
    ctx.writer.insert("pipeline_snapshot", _SNAPSHOT_COLUMNS, rows)


def insert_step_configurations(ctx: ProjectContext, plan: ProjectPlan) -> None:
    """One configuration per step of each snapshot.

    External artifacts uploaded at compile time: only their dashed ids in the step
    configuration JSON keep them alive.
    """
    slots = [
        (sid, index, step)
        for sids in plan.snapshot_ids
        for sid in sids
        for index, step in enumerate(STEP_NAMES)
    ]
    externals: dict[int, dict[str, Any]] = {}
    json_only = (i for i, cat in enumerate(plan.cats) if cat == JSON_ONLY)
    for k, i in enumerate(json_only):
        externals.setdefault(k % len(slots), {})[f"external_{k}"] = {"id": dashed(plan.ids[i])}
    ctx.tally.add("step_configurations_with_externals", len(externals))
    t0 = plan.ts(0.0)

    def rows() -> Iterator[Row]:
        for slot, (sid, index, step) in enumerate(slots):
            config = step_config(step, index, externals.get(slot, {}))
            yield (new_id(ctx.rng), t0, t0, index, step, config, sid, None)

    ctx.writer.insert(
        "step_configuration",
        ("id", "created", "updated", "index", "name", "config", "snapshot_id", "step_run_id"),
        rows(),
    )


def insert_runs(ctx: ProjectContext, plan: ProjectPlan) -> None:
    """Pipeline runs, round-robin over the pipelines, ten minutes each."""
    index_in_pipeline = [0] * plan.n_pipelines

    def rows() -> Iterator[Row]:
        for j, rid in enumerate(plan.run_ids):
            p = j % plan.n_pipelines
            index_in_pipeline[p] += 1
            start = plan.run_created[j] if plan.run_created[j] != float("inf") else 0.0
            t = plan.ts(start)
            end = plan.ts(start + 600.0)
            yield (
                rid,
                t,
                end,
                f"{PIPELINES[p]}-{ctx.project_name}-{j}",
                dashed(new_id(ctx.rng)),
                t,
                end,
                False,
                "completed",
                index_in_pipeline[p],
                True,
                plan.snapshot_ids[p][j % 2],
                ctx.shared.user_id,
                ctx.project_id,
                plan.pipeline_ids[p],
                ctx.shared.stack_id,
            )

    ctx.writer.insert("pipeline_run", _RUN_COLUMNS, rows())


def insert_step_runs(ctx: ProjectContext, plan: ProjectPlan) -> None:
    """Step runs, each ending as its first output is created."""

    def rows() -> Iterator[Row]:
        for sid, name, j, outs in plan.step_runs:
            start = min((plan.created[i] for i in outs), default=plan.run_created[j]) - 60.0
            t = plan.ts(start)
            end = plan.ts(start + 60.0)
            yield (
                sid,
                t,
                end,
                name,
                t,
                end,
                "completed",
                f"{ctx.rng.getrandbits(128):032x}",
                1,
                False,
                plan.snapshot_ids[j % plan.n_pipelines][j % 2],
                plan.run_ids[j],
                ctx.shared.user_id,
                ctx.project_id,
            )

    ctx.writer.insert("step_run", _STEP_RUN_COLUMNS, rows())
