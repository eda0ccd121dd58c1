"""What the ZenML schema says about artifact versions, discovered by reflection.

ZenML's own prune keeps a hand-written list of reference tables, and it went stale
when model links arrived. We reflect every foreign key into ``artifact_version`` at
mark (and sweep) time instead: a table we do not know as a dependent keeps the
version alive, so a release that adds a new kind of reference makes us keep more,
never delete more.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from artifact_gc.errors import SchemaError

#: ZenML releases whose schema this version of artifact-gc was tested against.
KNOWN_SCHEMA_VERSIONS = frozenset({"0.98.0"})

VERSION_TABLE = "artifact_version"
ARTIFACT_TABLE = "artifact"

#: Reasons for the references ZenML 0.98 has. Any other foreign key is ``fk:<table>``.
KNOWN_REFERENCES = {
    ("step_run_input_artifact", "artifact_id"): "step_input",
    ("step_run_output_artifact", "artifact_id"): "step_output",
    ("model_versions_artifacts", "artifact_version_id"): "model_link",
    ("pipeline_run_output", "artifact_id"): "run_output",
    ("hook_invocation_output_artifact", "artifact_version_id"): "hook_output",
}

#: Tables whose rows belong to a version and die with it (ON DELETE CASCADE).
KNOWN_DEPENDENTS = frozenset({"artifact_visualization"})

#: Polymorphic tables (no foreign key) that name versions or artifacts by resource_id.
POLYMORPHIC_TABLES = ("run_metadata_resource", "tag_resource")

CORE_TABLES = (ARTIFACT_TABLE, VERSION_TABLE, "stack_component")


class UnknownSchemaVersion(UserWarning):
    """The store's schema version is not one this release was tested against."""


@dataclass(frozen=True)
class Reference:
    """A foreign key column that keeps an artifact version alive."""

    table: str
    column: str
    reason: str
    on_delete: str | None


@dataclass(frozen=True)
class Dependent:
    """Rows that belong to a version (or to another dependent) and go with it."""

    table: str
    column: str
    parent_table: str
    parent_column: str = "id"


@dataclass(frozen=True)
class ZenMLSchema:
    """The parts of a ZenML store's schema that reachability depends on."""

    version: str | None
    tables: frozenset[str]
    references: tuple[Reference, ...]
    dependents: tuple[Dependent, ...]
    project_table: str
    project_column: str
    polymorphic_tables: tuple[str, ...]
    config_tables: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...] = field(default=())

    @property
    def known_version(self) -> bool:
        return self.version in KNOWN_SCHEMA_VERSIONS

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "references": [
                {"table": r.table, "column": r.column, "reason": r.reason} for r in self.references
            ],
            "dependents": [
                {"table": d.table, "column": d.column, "parent": d.parent_table}
                for d in self.dependents
            ],
        }


def discover(engine: Any) -> ZenMLSchema:
    """Reflect the store behind ``engine`` and classify every reference to a version."""
    import sqlalchemy as sa

    try:
        inspector = sa.inspect(engine)
        tables = frozenset(inspector.get_table_names())
    except sa.exc.SQLAlchemyError as exc:
        from artifact_gc.errors import DatabaseError

        raise DatabaseError(f"cannot read the database schema: {exc}") from exc
    missing = tuple(t for t in CORE_TABLES if t not in tables)
    if missing:
        raise SchemaError(
            "this database is not a ZenML store we can reason about: missing core "
            f"table(s) {', '.join(missing)}",
            missing=missing,
        )
    version = _schema_version(engine, tables)
    notes: list[str] = []
    if version not in KNOWN_SCHEMA_VERSIONS:
        note = (
            f"ZenML schema version {version or 'unknown'} was not tested with this release "
            f"(known: {', '.join(sorted(KNOWN_SCHEMA_VERSIONS))}); references are taken "
            "from the schema's foreign keys"
        )
        notes.append(note)
        warnings.warn(note, UnknownSchemaVersion, stacklevel=2)

    foreign_keys = {table: inspector.get_foreign_keys(table) for table in sorted(tables)}
    references: list[Reference] = []
    dependents: list[Dependent] = []
    for table, keys in foreign_keys.items():
        for fk in keys:
            if fk.get("referred_table") != VERSION_TABLE:
                continue
            column = fk["constrained_columns"][0]
            on_delete = (fk.get("options") or {}).get("ondelete")
            if table in KNOWN_DEPENDENTS:
                dependents.append(Dependent(table, column, VERSION_TABLE))
            elif table == VERSION_TABLE:
                # A version pointing at another version keeps the target alive too.
                references.append(Reference(table, column, f"fk:{table}.{column}", on_delete))
            else:
                reason = KNOWN_REFERENCES.get((table, column), f"fk:{table}")
                references.append(Reference(table, column, reason, on_delete))
    # Rows hanging off a dependent (curated visualizations hang off visualizations).
    frontier = [d.table for d in dependents]
    while frontier:
        parent = frontier.pop()
        for table, keys in foreign_keys.items():
            for fk in keys:
                if fk.get("referred_table") == parent:
                    child = Dependent(table, fk["constrained_columns"][0], parent)
                    if child not in dependents:
                        dependents.append(child)
                        frontier.append(table)

    if "project" in tables:
        project_table, project_column = "project", "project_id"
    elif "workspace" in tables:
        project_table, project_column = "workspace", "workspace_id"
    else:
        raise SchemaError("the store has neither a project nor a workspace table",
                          missing=("project",))
    config_tables = tuple(
        (table, column)
        for table, column in (("step_configuration", "config"),)
        if table in tables
    )
    return ZenMLSchema(
        version=version,
        tables=tables,
        references=tuple(references),
        dependents=tuple(dependents),
        project_table=project_table,
        project_column=project_column,
        polymorphic_tables=tuple(t for t in POLYMORPHIC_TABLES if t in tables),
        config_tables=config_tables,
        warnings=tuple(notes),
    )


def _schema_version(engine: Any, tables: frozenset[str]) -> str | None:
    import sqlalchemy as sa

    if "alembic_version" not in tables:
        return None
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    return str(rows[0][0]) if rows else None
