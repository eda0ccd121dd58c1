"""Who holds each reference to an artifact version: the referrer a reason names.

A reference row says *that* a version is kept (its reason, from the foreign key);
its other columns say *by what*: the step run and the input or output name of a step
link, the model version of a model link, the run of a pipeline output. Mark writes
them to the manifest's ``referrers`` column, spelled as in FORMAT.md ("Referrers"):

- ``run:<run id>/step:<step name>/input:<name>`` and ``.../output:<name>``
- ``run:<run id>/step:<step name>/config`` (a step run's own configuration names it)
- ``run:<run id>/output:<name>`` (a pipeline run's output)
- ``model_version:<id>``
- ``hook_invocation:<id>/output:<name>``
- ``snapshot:<id>`` and, when a schedule runs that snapshot, ``schedule:<id>``
- ``released_snapshot:<id>``: a snapshot that nothing can run again, whose reference
  ``--release-unreachable-snapshots`` let go of (the version may then be a candidate)
- ``table:<table>``: a foreign key of a table this release does not know

The columns are looked up by (table, column) of the reference, and used only when the
store's table has them (reflection): a release that lacks one still marks, with the
coarser ``table:<table>`` referrer.
"""

from __future__ import annotations

from dataclasses import dataclass

#: How a referrer is named, after its prefix (FORMAT.md, "Referrers").
RUN, STEP, MODEL_VERSION, HOOK = "run", "step", "model_version", "hook_invocation"
SNAPSHOT, SCHEDULE, RELEASED_SNAPSHOT, TABLE = (
    "snapshot", "schedule", "released_snapshot", "table")

#: At most this many referrers are listed per version (sorted); a last entry
#: ``+N more`` counts the rest, so that a version consumed by thousands of runs keeps
#: a row of bounded size.
MAX_REFERRERS = 10
MORE_PREFIX = "+"


@dataclass(frozen=True)
class ReferrerColumns:
    """The columns of a reference table that name its referrer.

    ``owner`` holds the id of the owning row, of kind ``owner_kind`` (``step_run``
    is spelled through the step run's run and name); ``label`` names the link
    (an input or output name) as ``label_kind:<label>``."""

    owner: str
    owner_kind: str
    label: str | None = None
    label_kind: str | None = None


#: ZenML 0.98's references (schema.KNOWN_REFERENCES), by (table, column).
KNOWN_REFERRERS: dict[tuple[str, str], ReferrerColumns] = {
    ("step_run_input_artifact", "artifact_id"):
        ReferrerColumns("step_id", "step_run", "name", "input"),
    ("step_run_output_artifact", "artifact_id"):
        ReferrerColumns("step_id", "step_run", "name", "output"),
    ("model_versions_artifacts", "artifact_version_id"):
        ReferrerColumns("model_version_id", MODEL_VERSION),
    ("pipeline_run_output", "artifact_id"):
        ReferrerColumns("pipeline_run_id", RUN, "name", "output"),
    ("hook_invocation_output_artifact", "artifact_version_id"):
        ReferrerColumns("hook_invocation_id", HOOK, "name", "output"),
}

#: The table whose rows are step runs, and its columns naming the step and its run.
STEP_RUN_TABLE = "step_run"
STEP_RUN_COLUMNS = ("id", "name", "pipeline_run_id")


def referrer_columns(table: str, column: str, present: frozenset[str]
                     ) -> ReferrerColumns | None:
    """The referrer columns of the reference ``table.column`` that the store's table
    has (``present``: its column names), or None."""
    known = KNOWN_REFERRERS.get((table, column))
    if known is None or known.owner not in present:
        return None
    if known.label is not None and known.label not in present:
        return ReferrerColumns(known.owner, known.owner_kind)
    return known
