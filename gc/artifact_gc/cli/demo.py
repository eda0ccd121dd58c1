"""``gc demo``: the whole cycle on a sample store, narrated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from artifact_gc.cli.render import TerminalProgress, echo_json, human_bytes


@click.command("demo")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Where to build the sample store (default: a new temporary folder).")
@click.option("--versions", type=click.IntRange(min=50, max=1_000_000), default=2000,
              show_default=True, help="Artifact versions in the sample store.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def demo_command(directory: Path | None, versions: int, as_json: bool) -> None:
    """Build a sample ZenML store, mark it, sweep it, and show what happened.

    The store has ZenML 0.98.0's real schema and a local artifact store with real
    files, in a temporary folder. Nothing outside that folder is touched, and no
    network or ZenML installation is needed.
    """
    import tempfile

    from artifact_gc.cli.mark import render_summary
    from artifact_gc.demo.run import run_demo

    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="artifact-gc-demo-"))
    elif directory.exists() and any(directory.iterdir()):
        raise click.BadParameter(f"{directory} is not empty", param_hint="--dir")
    directory = directory.resolve()
    say = (lambda *_a, **_k: None) if as_json else click.echo

    def on_step(name: str, payload: Any) -> None:
        if name == "built":
            store, before = payload["store"], payload["before"]
            say(f"1. Built a sample ZenML store with {store.counts['versions']:,} artifact "
                f"versions in {directory}")
            say(f"   database: {store.url}")
            say(f"   artifact store: {store.store_root} ({before.files:,} files, "
                f"{human_bytes(before.bytes)})")
        elif name == "marked":
            say("\n2. gc mark (grace period 24h, sizes measured):")
            if not as_json:
                render_summary(payload.info.as_dict(), payload.summary)
            say(f"   manifest: {payload.url}")
        elif name == "planned":
            say(f"\n3. gc sweep --yes: {payload.versions:,} candidates, "
                f"{human_bytes(payload.bytes)} to free")

    progress = TerminalProgress(enabled=None if not as_json else False)
    report = run_demo(directory, versions=versions, progress=progress, on_step=on_step)
    progress.close()
    if as_json:
        echo_json(report.as_dict())
    else:
        sweep = report.sweep
        say(f"   deleted {len(sweep.deleted):,} versions, revived {len(sweep.revived):,}, "
            f"failed {len(sweep.failures):,}; freed {human_bytes(sweep.bytes_freed)} in "
            f"{sweep.elapsed:.2f}s ({sweep.rate:,.0f} versions/s)")
        say(f"   artifact store: {report.before.files:,} -> {report.after.files:,} files, "
            f"{human_bytes(report.before.bytes)} -> {human_bytes(report.after.bytes)}")
        if report.zenml_would_delete:
            lost = ", ".join(f"{n} {reason}" for reason, n in report.zenml_would_delete.items())
            say(f"\n   `zenml artifact prune` would also have deleted versions that are still "
                f"in use: {lost}.")
        say(f"\n4. Verified: {report.live_versions_checked:,} kept versions still have their "
            f"rows and files; {len(report.integrity_problems)} dangling rows.")
        say(f"\nTry: gc show {report.mark.url}")
    if not report.ok:
        raise click.ClickException(
            f"verification failed: missing {report.live_versions_missing[:5]}, "
            f"problems {report.integrity_problems[:5]}"
        )
