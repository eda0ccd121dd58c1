"""artifact-gc's Python API, end to end: mark, review, sweep; then a policy-driven collect.

Run it as it is, and it works on a sample store it builds in a temporary folder:

    python examples/collect_api.py

or give it your own policy file (it then only validates it, without touching the
store):

    python examples/collect_api.py artifact-gc.toml
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from artifact_gc.collect import CollectReport, collect, load_policy, parse_policy
from artifact_gc.errors import GCError
from artifact_gc.mark import MarkOptions, MarkResult, mark
from artifact_gc.sweep import SweepOptions, SweepReport, plan_sweep, sweep


def by_hand(db_url: str, manifests: Path) -> SweepReport:
    """Mark with options, look at the plan, then sweep: what gc mark and gc sweep do."""
    result: MarkResult = mark(db_url, str(manifests / "by-hand.parquet"),
                              MarkOptions(keep_latest=1, sizes=True))
    print(f"marked {result.info.counts['versions_in_scope']} versions: "
          f"{result.summary['counts']['candidate']} candidates in {result.url}")
    plan = plan_sweep(result.url, db_url, SweepOptions())
    print(f"the sweep would delete {plan.versions} versions ({plan.bytes} bytes)")
    report = sweep(result.url, db_url, SweepOptions())
    print(f"swept: {len(report.deleted)} deleted, {len(report.revived)} revived")
    return report


def by_policy(db_url: str, manifests: Path) -> CollectReport:
    """A policy read from TOML text; collect() marks per rule, brakes, then sweeps."""
    policy = parse_policy(f"""
        sweep = true
        [store]
        db = "{db_url}"
        [manifests]
        location = "{manifests}"
        [defaults]
        older_than = "1d"
        [[rules]]
        artifact = "model*"
        older_than = "30d"
        keep_latest = 2
        [brakes]
        max_fraction = 0.9
    """, os.environ, source="inline policy")
    report = collect(policy)
    print(f"collect: {report.outcome}, {report.totals.candidates if report.totals else 0} "
          f"candidates over {len(report.marks)} marks")
    try:
        report.raise_for_outcome()
    except GCError as error:  # a brake (BrakeFired, exit 10) or a failed sweep
        print(f"stopped: {error.message} (exit {error.exit_code})")
    return report


def sample_store(directory: Path) -> str:
    """A small synthetic ZenML store on ZenML's real schema, with files (test support)."""
    from artifact_gc.demo.synthetic import SyntheticSpec, create_sqlite_store, populate

    url = create_sqlite_store(directory / "zenml.db")
    populate(url, SyntheticSpec(versions=120, store_root=str(directory / "root"),
                                write_files=True, seed=11))
    return url


def main(argv: list[str]) -> int:
    if argv:
        policy = load_policy(argv[0], os.environ)
        print(f"{policy.source}: sweep = {str(policy.sweep).lower()}, "
              f"{len(policy.rules)} rule(s), manifests in {policy.manifests}")
        return 0
    with tempfile.TemporaryDirectory(prefix="artifact-gc-api-") as folder:
        first, second = Path(folder) / "first", Path(folder) / "second"
        by_hand(sample_store(first), first / "manifests")
        report = by_policy(sample_store(second), second / "manifests")
        return report.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
