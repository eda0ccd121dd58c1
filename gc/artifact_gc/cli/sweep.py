"""``gc sweep`` and ``gc status``: parse options, plan, confirm, execute, render."""

from __future__ import annotations

from typing import Any

import click

from artifact_gc.cli import interrupts_ignored
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
@click.option("--journal", "journal", metavar="LOCATION",
              help="Keep the sweep journal here (a folder path or any fsspec URL) instead "
                   "of MANIFEST.journal beside the manifest, e.g. when the manifest's folder "
                   "is read-only. Recorded on this machine, where a resumed sweep and gc "
                   "status, report and history find it; elsewhere pass it again.")
@click.option("--undo-window", default="7d", show_default=True, callback=duration,
              metavar="DURATION",
              help="Keep what the sweep deletes restorable this long (gc restore MANIFEST): "
                   "its rows in undo segments beside the journal, its files in the store's "
                   "trash folder or soft delete. gc trash empty purges it afterwards. "
                   "0 is --no-undo.")
@click.option("--no-undo", is_flag=True,
              help="Delete for good at once: no undo window, nothing to restore or purge.")
@object_store_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan and summary as JSON.")
@click.pass_context
def sweep_command(
    ctx: click.Context, manifest: str, db_url: str | None, yes: bool, dry_run: bool,
    only_artifact: bool, only_metadata: bool, workers: int, batch_size: int | None,
    ignore_errors: bool, max_manifest_age: Any, journal: str | None,
    storage_option_pairs: tuple[str, ...], max_requests_per_second: float | None,
    as_json: bool, accept_schema: str | None = None, undo_window: Any = None,
    no_undo: bool = False,
) -> None:
    """Delete the candidates of MANIFEST: files and metadata, re-verified live.

    Every batch is re-verified against the live database under its write lock; a
    candidate that has been used or linked since the mark is kept ("revived"). The
    journal beside the manifest (or at --journal) makes the sweep resumable: run it
    again after any interruption, Ctrl-C included (exit 130, with the command to run).
    See progress with gc status MANIFEST.
    """
    from artifact_gc.errors import GCError, Interrupted, SweepIncomplete
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
                           limits=RequestLimits(max_requests_per_second), journal=journal,
                           accept_schema=accept_schema,
                           undo_window=None if no_undo else undo_window)
    try:
        plan = plan_sweep(manifest, db_url, options)
    except KeyboardInterrupt:
        raise Interrupted("interrupted (Ctrl-C) while planning; nothing was deleted") \
            from None
    if only_metadata:
        click.echo("warning: --only-metadata leaves the files of every version it deletes "
                   "in the artifact store (and leaves this manifest's orphan files alone); "
                   "collect them later with: gc mark --orphan-files, then gc sweep of "
                   "that manifest", err=True)
    if plan.complete:
        # Nothing left: say so, rather than sweep nothing and print a table of zeros.
        if as_json:
            echo_json({"plan": plan.as_dict(), "summary": None, "complete": True})
        else:
            _render_complete(plan.as_dict())
        return
    if not as_json:
        _render_plan(plan.as_dict())
    if plan.versions and not dry_run and not yes:
        orphans = plan.orphan_files
        confirm(f"Delete {plan.versions - orphans:,} artifact versions"
                + (f" and {orphans:,} orphan-file paths" if orphans else "") + "?", "sweep")
    hooks = (ctx.obj or {}).get(SWEEP_HOOKS)
    if hooks is not None and not isinstance(hooks, SweepHooks):
        raise TypeError(f"ctx.obj[{SWEEP_HOOKS!r}] must be a SweepHooks, not {type(hooks)}")
    progress = TerminalProgress(enabled=None if not as_json else False)
    try:
        report = execute(plan, progress=progress, hooks=hooks)
    except GCError as stopped:
        if isinstance(stopped, Interrupted):
            stopped.message += f". Resume with: {resume_command(ctx)}"
        # What was done before the stop is shown too; the FAILED line follows.
        if stopped.done is not None:
            if as_json:
                echo_json({"plan": plan.as_dict(), "summary": stopped.done,
                           "stopped": stopped.message})
            else:
                _render_summary(stopped.done)
        raise
    # Done and journaled: an interrupt while the summary prints changes nothing.
    interrupts_ignored(ctx)
    summary = report.as_dict()
    if as_json:
        echo_json({"plan": plan.as_dict(), "summary": summary})
    else:
        _render_summary(summary)
        undo = plan.undo_dict()
        if undo is not None and not dry_run and report.deleted:
            click.echo(f"Restorable for {undo['window']} with: gc restore {manifest} "
                       "(files: " + "; ".join(list(undo["files"].values()) or ["rows only"])
                       + ")")
    if report.failures:
        raise SweepIncomplete(
            f"{len(report.failures)} artifact version(s) failed; see gc status {manifest}",
            failed=len(report.failures),
        )


