"""An open manifest: a DuckDB connection with the views ``manifest`` (every supported
format version in the current shape) and ``journal`` (once swept), and the review
queries that ship as ``.sql`` files.

Everything in review/ reads manifests (and their sweep journals) in place with DuckDB,
on any fsspec URL; a large manifest on S3 is read with range requests, never downloaded
whole. Nothing here touches a metadata database or an artifact store.

The review queries live in ``artifact_gc/review/queries/*.sql`` (shipped identically as
``manifests/queries/*.sql``) so that anyone with the ``duckdb`` CLI can run them
against a view named ``manifest``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pyarrow as pa

from artifact_gc.errors import UsageError
from artifact_gc.manifest.checksum import candidate_checksum
from artifact_gc.manifest.format import ManifestInfo, check_format, read_info
from artifact_gc.manifest.views import create_manifest_view, duckdb_for

StorageOptions = dict[str, Any] | None


def query_names() -> list[str]:
    """The names of the shipped review queries (file stems), sorted."""
    directory = resources.files("artifact_gc.review") / "queries"
    return sorted(
        entry.name[: -len(".sql")] for entry in directory.iterdir()
        if entry.name.endswith(".sql")
    )


def load_query(name: str) -> str:
    """The text of a shipped review query (``by_status``, ``candidate_age``, ...)."""
    path = resources.files("artifact_gc.review") / "queries" / f"{name}.sql"
    if not path.is_file():
        raise UsageError(f"no review query named {name!r}; known: {', '.join(query_names())}")
    return path.read_text(encoding="utf-8")


@dataclass
class Review:
    """A manifest opened for review: a DuckDB connection with a view ``manifest``
    (and ``journal`` and ``sweep_state`` when the manifest has journal segments)."""

    url: str
    info: ManifestInfo
    connection: Any
    journal: list[str] = field(default_factory=list)

    def table(self, sql: str, **variables: Any) -> pa.Table:
        """Run ``sql`` with DuckDB variables set; return the whole result."""
        for name, value in variables.items():
            self.connection.execute(f"SET VARIABLE {name} = ?", [value])
        try:
            return self.connection.sql(sql).to_arrow_table()
        finally:
            for name in variables:
                self.connection.execute(f"RESET VARIABLE {name}")

    def rows(self, sql: str, **variables: Any) -> list[dict[str, Any]]:
        return self.table(sql, **variables).to_pylist()  # type: ignore[no-any-return]

    def run(self, name: str, **variables: Any) -> list[dict[str, Any]]:
        """Run the shipped review query ``name``."""
        return self.rows(load_query(name), **variables)


@contextmanager
def open_review(url: str, storage_options: StorageOptions = None, *,
                journal_location: str | None = None) -> Iterator[Review]:
    """Open the manifest at ``url`` for review; refuse a file that is not one of ours.
    Its journal is the one at ``journal_location`` (``--journal``), else where a sweep
    of its mark recorded one, else beside it; only that mark's events are read."""
    info = read_info(url, storage_options)
    check_format(info, url)
    from artifact_gc.sweep.journal import Journal

    journal = Journal.of(url, info, storage_options, journal_location)
    segments = journal.segments()
    with duckdb_for(url, storage_options) as connection:
        create_manifest_view(connection, url)
        if segments:
            # The journal's own reader and item state, so review and sweep read the
            # same segments the same way.
            journal.register_state(connection)
            if not connection.execute("SELECT count(*) FROM journal").fetchall()[0][0]:
                # Only another mark's events there: this manifest was never swept.
                segments = []
        yield Review(url=url, info=info, connection=connection, journal=segments)


def checksum_ok(review: Review) -> bool:
    """Whether the manifest's candidate rows still match its checksum."""
    if not review.info.checksum:
        return False
    actual = candidate_checksum(review.connection, "SELECT * FROM manifest", review.info)
    return actual == review.info.checksum
