"""``gc show``, ``gc query``, ``gc filter``, ``gc diff``, ``gc report``, ``gc history``:
parse options, call one function of the command's module in :mod:`artifact_gc.review`
(show, query, filter, diff, report, history), render its result."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from artifact_gc.cli.options import storage_option
from artifact_gc.cli.render import (
    TableColumn,
    echo_json,
    human_bytes,
    plain,
    print_table,
    say,
    stdout_console,
)


def parse_storage_options(pairs: tuple[str, ...]) -> dict[str, Any] | None:
    """``("key=secret", "client_kwargs.endpoint_url=http://h")`` -> nested dict."""
    from artifact_gc.storage.options import parse_storage_options as parse

    return parse(pairs) or None


def _cell(value: Any, column: str = "") -> str:
    """A value as table text (rich never reads it as markup: see print_table)."""
    if value is None:
        return "-"
    if isinstance(value, int) and ("bytes" in column):
        return human_bytes(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _numeric(rows: list[dict[str, Any]], column: str) -> bool:
    values = [row.get(column) for row in rows if row.get(column) is not None]
    return bool(values) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                for v in values)


def _print_table(title: str | None, rows: list[dict[str, Any]],
                 columns: list[str] | None = None, *,
                 hide_first: Sequence[str] | None = None,
                 whole: Sequence[str] = ()) -> None:
    """Rows as a table that fits the terminal (see print_table). Unless told which
    columns to leave out first on a narrow terminal, the rightmost go first."""
    columns = columns or (list(rows[0]) if rows else [])
    specs = [TableColumn(c, numeric=_numeric(rows, c), whole=c in whole) for c in columns]
    order = list(reversed(columns[1:])) if hide_first is None else list(hide_first)
    print_table(stdout_console(), title, specs,
                [[_cell(row.get(c), c) for c in columns] for row in rows], hide_first=order,
                hide_rather_than_cut=hide_first is not None)


def _explain(console: Any, rows: list[dict[str, Any]], grace: str | None = None) -> None:
    """One line per status and reason in ``rows``: what it means, in a user's words."""
    from rich.text import Text

    from artifact_gc.mark.summary import STATUS_MEANINGS, reason_meaning

    words = list(dict.fromkeys(
        [r["status"] for r in rows if r.get("status") in STATUS_MEANINGS]
        + [r["reason"] for r in rows if r.get("reason") not in (None, "(none)")]))
    if not words:
        return
    width = max(len(w) for w in words)
    for word in words:
        meaning = STATUS_MEANINGS.get(word) or reason_meaning(word)
        if grace:
            meaning = meaning.replace("(--older-than)", f"(--older-than {grace})")
        console.print(Text(f"  {word.ljust(width)}  {meaning}", style="dim"))


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
@click.option("--by", type=click.Choice(["status", "reason", "project", "artifact", "age",
                                         "referrer", "kind"]),
              default="status", show_default=True,
              help="The dimension to count by (referrer: the runs and steps, model "
                   "versions, snapshots and schedules holding the references; kind: "
                   "artifact versions and orphan files, by class).")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many artifacts (or referrers) to list (largest candidates, "
                   "--by artifact, --by referrer).")
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
    from rich.text import Text

    info = result.info
    console = stdout_console()
    database = info.get("database", {})
    say(console, f"Manifest {result.url}")
    say(console, f"mark {info['mark_id']}  started {info['started_at']}  "
                 f"finished {info['finished_at']}")
    # A store without ZenML's server id (a local SQLite store) has none to show.
    store_id = f"store {database['store_id']}  " if database.get("store_id") else ""
    say(console, f"{store_id}{database.get('dialect')} "
                 f"{database.get('host') or ''} {database.get('database') or ''}  "
                 f"schema {database.get('schema_version')}")
    console.print(plain(f"format {info['format']} {info['format_version']} "
                        f"(tool {info['tool_version']})  checksum ")
                  + ("ok" if result.checksum_ok else "[red bold]MISMATCH[/red bold]"))
    parameters = {k: v for k, v in info.get("parameters", {}).items() if v not in ([], {}, None)}
    say(console, "parameters " + json.dumps(parameters, sort_keys=True, default=str))
    for entry in info.get("lineage", []):
        say(console, f"derived from mark {entry.get('parent_mark_id')} with "
                     f"--where {entry.get('predicate')!r} at {entry.get('at')}")
    for warning in info.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {plain(warning)}")
    if not result.sizes_measured:
        console.print("[dim]sizes were not measured (gc mark --sizes): bytes are '-'[/dim]")
    from artifact_gc.mark.summary import decides

    deciding = [r for r in result.rows if "reason" not in r
                or decides(r.get("status", ""), r["reason"])]
    _print_table(f"By {by}", deciding)
    _explain(console, deciding, (info.get("parameters") or {}).get("older_than"))
    also = [f"{row['reason']} {row['versions']:,}" for row in result.rows
            if row not in deciding]
    if also:
        console.print(Text(f"  (reachable, and also under a rule: {', '.join(also)})",
                           style="dim"))
    if by != "kind" and any(r["item_kind"] != "artifact_version" for r in result.by_kind or []):
        _print_table("By kind and class (reclaimable bytes: the candidates')",
                     result.by_kind or [])
    orphans = info.get("orphan_files")
    if orphans:
        console.print(plain(
            f"orphan files ({orphans['source']}): {orphans['objects']:,} objects listed, "
            f"live {orphans['live']['objects']:,} ({human_bytes(orphans['live']['bytes'])}), "
            f"unknown layout {orphans['unknown']['objects']:,} "
            f"({human_bytes(orphans['unknown']['bytes'])}, never deleted)"
            + (f", undo trash {orphans['undo_trash']['objects']:,} "
               f"({human_bytes(orphans['undo_trash']['bytes'])}, never deleted)"
               if (orphans.get("undo_trash") or {}).get("objects") else "")))
    if result.largest_candidates:
        _print_table(f"Largest candidate artifacts (top {top})", result.largest_candidates,
                     ["artifact_name", "project", "versions", "bytes", "oldest", "newest"],
                     hide_first=["newest", "oldest", "project"])
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
      revived        a candidate in A that B keeps (something refers to it again)
      filtered_out   a candidate in A that gc filter --where excluded from B
      disappeared    in A, not in B (swept, deleted, or out of B's scope)
      appeared       new in B, and not a candidate
    """
    from artifact_gc.review.diff import DIFF_CATEGORIES, DIFF_MEANINGS, diff

    result = diff(a, b, storage_options=parse_storage_options(storage_option_pairs))
    if fmt == "json":
        echo_json(result.as_dict())
        return
    if fmt == "csv":
        _echo_csv(result.rows.to_pylist())
        return
    console = stdout_console()
    say(console, f"A: {a} (mark {result.mark_a})")
    say(console, f"B: {b} (mark {result.mark_b})")
    if result.empty:
        click.echo("No difference in the versions and their statuses.")
        return
    _print_table("Changes from A to B",
                 [{"change": c, **result.totals[c]} for c in DIFF_CATEGORIES])
    for change in DIFF_CATEGORIES:
        if result.totals[change]["versions"]:
            say(console, f"  {change}: {DIFF_MEANINGS[change]}")
    rows = result.rows.to_pylist()
    for change in DIFF_CATEGORIES:
        listed = [r for r in rows if r["change"] == change][:top]
        if listed:
            _print_table(f"{change} (up to {top})", listed,
                         ["artifact_name", "project", "status_a", "status_b", "size_bytes",
                          "artifact_version_id"],
                         hide_first=["status_a", "project", "size_bytes", "status_b"],
                         whole=["artifact_version_id"])


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
@click.option("--max-rows", type=click.IntRange(min=0), default=2000, show_default=True,
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
            "undo": "; ".join(f"{u['window']} {u['state']}"
                              + (f" until {u['expires_at'][:16].replace('T', ' ')}"
                                 if u["state"] == "restorable" else "")
                              for u in e.undo) or "-",
        })
    say(stdout_console(), f"Marks in {location}")
    _print_table(None, rows, hide_first=["undo", "store", "mark", "cand bytes",
                                         "started (UTC)"],
                 whole=["manifest"])
    if any(e.derived for e in entries):
        click.echo("* derived by gc filter")
    for e in entries:
        if e.error is not None:
            click.echo(f"unreadable: {e.url}: {e.error}")


# ---------------------------------------------------------------------------
# gc why
# ---------------------------------------------------------------------------


@click.command("why")
@click.argument("version_id", metavar="VERSION_ID")
@click.argument("manifest", metavar="MANIFEST")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@storage_option
def why_command(version_id: str, manifest: str, as_json: bool,
                storage_option_pairs: tuple[str, ...]) -> None:
    """Explain in plain words why MANIFEST's mark decided what it did about one
    artifact version: its status, every reason, who refers to it, and (once swept)
    what the sweep did.

    VERSION_ID is the version's id (32 hex digits, dashed or not, or a unique prefix
    of at least 6).
    """
    from artifact_gc.review.why import why

    result = why(manifest, version_id,
                 storage_options=parse_storage_options(storage_option_pairs))
    if as_json:
        echo_json(result.as_dict())
        return
    for line in result.lines:
        click.echo(line)
