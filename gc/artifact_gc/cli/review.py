"""``gc show``, ``gc query``, ``gc filter``, ``gc diff``, ``gc report``, ``gc history``:
parse options, call one function of the command's module in :mod:`artifact_gc.review`
(show, query, filter, diff, report, history), render its result."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any

import click

from artifact_gc.cli.options import storage_option
from artifact_gc.cli.render import echo_json, human_bytes, plain, stdout_console


def parse_storage_options(pairs: tuple[str, ...]) -> dict[str, Any] | None:
    """``("key=secret", "client_kwargs.endpoint_url=http://h")`` -> nested dict."""
    from artifact_gc.storage.options import parse_storage_options as parse

    return parse(pairs) or None


def _cell(value: Any, column: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, int) and ("bytes" in column):
        return human_bytes(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return plain(", ".join(str(v) for v in value))
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return plain(value)


def _print_table(title: str | None, rows: list[dict[str, Any]],
                 columns: list[str] | None = None) -> None:
    from rich.table import Table

    columns = columns or (list(rows[0]) if rows else [])
    table = Table(title=title)
    for column in columns:
        numeric = bool(rows) and isinstance(rows[0].get(column), int | float)
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for row in rows:
        table.add_row(*[_cell(row.get(c), c) for c in columns])
    stdout_console().print(table)


def _echo_csv(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (";".join(map(str, v)) if isinstance(v, list) else v)
                         for k, v in row.items()})
    click.echo(buffer.getvalue(), nl=False)


# ---------------------------------------------------------------------------
# gc show
# ---------------------------------------------------------------------------


@click.command("show")
@click.argument("manifest", metavar="MANIFEST")
@click.option("--by", type=click.Choice(["status", "reason", "project", "artifact", "age"]),
              default="status", show_default=True, help="The dimension to count by.")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many artifacts to list (largest candidates, --by artifact).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]),
              default="table", show_default=True,
              help="table: everything, for people; json: everything, for tools; "
                   "csv: the --by rows only.")
@storage_option
def show_command(manifest: str, by: str, top: int, fmt: str,
                 storage_option_pairs: tuple[str, ...]) -> None:
    """Summarize a manifest: counts and bytes by a dimension, the largest candidate
    artifacts, the candidates' age histogram, the mark's parameters and fingerprint.

    MANIFEST is a path or an fsspec URL (s3://bucket/prefix/mark.parquet); it is read
    in place. The queries behind it ship as plain SQL in manifests/queries/.
    """
    from artifact_gc.review.show import show

    result = show(manifest, by=by, top=top,
                  storage_options=parse_storage_options(storage_option_pairs))
    if fmt == "json":
        echo_json(result.as_dict())
        return
    if fmt == "csv":
        _echo_csv(result.rows)
        return
    info = result.info
    console = stdout_console()
    database = info.get("database", {})
    console.print(f"[bold]Manifest[/bold] {plain(result.url)}")
    console.print(plain(
        f"mark {info['mark_id']}  started {info['started_at']}  finished {info['finished_at']}"
    ))
    console.print(plain(
        f"store {database.get('store_id')}  {database.get('dialect')} "
        f"{database.get('host') or ''} {database.get('database') or ''}  "
        f"schema {database.get('schema_version')}"
    ))
    console.print(plain(f"format {info['format']} {info['format_version']} "
                        f"(tool {info['tool_version']})  checksum ")
                  + ("ok" if result.checksum_ok else "[red bold]MISMATCH[/red bold]"))
    parameters = {k: v for k, v in info.get("parameters", {}).items() if v not in ([], {}, None)}
    console.print(plain("parameters " + json.dumps(parameters, sort_keys=True, default=str)))
    for entry in info.get("lineage", []):
        console.print(plain(f"derived from mark {entry.get('parent_mark_id')} with "
                            f"--where {entry.get('predicate')!r} at {entry.get('at')}"))
    for warning in info.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {plain(warning)}")
    if not result.sizes_measured:
        console.print("[dim]sizes were not measured (gc mark --sizes): bytes are '-'[/dim]")
    _print_table(f"By {by}", result.rows)
    if result.largest_candidates:
        _print_table(f"Largest candidate artifacts (top {top})", result.largest_candidates,
                     ["artifact_name", "project", "versions", "bytes", "oldest", "newest"])
    if result.candidate_age:
        _print_table("Candidates by age at mark time", result.candidate_age)
    sweep = result.sweep
    console.print(f"sweep: {sweep.state}"
                  + (f"  {json.dumps(sweep.by_state)}  freed {human_bytes(sweep.bytes_freed)}"
                     if sweep.state != "none" else ""))


# ---------------------------------------------------------------------------
# gc query
# ---------------------------------------------------------------------------


@click.command("query")
@click.argument("manifest", metavar="MANIFEST")
@click.argument("sql", metavar="SQL")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "parquet"]),
              default="table", show_default=True, help="Output format (parquet needs -o).")
@click.option("-o", "--output", "output", metavar="FILE_OR_URL",
              help="Write the result to this file (any fsspec URL) instead of stdout.")
@click.option("--max-rows", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Rows shown by --format table (files and json/csv get every row).")
@storage_option
def query_command(manifest: str, sql: str, fmt: str, output: str | None, max_rows: int,
                  storage_option_pairs: tuple[str, ...]) -> None:
    """Run DuckDB SQL over a manifest, as the view `manifest`, and over its sweep
    journal, as the view `journal`, when MANIFEST.journal/ exists.

    \b
      gc query mark.parquet "SELECT project, count(*) FROM manifest
                             WHERE status = 'candidate' GROUP BY ALL"
    """
    from artifact_gc.review.query import export_query, query

    options = parse_storage_options(storage_option_pairs)
    if output is not None:
        if fmt == "table":
            raise click.UsageError("-o needs --format json, csv or parquet")
        rows = export_query(manifest, sql, output, fmt, storage_options=options)
        click.echo(f"{rows:,} rows written to {output}", err=True)
        return
    if fmt == "parquet":
        raise click.UsageError("--format parquet needs -o FILE")
    table = query(manifest, sql, storage_options=options)
    if fmt == "json":
        echo_json(table.to_pylist())
    elif fmt == "csv":
        _echo_csv(table.to_pylist())
    else:
        _print_table(None, table.slice(0, max_rows).to_pylist(), table.column_names)
        if table.num_rows > max_rows:
            click.echo(f"({max_rows:,} of {table.num_rows:,} rows shown; use --max-rows, "
                       "--format csv or -o)", err=True)


# ---------------------------------------------------------------------------
# gc filter
# ---------------------------------------------------------------------------


@click.command("filter")
@click.argument("manifest", metavar="MANIFEST")
@click.option("--where", "predicate", required=True, metavar="SQL_PREDICATE",
              help="Candidates for which this DuckDB predicate is true stay candidates; "
                   "the others become protected (reason filtered_out).")
@click.option("-o", "--output", "output", required=True, metavar="NEW",
              help="The derived manifest to write (path or fsspec URL).")
@click.option("--force", is_flag=True, help="Overwrite NEW if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@storage_option
def filter_command(manifest: str, predicate: str, output: str, force: bool, as_json: bool,
                   storage_option_pairs: tuple[str, ...]) -> None:
    """Derive a narrower manifest: keep as candidates only those matching --where.

    It can only narrow: no version becomes a candidate that was not one. Every row is
    kept, so the review stays complete. The new manifest records its lineage (parent
    mark, predicate, time) and has a checksum of its own, so gc sweep accepts it.

    \b
      gc filter mark.parquet --where "project <> 'research'" -o narrowed.parquet
    """
    from artifact_gc.review.filter import filter_manifest

    result = filter_manifest(manifest, predicate, output, overwrite=force,
                             storage_options=parse_storage_options(storage_option_pairs))
    summary = {"manifest": result.url, "mark_id": result.info.mark_id,
               "parent": result.parent_url, "candidates_before": result.candidates_before,
               "candidates_after": result.candidates_after,
               "filtered_out": result.filtered_out, "lineage": result.info.lineage}
    if as_json:
        echo_json(summary)
        return
    click.echo(f"{result.candidates_after:,} of {result.candidates_before:,} candidates kept "
               f"({result.filtered_out:,} now protected: filtered_out).")
    click.echo(f"Manifest: {result.url}")


# ---------------------------------------------------------------------------
# gc diff
# ---------------------------------------------------------------------------


@click.command("diff")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option("--top", type=click.IntRange(min=0), default=20, show_default=True,
              help="Versions listed per kind of change (table format).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]),
              default="table", show_default=True,
              help="table: totals and the largest changes; json/csv: every changed version.")
@storage_option
def diff_command(a: str, b: str, top: int, fmt: str, storage_option_pairs: tuple[str, ...]) -> None:
    """Compare two marks of the same store: A (older) and B (newer).

    \b
      new_candidate  a candidate in B that was not one in A
      revived        a candidate in A that B keeps (it came back to life)
      disappeared    in A, not in B (swept, deleted, or out of B's scope)
      appeared       new in B, and not a candidate
    """
    from artifact_gc.review.diff import DIFF_CATEGORIES, diff

    result = diff(a, b, storage_options=parse_storage_options(storage_option_pairs))
    if fmt == "json":
        echo_json(result.as_dict())
        return
    if fmt == "csv":
        _echo_csv(result.rows.to_pylist())
        return
    click.echo(f"A: {a} (mark {result.mark_a})\nB: {b} (mark {result.mark_b})")
    if result.empty:
        click.echo("No difference in the versions and their statuses.")
        return
    _print_table("Changes from A to B",
                 [{"change": c, **result.totals[c]} for c in DIFF_CATEGORIES])
    rows = result.rows.to_pylist()
    for change in DIFF_CATEGORIES:
        listed = [r for r in rows if r["change"] == change][:top]
        if listed:
            _print_table(f"{change} (up to {top})", listed,
                         ["artifact_name", "project", "status_a", "status_b", "size_bytes",
                          "artifact_version_id"])


# ---------------------------------------------------------------------------
# gc report
# ---------------------------------------------------------------------------


@click.command("report")
@click.argument("manifest", metavar="MANIFEST")
@click.option("-o", "--output", "output", metavar="FILE_OR_URL",
              help="The HTML file to write (any fsspec URL). Default: MANIFEST with "
                   ".html instead of .parquet.")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True,
              help="Artifacts in the 'by artifact' chart.")
@click.option("--max-rows", type=click.IntRange(min=0), default=5000, show_default=True,
              help="Candidates listed in the table (largest first).")
@click.option("--journal", "journal", metavar="LOCATION",
              help="The sweep journal, if gc sweep --journal put it elsewhere (default: "
                   "where that sweep recorded it on this machine, else MANIFEST.journal).")
@storage_option
def report_command(manifest: str, output: str | None, top: int, max_rows: int,
                   journal: str | None, storage_option_pairs: tuple[str, ...]) -> None:
    """Write one self-contained HTML page reviewing a manifest: charts (by artifact,
    project, age; the reachable/protected/candidate split), the sweep's progress when
    a journal exists, and a sortable table of the candidates. The page needs no
    network: its chart library is inlined.
    """
    from artifact_gc.review.report import build_report

    target = output or (manifest[: -len(".parquet")] if manifest.endswith(".parquet")
                        else manifest) + ".html"
    result = build_report(manifest, target, top=top, max_rows=max_rows,
                          storage_options=parse_storage_options(storage_option_pairs),
                          journal_location=journal)
    click.echo(f"Report: {result.url} ({result.candidates_shown:,} of "
               f"{result.candidates_total:,} candidates listed)")


# ---------------------------------------------------------------------------
# gc history
# ---------------------------------------------------------------------------


@click.command("history")
@click.option("--dir", "location", metavar="LOCATION",
              help="Manifests location (path or fsspec URL). Default: $ARTIFACT_GC_HOME, "
                   "else ~/.local/share/artifact-gc/manifests.")
@click.option("--json", "as_json", is_flag=True, help="Print the history as JSON.")
@storage_option
def history_command(location: str | None, as_json: bool,
                    storage_option_pairs: tuple[str, ...]) -> None:
    """List the marks found in a manifests location, oldest first, with their sweep
    state from the journal: none, partial, done or failed."""
    from artifact_gc.manifest.locations import default_manifest_dir
    from artifact_gc.review.history import history
    from artifact_gc.storage.urls import url_to_fs

    options = parse_storage_options(storage_option_pairs)
    if location is None:
        location = default_manifest_dir()
        click.echo(f"Manifests location: {location}", err=True)
        fs, path = url_to_fs(location)
        if not fs.exists(path):
            if as_json:
                echo_json([])
            else:
                click.echo("No manifests yet (gc mark writes them here).")
            return
    entries = history(location, storage_options=options)
    if as_json:
        echo_json([e.as_dict() for e in entries])
        return
    if not entries:
        click.echo(f"No manifests in {location}.")
        return
    rows = []
    for e in entries:
        counts = e.counts
        rows.append({
            "manifest": e.url.rsplit("/", 1)[-1],
            "mark": (e.mark_id or "")[:8] + ("*" if e.derived else ""),
            "started (UTC)": (e.started_at or "")[:16].replace("T", " "),
            "store": (e.store_id or "")[:8],
            "reach/prot/cand": "/".join(
                str(counts.get(k, "?")) for k in ("reachable", "protected", "candidate")
            ) if e.error is None else "",
            "cand bytes": e.bytes.get("candidate"),
            "sweep": e.sweep if e.error is None else "unreadable",
        })
    _print_table(f"Marks in {location}", rows)
    if any(e.derived for e in entries):
        click.echo("* derived by gc filter")
    for e in entries:
        if e.error is not None:
            click.echo(f"unreadable: {e.url}: {e.error}")
