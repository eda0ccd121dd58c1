"""One project's plan: its versions' categories, ids, ages and artifacts, and the step
runs, pipeline runs and snapshots around them, drawn before any row is written.

The plan is drawn from the shared ``random.Random`` in a fixed order, and the row steps
(``project.py``) draw the rest in a fixed order after it: the same spec and seed give
the same store, byte for byte. Reordering draws here or there changes every store.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from artifact_gc.demo.synthetic.encoding import dashed, new_id, timestamp
from artifact_gc.demo.synthetic.spec import SyntheticSpec
from artifact_gc.demo.synthetic.vocabulary import PIPELINES, STEP_NAMES, step_of

# Version categories (one per artifact version).
OUTPUT = 0  # step_output, kept alive by its output link (and maybe inputs, model, run output)
LOADED_MANUAL = 1  # manual, kept alive by step input links (loaded in a step)
LOADED_PREEXISTING = 2  # preexisting, kept alive by step input links
MODEL_ONLY = 3  # manual or step_output, kept alive only by a model link
JSON_ONLY = 4  # external, kept alive only by step_configuration.config JSON
ORPHAN_OUTPUT = 5  # step_output whose run was deleted
ORPHAN_MANUAL = 6
ORPHAN_PREEXISTING = 7
ORPHANS = frozenset({ORPHAN_OUTPUT, ORPHAN_MANUAL, ORPHAN_PREEXISTING})
STEP_LINKED = frozenset({OUTPUT, LOADED_MANUAL, LOADED_PREEXISTING})
LOADED = frozenset({LOADED_MANUAL, LOADED_PREEXISTING})
PREEXISTING = frozenset({LOADED_PREEXISTING, ORPHAN_PREEXISTING})

SNAPSHOTS_PER_PIPELINE = 2


def split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` near-equal parts, the larger ones first."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def at_least_one(total: int, share: float, floor_when: int = 20) -> int:
    """``share`` of ``total``, rounded, but at least one once ``total`` reaches ``floor_when``."""
    count = round(total * share)
    if count == 0 and share > 0 and total >= floor_when:
        count = 1
    return count


class StepRun(NamedTuple):
    id: str
    name: str
    #: Index of its pipeline run.
    run: int
    #: Indexes of the versions it produced.
    outputs: list[int]


@dataclass
class ProjectPlan:
    """Everything about one project's rows that is decided before they are written.

    Versions are numbered 0..n-1; times are seconds after ``base``.
    """

    n: int
    n_artifacts: int
    base: datetime
    cats: list[int]
    ids: list[str]
    created: list[float]
    #: Each version's artifact number; externals number from ``n_artifacts`` up.
    artifact_of: list[int]
    version_no: list[int]
    n_externals: int
    step_runs: list[StepRun]
    n_runs: int
    pipeline_ids: list[str]
    snapshot_ids: list[list[str]]
    run_ids: list[str]
    #: Each pipeline run's start (``inf`` for a run whose step runs produced nothing).
    run_created: list[float]
    #: The dashed step run id in the URI of each step-output version.
    uri_run: dict[int, str]
    artifact_ids: list[str]
    #: The dashed uuid in each external artifact's name, by artifact number.
    external_uuid: dict[int, str]

    @property
    def n_pipelines(self) -> int:
        return len(self.pipeline_ids)

    def ts(self, offset: float) -> str:
        """The timestamp ``offset`` seconds after ``base``."""
        return timestamp(self.base + timedelta(seconds=offset))


def plan_project(
    spec: SyntheticSpec, rng: random.Random, now: datetime, n: int, n_artifacts: int
) -> ProjectPlan:
    """Draw one project's plan of ``n`` versions over ``n_artifacts`` artifacts."""
    cats = categories(spec, rng, n)
    ids = [new_id(rng) for _ in range(n)]
    base, created = creation_times(spec, rng, now, n)
    artifact_of, version_no, n_externals = assign_artifacts(cats, n_artifacts)
    step_runs, producer, n_runs = plan_step_runs(cats, artifact_of, rng)
    n_pipelines = min(len(PIPELINES), max(n_runs, 1))
    pipeline_ids = [new_id(rng) for _ in range(n_pipelines)]
    snapshot_ids = [
        [new_id(rng) for _ in range(SNAPSHOTS_PER_PIPELINE)] for _ in range(n_pipelines)
    ]
    run_ids = [new_id(rng) for _ in range(n_runs)]
    uri_run = uri_runs(cats, step_runs, producer, rng)
    artifact_ids = [new_id(rng) for _ in range(n_artifacts + n_externals)]
    external_uuid = {
        artifact_of[i]: dashed(new_id(rng)) for i, cat in enumerate(cats) if cat == JSON_ONLY
    }
    return ProjectPlan(
        n=n,
        n_artifacts=n_artifacts,
        base=base,
        cats=cats,
        ids=ids,
        created=created,
        artifact_of=artifact_of,
        version_no=version_no,
        n_externals=n_externals,
        step_runs=step_runs,
        n_runs=n_runs,
        pipeline_ids=pipeline_ids,
        snapshot_ids=snapshot_ids,
        run_ids=run_ids,
        run_created=run_start_times(step_runs, created, n_runs),
        uri_run=uri_run,
        artifact_ids=artifact_ids,
        external_uuid=external_uuid,
    )


