"""``gc collect``: read the policy, run the collection, write its summary and metrics."""

from __future__ import annotations

import json
import os

import click


@click.command("collect")
@click.option("--policy", "policy_path", required=True, metavar="FILE",
              type=click.Path(dir_okay=False),
              help="The policy file (TOML): store, manifests location, rules, brakes, "
                   "and whether to sweep. See examples/artifact-gc.toml.")
@click.option("--summary", "summary_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Also write the JSON summary to FILE (it always goes to stdout).")
@click.option("--metrics", "metrics_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write the outcome in the Prometheus text format to FILE, replaced in "
                   "one rename (for node_exporter's textfile collector: name it *.prom).")
@click.option("--check", is_flag=True,
              help="Only read and validate the policy; print it as JSON and stop.")
def collect_command(policy_path: str, summary_path: str | None, metrics_path: str | None,
                    check: bool) -> None:
    """Mark under a policy, check the brakes, then sweep: one command for cron.

    Marks every artifact version under the policy's rules (one manifest per rule, in
    the manifests location), then checks the brakes. It sweeps the candidates without
    a prompt only when the policy says sweep = true; otherwise it stops after the
    marks so a person can review them (gc show, gc report) and run gc sweep.

    A brake that fires (too many candidates, too large a share of the versions in
    scope, too many bytes, or a jump beyond the previous collection's candidates)
    stops before the sweep with exit code 10: nothing is deleted and the manifests stay
    for review. The JSON summary goes to stdout (and --summary FILE) in every case.
    """
    from artifact_gc.cli.render import TerminalProgress, echo_json
    from artifact_gc.collect.metrics import write_metrics
    from artifact_gc.collect.policy import load_policy
    from artifact_gc.collect.records import write_atomically
    from artifact_gc.collect.run import collect
    from artifact_gc.manifest.locations import writing

    policy = load_policy(policy_path, os.environ)
    if check:
        echo_json(policy.as_dict())
        return
    # Bars on stderr when it is a terminal: stdout carries only the JSON summary.
    progress = TerminalProgress()
    report = collect(policy, progress=progress)
    progress.close()
    summary = report.as_dict()
    echo_json(summary)
    if summary_path:
        with writing(summary_path, "summary"):
            from pathlib import Path

            write_atomically(Path(summary_path),
                             (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())
    if metrics_path:
        write_metrics(report, metrics_path)
    report.raise_for_outcome()
