"""From a policy's rules to marks: one mark per rule, each on a scope no other mark has.

A version is decided by exactly one rule, the first that matches it in this order:

1. rules with a project and an artifact glob (in file order),
2. rules with an artifact glob only (in file order),
3. rules with a project only,
4. ``[defaults]``.

Each mark runs with one :class:`MarkOptions`; its scope is the rule's own (project,
artifact glob) minus what the rules before it took, written with ``projects``,
``artifacts`` and ``exclude_artifacts``. Leaving a project out needs the list of the
store's projects, so it is read when some rule names a project. The scopes never
overlap, so the sweep of one manifest cannot delete what another rule keeps, and the
counts of the marks add up.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from artifact_gc.collect.policy import Policy, Rule, supported_mark_fields
from artifact_gc.mark.options import MarkOptions


@dataclass(frozen=True)
class MarkScope:
    """One mark of a collection: the rule that decides it and the options it runs with."""

    rule: Rule
    options: MarkOptions

    def describe(self) -> dict[str, object]:
        return {"rule": self.rule.name,
                "projects": list(self.options.projects),
                "artifacts": list(self.options.artifacts),
                "exclude_artifacts": list(self.options.exclude_artifacts)}


def ordered_rules(policy: Policy) -> list[Rule]:
    """The rules in the order they claim versions (see the module's docstring)."""
    return sorted((*policy.rules, policy.defaults), key=lambda r: r.precedence)


def mark_scopes(policy: Policy, projects: list[str] | None) -> list[MarkScope]:
    """The marks of a collection under ``policy``. ``projects`` is the store's project
    names, needed (and checked against the rules) when a rule names a project."""
    rules = ordered_rules(policy)
    named = {r.project for r in rules if r.project is not None}
    if named and projects is None:
        raise ValueError("the store's projects are needed when a rule names a project")
    # (rule, artifacts, excluded) -> the projects it decides; None: every project.
    claims: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[str]] = {}
    by_name = {r.name: r for r in rules}
    for project in (projects if named else [None]) or []:
        excluded: list[str] = []
        for rule in rules:
            if rule.project is not None and rule.project != project:
                continue
            artifacts = (rule.artifact,) if rule.artifact is not None else ()
            key = (rule.name, artifacts, tuple(excluded))
            claims.setdefault(key, [])
            if project is not None:
                claims[key].append(project)
            if rule.artifact is None:
                break  # this rule takes everything left in the project
            excluded.append(rule.artifact)
    scopes = [
        _scope(policy, by_name[name], tuple(in_projects) if named else (), artifacts, excluded)
        for (name, artifacts, excluded), in_projects in claims.items()
        if not named or in_projects
    ]
    return _orphan_files_once(scopes)


def _scope(policy: Policy, rule: Rule, projects: tuple[str, ...],
           artifacts: tuple[str, ...], excluded: tuple[str, ...]) -> MarkScope:
    extra: dict[str, Any] = {}
    supported = supported_mark_fields()
    # The policy reader refused these already when this build cannot mark them.
    if "keep_tags" in supported:
        extra["keep_tags"] = rule.keep_tags
    if "orphan_files" in supported:
        extra["orphan_files"] = rule.orphan_files
    if "orphan_code_uploads" in supported:
        extra["orphan_code_uploads"] = rule.orphan_code_uploads
    options = MarkOptions(
        older_than=rule.older_than, keep_latest=rule.keep_latest, projects=projects,
        artifacts=artifacts, exclude_artifacts=excluded, sizes=policy.sizes,
        store_roots=dict(policy.store_roots), workers=policy.workers,
        storage_options=policy.storage_options, **extra,
    )
    return MarkScope(rule=rule, options=options)


def _orphan_files_once(scopes: list[MarkScope]) -> list[MarkScope]:
    """Files found by listing belong to no project or artifact: list the stores in one
    mark only (the last one), or every mark would propose the same files."""
    if "orphan_files" not in supported_mark_fields():
        return scopes
    last = len(scopes) - 1
    off: dict[str, Any] = {"orphan_files": False}
    if "orphan_code_uploads" in supported_mark_fields():
        off["orphan_code_uploads"] = False
    return [scope if i == last else MarkScope(scope.rule, replace(scope.options, **off))
            for i, scope in enumerate(scopes)]
