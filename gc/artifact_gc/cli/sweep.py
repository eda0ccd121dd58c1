"""``gc sweep`` and ``gc status``: parse options, plan, confirm, execute, render."""

from __future__ import annotations

from typing import Any

import click

from artifact_gc.cli.options import duration, object_store_options
from artifact_gc.cli.render import (
    TerminalProgress,
    echo_json,
    human_bytes,
    plain,
    stdout_console,
)

#: The key of click's context object (``ctx.obj``) under which a caller of the command
#: line may hand the sweep a ``SweepHooks`` (the crash tests do; ``gc`` itself never).
SWEEP_HOOKS = "sweep_hooks"


@click.command("sweep")
@click.argument("manifest", metavar="MANIFEST")
@click.option("--db", "db_url", metavar="URL",
              help="SQLAlchemy URL of the ZenML metadata store (default: as gc mark, else "
                   "the SQLite file the manifest was marked on). Must be the marked store.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True,
              help="Re-verify against the live store and report what would be deleted and "
                   "what came back to life; change nothing, write no journal.")
@click.option("--only-artifact", is_flag=True,
              help="Delete the files only; keep the metadata rows (as ZenML's flag).")
@click.option("--only-metadata", is_flag=True,
              help="Delete the metadata rows only; keep the files (as ZenML's flag).")
@click.option("--workers", type=click.IntRange(min=1), default=16, show_default=True,
              help="Threads for deleting files.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Versions per journaled batch and database transaction "
                   "(default: 5000 on SQLite, 1000 on MySQL/MariaDB).")
@click.option("--ignore-errors", is_flag=True,
              help="Journal items that fail for good and go on (exit 8 at the end).")
@click.option("--max-manifest-age", default="7d", show_default=True, callback=duration,
              metavar="DURATION", help="Refuse a manifest whose mark started longer ago.")
@click.option("--accept-schema", metavar="X.Y.Z", default=None,
              help="Sweep a store whose ZenML release no schema profile covers (a release "
                   "newer than the last supported one), on the schema's foreign keys alone; "
                   "give the store's schema version. Still refused when reflection finds a "
                   "reference no profile explains.")
@object_store_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan and summary as JSON.")
@click.pass_context
def sweep_command(
    ctx: click.Context, manifest: str, db_url: str | None, yes: bool, dry_run: bool,
    only_artifact: bool, only_metadata: bool, workers: int, batch_size: int | None,
    ignore_errors: bool, max_manifest_age: Any, storage_option_pairs: tuple[str, ...],
    max_requests_per_second: float | None, as_json: bool, accept_schema: str | None = None,
) -> None:
    """Delete the candidates of MANIFEST: files and metadata, re-verified live.

    Every batch is re-verified against the live database under its write lock; a
    candidate that has been used or linked since the mark is kept ("revived"). The
    journal beside the manifest makes the sweep resumable: run it again after any
    interruption. See progress with gc status MANIFEST.
    """
    from artifact_gc.errors import GCError, SweepIncomplete
    from artifact_gc.storage.limits import RequestLimits
    from artifact_gc.storage.options import parse_storage_options
    from artifact_gc.sweep.execute import execute
    from artifact_gc.sweep.hooks import SweepHooks
    from artifact_gc.sweep.options import (
        MODE_ALL,
        MODE_ONLY_ARTIFACT,
        MODE_ONLY_METADATA,
        SweepOptions,
    )
    from artifact_gc.sweep.plan import plan_sweep

    if only_artifact and only_metadata:
        raise click.UsageError("--only-artifact and --only-metadata are mutually exclusive")
    mode = MODE_ONLY_ARTIFACT if only_artifact else MODE_ONLY_METADATA if only_metadata \
        else MODE_ALL
    options = SweepOptions(mode=mode, dry_run=dry_run, batch_size=batch_size, workers=workers,
                           ignore_errors=ignore_errors, max_manifest_age=max_manifest_age,
                           storage_options=parse_storage_options(storage_option_pairs),
                           limits=RequestLimits(max_requests_per_second),
                           accept_schema=accept_schema)
    plan = plan_sweep(manifest, db_url, options)
    if only_metadata:
        click.echo("warning: --only-metadata leaves the files of every version it deletes "
                   "in the artifact store (and leaves this manifest's orphan files alone); "
                   "collect them later with: gc mark --orphan-files, then gc sweep of "
                   "that manifest", err=True)
    if not as_json:
        _render_plan(plan.as_dict())
    if plan.versions and not dry_run and not yes:
        from artifact_gc.errors import Aborted

        orphans = plan.orphan_files
        what = (f"{plan.versions - orphans:,} artifact versions"
                + (f" and {orphans:,} orphan-file paths" if orphans else ""))
        if not click.confirm(f"Delete {what}?", default=False, err=True):
            raise Aborted("sweep aborted at the confirmation prompt; nothing was deleted")
    hooks = (ctx.obj or {}).get(SWEEP_HOOKS)
    if hooks is not None and not isinstance(hooks, SweepHooks):
        raise TypeError(f"ctx.obj[{SWEEP_HOOKS!r}] must be a SweepHooks, not {type(hooks)}")
    progress = TerminalProgress(enabled=None if not as_json else False)
    try:
        report = execute(plan, progress=progress, hooks=hooks)
    except GCError as stopped:
        # What was done before the stop is shown too; the FAILED line follows.
        if stopped.done is not None:
            if as_json:
                echo_json({"plan": plan.as_dict(), "summary": stopped.done,
                           "stopped": stopped.message})
            else:
                _render_summary(stopped.done)
        raise
    summary = report.as_dict()
    if as_json:
        echo_json({"plan": plan.as_dict(), "summary": summary})
    else:
        _render_summary(summary)
    if report.failures:
        raise SweepIncomplete(
            f"{len(report.failures)} artifact version(s) failed; see gc status {manifest}",
            failed=len(report.failures),
        )


