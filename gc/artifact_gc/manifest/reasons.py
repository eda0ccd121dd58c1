"""The words of a manifest and a journal: kinds of items, statuses, and why an item is kept.

Mark writes them, the sweep journals them, review groups by them; each is spelled
here once (manifests/FORMAT.md documents every one).
"""

from __future__ import annotations

#: The kind of item a manifest row is (its ``item_kind``). Every row that mark writes
#: today is an artifact version, whose ``item_id`` is its ``artifact_version_id``.
ITEM_KIND_VERSION = "artifact_version"
ITEM_KINDS = (ITEM_KIND_VERSION,)

STATUS_REACHABLE = "reachable"
STATUS_CANDIDATE = "candidate"
STATUS_PROTECTED = "protected"
STATUSES = (STATUS_REACHABLE, STATUS_PROTECTED, STATUS_CANDIDATE)

#: Protections decided by mark (and, where the sweep re-checks them, by the sweep).
PROTECT_PREEXISTING = "preexisting"
PROTECT_NO_STORE = "no_artifact_store"
PROTECT_OUTSIDE_ROOT = "outside_store_root"
PROTECT_GRACE = "grace_period"
PROTECT_KEEP_LATEST = "keep_latest"
PROTECT_OVERLAP = "uri_overlap"
#: The sweep's own: the store's root changed since the mark.
PROTECT_ROOT_CHANGED = "store_root_changed"
#: The sweep's own: a version created since the mark overlaps the candidate's files.
PROTECT_OVERLAP_SINCE_MARK = "uri_overlap_since_mark"
#: ``--keep-tag NAME``: the version, or its artifact, carries the tag (``tag:NAME``).
PROTECT_TAG_PREFIX = "tag:"
#: Written by ``gc filter`` over the candidates a predicate leaves out.
PROTECT_FILTERED_OUT = "filtered_out"

#: Reachable because a step configuration names the version (zenml.references).
REASON_CONFIG = "config_reference"
#: Reachable through a foreign key of a table that is not known: ``fk:<table>``.
REASON_FOREIGN_KEY_PREFIX = "fk:"