def confirm(question: str, command: str) -> None:
    """Ask ``question``; raise Aborted (6) or Interrupted (130) unless agreed."""
    from artifact_gc.errors import Aborted, Interrupted

    changed = "deleted" if command == "sweep" else "changed"
    try:
        agreed = click.confirm(question, default=False, err=True)
    except click.Abort as exc:
        # click turns Ctrl-C and end of input alike into Abort; only Ctrl-C is an
        # interrupt (130), end of input is a declined prompt (6).
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise Interrupted(f"interrupted (Ctrl-C) at the confirmation prompt; nothing "
                              f"was {changed}") from None
        raise Aborted(f"{command} aborted at the confirmation prompt; nothing was "
                      f"{changed}") from None
    if not agreed:
        raise Aborted(f"{command} aborted at the confirmation prompt; nothing was {changed}")


#: Options whose values a resume command must not echo as they are.
_SECRET_STORAGE_KEYS = ("secret", "password", "token", "key", "credential")


def resume_command(ctx: click.Context) -> str:
    """The ``gc sweep`` command line that resumes this one: its manifest and every
    option given, bar ``--yes`` (the resumed sweep asks again unless told), with
    passwords and secret storage options masked."""
    import shlex

    from artifact_gc.metadb.engine import redact

    words = ctx.command_path.split()
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if isinstance(param, click.Argument):
            words.append(str(value))
            continue
        if not isinstance(param, click.Option) or param.name in ("yes", "as_json"):
            continue
        source = ctx.get_parameter_source(param.name or "")
        if source is not None and source.name == "DEFAULT":
            continue
        flag = max(param.opts, key=len)
        if param.is_flag:
            if value:
                words.append(flag)
        elif param.name == "db_url":
            words += [flag, redact(str(value))]
        elif param.name in ("max_manifest_age", "undo_window"):
            words += [flag, _raw(ctx, param)]
        elif param.multiple:
            for item in value or ():
                key, _, setting = str(item).partition("=")
                masked = any(s in key.lower() for s in _SECRET_STORAGE_KEYS)
                words += [flag, f"{key}=***" if masked and setting else str(item)]
        elif value is not None:
            words += [flag, str(value)]
    return " ".join(shlex.quote(w) if w != "***" else w for w in words)


def _raw(ctx: click.Context, param: click.Parameter) -> str:
    """An option's value as typed, for one a callback turned into another type."""
    value = ctx.params.get(param.name or "")
    from datetime import timedelta

    if isinstance(value, timedelta):
        from artifact_gc.durations import format_duration

        return format_duration(value)
    return str(value)


def _render_complete(plan: dict[str, Any]) -> None:
    states = {k: v for k, v in plan["journal_states"].items() if v}
    click.echo(
        f"{plan['manifest']} is already complete: every one of its {plan['candidates']:,} "
        "candidates was swept (" + ", ".join(
            f"{_STATE_WORDS.get(k, k)} {v:,}" for k, v in sorted(states.items()))
        + f"; journal {plan['journal']}). Nothing to do.")


#: A journal state as the sweep's output names it.
_STATE_WORDS = {"already_gone": "already gone", "in_progress": "in progress",
                "rows_deleted": "rows deleted", "files_deleted": "files deleted"}


