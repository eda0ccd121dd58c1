"""``gc why``: one version's decision in a manifest, in plain words.

Everything comes from the manifest (and its journal, once swept): its row's status,
reasons and referrers, and the mark's parameters. Nothing here reads the metadata
store; what the sweep found later is in the journal.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from artifact_gc.durations import format_duration
from artifact_gc.errors import UsageError
from artifact_gc.manifest.reasons import (
    PROTECT_FILTERED_OUT,
    PROTECT_GRACE,
    PROTECT_KEEP_LATEST,
    PROTECT_NO_STORE,
    PROTECT_OUTSIDE_ROOT,
    PROTECT_OVERLAP,
    PROTECT_PREEXISTING,
    PROTECT_TAG_PREFIX,
    REASON_CONFIG,
    REASON_FOREIGN_KEY_PREFIX,
    STATUS_CANDIDATE,
    STATUS_PROTECTED,
    STATUS_REACHABLE,
)
from artifact_gc.review.session import StorageOptions, open_review
from artifact_gc.zenml.referrers import MORE_PREFIX

#: What each reason means, in words (FORMAT.md, "Reasons").
REASON_WORDS: dict[str, str] = {
    "step_input": "a step run takes it as an input",
    "step_output": "a step run produced it (or a cached step run reuses it)",
    "model_link": "a model version links it",
    "run_output": "a pipeline run returns it as its output",
    "hook_output": "a hook stored it as its output",
    REASON_CONFIG: ("a step configuration names it (an ExternalArtifact upload or a lazy "
                    "loader): a rerun or a schedule of that snapshot would consume it"),
    PROTECT_PREEXISTING: "it is the user's own data, registered with register_artifact",
    PROTECT_NO_STORE: "its artifact store is unknown, so its files cannot be fenced",
    PROTECT_OUTSIDE_ROOT: "one of its paths lies outside its artifact store's root",
    PROTECT_GRACE: "it is younger than the grace period",
    PROTECT_KEEP_LATEST: "it is one of the newest versions that --keep-latest keeps",
    PROTECT_OVERLAP: "its files overlap another version's files",
    PROTECT_FILTERED_OUT: "gc filter left it out of the candidates",
}

_REFERRER_WORDS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^run:(?P<run>[^/]+)/step:(?P<step>[^/]+)/input:(?P<name>.+)$"),
     "step '{step}' of run {run} takes it as input '{name}'"),
    (re.compile(r"^run:(?P<run>[^/]+)/step:(?P<step>[^/]+)/output:(?P<name>.+)$"),
     "step '{step}' of run {run} has it as output '{name}'"),
    (re.compile(r"^run:(?P<run>[^/]+)/step:(?P<step>[^/]+)/config$"),
     "the configuration of step '{step}' of run {run} names it"),
    (re.compile(r"^run:(?P<run>[^/]+)/step:(?P<step>[^/]+)$"),
     "step '{step}' of run {run} refers to it"),
    (re.compile(r"^run:(?P<run>[^/]+)/output:(?P<name>.+)$"),
     "run {run} returns it as pipeline output '{name}'"),
    (re.compile(r"^step_run:(?P<id>.+?)(/.*)?$"), "step run {id} refers to it"),
    (re.compile(r"^model_version:(?P<id>.+)$"), "model version {id} links it"),
    (re.compile(r"^hook_invocation:(?P<id>[^/]+)(/output:(?P<name>.+))?$"),
     "hook invocation {id} stored it as an output"),
    (re.compile(r"^snapshot:(?P<id>.+)$"),
     "a step configuration of snapshot {id} names it (a rerun would consume it)"),
    (re.compile(r"^schedule:(?P<id>.+)$"), "schedule {id} runs that snapshot"),
    (re.compile(r"^released_snapshot:(?P<id>.+)$"),
     "snapshot {id} names it, but nothing can run that snapshot again (no runs, "
     "schedule, name, deployment, run template or trigger, and older than the grace "
     "period): --release-unreachable-snapshots let its reference go"),
    (re.compile(r"^table:(?P<table>.+)$"), "a row of table {table} refers to it"),
]


def referrer_words(referrer: str) -> str:
    """One referrer (zenml.referrers) in plain words."""
    if referrer.startswith(MORE_PREFIX):
        return f"and {referrer[len(MORE_PREFIX):]} referrer(s) not listed"
    for pattern, words in _REFERRER_WORDS:
        match = pattern.match(referrer)
        if match:
            return words.format(**{k: v or "" for k, v in match.groupdict().items()})
    return referrer


def reason_words(reason: str) -> str:
    if reason in REASON_WORDS:
        return REASON_WORDS[reason]
    if reason.startswith(PROTECT_TAG_PREFIX):
        return f"it (or its artifact) carries the tag '{reason[len(PROTECT_TAG_PREFIX):]}', "\
               "which --keep-tag keeps"
    if reason.startswith(REASON_FOREIGN_KEY_PREFIX):
        return f"a row of {reason[len(REASON_FOREIGN_KEY_PREFIX):]} points at it"
    return reason


@dataclass
class WhyResult:
    """One version's decision, as data and as sentences."""

    url: str
    artifact_version_id: str
    artifact_name: str | None
    version: str | None
    status: str
    reasons: list[str]
    referrers: list[str] | None
    sweep: dict[str, Any] | None
    lines: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def why(url: str, version_id: str, *, storage_options: StorageOptions = None) -> WhyResult:
    """Explain the decision on the version ``version_id`` (hex, dashed or not; a
    unique prefix of at least 6 digits will do)."""
    wanted = version_id.replace("-", "").strip().lower()
    if len(wanted) < 6 or not re.fullmatch(r"[0-9a-f]+", wanted):
        raise UsageError(f"{version_id!r} is not an artifact version id (hex digits, at "
                         "least 6)")
    with open_review(url, storage_options) as review:
        rows = review.rows(
            "SELECT artifact_version_id, artifact_name, version, status, reasons, "
            "referrers, created, uri FROM manifest WHERE starts_with(item_id, "
            "getvariable('wanted')) LIMIT 2", wanted=wanted)
        if not rows:
            raise UsageError(f"no artifact version {version_id} in {url}")
        if len(rows) > 1:
            raise UsageError(f"{version_id} matches more than one version in {url}; "
                             "give more digits")
        row = rows[0]
        sweep = None
        if review.journal:
            states = review.rows(
                "SELECT s.state, s.last_event, s.error, (SELECT arg_max(j.reason, j.seq) "
                "FROM journal j WHERE j.artifact_version_id = getvariable('vid')) AS reason "
                "FROM sweep_state s WHERE s.item_kind = 'artifact_version' "
                "AND s.item_id = getvariable('vid')", vid=row["artifact_version_id"])
            sweep = states[0] if states else None
        parameters = review.info.parameters
        started = review.info.started_at
    result = WhyResult(
        url=url, artifact_version_id=row["artifact_version_id"],
        artifact_name=row["artifact_name"], version=row["version"], status=row["status"],
        reasons=list(row["reasons"] or []), referrers=row["referrers"], sweep=sweep,
    )
    result.lines = _explain(result, row, parameters, started)
    return result


