"""When a pipeline snapshot can run again, from ZenML's own data model.

A step configuration belongs to a snapshot (``step_configuration.snapshot_id``), and
names the external artifacts (``ExternalArtifact(value=...)`` uploads) its steps will
consume. ZenML uploads a new one on every run, even a fully cached one, so these pile
up. ``--release-unreachable-snapshots`` lets a snapshot's references stop keeping
versions alive once **nothing can run that snapshot again**:

- no row of any table that points at the snapshot remains: no pipeline run, no step
  run, no run template (``run_template.source_snapshot_id``), no deployment
  (``deployment.snapshot_id``), no trigger (``trigger_snapshot``), and no row of a
  table this release does not know (found by reflecting the foreign keys into the
  snapshot table, as references to versions are: an unknown one keeps the snapshot);
- none of the snapshot row's own columns that make it runnable is set: a schedule
  (``schedule_id``; the foreign key is SET NULL when the schedule goes) or a name
  (a named snapshot can be triggered from the dashboard and the API);
- it is older than the grace period.

The table's name and these columns changed across releases (``pipeline_deployment``
before 0.90). They are kept here as data, one :class:`SnapshotProfile` per table name,
for the per-release schema profiles to extend. Only ``pipeline_snapshot`` (0.90 and
later) has been checked against a real store (0.98.0). A profile whose columns the
store lacks releases nothing (:func:`discover_snapshots` returns None), which keeps
today's behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SnapshotProfile:
    """What a snapshot is called in one range of releases."""

    table: str
    #: Columns of the snapshot row that make it runnable when they are set.
    runnable_when_set: tuple[str, ...]
    #: The column of the snapshot row naming its schedule (for the ``schedule:<id>``
    #: referrer).
    schedule_column: str
    #: The column of a step configuration row that names its snapshot.
    config_snapshot_column: str
    #: Tables whose rows pointing at a snapshot do not make it runnable: its own
    #: step configurations.
    not_holders: frozenset[str]


#: Keyed by the snapshot table's name. 0.90 renamed ``pipeline_deployment`` to
#: ``pipeline_snapshot`` (and ``deployment_id`` columns to ``snapshot_id``); before
#: 0.85, the step configurations were a JSON column of the deployment row itself.
PROFILES: dict[str, SnapshotProfile] = {
    "pipeline_snapshot": SnapshotProfile(
        table="pipeline_snapshot",
        runnable_when_set=("schedule_id", "name"),
        schedule_column="schedule_id",
        config_snapshot_column="snapshot_id",
        not_holders=frozenset({"step_configuration"}),
    ),
    # Written from the rename; the per-release profiles confirm it on real stores.
    "pipeline_deployment": SnapshotProfile(
        table="pipeline_deployment",
        runnable_when_set=("schedule_id",),
        schedule_column="schedule_id",
        config_snapshot_column="deployment_id",
        not_holders=frozenset({"step_configuration"}),
    ),
}

#: The column of a step configuration naming the step run it belongs to (a run's own
#: copy; it dies with the step run).
CONFIG_STEP_RUN_COLUMN = "step_run_id"


@dataclass(frozen=True)
class Snapshots:
    """The snapshot table of one store: its profile, and every (table, column) whose
    rows pointing at a snapshot make it runnable (found by reflection)."""

    profile: SnapshotProfile
    holders: tuple[tuple[str, str], ...]

    @property
    def table(self) -> str:
        return self.profile.table

    def config_owner_columns(self, config_table: str, present: frozenset[str]
                             ) -> tuple[str | None, str | None]:
        """(snapshot column, step run column) of a configuration table, or None
        each where the table has no such column. A JSON column of the snapshot row
        itself (before 0.85) is owned by that row's ``id``."""
        if config_table == self.profile.table:
            return "id", None
        snapshot = self.profile.config_snapshot_column
        return (snapshot if snapshot in present else None,
                CONFIG_STEP_RUN_COLUMN if CONFIG_STEP_RUN_COLUMN in present else None)


def discover_snapshots(inspector: Any, tables: frozenset[str]) -> Snapshots | None:
    """The store's snapshot model, or None when no profile fits (nothing is released).

    ``inspector`` is SQLAlchemy's, for the store's engine or connection."""
    from artifact_gc.metadb.reflection import foreign_keys

    for name, profile in PROFILES.items():
        if name not in tables:
            continue
        columns = {c["name"] for c in inspector.get_columns(name)}
        if not set(profile.runnable_when_set) <= columns or "created" not in columns:
            return None
        holders = []
        reflected = foreign_keys(inspector)
        for table in sorted(tables):
            if table in profile.not_holders:
                continue
            # (A table gone since the schema was read: reflecting it raises as before.)
            keys = reflected[table] if table in reflected else inspector.get_foreign_keys(table)
            for fk in keys:
                if fk.get("referred_table") == name:
                    holders.append((table, fk["constrained_columns"][0]))
        return Snapshots(profile, tuple(holders))
    return None


def runnable_filter(snapshots: Snapshots, quote: Any, alias: str) -> str:
    """SQL (SQLite and MySQL): true when the snapshot row ``alias`` is held by one of
    its own columns or by a row of a holder table. The grace period is applied by the
    caller (its clock is the mark's)."""
    q = quote
    tests = [f"{alias}.{q(column)} IS NOT NULL"
             for column in snapshots.profile.runnable_when_set]
    tests += [f"EXISTS (SELECT 1 FROM {q(table)} h WHERE h.{q(column)} = {alias}.{q('id')})"
              for table, column in snapshots.holders]
    return "(" + " OR ".join(tests) + ")"