def _render_plan(plan: dict[str, Any]) -> None:
    console = stdout_console()
    what = "Dry run of the sweep" if plan["dry_run"] else "Sweep"
    console.print(plain(
        f"{what} of {plan['manifest']} (mark {plan['mark_id'][:8]}, started "
        f"{plan['mark_started_at']}) on {plan['database']}, mode {plan['mode']}."
    ))
    done = {k: v for k, v in plan["journal_states"].items() if k != "pending"}
    if done:
        console.print("Journal so far: " + ", ".join(f"{k} {v:,}" for k, v in sorted(done.items())))
    files = "unknown" if plan["files"] is None else f"{plan['files']:,}"
    console.print(
        f"To do: {plan['versions']:,} of {plan['candidates']:,} candidate versions "
        f"({plan['resuming']:,} resumed), {files} files, {human_bytes(plan['bytes'])}"
        f"{'' if plan['bytes'] is not None else ' (mark with --sizes to know)'}; "
        f"{plan['batches']} batch(es) of up to {plan['batch_size']:,}."
    )


def _render_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    console = stdout_console()
    verb = "would delete" if summary["dry_run"] else "deleted"
    table = Table(title="Dry run (nothing changed)" if summary["dry_run"] else "Sweep summary")
    table.add_column("")
    table.add_column("", justify="right")
    freed = human_bytes(summary["bytes_freed"])
    if summary["bytes_unknown_versions"]:
        freed += f" (+ {summary['bytes_unknown_versions']:,} versions of unknown size)"
    for label, value in (
        (verb, f"{summary['deleted']:,}"),
        ("revived", f"{summary['revived']:,}"),
        ("protected", f"{summary['protected']:,}"),
        ("failed", f"{summary['failed']:,}"),
        ("bytes freed" if not summary["dry_run"] else "bytes", freed),
        ("paths", f"{summary['paths_deleted']:,}"),
        ("rows", ", ".join(f"{t} {n:,}" for t, n in sorted(summary["rows_deleted"].items()))
         or "-"),
        ("retries", f"{summary['retries']:,}"),
        ("elapsed", f"{summary['elapsed_seconds']:.2f} s "
                    f"({summary['versions_per_second']:,.0f} versions/s)"),
    ):
        table.add_row(label, value)
    console.print(table)
    for vid, reason in sorted(summary["revived_versions"].items()):
        console.print(plain(f"revived   {vid}  {reason}"))
    for vid, reason in sorted(summary["protected_versions"].items()):
        console.print(plain(f"protected {vid}  {reason}"))
    for failure in summary["failures"]:
        console.print(f"[red]failed[/red]    {failure['artifact_version_id']}  "
                      + plain(f"{failure['stage']}: {failure['cause']}"))


@click.command("status")
@click.argument("manifest", metavar="MANIFEST")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_command(manifest: str, as_json: bool) -> None:
    """Show how far the sweep of MANIFEST got: done, revived, failed, remaining."""
    from artifact_gc.sweep.status import sweep_status

    status = sweep_status(manifest).as_dict()
    if as_json:
        echo_json(status)
        return
    console = stdout_console()
    console.print(plain(
        f"{status['manifest']}: {status['candidates']:,} candidates; "
        f"done {status['done']:,}, revived {status['revived']:,}, "
        f"protected {status['protected']:,}, failed {status['failed']:,}, "
        f"remaining {status['remaining']:,} (in progress {status['in_progress']:,}, "
        f"pending {status['pending']:,}); freed {human_bytes(status['bytes_freed'])}; "
        f"{status['sweeps']} sweep(s){'; a sweep is running now' if status['running'] else ''}."
    ))
    for failure in status["failures"]:
        console.print(plain(f"failed {failure['artifact_version_id']}: {failure['cause']}"))