def _render_plan(plan: dict[str, Any]) -> None:
    console = stdout_console()
    what = "Dry run of the sweep" if plan["dry_run"] else "Sweep"
    console.print(plain(
        f"{what} of {plan['manifest']} (mark {plan['mark_id'][:8]}, started "
        f"{plan['mark_started_at']}) on {plan['database']}, mode {plan['mode']}."
    ))
    for warning in plan.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {plain(warning)}")
    if plan["journal"] != plan["manifest"].rstrip("/") + ".journal":
        console.print(plain(
            f"Journal: {plan['journal']} (gc status, report and history find it on this "
            f"machine; elsewhere pass --journal {plan['journal']})"))
    for mark_id, n in sorted(plan.get("foreign_events", {}).items()):
        whose = "an older release, from before this mark" if mark_id == "?" \
            else f"mark {mark_id[:8]}"
        console.print(plain(f"Ignored: {n:,} journal event(s) of {whose} at the same "
                            "location; this mark's sweep starts from its own."))
    undo = plan.get("undo")
    if undo is None:
        console.print("Undo: none (--no-undo): what is deleted is gone for good.")
    else:
        console.print(plain(
            f"Undo window: {undo['window']} (gc restore {plan['manifest']}; "
            "gc trash empty purges it afterwards)."))
        for store_id, described in sorted(undo["files"].items()):
            console.print(plain(f"  files of store {store_id[:8]}: {described}"))
    done = {k: v for k, v in plan["journal_states"].items() if k != "pending"}
    if done:
        console.print("Journal so far: " + ", ".join(
            f"{_STATE_WORDS.get(k, k)} {v:,}" for k, v in sorted(done.items())))
    files = "" if plan["files"] is None else f", {plan['files']:,} files"
    console.print(
        f"To do: {plan['versions']:,} of {plan['candidates']:,} candidate versions "
        f"({plan['resuming']:,} resumed), {plan['paths']:,} paths{files}, "
        f"{human_bytes(plan['bytes'])}"
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
    files = summary["files_deleted"]
    for label, value in (
        (verb, f"{summary['deleted']:,}"),
        ("already gone", f"{summary.get('already_gone', 0):,}"),
        ("revived", f"{summary['revived']:,}"),
        ("protected", f"{summary['protected']:,}"),
        ("failed", f"{summary['failed']:,}"),
        ("bytes freed" if not summary["dry_run"] else "bytes", freed),
        # The plan's units, named as the plan names them: paths (URIs and
        # visualizations), and files where the mark measured them (--sizes).
        ("paths", f"{summary['paths_deleted']:,}"),
        ("files", f"{files:,}" if files or not summary["bytes_unknown_versions"] else "-"),
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
@click.option("--journal", "journal", metavar="LOCATION",
              help="The sweep journal, if gc sweep --journal put it elsewhere (default: "
                   "where that sweep recorded it on this machine, else MANIFEST.journal).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_command(manifest: str, journal: str | None, as_json: bool) -> None:
    """Show how far the sweep of MANIFEST got: done, already gone, revived, failed,
    remaining."""
    from artifact_gc.sweep.status import sweep_status

    status = sweep_status(manifest, journal_location=journal).as_dict()
    if as_json:
        echo_json(status)
        return
    console = stdout_console()
    console.print(plain(
        f"{status['manifest']}: {status['candidates']:,} candidates; "
        f"done {status['done']:,}, already gone {status['already_gone']:,}, "
        f"revived {status['revived']:,}, "
        f"protected {status['protected']:,}, failed {status['failed']:,}, "
        f"remaining {status['remaining']:,} (in progress {status['in_progress']:,}, "
        f"pending {status['pending']:,}); freed {human_bytes(status['bytes_freed'])}; "
        f"{status['sweeps']} sweep(s){'; a sweep is running now' if status['running'] else ''}."
    ))
    if status["journal"] != manifest.rstrip("/") + ".journal":
        console.print(plain(f"Journal: {status['journal']}"))
    for failure in status["failures"]:
        console.print(plain(f"failed {failure['artifact_version_id']}: {failure['cause']}"))
