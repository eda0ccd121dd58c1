"""``gc mark``: parse options, run the mark, render its summary."""

from __future__ import annotations

from typing import Any

import click

from artifact_gc.cli.options import duration, glob_patterns, object_store_options
from artifact_gc.cli.render import (
    TerminalProgress,
    echo_json,
    human_bytes,
    plain,
    stdout_console,
)


@click.command("mark")
@click.option("--db", "db_url", metavar="URL",
              help="SQLAlchemy URL of the ZenML metadata store, e.g. sqlite:////path/zenml.db "
                   "or mysql+pymysql://user:pw@host/zenml. Default: $ZENML_STORE_URL, else "
                   "the local store of ZenML's global config.")
@click.option("--out", "out", metavar="PATH_OR_URL",
              help="Manifest file, or a directory (local or s3://...) to create one in. "
                   "Default: $ARTIFACT_GC_HOME or ~/.local/share/artifact-gc/manifests.")
@click.option("--older-than", "older_than", default="24h", show_default=True,
              callback=duration, metavar="DURATION",
              help="Grace period: versions younger than this are never candidates "
                   "(0s, 90m, 24h, 7d, 2w).")
@click.option("--keep-latest", type=click.IntRange(min=0), metavar="N",
              help="Keep the N newest versions of every artifact.")
@click.option("--project", "projects", multiple=True, metavar="NAME",
              help="Only versions of this project (repeatable).")
@click.option("--artifact", "artifacts", multiple=True, metavar="GLOB",
              callback=glob_patterns,
              help="Only artifacts whose name matches this glob (repeatable).")
@click.option("--exclude-artifact", "exclude_artifacts", multiple=True, metavar="GLOB",
              callback=glob_patterns,
              help="Leave out artifacts whose name matches this glob (repeatable).")
@click.option("--sizes", is_flag=True,
              help="Measure every candidate's bytes and file count in the artifact store.")
@click.option("--store-root", "store_roots", multiple=True, metavar="COMPONENT_ID=URL",
              help="Override the root of an artifact store component (repeatable).")
@click.option("--workers", type=click.IntRange(min=1), default=16, show_default=True,
              help="Threads for --sizes.")
@click.option("--lock-timeout", "lock_timeout", default="60s", show_default=True,
              callback=duration, metavar="DURATION",
              help="How long to wait for a locked metadata store (a pipeline writing to "
                   "SQLite, DDL on MySQL), retries included. The mark reads one consistent "
                   "snapshot of the store; past this limit it fails with exit 3.")
@object_store_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def mark_command(
    db_url: str | None, out: str | None, older_than: Any, keep_latest: int | None,
    projects: tuple[str, ...], artifacts: tuple[str, ...],
    exclude_artifacts: tuple[str, ...], sizes: bool, store_roots: tuple[str, ...],
    workers: int, storage_option_pairs: tuple[str, ...],
    max_requests_per_second: float | None, as_json: bool, lock_timeout: Any,
) -> None:
    """Decide which artifact versions are garbage, and write the decision as a manifest.

    Reads the metadata store (never writes to it) and classifies every artifact
    version in scope as reachable (something refers to it), protected (a policy or
    a safety rule keeps it) or candidate (garbage the sweep may delete). Review the
    manifest with gc show, then delete with gc sweep.
    """
    import warnings

    from artifact_gc.manifest.format import new_mark_id, utc_now
    from artifact_gc.manifest.locations import check_writable, resolve_output
    from artifact_gc.mark.options import MarkOptions
    from artifact_gc.mark.run import mark
    from artifact_gc.storage.limits import RequestLimits
    from artifact_gc.storage.options import parse_storage_options
    from artifact_gc.zenml.config import resolve_database_url
    from artifact_gc.zenml.stores import parse_store_root_overrides

    url = resolve_database_url(db_url)
    options = MarkOptions(
        older_than=older_than, keep_latest=keep_latest, projects=projects,
        artifacts=artifacts, exclude_artifacts=exclude_artifacts, sizes=sizes,
        store_roots=parse_store_root_overrides(store_roots), workers=workers,
        storage_options=parse_storage_options(storage_option_pairs),
        limits=RequestLimits(max_requests_per_second),
        lock_timeout=lock_timeout,
    )
    # One id names the manifest file and is recorded inside it.
    mark_id = new_mark_id()
    target = resolve_output(out, mark_id, utc_now(), options.storage_options)
    check_writable(target, storage_options=options.storage_options)
    progress = TerminalProgress(enabled=None if not as_json else False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = mark(url, target, options, progress=progress, mark_id=mark_id)
    progress.close()
    if as_json:
        echo_json({"manifest": result.url, "mark_id": result.info.mark_id,
                   "database": result.info.database, "warnings": result.info.warnings,
                   "counts": result.info.counts, **result.summary})
        return
    render_summary(result.info.as_dict(), result.summary)
    click.echo(f"Manifest: {result.url}")
    click.echo(f"Next: gc show {result.url}   then   gc sweep {result.url}")


def render_summary(info: dict[str, Any], summary: dict[str, Any]) -> None:
    """The mark's counts and bytes by status and reason, and the largest candidates."""
    from rich.table import Table

    console = stdout_console()
    for warning in info.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {plain(warning)}")
    from artifact_gc.metadb.fingerprint import DatabaseFingerprint

    counts = info.get("counts", {})
    store = DatabaseFingerprint.from_dict(info["database"]).describe()
    console.print(plain(
        f"Marked {counts.get('versions_in_scope', 0):,} artifact versions in scope "
        f"({counts.get('versions_out_of_scope', 0):,} out of scope) of {store}."
    ))
    table = Table(title="Decision by status and reason")
    for column in ("status", "reason", "versions", "bytes"):
        table.add_column(column, justify="right" if column in ("versions", "bytes") else "left")
    for row in summary["by_reason"]:
        table.add_row(plain(row["status"]), plain(row["reason"]), f"{row['versions']:,}",
                      human_bytes(row["bytes"]))
    for status, n in summary["counts"].items():
        table.add_row(f"[bold]{status}[/bold]", "[bold]total[/bold]", f"[bold]{n:,}[/bold]",
                      human_bytes(summary["bytes"].get(status)))
    console.print(table)
    if summary["largest_candidates"]:
        largest = Table(title="Largest candidate artifacts")
        for column in ("artifact", "project", "versions", "bytes"):
            largest.add_column(column, justify="right" if column in ("versions", "bytes")
                               else "left")
        for row in summary["largest_candidates"]:
            largest.add_row(plain(row["artifact_name"] or "-"), plain(row["project"] or "-"),
                            f"{row['versions']:,}", human_bytes(row["bytes"]))
        console.print(largest)
