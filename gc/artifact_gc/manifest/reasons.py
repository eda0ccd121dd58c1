"""The words of a manifest and a journal: kinds of items, statuses, and why an item is kept.

Mark writes them, the sweep journals them, review groups by them; each is spelled
here once (manifests/FORMAT.md documents every one).
"""

from __future__ import annotations

#: The kind of item a manifest row is (its ``item_kind``). Every row that mark writes
#: today is an artifact version, whose ``item_id`` is its ``artifact_version_id``.
ITEM_KIND_VERSION = "artifact_version"
#: A path in an artifact store that no row names, found by listing the store
#: (``gc mark --orphan-files``); its ``item_id`` is the path (its ``uri``).
ITEM_KIND_ORPHAN_FILE = "orphan_file"
ITEM_KINDS = (ITEM_KIND_VERSION, ITEM_KIND_ORPHAN_FILE)

#: The classes of an orphan-file row (``orphan_class``): where ZenML's layout puts the
#: path, and which ZenML action leaves it behind with no row.
#: A step's output directory whose step run finished and whose version row is gone:
#: ``delete_artifact_version`` with its default, ``zenml artifact version delete``
#: without ``--delete-data``, ``zenml artifact prune --only-metadata``,
#: ``gc sweep --only-metadata``.
ORPHAN_DELETED_VERSION = "deleted_version_output"
#: A step's output directory whose step run failed or was stopped: made before the
#: step ran, never filled or never registered.
ORPHAN_FAILED_STEP = "failed_step_output"
#: A step's output directory whose step run row is gone too (``delete_pipeline_run``
#: after the version row went).
ORPHAN_DELETED_RUN = "deleted_run_output"
#: ``custom_artifacts/<name>/<uuid>`` (``save_artifact``) of a deleted version.
ORPHAN_CUSTOM_ARTIFACT = "custom_artifact"
#: ``external_artifacts/external_<uuid>`` (``ExternalArtifact``) of a deleted version.
ORPHAN_EXTERNAL_ARTIFACT = "external_artifact"
#: ``<run_id>/<hook_invocation_id>/<output>`` of a deleted version.
ORPHAN_HOOK_OUTPUT = "hook_output"
#: ``logs/<logs_id>.log`` or ``logs/<logs_id>/`` with no ``logs`` row (a deleted run
#: or pipeline: its ``logs`` rows cascade away, the files stay).
ORPHAN_RUN_LOGS = "deleted_run_logs"
#: An empty directory of ZenML's layout with nothing under it (left by a sweep or a
#: ZenML delete of the files it held).
ORPHAN_EMPTY_DIR = "empty_directory"
#: A content-addressed code archive ``code_uploads/<sha1>.tar.gz`` that no snapshot
#: (``code_path``, of any release) names: a candidate only with
#: ``gc mark --orphan-code-uploads``, unknown otherwise.
ORPHAN_CODE_UPLOAD = "unreferenced_code_upload"
#: Everything ZenML's layout does not explain: reported with its bytes, never deleted.
ORPHAN_UNKNOWN = "unknown"
#: The undo window's trash at a store root (``.artifact-gc-trash/``): gc's own, never
#: a candidate, reported on a line of its own.
ORPHAN_UNDO_TRASH = "undo_trash"
ORPHAN_CLASSES = (ORPHAN_DELETED_VERSION, ORPHAN_FAILED_STEP, ORPHAN_DELETED_RUN,
                  ORPHAN_CUSTOM_ARTIFACT, ORPHAN_EXTERNAL_ARTIFACT, ORPHAN_HOOK_OUTPUT,
                  ORPHAN_RUN_LOGS, ORPHAN_EMPTY_DIR, ORPHAN_CODE_UPLOAD, ORPHAN_UNKNOWN,
                  ORPHAN_UNDO_TRASH)

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
#: The sweep's own: the version's rows were deleted by someone else since the mark
#: (another manifest's sweep, ZenML) while its files are still there.
PROTECT_ROWS_DELETED_ELSEWHERE = "rows_deleted_elsewhere"
#: ``--keep-tag NAME``: the version, or its artifact, carries the tag (``tag:NAME``).
PROTECT_TAG_PREFIX = "tag:"
#: Orphan files: a row names a path inside this one (it is not garbage as a whole).
PROTECT_NAMED_INSIDE = "named_inside"
#: Orphan files: the step run that writes into the directory has not finished.
PROTECT_STEP_RUNNING = "step_running"
#: Orphan files: not a path of ZenML's layout (``orphan_class = 'unknown'``).
PROTECT_UNKNOWN_LAYOUT = "unknown_layout"
#: Orphan files: the undo window's trash (``orphan_class = 'undo_trash'``).
PROTECT_UNDO_TRASH = "undo_trash"
#: Written by ``gc filter`` over the candidates a predicate leaves out.
PROTECT_FILTERED_OUT = "filtered_out"

#: Reachable because a step configuration names the version (zenml.references).
REASON_CONFIG = "config_reference"
#: Reachable through a foreign key of a table that is not known: ``fk:<table>``.
REASON_FOREIGN_KEY_PREFIX = "fk:"