def _explain(result: WhyResult, row: dict[str, Any], parameters: dict[str, Any],
             started: str) -> list[str]:
    name = f"{result.artifact_name or '(unnamed)'} version {result.version or '?'}"
    grace = parameters.get("older_than") or format_duration_seconds(parameters)
    lines = [f"Artifact version {result.artifact_version_id} ({name}), created "
             f"{row['created']}, marked at {started}."]
    referrers = result.referrers or []
    live = [r for r in referrers if not r.startswith("released_snapshot:")]
    released = [r for r in referrers if r.startswith("released_snapshot:")]
    if result.status == STATUS_REACHABLE:
        lines.append("REACHABLE: something refers to it, so no sweep deletes it.")
        lines += [f"  - {r}: {reason_words(r)}" for r in result.reasons]
    elif result.status == STATUS_PROTECTED:
        lines.append("PROTECTED: nothing refers to it, but a rule keeps it.")
        lines += [f"  - {r}: {reason_words(r)}" for r in result.reasons]
    elif result.status == STATUS_CANDIDATE:
        nothing = ("no reference that can still be used keeps it (only snapshots that "
                   "nothing can run again name it)" if released else "nothing refers to it")
        lines.append(
            f"CANDIDATE: {nothing}, no rule keeps it, and it was older than the "
            f"grace period ({grace}). gc sweep deletes its rows and its files ({row['uri']}) "
            "unless the live database shows a reference by then.")
    else:
        lines.append(f"{result.status.upper()}: " + ", ".join(result.reasons))
    if result.referrers is None:
        lines.append("Referrers: not recorded (the manifest predates format 1.2).")
    elif live:
        lines.append("Referred to by:")
        lines += [f"  - {r}: {referrer_words(r)}" for r in live]
    if released:
        lines.append("Released references:")
        lines += [f"  - {r}: {referrer_words(r)}" for r in released]
    elif (result.status == STATUS_REACHABLE and REASON_CONFIG in result.reasons
          and not parameters.get("release_unreachable_snapshots")):
        lines.append("Its configuration references keep it however old their snapshot "
                     "is; gc mark --release-unreachable-snapshots lets those of snapshots "
                     "that nothing can run again go.")
    if result.sweep:
        state = result.sweep
        detail = state.get("reason") or state.get("error") or ""
        lines.append(f"Sweep: {state.get('state')}"
                     + (f" ({detail})" if detail else ""))
    return lines


def format_duration_seconds(parameters: dict[str, Any]) -> str:
    from datetime import timedelta

    seconds = parameters.get("older_than_seconds")
    return format_duration(timedelta(seconds=int(seconds))) if seconds is not None else "?"
