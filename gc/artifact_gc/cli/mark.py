"""``gc mark``: parse options, run the mark, render its summary."""

from __future__ import annotations

from typing import Any

import click

from artifact_gc.cli import interrupts_ignored
from artifact_gc.cli.options import duration, glob_patterns, object_store_options
from artifact_gc.cli.render import (
    TableColumn,
    TerminalProgress,
    echo_json,
    human_bytes,
    plain,
    print_table,
    say,
    stdout_console,
)
from artifact_gc.storage.limits import DEFAULT_LIST_WORKERS


@click.command("mark")
@click.option("--db", "db_url", metavar="URL",
              help="The ZenML metadata store: a path to its zenml.db, or a SQLAlchemy URL "
                   "(sqlite:////abs/path/zenml.db, four slashes for an absolute path; "
                   "mysql+pymysql://user:pw@host/zenml). Default: $ZENML_STORE_URL, else "
                   "the local store of ZenML's global config.")
@click.option("--out", "out", metavar="PATH_OR_URL",
              help="Manifest file, or a directory (local or s3://...) to create one in. "
                   "Default: $ARTIFACT_GC_HOME or ~/.local/share/artifact-gc/manifests.")
@click.option("--older-than", "older_than", default="24h", show_default=True,
              callback=duration, metavar="DURATION",
              help="Grace period: versions younger than this are never candidates "
                   "(0, 90m, 24h, 7d, 2w).")
@click.option("--keep-latest", type=click.IntRange(min=0), metavar="N",
              help="Keep the N newest versions of every artifact.")
@click.option("--project", "projects", multiple=True, metavar="NAME",
              help="Only versions of this project, by name or id (repeatable). On stores "
                   "of ZenML before 0.80 it names a workspace, which the output calls so.")
@click.option("--artifact", "artifacts", multiple=True, metavar="GLOB",
              callback=glob_patterns,
              help="Only artifacts whose name matches this glob (repeatable).")
@click.option("--exclude-artifact", "exclude_artifacts", multiple=True, metavar="GLOB",
              callback=glob_patterns,
              help="Leave out artifacts whose name matches this glob (repeatable).")
@click.option("--keep-tag", "keep_tags", multiple=True, metavar="TAG",
              help="Protect versions that carry this ZenML tag, or whose artifact does "
                   "(reason tag:TAG; repeatable). The sweep checks the tags again.")
@click.option("--release-unreachable-snapshots", is_flag=True,
              help="Let a step configuration's reference (ExternalArtifact uploads, "
                   "lazy loaders) stop keeping a version once nothing can run its "
                   "snapshot again: no runs left, no schedule, name, deployment, run "
                   "template or trigger, and older than --older-than. Default: such "
                   "references keep versions forever.")
@click.option("--sizes", is_flag=True,
              help="Measure every candidate's bytes and file count in the artifact store.")
@click.option("--store-root", "store_roots", multiple=True, metavar="COMPONENT_ID=URL",
              help="Override the root of an artifact store component (repeatable).")
@click.option("--workers", type=click.IntRange(min=1), default=16, show_default=True,
              help="Threads for --sizes on local and fsspec stores (an S3 root follows "
                   "--list-workers).")
@click.option("--list-workers", type=click.IntRange(min=1), default=DEFAULT_LIST_WORKERS,
              show_default=True,
              help="Paginated listings of one S3 store root at a time (--orphan-files, "
                   "--sizes), over contiguous key ranges; 1 lists it page after page.")
@click.option("--orphan-files", is_flag=True,
              help="Also list every artifact store and add the files no row names, where "
                   "ZenML's layout says what they are, as candidates of kind orphan_file "
                   "(everything else is reported as unknown, never deleted).")
@click.option("--orphan-code-uploads", is_flag=True,
              help="Also make a content-addressed code archive "
                   "(code_uploads/<sha1>.tar.gz) that no pipeline snapshot names a "
                   "candidate (class unreferenced_code_upload). Off by default: ZenML "
                   "reuses an archive without rewriting it, so a run starting during the "
                   "sweep may name one just deleted. Without it code archives are unknown "
                   "(implies --orphan-files).")
@click.option("--inventory", metavar="URL",
              help="Classify orphan files from this listing instead of listing the store: "
                   "an S3 Inventory manifest.json, or a Parquet/CSV file of "
                   "path,size,last_modified (implies --orphan-files).")