def categories(spec: SyntheticSpec, rng: random.Random, n: int) -> list[int]:
    """One category per version, in the spec's shares, shuffled."""
    n_orphan = round(n * spec.orphan_share)
    n_live = n - n_orphan
    n_json = min(n_live, at_least_one(n, spec.json_only_share))
    n_model = min(n_live - n_json, at_least_one(n, spec.model_only_share))
    n_step = n_live - n_json - n_model
    n_pre = at_least_one(n, spec.preexisting_share)
    n_pre_live = min(n_step, n_pre // 2 + n_pre % 2)
    n_pre_orphan = min(n_orphan, n_pre - n_pre_live)
    n_manual = min(n_step - n_pre_live, at_least_one(n_step, spec.manual_share))
    n_output = n_step - n_pre_live - n_manual
    n_orphan_manual = min(n_orphan - n_pre_orphan, round(n_orphan * 0.1))
    n_orphan_output = n_orphan - n_pre_orphan - n_orphan_manual
    cats = (
        [OUTPUT] * n_output
        + [LOADED_MANUAL] * n_manual
        + [LOADED_PREEXISTING] * n_pre_live
        + [MODEL_ONLY] * n_model
        + [JSON_ONLY] * n_json
        + [ORPHAN_OUTPUT] * n_orphan_output
        + [ORPHAN_MANUAL] * n_orphan_manual
        + [ORPHAN_PREEXISTING] * n_pre_orphan
    )
    rng.shuffle(cats)
    return cats


def creation_times(
    spec: SyntheticSpec, rng: random.Random, now: datetime, n: int
) -> tuple[datetime, list[float]]:
    """The base moment, and each version's creation in seconds after it.

    Spread over the past ``age_days``, increasing with the index so that version numbers
    increase with time; the last ``recent_share`` are less than a day old.
    """
    n_recent = at_least_one(n, spec.recent_share)
    old_span = max(spec.age_days - 1, 0) * 86400.0
    base = now - timedelta(days=max(spec.age_days, 1))
    created: list[float] = []
    n_old = n - n_recent
    for i in range(n):
        if i < n_old:
            created.append(old_span * (i + rng.random()) / max(n_old, 1))
        else:
            # Between 1 hour and 23 hours ago.
            created.append(
                (now - base).total_seconds()
                - 3600.0 * (23 - 22 * (i - n_old + rng.random()) / max(n_recent, 1))
            )
    return base, created


def assign_artifacts(cats: list[int], n_artifacts: int) -> tuple[list[int], list[int], int]:
    """Each version's artifact and version number, and the number of external artifacts.

    Externals get their own artifact ("external_<uuid>"); the others are spread
    round-robin over ``n_artifacts`` so that each has several versions.
    """
    artifact_of: list[int] = []
    version_no: list[int] = []
    counter = 0
    n_externals = 0
    for cat in cats:
        if cat == JSON_ONLY:
            artifact_of.append(n_artifacts + n_externals)
            version_no.append(1)
            n_externals += 1
        else:
            artifact_of.append(counter % n_artifacts)
            version_no.append(counter // n_artifacts + 1)
            counter += 1
    return artifact_of, version_no, n_externals


def plan_step_runs(
    cats: list[int], artifact_of: list[int], rng: random.Random
) -> tuple[list[StepRun], dict[int, int], int]:
    """The step runs that produced the live outputs, each output's producer, the run count.

    1-3 outputs of one step name per step run, and the j-th step run of each step name
    belongs to pipeline run j, so step names are unique within a pipeline run.
    """
    by_step: dict[str, list[int]] = {s: [] for s in STEP_NAMES}
    for i, cat in enumerate(cats):
        if cat == OUTPUT:
            by_step[step_of(artifact_of[i])].append(i)
    step_runs: list[StepRun] = []
    producer: dict[int, int] = {}
    for step_name, members in by_step.items():
        j = 0
        pos = 0
        while pos < len(members):
            size = rng.choice((1, 2, 2, 3))
            group = members[pos : pos + size]
            pos += size
            for i in group:
                producer[i] = len(step_runs)
            step_runs.append(StepRun(new_id(rng), step_name, j, group))
            j += 1
    n_runs = max((sr.run for sr in step_runs), default=-1) + 1
    if not step_runs and any(c in LOADED for c in cats):
        # Loaded versions need a consumer: one step run without outputs.
        step_runs.append(StepRun(new_id(rng), STEP_NAMES[0], 0, []))
        n_runs = 1
    return step_runs, producer, n_runs


def run_start_times(step_runs: list[StepRun], created: list[float], n_runs: int) -> list[float]:
    """Each pipeline run starts two minutes before its first output."""
    run_created = [float("inf")] * n_runs
    for _sid, _name, j, outs in step_runs:
        first = min((created[i] for i in outs), default=created[0]) - 120.0
        run_created[j] = min(run_created[j], first)
    return run_created


def uri_runs(
    cats: list[int], step_runs: list[StepRun], producer: dict[int, int], rng: random.Random
) -> dict[int, str]:
    """The step run named in each step-output version's URI.

    Orphaned outputs name step runs that were deleted with their pipeline run.
    """
    uri_run: dict[int, str] = {}
    for i, cat in enumerate(cats):
        if cat == OUTPUT:
            uri_run[i] = dashed(step_runs[producer[i]].id)
        elif cat in (ORPHAN_OUTPUT, MODEL_ONLY):
            uri_run[i] = dashed(new_id(rng))
    return uri_run
