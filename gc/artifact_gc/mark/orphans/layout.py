"""ZenML 0.98's layout of an artifact store, as DuckDB SQL over a path's segments.

What ZenML writes under a store's root (0.98 source; DESIGN.md, "What ZenML leaves in
the artifact store"), and the *unit* of each: the path that is garbage as a whole when
no row names it:

| layout | unit | kind |
|---|---|---|
| ``<step>/<output>/<step_run_id>/<8 hex>/...`` | first 4 segments | ``step`` |
| ``<step>/<output>/<step_run_id>`` (empty) | itself | ``step_empty`` |
| ``custom_artifacts/<name>/<uuid>/...`` | first 3 segments | ``custom`` |
| ``custom_artifacts/<name>`` (empty) | itself | ``custom_empty`` |
| ``external_artifacts/external_<uuid>/...`` | first 2 segments | ``external`` |
| ``<run_id>/<hook_invocation_id>/<output>/...`` | first 3 segments | ``hook`` |
| ``<run_id>/<hook_invocation_id>`` (empty) | itself | ``hook_empty`` |
| ``logs/<logs_id>.log``, ``logs/<logs_id>/...`` | first 2 segments | ``logs`` |
| ``code_uploads/<sha1>.tar.gz`` (only with ``code_uploads=True``) | itself | ``code_upload`` |

Anything else has no unit: it is *unknown*, and never a candidate. So is anything
under a top-level folder that ZenML or an integration keeps for its own
(:data:`RESERVED_TOP_LEVEL`), whatever its shape below. A path matches the first row
that fits, in the order of :func:`kind_sql`.

Code archives (``zenml.utils.code_utils.upload_code_if_necessary``) are content
addressed and shared: a new snapshot of unchanged code names an archive uploaded long
ago, without writing it again (so its age says nothing), and ZenML uploads it before
the snapshot row that names it exists. That is why an archive no snapshot names is a
candidate only behind an explicit opt-in (``gc mark --orphan-code-uploads``).

The undo window's trash (:data:`UNDO_TRASH_DIR`, at a root's top level) mirrors the
paths it holds, layout included: it is gc's own and never a unit, whatever is in it.
"""

from __future__ import annotations

from artifact_gc.storage.trash import TRASH_DIR

#: A UUID as ZenML spells it in paths (``str(uuid)``: dashed), or undashed.
UUID_RE = ("([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
           "|[0-9a-f]{32})")
#: The lengths of the text UUID_RE matches (dashed, undashed).
UUID_LENGTHS = (36, 32)
#: The random suffix of a step output's directory (``str(uuid4())[:8]``).
SUFFIX_RE = "[0-9a-f]{8}"
SUFFIX_LENGTHS = (8,)

#: Top-level folders that are not garbage by layout: code archives shared by
#: snapshots, notebook code, image build contexts, integrations' own folders.
RESERVED_TOP_LEVEL = (
    "code_uploads", "notebook_code", "kaniko-build-contexts", "cloud-build-contexts",
    "code-build-contexts", "mlflow", "great_expectations", "vertex_pipeline_root",
    "pipeline_root", "sagemaker", "azureml", "kubeflow", "tekton", "airflow",
)

KIND_STEP = "step"
KIND_STEP_EMPTY = "step_empty"
KIND_CUSTOM = "custom"
KIND_CUSTOM_EMPTY = "custom_empty"
KIND_EXTERNAL = "external"
KIND_HOOK = "hook"
KIND_HOOK_EMPTY = "hook_empty"
KIND_LOGS = "logs"
KIND_CODE_UPLOAD = "code_upload"
#: The undo window's trash folder at a store root.
UNDO_TRASH_DIR = TRASH_DIR
#: The folder ZenML uploads code archives to, and an archive's name in it
#: (``<sha1 of the archive>.tar.gz``).
CODE_UPLOADS_DIR = "code_uploads"
CODE_ARCHIVE_RE = "[0-9a-f]{40}[.]tar[.]gz"
CODE_ARCHIVE_LENGTHS = (47,)
#: Kinds whose unit names a step run (its third segment).
STEP_KINDS = (KIND_STEP, KIND_STEP_EMPTY)
#: The most segments a unit has (a step output's ``<step>/<output>/<run>/<suffix>``);
#: ``layout_cases`` checks it.
MAX_UNIT_SEGMENTS = 4
#: The fewest segments a unit has (``logs/<id>.log``, an empty custom folder, ...).
MIN_UNIT_SEGMENTS = 2


def _is(segment: str, pattern: str, lengths: tuple[int, ...]) -> str:
    """``segment`` matches ``pattern`` in full; ``lengths`` are the only lengths (in
    bytes: the patterns match ASCII only) of the text it can match. Comparing the
    length first is exact and spares the regular expression on most segments, where
    it costs the most of the layout's work."""
    sizes = ", ".join(str(n) for n in lengths)
    return (f"(strlen(coalesce({segment}, '')) IN ({sizes}) "
            f"AND regexp_full_match(coalesce({segment}, ''), '{pattern}'))")