@click.option("--max-inventory-age", default="2d", show_default=True, callback=duration,
              metavar="DURATION", help="Refuse an inventory taken longer ago than this.")
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
    exclude_artifacts: tuple[str, ...], keep_tags: tuple[str, ...],
    release_unreachable_snapshots: bool, sizes: bool, store_roots: tuple[str, ...],
    workers: int, storage_option_pairs: tuple[str, ...],
    max_requests_per_second: float | None, as_json: bool, orphan_files: bool = False,
    inventory: str | None = None, max_inventory_age: Any = None,
    lock_timeout: Any = None, orphan_code_uploads: bool = False,
    list_workers: int = DEFAULT_LIST_WORKERS,
) -> None:
    """Decide which artifact versions are garbage, and write the decision as a manifest.

    Reads the metadata store (never writes to it) and classifies every artifact
    version in scope as reachable (something refers to it), protected (a policy or
    a safety rule keeps it) or candidate (garbage the sweep may delete). Review the
    manifest with gc show, then delete with gc sweep.
    """
    import warnings

    from artifact_gc.errors import caused_by_interrupt
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
        limits=RequestLimits(max_requests_per_second, list_workers=list_workers),
        keep_tags=_tag_names(keep_tags),
        release_unreachable_snapshots=release_unreachable_snapshots,
        orphan_files=orphan_files or inventory is not None or orphan_code_uploads,
        orphan_code_uploads=orphan_code_uploads, inventory=inventory,
        max_inventory_age=max_inventory_age,
        lock_timeout=lock_timeout,
    )
    # One id names the manifest file and is recorded inside it.
    mark_id = new_mark_id()
    target = resolve_output(out, mark_id, utc_now(), options.storage_options)
    check_writable(target, storage_options=options.storage_options)
    from artifact_gc.manifest.publish import aside_url, check_publishable, swept_mark_at

    check_publishable(target, options.storage_options)
    swept_before = swept_mark_at(target, options.storage_options)
    progress = TerminalProgress(enabled=None if not as_json else False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = mark(url, target, options, progress=progress, mark_id=mark_id)
        # Published: from here an interrupt must not turn success into exit 130.
        interrupts_ignored(click.get_current_context())
    except (KeyboardInterrupt, Exception) as exc:
        if not isinstance(exc, KeyboardInterrupt) and not caused_by_interrupt(exc):
            raise
        progress.close()
        # The manifest is published by one rename: it either carries this mark's id at
        # the target, or the mark published nothing. Never both a "Next:" and a 130.
        if not published(target, mark_id, options.storage_options):
            from artifact_gc.errors import Interrupted

            raise Interrupted("interrupted (Ctrl-C); no manifest was published") from None
        interrupts_ignored(click.get_current_context())
        click.echo(f"Manifest: {target} (published; the summary was interrupted, "
                   f"see gc show {target})")
        click.echo(f"Next: gc show {target}   then   gc sweep {target}")
        return
    progress.close()
    if as_json:
        echo_json({"manifest": result.url, "mark_id": result.info.mark_id,
                   "database": result.info.database, "warnings": result.info.warnings,
                   "counts": result.info.counts, "orphan_files": result.info.orphan_files,
                   **result.summary})
        return
    render_summary(result.info.as_dict(), result.summary)
    if swept_before is not None:
        click.echo(f"Set aside: the swept manifest of mark {swept_before[:8]} that was at "
                   f"{target}, with its journal, is now {aside_url(target, swept_before)}")
    if result.info.orphan_files is not None:
        render_orphan_files(result.info.orphan_files)
    click.echo(f"Manifest: {result.url}")
    click.echo(f"Next: gc show {result.url}   then   gc sweep {result.url}")


def _tag_names(values: tuple[str, ...]) -> tuple[str, ...]:
    """``--keep-tag`` values, each once, in order; an empty name is a usage error."""
    names = tuple(dict.fromkeys(v.strip() for v in values))
    if any(not name for name in names):
        raise click.BadParameter("a tag name cannot be empty", param_hint="--keep-tag")
    return names


def published(target: str, mark_id: str, storage_options: dict[str, Any]) -> bool:
    """Whether the manifest at ``target`` is this mark's (``mark_id``)."""
    from artifact_gc.manifest.format import read_info

    try:
        return read_info(target, storage_options).mark_id == mark_id
    except Exception:  # noqa: BLE001 - absent, partial or another file: not published
        return False


def render_summary(info: dict[str, Any], summary: dict[str, Any], *,
                   location: str | None = None) -> None:
    """The mark's counts and bytes by status and reason, what each of them means, and
    the largest candidates. ``location`` replaces the database's location (the demo
    names it relative to its folder)."""
    from rich.text import Text

    from artifact_gc.manifest.reasons import STATUS_CANDIDATE, STATUS_REACHABLE, STATUSES
    from artifact_gc.mark.summary import STATUS_MEANINGS, decides, reason_meaning
    from artifact_gc.metadb.fingerprint import DatabaseFingerprint

    console = stdout_console()
    for warning in info.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {plain(warning)}")
    counts = info.get("counts", {})
    grace = (info.get("parameters") or {}).get("older_than")
    say(console, f"Marked {counts.get('versions_in_scope', 0):,} artifact versions in scope "
                 f"({counts.get('versions_out_of_scope', 0):,} out of scope).")
    # The location on a line of its own: a long path must not push the sentence apart.
    fp = DatabaseFingerprint.from_dict(info["database"])
    where = fp.database if fp.dialect == "sqlite" else f"{fp.host}:{fp.port or 3306}/{fp.database}"
    say(console, f"Store: {fp.dialect}, schema {fp.schema_version}"
                 + (f", store id {fp.store_id}" if fp.store_id else ""))
    say(console, f"  {location or where}")

    def meaning(reason: str) -> str:
        text = reason_meaning(reason)
        return text.replace("(--older-than)", f"(--older-than {grace})") if grace else text

    order = {status: i for i, status in enumerate(STATUSES)}
    deciding = sorted((r for r in summary["by_reason"]
                       if r.get("decides", decides(r["status"], r["reason"]))),
                      key=lambda r: order.get(r["status"], len(order)))
    rows: list[list[str]] = []
    for status in STATUSES:
        group = [r for r in deciding if r["status"] == status]
        for i, row in enumerate(group):
            why = "nothing keeps it" if row["reason"] == "(none)" else row["reason"]
            rows.append([status if i == 0 else "", why, f"{row['versions']:,}",
                         human_bytes(row["bytes"])])
        if len(group) > 1:
            rows.append(["", "total", f"{summary['counts'].get(status, 0):,}",
                         human_bytes(summary["bytes"].get(status))])
    print_table(console, "Decision by status and reason", [
        TableColumn("status"), TableColumn("why", "why kept (or not)"),
        TableColumn("versions", numeric=True), TableColumn("bytes", numeric=True),
    ], rows, hide_first=["bytes"])
    # A reader meets these words once: say what each one means, right here.
    shown = [s for s in STATUSES if summary["counts"].get(s)]
    width = max([len(s) for s in shown] + [len(r["reason"]) for r in deciding])
    for status in shown:
        console.print(Text(f"  {status.ljust(width)}  {STATUS_MEANINGS[status]}"))
    for reason in dict.fromkeys(r["reason"] for r in deciding if r["reason"] != "(none)"):
        console.print(Text(f"  {reason.ljust(width)}  {meaning(reason)}", style="dim"))
    also = [f"{row['reason']} {row['versions']:,}" for row in summary["by_reason"]
            if row["status"] == STATUS_REACHABLE
            and not row.get("decides", decides(row["status"], row["reason"]))]
    if also:
        # Not a second reason to keep them: the reference alone decides.
        console.print(Text(f"  (reachable, and also under a rule: {', '.join(also)})",
                           style="dim"))
    if summary["largest_candidates"]:
        # The store's own word for its scope: a workspace before ZenML 0.80.
        scope = str(info.get("schema", {}).get("scope") or "project")
        print_table(console, "Largest candidate artifacts", [
            TableColumn("artifact"), TableColumn(scope),
            TableColumn("versions", numeric=True), TableColumn("bytes", numeric=True),
        ], [[row["artifact_name"] or "-", row["project"] or "-", f"{row['versions']:,}",
             human_bytes(row["bytes"])] for row in summary["largest_candidates"]],
            hide_first=[scope], hide_rather_than_cut=True)
    if not summary["counts"].get(STATUS_CANDIDATE):
        console.print(Text("No candidates: gc sweep would delete nothing."))


def render_orphan_files(orphans: dict[str, Any]) -> None:
    """What the listing found: live, unknown, and the orphan files by class and status."""
    console = stdout_console()
    say(console,
        f"Listed {orphans['objects']:,} objects ({human_bytes(orphans['bytes'])}) by "
        f"{orphans['source']}: live {orphans['live']['objects']:,} "
        f"({human_bytes(orphans['live']['bytes'])}), unknown layout "
        f"{orphans['unknown']['objects']:,} ({human_bytes(orphans['unknown']['bytes'])}, "
        "never deleted).")
    trash = orphans.get("undo_trash") or {}
    if trash.get("objects"):
        say(console, f"Undo trash (.artifact-gc-trash/): {trash['objects']:,} objects "
                     f"({human_bytes(trash['bytes'])}), gc's own, never a candidate.")
    if not orphans["by_class"]:
        say(console, "No orphan files: every listed object is live or of unknown layout.")
        return
    print_table(console, "Orphan files by class", [
        TableColumn("class"), TableColumn("status"), TableColumn("paths", numeric=True),
        TableColumn("objects", numeric=True), TableColumn("bytes", numeric=True),
    ], [[row["orphan_class"], row["status"], f"{row['paths']:,}", f"{row['objects']:,}",
         human_bytes(row["bytes"])] for row in orphans["by_class"]], hide_first=["objects"])
