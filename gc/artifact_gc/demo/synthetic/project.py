"""One project's rows, written step by step from its plan.

Each step writes one kind of row (and draws what it needs from the shared random
generator). ``ProjectRows.generate`` runs the steps in a fixed order: parents before
children, and the random draws in the order that fixes every store's content.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from artifact_gc.demo.synthetic.encoding import Row, dashed, new_id
from artifact_gc.demo.synthetic.files import write_files
from artifact_gc.demo.synthetic.plan import (
    JSON_ONLY,
    LOADED,
    LOADED_MANUAL,
    MODEL_ONLY,
    ORPHAN_MANUAL,
    ORPHANS,
    OUTPUT,
    PREEXISTING,
    STEP_LINKED,
    ProjectPlan,
    plan_project,
    split,
)
from artifact_gc.demo.synthetic.schema import ZENML_VERSION
from artifact_gc.demo.synthetic.shared import Shared
from artifact_gc.demo.synthetic.spec import SyntheticSpec
from artifact_gc.demo.synthetic.vocabulary import (
    CLIENT_ENVIRONMENT,
    KINDS,
    PIPELINES,
    PREEXISTING_KIND,
    STEP_NAMES,
    VIS_FILE,
    artifact_name,
    output_name,
    pipeline_configuration,
    step_config,
    step_of,
)
from artifact_gc.demo.synthetic.writer import RowWriter

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


@dataclass
class Tally:
    """What the projects made, for ``SyntheticStore``."""

    orphans: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    recent: list[str] = field(default_factory=list)
    preexisting: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, value: int) -> None:
        self.counts[key] = self.counts.get(key, 0) + value


@dataclass
class _Location:
    """Where a version lives: its URI and its visualization type."""

    uri: str
    vis_type: str


class ProjectRows:
    """Generates one project's slice of the store."""

    def __init__(
        self,
        writer: RowWriter,
        spec: SyntheticSpec,
        rng: random.Random,
        now: datetime,
        root: str,
        shared: Shared,
        project_id: str,
        project_name: str,
        tally: Tally,
    ) -> None:
        self.w = writer
        self.spec = spec
        self.rng = rng
        self.now = now
        self.root = root
        self.shared = shared
        self.project_id = project_id
        self.project_name = project_name
        self.tally = tally

    def generate(self, n: int, n_artifacts: int) -> None:
        """Write ``n`` versions over ``n_artifacts`` artifacts, and everything around them."""
        if n == 0:
            return
        plan = plan_project(self.spec, self.rng, self.now, n, n_artifacts)
        self.tally.add("artifacts", n_artifacts + plan.n_externals)
        self._artifacts(plan)
        locations = self._versions(plan)
        self._visualizations(plan, locations)
        self._files(locations)
        self._pipelines(plan)
        self._snapshots(plan)
        self._step_configurations(plan)
        self._runs(plan)
        self._step_runs(plan)
        links = self._outputs(plan) + self._run_outputs(plan)
        links += self._model_links(plan, self._models(plan))
        self._inputs(plan, links)
        self._metadata(plan)
        self._tags(plan)
        self._count(plan)

    # -- artifacts and versions -------------------------------------------

    def _artifacts(self, plan: ProjectPlan) -> None:
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
                    yield (aid, t, t, name, False, self.project_id, self.shared.user_id)
                else:
                    name = artifact_name(a)
                    yield (aid, t, t, name, True, self.project_id, self.shared.user_id)

        self.w.insert(
            "artifact",
            ("id", "created", "updated", "name", "has_custom_name", "project_id", "user_id"),
            rows(),
        )

    def _versions(self, plan: ProjectPlan) -> list[_Location]:
        """The ``artifact_version`` rows; returns where each version lives."""
        locations: list[_Location] = []
        n_save: dict[str, int] = {}

        def rows() -> Iterator[Row]:
            for i, a in enumerate(plan.artifact_of):
                kind_index = (a * 7 + 3) % len(KINDS)
                save_type, kind, uri = self._version_kind(plan, i, kind_index)
                n_save[save_type] = n_save.get(save_type, 0) + 1
                # An external version keeps the visualization of its would-be kind.
                vis_type = PREEXISTING_KIND[3] if kind is PREEXISTING_KIND else KINDS[kind_index][3]
                locations.append(_Location(uri, vis_type))
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
                    f"{self.rng.getrandbits(128):032x}",
                    None,
                    plan.artifact_ids[a],
                    self.shared.store_id,
                    self.shared.user_id,
                    self.project_id,
                )

        self.w.insert("artifact_version", _VERSION_COLUMNS, rows())
        for key, value in n_save.items():
            self.tally.add(f"save_type:{key}", value)
        return locations

    def _version_kind(
        self, plan: ProjectPlan, i: int, kind_index: int
    ) -> tuple[str, tuple[str, str, str, str], str]:
        """Version ``i``'s save type, kind and URI, laid out as ZenML lays them out."""
        root = self.root
        cat = plan.cats[i]
        a = plan.artifact_of[i]
        if cat in PREEXISTING:
            return (
                "preexisting",
                PREEXISTING_KIND,
                (f"{root}/user_data/{artifact_name(a)}/v{plan.version_no[i]}"),
            )
        if cat == JSON_ONLY:
            uri = f"{root}/external_artifacts/external_{plan.external_uuid[a]}"
            return "external", KINDS[4], uri
        if cat in (LOADED_MANUAL, ORPHAN_MANUAL) or (cat == MODEL_ONLY and i % 2 == 0):
            uri = f"{root}/custom_artifacts/{artifact_name(a)}/{dashed(new_id(self.rng))}"
            return "manual", KINDS[kind_index], uri
        uri = (
            f"{root}/{step_of(a)}/{output_name(a)}/{plan.uri_run[i]}/{self.rng.getrandbits(32):08x}"
        )
        return "step_output", KINDS[kind_index], uri

    def _visualizations(self, plan: ProjectPlan, locations: list[_Location]) -> None:
        """One ``artifact_visualization`` row per version (files need them too)."""
        if not (self.spec.visualizations or self.spec.write_files):
            return

        def rows() -> Iterator[Row]:
            for i, where in enumerate(locations):
                t = plan.ts(plan.created[i] + 0.5)
                uri = f"{where.uri}/{VIS_FILE[where.vis_type]}"
                yield (new_id(self.rng), t, t, where.vis_type, uri, plan.ids[i])

        self.w.insert(
            "artifact_visualization",
            ("id", "created", "updated", "type", "uri", "artifact_version_id"),
            rows(),
        )

    def _files(self, locations: list[_Location]) -> None:
        if self.spec.write_files:
            files = [(where.uri, VIS_FILE[where.vis_type]) for where in locations]
            write_files(files, self.root, self.shared.store_id)

    # -- pipelines, snapshots, step configurations, runs --------------------

    def _pipelines(self, plan: ProjectPlan) -> None:
        runs_per_pipeline = split(plan.n_runs, plan.n_pipelines)
        t0 = plan.ts(0.0)
        user, project = self.shared.user_id, self.project_id
        self.w.insert(
            "pipeline",
            _PIPELINE_COLUMNS,
            [
                (pid, t0, t0, PIPELINES[p], None, project, user, runs_per_pipeline[p])
                for p, pid in enumerate(plan.pipeline_ids)
            ],
        )

    def _snapshots(self, plan: ProjectPlan) -> None:
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
                        f"{self.rng.getrandbits(128):032x}",
                        self.shared.user_id,
                        self.project_id,
                        self.shared.stack_id,
                        pid,
                        len(STEP_NAMES),
                    )
                )
        self.w.insert("pipeline_snapshot", _SNAPSHOT_COLUMNS, rows)

    def _step_configurations(self, plan: ProjectPlan) -> None:
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
        self.tally.add("step_configurations_with_externals", len(externals))
        t0 = plan.ts(0.0)

        def rows() -> Iterator[Row]:
            for slot, (sid, index, step) in enumerate(slots):
                config = step_config(step, index, externals.get(slot, {}))
                yield (new_id(self.rng), t0, t0, index, step, config, sid, None)

        self.w.insert(
            "step_configuration",
            ("id", "created", "updated", "index", "name", "config", "snapshot_id", "step_run_id"),
            rows(),
        )

    def _runs(self, plan: ProjectPlan) -> None:
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
                    f"{PIPELINES[p]}-{self.project_name}-{j}",
                    dashed(new_id(self.rng)),
                    t,
                    end,
                    False,
                    "completed",
                    index_in_pipeline[p],
                    True,
                    plan.snapshot_ids[p][j % 2],
                    self.shared.user_id,
                    self.project_id,
                    plan.pipeline_ids[p],
                    self.shared.stack_id,
                )

        self.w.insert("pipeline_run", _RUN_COLUMNS, rows())

    def _step_runs(self, plan: ProjectPlan) -> None:
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
                    f"{self.rng.getrandbits(128):032x}",
                    1,
                    False,
                    plan.snapshot_ids[j % plan.n_pipelines][j % 2],
                    plan.run_ids[j],
                    self.shared.user_id,
                    self.project_id,
                )

        self.w.insert("step_run", _STEP_RUN_COLUMNS, rows())

    # -- links: outputs, pipeline outputs, models, inputs -------------------

    def _outputs(self, plan: ProjectPlan) -> int:
        def rows() -> Iterator[Row]:
            for sid, _name, _j, outs in plan.step_runs:
                for i in outs:
                    yield (output_name(plan.artifact_of[i]), sid, plan.ids[i])

        return self.w.insert("step_run_output_artifact", ("name", "step_id", "artifact_id"), rows())

    def _run_outputs(self, plan: ProjectPlan) -> int:
        """Pipeline outputs: the first output of the last step run of ~30% of runs."""
        last_step_run: dict[int, int] = {}
        for s, (_sid, _name, j, outs) in enumerate(plan.step_runs):
            if outs:
                last_step_run[j] = s
        rows: list[Row] = []
        for j, s in sorted(last_step_run.items()):
            if self.rng.random() < 0.3:
                i = plan.step_runs[s].outputs[0]
                t = plan.ts(plan.created[i] + 1.0)
                name = output_name(plan.artifact_of[i])
                rows.append((new_id(self.rng), t, t, name, 0, plan.run_ids[j], plan.ids[i]))
        return self.w.insert(
            "pipeline_run_output",
            ("id", "created", "updated", "name", "output_index", "pipeline_run_id", "artifact_id"),
            rows,
        )

    def _models(self, plan: ProjectPlan) -> list[str]:
        """One model with up to 100 versions; returns the model version ids."""
        rng = self.rng
        user, project = self.shared.user_id, self.project_id
        t0 = plan.ts(0.0)
        model_id = new_id(rng)
        n_model_versions = max(1, min(100, plan.n // 5000))
        model_version_ids = [new_id(rng) for _ in range(n_model_versions)]
        self.w.insert(
            "model",
            _MODEL_COLUMNS,
            [(model_id, t0, t0, "classifier", project, user, "Synthetic model", True)],
        )
        self.w.insert(
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

    def _model_links(self, plan: ProjectPlan, model_version_ids: list[str]) -> int:
        """Every model-only version gets one model link, and ~1% of the step-linked ones."""
        rng = self.rng

        def rows() -> Iterator[Row]:
            for i, cat in enumerate(plan.cats):
                if cat == MODEL_ONLY or (cat in STEP_LINKED and rng.random() < 0.01):
                    t = plan.ts(plan.created[i] + 2.0)
                    yield (new_id(rng), t, t, rng.choice(model_version_ids), plan.ids[i])

        return self.w.insert(
            "model_versions_artifacts",
            ("id", "created", "updated", "model_version_id", "artifact_version_id"),
            rows(),
        )

    def _inputs(self, plan: ProjectPlan, other_links: int) -> None:
        """Inputs fill the links up to ``links_per_version``.

        Every loaded (manual or preexisting) live version is consumed at least once; the
        rest pick step-linked versions at random.
        """
        cats = plan.cats
        step_linked = [i for i, c in enumerate(cats) if c in STEP_LINKED]
        must_load = [i for i, c in enumerate(cats) if c in LOADED]
        target = round(self.spec.links_per_version * plan.n)
        n_inputs = max(len(must_load), target - other_links)
        if not plan.step_runs or not step_linked:
            n_inputs = 0
        n_consumers = len(plan.step_runs)

        def rows() -> Iterator[Row]:
            for k in range(n_inputs):
                i = must_load[k] if k < len(must_load) else self.rng.choice(step_linked)
                kind = "step_output" if cats[i] == OUTPUT else "manual"
                consumer = plan.step_runs[k % n_consumers].id
                yield (f"input_{k // n_consumers}", kind, 0, consumer, plan.ids[i])

        self.w.insert(
            "step_run_input_artifact",
            ("name", "type", "input_index", "step_id", "artifact_id"),
            rows(),
        )

    # -- polymorphic rows: metadata (any version), tags (live versions only) --

    def _metadata(self, plan: ProjectPlan) -> None:
        """``run_metadata`` rows owned by versions, orphans included (they die with them)."""
        rng = self.rng
        owned: list[tuple[str, str, int]] = []  # (metadata id, version id, index)
        for i in range(plan.n):
            if rng.random() < self.spec.metadata_share:
                owned.append((new_id(rng), plan.ids[i], i))

        def rows() -> Iterator[Row]:
            for mid, _vid, i in owned:
                t = plan.ts(plan.created[i] + 1.0)
                size = str(rng.randrange(10, 10**7))
                yield (mid, t, t, self.shared.user_id, self.project_id, "storage_size", size, "int")

        self.w.insert(
            "run_metadata",
            ("id", "created", "updated", "user_id", "project_id", "key", "value", "type"),
            rows(),
        )
        self.w.insert(
            "run_metadata_resource",
            ("id", "resource_id", "resource_type", "run_metadata_id"),
            ((new_id(rng), vid, "artifact_version", mid) for mid, vid, _i in owned),
        )

    def _tags(self, plan: ProjectPlan) -> None:
        """Tags on live versions only: a tag is a reference."""
        rng = self.rng

        def rows() -> Iterator[Row]:
            for i, cat in enumerate(plan.cats):
                if cat not in ORPHANS and rng.random() < self.spec.tag_share:
                    t = plan.ts(plan.created[i] + 3.0)
                    # The row id is drawn before the tag: the draw order fixes the store.
                    row_id = new_id(rng)
                    tag_id = rng.choice(self.shared.tag_ids)
                    yield (row_id, t, t, tag_id, plan.ids[i], "artifact_version")

        self.w.insert(
            "tag_resource",
            ("id", "created", "updated", "tag_id", "resource_id", "resource_type"),
            rows(),
        )

    def _count(self, plan: ProjectPlan) -> None:
        cats, ids, tally = plan.cats, plan.ids, self.tally
        recent_cut = (self.now - plan.base).total_seconds() - 86400.0
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
