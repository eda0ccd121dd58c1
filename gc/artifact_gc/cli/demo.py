"""``gc demo``: the whole cycle on a sample store, narrated."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import click

from artifact_gc.cli.render import TerminalProgress, echo_json, human_bytes, invoked_as


def _relative(path: str | Path, directory: Path) -> str:
    """``path`` inside the demo folder, as ``./...`` (the folder is printed once)."""
    try:
        return "./" + str(Path(path).relative_to(directory))
    except ValueError:
        return str(path)


@click.command("demo")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Where to build the sample store (default: a new temporary folder). "
                   "A folder given here is kept.")
@click.option("--keep", is_flag=True,
              help="Keep the temporary folder (store, files, manifest) to review it "
                   "afterwards; by default it is removed when the demo ends.")
@click.option("--versions", type=click.IntRange(min=50, max=1_000_000), default=2000,
              show_default=True, help="Artifact versions in the sample store.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def demo_command(directory: Path | None, keep: bool, versions: int, as_json: bool) -> None:
    """Build a sample ZenML store, mark it, sweep it, and show what happened.

    The store has ZenML 0.98.0's real schema and a local artifact store with real
    files, in a temporary folder that is removed at the end unless --keep (or --dir).
    Nothing outside that folder is touched, and no network or ZenML installation is
    needed.
    """
    import tempfile

    from artifact_gc.cli.mark import render_summary
    from artifact_gc.demo.run import run_demo

    temporary = directory is None
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="artifact-gc-demo-"))
    elif directory.exists() and any(directory.iterdir()):
        raise click.BadParameter(f"{directory} is not empty", param_hint="--dir")
    directory = directory.resolve()
    kept = keep or not temporary
    say = (lambda *_a, **_k: None) if as_json else click.echo

    def on_step(name: str, payload: Any) -> None:
        if name == "built":
            store, before = payload["store"], payload["before"]
            say(f"1. Built a sample ZenML store ({store.counts['versions']:,} artifact "
                f"versions) in")
            say(f"   {directory}/")
            say(f"   database: {_relative(store.url.removeprefix('sqlite:///'), directory)}")
            say(f"   artifact store: {_relative(store.store_root, directory)}")
            say(f"   {before.files:,} files, {human_bytes(before.bytes)}")
        elif name == "marked":
            say("\n2. gc mark (grace period 24h, sizes measured):")
            if not as_json:
                database = payload.info.database.get("database") or ""
                render_summary(payload.info.as_dict(), payload.summary,
                               location=_relative(database, directory))
            say(f"   manifest: {_relative(payload.url, directory)}")
        elif name == "planned":
            say(f"\n3. gc sweep --yes: {payload.versions:,} candidates, "
                f"{human_bytes(payload.bytes)} to free")

    progress = TerminalProgress(enabled=None if not as_json else False)
    try:
        report = run_demo(directory, versions=versions, progress=progress, on_step=on_step)
    finally:
        progress.close()
        if not kept:
            # Only the folder this command created itself, never one the user named.
            shutil.rmtree(directory, ignore_errors=True)
    if as_json:
        echo_json({**report.as_dict(), "kept": kept})
    else:
        sweep = report.sweep
        say(f"   deleted {len(sweep.deleted):,} versions, revived {len(sweep.revived):,}, "
            f"failed {len(sweep.failures):,}")
        say(f"   freed {human_bytes(sweep.bytes_freed)} in {sweep.elapsed:.2f}s "
            f"({sweep.rate:,.0f} versions/s)")
        say(f"   artifact store: {report.before.files:,} -> {report.after.files:,} files, "
            f"{human_bytes(report.before.bytes)} -> {human_bytes(report.after.bytes)}")
        if report.zenml_would_delete:
            lost = ", ".join(f"{n} {reason}" for reason, n in report.zenml_would_delete.items())
            say("\n   `zenml artifact prune` would also have deleted versions still in use:")
            say(f"   {lost}.")
        say(f"\n4. Verified: {report.live_versions_checked:,} kept versions still have "
            f"their rows and files;")
        say(f"   {len(report.integrity_problems)} dangling rows.")
        gc = invoked_as()
        if kept:
            say(f"\nThe sample store is kept in {directory}/")
            say("Review what the sweep did:")
            say(f"  {gc} show {report.mark.url}")
            say(f"  {gc} report {report.mark.url}")
            if os.sep in gc:
                say("(or activate the environment first: source "
                    f"{Path(gc).parent}/activate, then run gc)")
        else:
            say(f"\nRemoved the sample store ({directory}/).")
            say(f"To keep it and review the manifest: {gc} demo --keep")
    if not report.ok:
        raise click.ClickException(
            f"verification failed: missing {report.live_versions_missing[:5]}, "
            f"problems {report.integrity_problems[:5]}"
        )
