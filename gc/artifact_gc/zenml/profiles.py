"""Schema profiles: what each range of ZenML releases stores about artifact versions.

The store's alembic revision chooses the profile (alembic keeps one script per
revision; we keep one profile per range of releases in which nothing that matters to
us changed). ``revisions.py`` is generated from ZenML's own migrations by
``scripts/zenml_revisions.py``; the ranges below start where those migrations change a
table we read or delete from, and the release fixtures (stores built by each release's
own ZenML) check every profile against a real store.

A revision no profile covers (a release newer than the last profile, a development
revision, a release older than the first) gets a profile read from the store by
reflection, marked ``known=False``: mark warns and goes on, keeping everything a foreign
key names; the sweep refuses unless told ``--accept-schema``, and refuses even then
when reflection finds a reference the last profile does not explain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cache

from artifact_gc.zenml.revisions import REVISIONS

RELEASE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")

#: Foreign keys into artifact_version that keep a version alive, with their reasons.
STEP_REFERENCES = (
    ("step_run_input_artifact", "artifact_id", "step_input"),
    ("step_run_output_artifact", "artifact_id", "step_output"),
    ("model_versions_artifacts", "artifact_version_id", "model_link"),
)
RUN_OUTPUT = ("pipeline_run_output", "artifact_id", "run_output")
HOOK_OUTPUT = ("hook_invocation_output_artifact", "artifact_version_id", "hook_output")

#: Resource types under which the polymorphic tables name a version and an artifact.
VERSION_RESOURCE = "artifact_version"
ARTIFACT_RESOURCE = "artifact"


def release_key(release: str) -> tuple[int, int, int]:
    match = RELEASE.match(release)
    if not match:
        raise ValueError(f"{release!r} is not a release number")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch)


@dataclass(frozen=True)
class Polymorphic:
    """A table without foreign keys whose rows name versions and artifacts by
    ``resource_id`` and ``resource_type``.

    ``owns`` is (link column, table) when each row links a row of another table that
    lives only as long as something links it (run metadata since 0.71). Before 0.71 the
    run metadata row itself carries ``resource_id`` and goes with its version."""

    table: str
    owns: tuple[str, str] | None = None


@dataclass(frozen=True)
class SchemaProfile:
    """The facts of one range of ZenML releases that reachability and deletes rest on."""

    first_release: str
    changes: str
    #: ``workspace`` before 0.80, ``project`` since; its id column is ``<scope>_id``.
    scope_table: str
    #: ``pipeline_deployment`` before 0.90, ``pipeline_snapshot`` since.
    deployment_table: str
    #: (table, column) of JSON that names versions by id (see references.py).
    config_sources: tuple[tuple[str, str], ...]
    polymorphic: tuple[Polymorphic, ...]
    #: (table, column, reason) of every foreign key into artifact_version that keeps.
    references: tuple[tuple[str, str, str], ...]
    #: Tables whose rows belong to a version (directly or through another dependent).
    dependents: tuple[str, ...]
    #: Tables with resource_id/resource_type that never name a version (or go with a
    #: dependent), so reflection does not count them as unexplained.
    other_polymorphic: tuple[str, ...] = ()
    #: Artifact stores: ``stack_component`` rows of type ``artifact_store``, their
    #: configuration base64-encoded JSON (``path``: the root; a local default store has
    #: none and lives under ``<config dir>/local_stores/<uuid>``). The same in every
    #: release from 0.70 to 0.98.
    artifact_stores: str = "stack_component"
    release: str | None = None
    known: bool = True
    notes: tuple[str, ...] = field(default=())

    @property
    def scope_column(self) -> str:
        return f"{self.scope_table}_id"

    @property
    def polymorphic_tables(self) -> tuple[str, ...]:
        return tuple(p.table for p in self.polymorphic)

    def owned_through(self) -> dict[str, tuple[str, str]]:
        return {p.table: p.owns for p in self.polymorphic if p.owns is not None}


_BASE = SchemaProfile(
    first_release="0.70.0",
    changes="save_type on artifact_version; run_metadata carries resource_id/resource_type "
            "itself; external-artifact ids in pipeline_deployment.step_configurations (JSON)",
    scope_table="workspace",
    deployment_table="pipeline_deployment",
    config_sources=(("pipeline_deployment", "step_configurations"),),
    polymorphic=(Polymorphic("run_metadata"), Polymorphic("tag_resource")),
    references=STEP_REFERENCES,
    dependents=("artifact_visualization",),
    other_polymorphic=("secret_resource",),
)

_METADATA_RESOURCE = (Polymorphic("run_metadata_resource", ("run_metadata_id", "run_metadata")),
                      Polymorphic("tag_resource"))


def _build() -> tuple[SchemaProfile, ...]:
    p071 = replace(_BASE, first_release="0.71.0", polymorphic=_METADATA_RESOURCE,
                   changes="run_metadata_resource links run metadata to versions")
    p080 = replace(p071, first_release="0.80.0", scope_table="project",
                   changes="workspace renamed project; tags scoped by user")
    p083 = replace(p080, first_release="0.83.1",
                   config_sources=(("step_configuration", "config"),),
                   changes="step_configuration table: one JSON config per step "
                           "(pipeline_deployment.step_configurations dropped)")
    p090 = replace(p083, first_release="0.90.0", deployment_table="pipeline_snapshot",
                   changes="pipeline_deployment renamed pipeline_snapshot; tag_resource "
                           "rows rewritten")
    p091 = replace(p090, first_release="0.91.0",
                   dependents=("artifact_visualization", "curated_visualization"),
                   other_polymorphic=("secret_resource", "curated_visualization"),
                   changes="curated_visualization (under artifact_visualization)")
    p094 = replace(p091, first_release="0.94.4", references=(*STEP_REFERENCES, RUN_OUTPUT),
                   changes="pipeline_run_output (ON DELETE RESTRICT)")
    p095 = replace(p094, first_release="0.95.0",
                   references=(*STEP_REFERENCES, RUN_OUTPUT, HOOK_OUTPUT),
                   changes="hook_invocation, hook_invocation_output_artifact")
    return (_BASE, p071, p080, p083, p090, p091, p094, p095)


#: Every profile, oldest first; each holds from its ``first_release`` to the next one's.
PROFILES: tuple[SchemaProfile, ...] = _build()

#: The newest release the revision table knows (the last supported one).
LAST_RELEASE = max((r[0] for r in REVISIONS if RELEASE.match(r[0])), key=release_key)
FIRST_RELEASE = PROFILES[0].first_release


@cache
def release_revisions() -> frozenset[str]:
    """Every revision that is a release's head (ZenML ends each release's chain with an
    empty migration whose id is the release number)."""
    return frozenset(r[0] for r in REVISIONS if RELEASE.match(r[0]))


def profile_for(revision: str | None) -> SchemaProfile | None:
    """The profile of a store at ``revision``, or None when no profile covers it."""
    if revision is None or revision not in release_revisions():
        return None
    key = release_key(revision)
    if key < release_key(FIRST_RELEASE):
        return None
    chosen = PROFILES[0]
    for profile in PROFILES:
        if release_key(profile.first_release) <= key:
            chosen = profile
    return replace(chosen, release=revision)


def supported_releases() -> list[str]:
    """Every release from the first profile to the last release the table knows."""
    return sorted((r for r in release_revisions()
                   if release_key(r) >= release_key(FIRST_RELEASE)), key=release_key)


def describe_unknown(revision: str | None) -> str:
    """Why no profile covers ``revision``, in words a user can act on."""
    if revision is None:
        return "the store has no alembic revision"
    if RELEASE.match(revision):
        if release_key(revision) > release_key(LAST_RELEASE):
            return f"ZenML {revision} is newer than the last supported release ({LAST_RELEASE})"
        if release_key(revision) < release_key(FIRST_RELEASE):
            return f"ZenML {revision} is older than the first supported release ({FIRST_RELEASE})"
    known = {r[0]: r[1] for r in REVISIONS}
    if revision in known:
        return (f"revision {revision} is a development revision of ZenML {known[revision]}, "
                "not a release")
    return f"revision {revision} is not one of ZenML's up to {LAST_RELEASE}"


@cache
def tables_at(revision: str) -> frozenset[str]:
    """The tables ZenML's migrations leave at ``revision`` (replayed from revisions.py)."""
    tables: set[str] = set()
    for rev, _release, changes in REVISIONS:
        for change in changes:
            if change.startswith("+"):
                tables.add(change[1:])
            elif change.startswith("-"):
                tables.discard(change[1:])
            else:
                old, _, new = change.partition(">")
                tables.discard(old)
                tables.add(new)
        if rev == revision:
            return frozenset(tables)
    raise KeyError(revision)