def _plus(prefix: str, lengths: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(len(prefix) + n for n in lengths)


def layout_cases(seg: str = "seg", is_dir: str = "is_dir") -> list[tuple[str, int, str]]:
    """(condition, unit length in segments, kind), in the order they are tried."""
    n = f"len({seg})"
    s1, s2, s3, s4 = (f"{seg}[{i}]" for i in range(1, 5))
    uuid, log = UUID_LENGTHS, _plus(".log", UUID_LENGTHS)
    external = _plus("external_", UUID_LENGTHS)
    cases = [
        (f"{s1} = 'logs' AND {n} = 2 AND NOT {is_dir} AND {_is(s2, UUID_RE + '[.]log', log)}",
         2, KIND_LOGS),
        (f"{s1} = 'logs' AND {n} >= 2 AND {_is(s2, UUID_RE, uuid)}", 2, KIND_LOGS),
        (f"{s1} = 'custom_artifacts' AND {n} >= 3 AND {_is(s3, UUID_RE, uuid)}", 3,
         KIND_CUSTOM),
        (f"{s1} = 'custom_artifacts' AND {n} = 2 AND {is_dir}", 2, KIND_CUSTOM_EMPTY),
        (f"{s1} = 'external_artifacts' AND {n} >= 2 "
         f"AND {_is(s2, 'external_' + UUID_RE, external)}", 2, KIND_EXTERNAL),
        (f"{n} >= 3 AND {_is(s1, UUID_RE, uuid)} AND {_is(s2, UUID_RE, uuid)}", 3, KIND_HOOK),
        (f"{n} = 2 AND {is_dir} AND {_is(s1, UUID_RE, uuid)} AND {_is(s2, UUID_RE, uuid)}",
         2, KIND_HOOK_EMPTY),
        (f"{n} >= 4 AND {_is(s3, UUID_RE, uuid)} AND {_is(s4, SUFFIX_RE, SUFFIX_LENGTHS)}",
         4, KIND_STEP),
        (f"{n} = 3 AND {is_dir} AND {_is(s3, UUID_RE, uuid)}", 3, KIND_STEP_EMPTY),
    ]
    # The classification matches a unit against named paths by its first
    # MAX_UNIT_SEGMENTS segments only: a longer unit that a live row names exactly
    # would match no key and could become a candidate.
    if max(length for _, length, _ in cases) > MAX_UNIT_SEGMENTS:
        raise AssertionError("a layout unit is longer than MAX_UNIT_SEGMENTS")
    # And only keys of at least MIN_UNIT_SEGMENTS are looked up for a named path
    # inside a unit.
    if min(length for _, length, _ in cases) < MIN_UNIT_SEGMENTS:
        raise AssertionError("a layout unit is shorter than MIN_UNIT_SEGMENTS")
    return cases


def _reserved(seg: str) -> str:
    names = ", ".join(f"'{name}'" for name in (*RESERVED_TOP_LEVEL, UNDO_TRASH_DIR))
    return f"{seg}[1] IN ({names})"


def _code_upload(seg: str, is_dir: str) -> str:
    return (f"{seg}[1] = '{CODE_UPLOADS_DIR}' AND len({seg}) = 2 AND NOT {is_dir} "
            f"AND {_is(f'{seg}[2]', CODE_ARCHIVE_RE, CODE_ARCHIVE_LENGTHS)}")


def _cases(seg: str, is_dir: str, code_uploads: bool) -> list[tuple[str, int, str]]:
    # The archive case goes before the reserved folders (code_uploads is one of them):
    # only a file of exactly that name becomes a unit, the rest of the folder stays
    # unknown.
    opt_in = [(_code_upload(seg, is_dir), 2, KIND_CODE_UPLOAD)] if code_uploads else []
    return [*opt_in, (_reserved(seg), 0, ""), *layout_cases(seg, is_dir)]


def kind_sql(seg: str = "seg", is_dir: str = "is_dir", code_uploads: bool = False) -> str:
    """The kind of a path's unit, or NULL if it has none (unknown)."""
    cases = " ".join(f"WHEN {condition} THEN " + (f"'{kind}'" if kind else "NULL")
                     for condition, _, kind in _cases(seg, is_dir, code_uploads))
    return f"CASE {cases} ELSE NULL END"


def unit_length_sql(kind: str = "kind", seg: str = "seg") -> str:
    """The length in characters of a path's unit (its first N segments joined by
    ``/``) from its ``kind`` (:func:`kind_sql`): each kind's unit has a fixed number
    of segments, so the layout's conditions are evaluated once per path, not again for
    the unit; and the length is added up from the segments' own, without joining them.
    Every kind's condition asks for at least its unit's number of segments, so none of
    them is missing."""
    lengths = {k: n for _, n, k in _cases(seg, "is_dir", True) if k}
    cases = " ".join(
        f"WHEN '{k}' THEN " + " + ".join(f"length({seg}[{i}])" for i in range(1, n + 1))
        + f" + {n - 1}"
        for k, n in sorted(lengths.items()))
    return f"CASE {kind} {cases} ELSE NULL END"


def step_run_id_sql(seg: str = "seg") -> str:
    """The step run a step-output path names, as 32 lowercase hex digits."""
    return f"lower(replace({seg}[3], '-', ''))"


def logs_id_sql(seg: str = "seg") -> str:
    """The ``logs`` row a log path names, as 32 lowercase hex digits."""
    # Without its ".log" suffix (a regular expression per log file costs more).
    name = f"{seg}[2]"
    stem = f"CASE WHEN ends_with({name}, '.log') THEN {name}[:-5] ELSE {name} END"
    return f"lower(replace({stem}, '-', ''))"
