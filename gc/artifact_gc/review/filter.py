"""``gc filter``: a derived manifest that can only narrow its parent's candidates.

Every row of the parent is kept, item columns included, so the review stays complete
and a sweep keys the derived manifest's rows as it keys the parent's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from artifact_gc import __version__
from artifact_gc.errors import UsageError
from artifact_gc.manifest.format import (
    FORMAT_VERSION,
    ManifestInfo,
    new_mark_id,
    utc_now,
    verify,
)
from artifact_gc.manifest.locations import check_writable
from artifact_gc.manifest.publish import write_manifest_from
from artifact_gc.manifest.reasons import (
    PROTECT_FILTERED_OUT,
    STATUS_CANDIDATE,
    STATUS_PROTECTED,
    STATUS_REACHABLE,
)
from artifact_gc.review.session import Review, StorageOptions, open_review
from artifact_gc.storage.urls import url_to_fs


@dataclass
class FilterResult:
    """A derived manifest written by ``gc filter``."""

    url: str
    info: ManifestInfo
    parent_url: str
    candidates_before: int
    candidates_after: int

    @property
    def filtered_out(self) -> int:
        return self.candidates_before - self.candidates_after


def _check_predicate(review: Review, predicate: str) -> str:
    """Refuse anything but one boolean expression over the manifest's columns; return
    it as DuckDB's parser renders it, the only form that is ever spliced into SQL."""
    import duckdb

    if not predicate.strip():
        raise UsageError("--where needs a predicate, e.g. \"project <> 'research'\"")
    # Parsed on its own first: text that closes the parentheses around it or comments
    # out the rest ("x) OR (y", "x --") is not one expression, and its rendering drops
    # comments, so what is checked below is exactly what the filter runs.
    try:
        predicate = str(duckdb.SQLExpression(predicate))
    except duckdb.Error as exc:
        raise UsageError(f"--where does not parse: {exc}") from exc
    probe = f"SELECT ({predicate}) AS keep FROM manifest"
    try:
        statements = review.connection.extract_statements(probe)
    except duckdb.Error as exc:
        raise UsageError(f"--where does not parse: {exc}") from exc
    if len(statements) != 1 or str(statements[0].type) != "StatementType.SELECT":
        raise UsageError("--where must be a single SQL predicate, not statements")
    try:
        described = review.connection.sql(f"DESCRIBE {probe}").fetchall()
    except duckdb.Error as exc:
        raise UsageError(f"--where is not a valid predicate over the manifest: {exc}") from exc
    if len(described) != 1 or described[0][1] != "BOOLEAN":
        kind = described[0][1] if described else "nothing"
        raise UsageError(f"--where must be a boolean predicate; it gives {kind}")
    return predicate


def filter_manifest(
    url: str,
    predicate: str,
    out: str,
    *,
    storage_options: StorageOptions = None,
    overwrite: bool = False,
) -> FilterResult:
    """Write a derived manifest in which only the candidates matching ``predicate``
    remain candidates; the others become ``protected`` with reason ``filtered_out``.

    Every row is kept so that the review stays complete. The derived manifest records
    its lineage and carries a checksum of its own, so a sweep accepts it.
    """
    if out.rstrip("/") == url.rstrip("/"):
        raise UsageError("-o must name a new manifest, not the one being filtered")
    fs, path = url_to_fs(out, storage_options)
    if not overwrite and fs.exists(path):
        raise UsageError(f"{out} exists; choose another name or pass --force")
    # The parent must pass its own checksum: signing a derived manifest of a tampered
    # parent would launder the tampering past the sweep's check.
    parent = verify(url, storage_options)
    with open_review(url, storage_options) as review:
        expression = _check_predicate(review, predicate)
        check_writable(out, storage_options=storage_options)
        _narrow(review, expression)
        counts, _ = _status_totals(review.connection, "manifest")
        after, after_bytes = _status_totals(review.connection, "filtered")
        info = _derived_info(parent, predicate, after, after_bytes)
        # The view `manifest` has the item columns of every format version, so the
        # derived manifest carries the parent's (implied ones, for a 1.0 parent).
        write_manifest_from(
            review.connection, "SELECT * FROM filtered ORDER BY item_kind, item_id", info,
            out, storage_options=storage_options,
        )
    return FilterResult(out, info, url, counts[STATUS_CANDIDATE],
                        after[STATUS_CANDIDATE])


def _narrow(review: Review, expression: str) -> None:
    """The view ``filtered``: the manifest with the candidates that ``expression``
    does not keep turned ``protected``."""
    # The only status this can write is `protected`, and only over a candidate: the
    # set of candidates can shrink, never grow. A predicate that is NULL for a row
    # does not keep it a candidate.
    narrow = f"status = '{STATUS_CANDIDATE}' AND NOT coalesce(({expression}), false)"
    review.connection.execute(
        "CREATE TEMP VIEW filtered AS SELECT * REPLACE ("
        f"  CASE WHEN {narrow} THEN '{STATUS_PROTECTED}' ELSE status END AS status,"
        f"  CASE WHEN {narrow} THEN"
        f"  list_append(coalesce(reasons, []), '{PROTECT_FILTERED_OUT}')"
        "   ELSE reasons END AS reasons"
        ") FROM manifest"
    )


def _derived_info(parent: ManifestInfo, predicate: str, counts: dict[str, int],
                  nbytes: dict[str, int | None]) -> ManifestInfo:
    """The parent's metadata with a new id, the new counts and one more lineage entry;
    written in this release's format, whatever the parent's."""
    info = ManifestInfo.from_dict(parent.as_dict())
    info.mark_id = new_mark_id()
    info.counts = {**parent.counts, **counts}
    info.bytes = nbytes
    info.lineage = [*parent.lineage, {
        "parent_mark_id": parent.mark_id,
        "parent_checksum": parent.checksum,
        "predicate": predicate,
        "at": utc_now().isoformat(),
    }]
    info.checksum = None
    info.complete = False
    info.format_version = FORMAT_VERSION
    info.tool_version = __version__
    return info


def _status_totals(
    connection: Any, view: str
) -> tuple[dict[str, int], dict[str, int | None]]:
    found = {
        status: (int(n), None if b is None else int(b))
        for status, n, b in connection.execute(
            f"SELECT status, count(*), sum(size_bytes)::BIGINT FROM {view} GROUP BY status"
        ).fetchall()
    }
    statuses = (STATUS_REACHABLE, STATUS_CANDIDATE, STATUS_PROTECTED)
    return (
        {s: found.get(s, (0, None))[0] for s in statuses},
        {s: found.get(s, (0, None))[1] for s in statuses},
    )
