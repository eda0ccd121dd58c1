"""The checksum of a manifest: SHA-256 over the mark's identity and its candidates.

What a candidate line covers is part of the format, so the rule is kept per format
version (FORMAT.md, "Checksum"). A manifest is verified with the rule of the version
it declares; a version this release does not know is checked with the newest rule,
and refused if that does not match.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from artifact_gc.manifest.reasons import ITEM_KIND_VERSION, STATUS_CANDIDATE

if TYPE_CHECKING:
    from artifact_gc.manifest.format import ManifestInfo


@dataclass(frozen=True)
class ChecksumRule:
    """How one format version hashes a candidate row: its line, and the row order."""

    line_sql: str
    order_sql: str


#: 1.0: every column a sweep acts on, joined by \x1f (lists by \x1e).
_VERSION_LINE = (
    "concat_ws(chr(31), artifact_version_id, artifact_id, coalesce(uri, ''), "
    "coalesce(artifact_store_id, ''), coalesce(store_root, ''), coalesce(save_type, ''), "
    "coalesce(array_to_string(visualization_uris, chr(30)), ''))"
)

#: 1.1 appends the item key to a row's line unless the row is an artifact version keyed
#: by its own id. A 1.1 manifest of versions thus has the checksum that the 1.0 rule
#: gives it, and a release that knows only 1.0 accepts it. Any other row (another kind,
#: or an edited or missing key) changes its line: the 1.0 rule then refuses the manifest,
#: which is what a release must do with a kind of item it does not know.
_ITEM_SUFFIX = (
    f"CASE WHEN item_kind = '{ITEM_KIND_VERSION}' AND item_id = artifact_version_id "
    "THEN '' ELSE chr(31) || coalesce(item_kind, '') || chr(31) || coalesce(item_id, '') END"
)

RULES: dict[str, ChecksumRule] = {
    "1.0": ChecksumRule(_VERSION_LINE, "artifact_version_id"),
    # Versions keyed by their own id sort as 1.0 sorted them.
    "1.1": ChecksumRule(f"{_VERSION_LINE} || {_ITEM_SUFFIX}", "item_kind, item_id"),
}
#: 1.2 adds ``referrers``, which the sweep does not act on: the 1.1 rule, unchanged.
RULES["1.2"] = RULES["1.1"]
_NEWEST = RULES["1.2"]


def rule_for(format_version: str) -> ChecksumRule:
    """The checksum rule of ``format_version``; the newest one for a version (of a
    known major) that this release does not know."""
    return RULES.get(format_version, _NEWEST)


class RunningChecksum:
    """The running SHA-256 of FORMAT.md's checksum: identity, candidate lines, count.

    Rows are hashed in the order of the rule of ``info.format_version``: all at once
    (:meth:`add`), or in parts that follow each other in that order (:meth:`add_part`).
    """

    def __init__(self, info: ManifestInfo) -> None:
        self.rule = rule_for(info.format_version)
        self.digest = hashlib.sha256()
        self.count = 0
        #: The key of the last candidate added by :meth:`add_part`.
        self.last_key: tuple[str, ...] | None = None
        identity = {
            "mark_id": info.mark_id,
            "database": info.database,
            "format_version": info.format_version,
            "lineage": info.lineage,
        }
        self.digest.update(json.dumps(identity, sort_keys=True).encode())

    def add(self, connection: Any, relation_sql: str) -> None:
        """Hash the candidate rows of ``relation_sql``, in the rule's order."""
        result = connection.sql(
            f"SELECT {self.rule.line_sql} || chr(10) AS line FROM ({relation_sql}) "
            f"WHERE status = '{STATUS_CANDIDATE}' ORDER BY {self.rule.order_sql}"
        )
        for record_batch in result.to_arrow_reader(100_000):
            lines = record_batch.column(0)
            self.count += len(lines)
            # The lines, each ending in a newline, lie back to back in the array's data
            # buffer: hash them in place instead of as one Python string per row.
            if not (pa.types.is_string(lines.type) or pa.types.is_large_string(lines.type)):
                lines = lines.cast(pa.large_string())
            if len(lines):
                _, offsets, data = lines.buffers()
                bounds = (memoryview(offsets).cast("i") if pa.types.is_string(lines.type)
                          else memoryview(offsets).cast("q"))
                start, end = bounds[lines.offset], bounds[lines.offset + len(lines)]
                self.digest.update(memoryview(data)[start:end])

    def add_part(self, connection: Any, relation_sql: str) -> None:
        """Hash the candidates of one more part of the rows. They must all come after
        those of the parts added before (parts that are consecutive key ranges): a part
        that does not is refused, since the checksum would not be the one that a
        reader of the whole manifest computes, and its sweep would refuse it."""
        ((first, last),) = connection.execute(
            f"SELECT min(row({self.rule.order_sql})), max(row({self.rule.order_sql})) "
            f"FROM ({relation_sql}) WHERE status = '{STATUS_CANDIDATE}'"
        ).fetchall()
        if first is not None:
            if self.last_key is not None and first <= self.last_key:
                raise RuntimeError("manifest parts are not in candidate id order")
            self.last_key = last
        self.add(connection, relation_sql)

    def value(self) -> str:
        digest = self.digest.copy()
        digest.update(str(self.count).encode())
        return "sha256:" + digest.hexdigest()


def candidate_checksum(connection: Any, relation_sql: str, info: ManifestInfo) -> str:
    """SHA-256 over the identity of the mark and every candidate row of
    ``relation_sql``, by the rule of ``info.format_version``."""
    checksum = RunningChecksum(info)
    checksum.add(connection, relation_sql)
    return checksum.value()
