"""What the ZenML schema says about artifact versions: its profile, checked by reflection.

ZenML's own prune keeps a hand-written list of reference tables, and it went stale
when model links arrived. We reflect every foreign key into ``artifact_version`` at
mark (and sweep) time instead: a table we do not know as a dependent keeps the
version alive, so a release that adds a new kind of reference makes us keep more,
never delete more. What reflection cannot see (JSON references, polymorphic rows,
scope naming) comes from the store's schema profile (profiles.py), chosen by its
alembic revision.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

from artifact_gc.errors import SchemaError
from artifact_gc.metadb.reflection import ForeignKeys
from artifact_gc.metadb.reflection import foreign_keys as reflect_foreign_keys
from artifact_gc.zenml.profiles import (
    PROFILES,
    Polymorphic,
    SchemaProfile,
    describe_unknown,
    profile_for,
    supported_releases,
)

#: ZenML releases whose schema a profile covers (each tested through its profile).
KNOWN_SCHEMA_VERSIONS = frozenset(supported_releases())

#: A column named like a reference to a version or an artifact.
REFERENCE_LIKE = re.compile(r"(^|_)artifact(_version)?_id$")

VERSION_TABLE = "artifact_version"
ARTIFACT_TABLE = "artifact"

#: Reasons for the references the profiles know. Any other foreign key is ``fk:<table>``.
KNOWN_REFERENCES = {(t, c): reason for t, c, reason in PROFILES[-1].references}

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
    #: The profile of the store's release (``known=False``: read by reflection).
    profile: SchemaProfile = PROFILES[-1]
    #: What reflection found that no profile explains (only for a store without a
    #: known profile): "table.column (why)". The sweep refuses while it is not empty.
    unexplained: tuple[str, ...] = field(default=())

    @property
    def known_version(self) -> bool:
        return self.profile.known

    @property
    def scope_noun(self) -> str:
        """What the store calls its scope: ``workspace`` before 0.80, ``project`` since."""
        return self.profile.scope_table

    def owned_through(self) -> dict[str, tuple[str, str]]:
        """Polymorphic link table -> (link column, the table whose rows it owns)."""
        return self.profile.owned_through()

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "profile": self.profile.first_release if self.profile.known else None,
            "scope": self.scope_noun,
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
    reflected = reflect_foreign_keys(inspector)
    foreign_keys = {table: reflected[table] for table in sorted(tables)}
    notes: list[str] = []
    profile = profile_for(version)
    unexplained: tuple[str, ...] = ()
    if profile is None:
        profile = _reflected_profile(inspector, tables, version)
        unexplained = _unexplained(inspector, tables, foreign_keys)
        note = (
            f"{describe_unknown(version)}: no schema profile covers it, so references are "
            "taken from the schema's foreign keys; a sweep needs "
            f"--accept-schema {version or 'unknown'}"
        )
        notes.append(note)
        warnings.warn(note, UnknownSchemaVersion, stacklevel=2)
    else:
        _check_profile(profile, tables)

    known_references = {(t, c): reason for t, c, reason in profile.references}
    known_references = {**KNOWN_REFERENCES, **known_references}
    references: list[Reference] = []
    dependents: list[Dependent] = []
    for table, keys in foreign_keys.items():
        for fk in keys:
            if fk.get("referred_table") != VERSION_TABLE:
                continue
            column = fk["constrained_columns"][0]
            on_delete = (fk.get("options") or {}).get("ondelete")
            if table in profile.dependents:
                dependents.append(Dependent(table, column, VERSION_TABLE))
            elif table == VERSION_TABLE:
                # A version pointing at another version keeps the target alive too.
                references.append(Reference(table, column, f"fk:{table}.{column}", on_delete))
            else:
                reason = known_references.get((table, column), f"fk:{table}")
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

    return ZenMLSchema(
        version=version,
        tables=tables,
        references=tuple(references),
        dependents=tuple(dependents),
        project_table=profile.scope_table,
        project_column=profile.scope_column,
        polymorphic_tables=tuple(t for t in profile.polymorphic_tables if t in tables),
        config_tables=tuple(s for s in profile.config_sources if s[0] in tables),
        warnings=tuple(notes),
        profile=profile,
        unexplained=unexplained,
    )


def _check_profile(profile: SchemaProfile, tables: frozenset[str]) -> None:
    """A store whose revision names a release must have that release's tables: one that
    does not was changed by hand, and its profile would misread it."""
    needed = {profile.scope_table, *(t for t, _ in profile.config_sources),
              *profile.polymorphic_tables}
    missing = sorted(needed - tables)
    if missing:
        raise SchemaError(
            f"the store says ZenML {profile.release}, but lacks table(s) "
            f"{', '.join(missing)} that this release's schema has",
            missing=tuple(missing),
        )


def _reflected_profile(inspector: Any, tables: frozenset[str],
                       version: str | None) -> SchemaProfile:
    """A profile for a store no profile covers, read from what the store has: the newest
    profile's facts, with each layout that differs between releases taken from the
    tables and columns present (every JSON source present is read)."""
    last = PROFILES[-1]
    if "project" in tables:
        scope = "project"
    elif "workspace" in tables:
        scope = "workspace"
    else:
        raise SchemaError("the store has neither a project nor a workspace table",
                          missing=("project",))
    deployment = "pipeline_snapshot" if "pipeline_snapshot" in tables else "pipeline_deployment"
    sources: list[tuple[str, str]] = []
    if "step_configuration" in tables:
        sources.append(("step_configuration", "config"))
    if deployment in tables and "step_configurations" in _columns(inspector, deployment):
        sources.append((deployment, "step_configurations"))
    polymorphic: list[Polymorphic] = []
    if "run_metadata_resource" in tables:
        polymorphic.append(Polymorphic("run_metadata_resource",
                                       ("run_metadata_id", "run_metadata")))
    elif "run_metadata" in tables and "resource_id" in _columns(inspector, "run_metadata"):
        polymorphic.append(Polymorphic("run_metadata"))
    if "tag_resource" in tables:
        polymorphic.append(Polymorphic("tag_resource"))
    return replace(
        last, first_release=version or "unknown", release=version, known=False,
        changes="read by reflection", scope_table=scope, deployment_table=deployment,
        config_sources=tuple(sources), polymorphic=tuple(polymorphic),
    )


def _unexplained(inspector: Any, tables: frozenset[str],
                 foreign_keys: ForeignKeys) -> tuple[str, ...]:
    """What the store has that the newest profile does not explain and that could name a
    version: a foreign key into artifact_version from a table it does not know, a column
    named like a reference without a foreign key, a new polymorphic table."""
    last = PROFILES[-1]
    known = {(t, c) for t, c, _ in last.references}
    polymorphic = {*last.polymorphic_tables, *last.other_polymorphic}
    found: list[str] = []
    for table in sorted(tables):
        keyed = {c for fk in foreign_keys.get(table, []) for c in fk["constrained_columns"]}
        for fk in foreign_keys.get(table, []):
            column = fk["constrained_columns"][0]
            if (fk.get("referred_table") == VERSION_TABLE and (table, column) not in known
                    and table not in last.dependents):
                found.append(f"{table}.{column} (a foreign key into artifact_version that "
                             "no profile knows)")
        columns = _columns(inspector, table)
        for column in sorted(columns):
            if REFERENCE_LIKE.search(column) and column not in keyed:
                found.append(f"{table}.{column} (named like an artifact reference, "
                             "without a foreign key)")
        if {"resource_id", "resource_type"} <= columns and table not in polymorphic:
            found.append(f"{table}.resource_id (a polymorphic table no profile knows)")
    return tuple(found)


def _columns(inspector: Any, table: str) -> set[str]:
    return {str(c["name"]) for c in inspector.get_columns(table)}


def _schema_version(engine: Any, tables: frozenset[str]) -> str | None:
    import sqlalchemy as sa

    if "alembic_version" not in tables:
        return None
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    return str(rows[0][0]) if rows else None
