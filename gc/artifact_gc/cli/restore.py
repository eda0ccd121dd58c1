"""``gc restore``: parse options, plan, confirm, restore, render."""

from __future__ import annotations

import click

from artifact_gc.cli.options import storage_option
from artifact_gc.cli.render import TerminalProgress, echo_json, plain, stdout_console


@click.command("restore")
@click.argument("manifest", metavar="MANIFEST")
@click.option("--where", "where", metavar="PREDICATE",
              help="Restore only the items matching this DuckDB predicate over the "
                   "manifest's columns (as gc filter), e.g. \"artifact_name = 'model'\".")
@click.option("--db", "db_url", metavar="URL",
              help="SQLAlchemy URL of the ZenML metadata store (default: as gc sweep).")
@click.option("--journal", "journal", metavar="LOCATION",
              help="The sweep journal, if gc sweep --journal put it elsewhere.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True,
              help="Check for conflicts and report what would come back; change nothing.")
@storage_option
@click.option("--json", "as_json", is_flag=True, help="Print the plan and summary as JSON.")
def restore_command(manifest: str, where: str | None, db_url: str | None,
                    journal: str | None, yes: bool, dry_run: bool,
                    storage_option_pairs: tuple[str, ...], as_json: bool) -> None:
    """Bring back what a sweep of MANIFEST deleted inside its undo window: files
    first, then rows (parents first), so ZenML loads every restored version again.

    Refuses, changing nothing, when an id or a path was reused since the sweep
    (exit 11) or when what is asked was swept with --no-undo or purged by gc trash
    empty (exit 12). Journaled beside the sweep journal: run it again after any
    interruption to finish.
    """
    from artifact_gc.storage.options import parse_storage_options
    from artifact_gc.undo.restore import RestoreOptions, execute_restore, plan_restore

    options = RestoreOptions(where=where, dry_run=dry_run, journal=journal,
                             storage_options=parse_storage_options(storage_option_pairs))
    plan = plan_restore(manifest, db_url, options)
    described = plan.as_dict()
    if not as_json:
        console = stdout_console()
        what = "Dry run of the restore" if dry_run else "Restore"
        console.print(plain(
            f"{what} of {manifest} (mark {described['mark_id'][:8]}) on "
            f"{described['database']}: {described['versions']:,} artifact versions, "
            f"{described['orphan_files']:,} orphan files, {described['paths']:,} paths, "
            f"rows: " + (", ".join(f"{t} {n:,}" for t, n in sorted(described['rows'].items()))
                         or "-")
            + (f"; {described['already_restored']:,} restored before"
               if described["already_restored"] else "") + "."))
    if plan.items and not dry_run and not yes:
        from artifact_gc.cli.sweep import confirm

        confirm(f"Restore {len(plan.items):,} item(s)?", "restore")
    report = execute_restore(plan, progress=TerminalProgress(enabled=False if as_json
                                                             else None))
    summary = report.as_dict()
    if as_json:
        echo_json({"plan": described, "summary": summary})
        return
    verb = "would restore" if dry_run else "restored"
    click.echo(f"{verb} {summary['items']:,} item(s): files {summary['files_restored']:,} "
               f"(already back {summary['files_already']:,}), rows "
               + (", ".join(f"{t} {n:,}" for t, n in sorted(summary["rows_inserted"].items()))
                  or "-")
               + f" (already there {summary['rows_already']:,}).")
    if summary.get("files_absent"):
        click.echo(f"{summary['files_absent']:,} path(s) had nothing to bring back: they were "
                   "already gone when the sweep came to them.")
