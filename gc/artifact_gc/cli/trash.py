"""``gc trash empty``: purge the undo data of sweeps whose window has passed."""

from __future__ import annotations

from typing import Any

import click

from artifact_gc.cli.options import duration, storage_option
from artifact_gc.cli.render import TerminalProgress, echo_json, plain, stdout_console


@click.group("trash")
def trash_group() -> None:
    """The undo window's trash: what sweeps deleted, restorable until emptied."""


@trash_group.command("empty")
@click.argument("targets", nargs=-1, required=True, metavar="MANIFEST_OR_LOCATION...")
@click.option("--older-than", default=None, callback=lambda c, p, v: None if v is None
              else duration(c, p, v), metavar="DURATION",
              help="Also purge sweeps older than this, even inside their undo window.")
@click.option("--db", "db_url", metavar="URL",
              help="SQLAlchemy URL of the ZenML metadata store (default: as gc sweep).")
@click.option("--journal", "journal", metavar="LOCATION",
              help="The sweep journal, if gc sweep --journal put it elsewhere.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Report what would be purged; purge nothing.")
@storage_option
@click.option("--json", "as_json", is_flag=True, help="Print the plan and summary as JSON.")
def empty_command(targets: tuple[str, ...], older_than: Any, db_url: str | None,
                  journal: str | None, yes: bool, dry_run: bool,
                  storage_option_pairs: tuple[str, ...], as_json: bool) -> None:
    """Purge, for good, the files and rows kept by the sweeps of each MANIFEST (or of
    every manifest in a LOCATION) whose undo window has passed. Journaled: run it
    again after any interruption to finish."""
    from artifact_gc.storage.options import parse_storage_options
    from artifact_gc.undo.purge import PurgeOptions, execute_purge, plan_purge

    options = PurgeOptions(older_than=older_than, dry_run=dry_run, journal=journal,
                           db_url=db_url,
                           storage_options=parse_storage_options(storage_option_pairs))
    plan = plan_purge(list(targets), options)
    if not as_json:
        console = stdout_console()
        console.print(plain(f"{len(plan.due)} sweep(s) to purge, {plan.waiting} still "
                            "inside their undo window."))
        for due in plan.due:
            console.print(plain(f"  sweep {due.record.sweep_id[:8]} of {due.manifest_url} "
                                f"(window ended {due.record.expires_at:%Y-%m-%d %H:%M} UTC)"))
    if plan.due and not dry_run and not yes:
        from artifact_gc.cli.sweep import confirm

        confirm(f"Purge {len(plan.due)} sweep(s) for good?", "trash empty")
    report = execute_purge(plan, progress=TerminalProgress(enabled=False if as_json
                                                           else None))
    if as_json:
        echo_json({"plan": plan.as_dict(), "summary": report.as_dict()})
        return
    verb = "would purge" if dry_run else "purged"
    click.echo(f"{verb} {report.sweeps} sweep(s): {report.objects:,} object(s), "
               f"{report.row_segments:,} row segment(s).")
