"""``gc collect``: mark under a policy file, check the brakes, then sweep, unattended.

    policy.py    the TOML policy file -> Policy (rules, brakes), errors with line and key
    scopes.py    the rules -> one mark per rule on disjoint scopes, and their precedence
    brakes.py    the checks between mark and sweep that refuse a suspicious sweep
    records.py   one JSON record per collection beside its manifests; the previous one
    run.py       collect(policy) -> CollectReport
    report.py    CollectReport: what a collection did
    metrics.py   the report in the Prometheus text format (node_exporter's textfile)

The Python API::

    from artifact_gc.collect import collect, load_policy
    report = collect(load_policy("artifact-gc.toml", os.environ))
    report.raise_for_outcome()
"""

from __future__ import annotations

from artifact_gc.collect.brakes import BrakeCheck, Totals, check_brakes
from artifact_gc.collect.metrics import render_metrics, write_metrics
from artifact_gc.collect.policy import Brakes, Policy, PolicyError, Rule, load_policy, parse_policy
from artifact_gc.collect.report import CollectReport, MarkedScope, SweepTotals
from artifact_gc.collect.run import collect
from artifact_gc.collect.scopes import MarkScope, mark_scopes

__all__ = [
    "BrakeCheck", "Brakes", "CollectReport", "MarkScope", "MarkedScope", "Policy",
    "PolicyError", "Rule", "SweepTotals", "Totals", "check_brakes", "collect",
    "load_policy", "mark_scopes", "parse_policy", "render_metrics", "write_metrics",
]
