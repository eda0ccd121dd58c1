"""gc demo: the whole cycle (build, mark, review, sweep, verify) on a sample store.

The sample store carries ZenML 0.98.0's real schema (the shipped snapshot, which a
test keeps equal to what ZenML creates) and a local artifact store with real files,
laid out like a ZenML config directory. Nothing here needs the network or ZenML.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artifact_gc.manifest.reasons import STATUS_CANDIDATE, STATUS_REACHABLE
from artifact_gc.manifest.views import connect_duckdb, parquet_source
from artifact_gc.mark.options import MarkOptions
from artifact_gc.mark.run import MarkResult, mark
from artifact_gc.progress import NullProgress, Progress
from artifact_gc.sweep.execute import execute
from artifact_gc.sweep.options import SweepOptions
from artifact_gc.sweep.plan import plan_sweep
from artifact_gc.sweep.report import SweepReport

#: References that ``zenml artifact prune`` (0.98.0) does not see: it keeps only what
#: step inputs or outputs use.
_UNSEEN_BY_ZENML = ("model_link", "run_output", "hook_output", "config_reference")


@dataclass
class TreeStats:
    files: int
    bytes: int


@dataclass
class DemoReport:
    directory: Path
    db_url: str
    store_root: str
    versions: int
    before: TreeStats
    after: TreeStats
    mark: MarkResult
    sweep: SweepReport
    zenml_would_delete: dict[str, int] = field(default_factory=dict)
    live_versions_checked: int = 0
    live_versions_missing: list[str] = field(default_factory=list)
    integrity_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.live_versions_missing and not self.integrity_problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "database": self.db_url,
            "store_root": self.store_root,
            "versions": self.versions,
            "before": vars(self.before),
            "after": vars(self.after),
            "manifest": self.mark.url,
            "mark": self.mark.info.counts,
            "sweep": self.sweep.as_dict(),
            "zenml_prune_would_also_delete": self.zenml_would_delete,
            "live_versions_checked": self.live_versions_checked,
            "live_versions_missing": self.live_versions_missing,
            "integrity_problems": self.integrity_problems,
            "ok": self.ok,
        }


def tree_stats(root: str) -> TreeStats:
    files = size = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            files += 1
            size += os.path.getsize(os.path.join(dirpath, name))
    return TreeStats(files, size)


def build(directory: Path, versions: int) -> Any:
    """The sample store: SQLite with ZenML's schema and a local store with files."""
    from artifact_gc.demo.synthetic import build_demo_store

    return build_demo_store(directory, versions=versions)


def run_demo(
    directory: Path,
    *,
    versions: int = 2000,
    progress: Progress | None = None,
    on_step: Any = None,
) -> DemoReport:
    """Build a sample store in ``directory``, mark it, sweep it and check the result.

    ``on_step(name, payload)`` is called after each step so that a caller can show
    the cycle as it happens.
    """
    progress = progress or NullProgress()
    step = on_step or (lambda _name, _payload: None)
    store = build(directory, versions)
    before = tree_stats(store.store_root)
    step("built", {"store": store, "before": before})

    manifest_url = str(directory / "manifests" / "demo-mark.parquet")
    marked = mark(store.url, manifest_url, MarkOptions(sizes=True), progress=progress)
    step("marked", marked)

    # No undo window: the sample store is a throwaway folder, and the demo shows the
    # bytes a sweep frees (with a window they wait in the trash until gc trash empty).
    plan = plan_sweep(manifest_url, store.url, SweepOptions(undo_window=None))
    step("planned", plan)
    report = execute(plan, progress=progress)
    step("swept", report)

    after = tree_stats(store.store_root)
    result = DemoReport(
        directory=directory, db_url=store.url, store_root=store.store_root,
        versions=int(store.counts["versions"]), before=before, after=after, mark=marked,
        sweep=report, zenml_would_delete=_zenml_would_delete(manifest_url),
    )
    _verify(result, manifest_url)
    return result


def _zenml_would_delete(manifest_url: str) -> dict[str, int]:
    """Versions we keep that ZenML's own prune rule would have deleted, by reason."""
    unseen = ", ".join(f"'{r}'" for r in _UNSEEN_BY_ZENML)
    with connect_duckdb() as con:
        rows = con.execute(
            f"SELECT r, count(*) FROM (SELECT unnest(reasons) AS r, reasons "
            f"FROM read_parquet({parquet_source(manifest_url)}) "
            f"WHERE status = '{STATUS_REACHABLE}' "
            f"AND NOT list_has_any(reasons, ['step_input', 'step_output'])) "
            f"WHERE r IN ({unseen}) GROUP BY r ORDER BY r"
        ).fetchall()
    return {reason: int(count) for reason, count in rows}


def _verify(result: DemoReport, manifest_url: str) -> None:
    """Every version the sweep kept still has its row and its files; no dangling rows."""
    db_path = result.db_url.removeprefix("sqlite:///")
    with connect_duckdb() as con:
        kept = con.execute(
            f"SELECT artifact_version_id, uri FROM read_parquet("
            f"{parquet_source(manifest_url)}) WHERE status <> '{STATUS_CANDIDATE}'"
        ).fetchall()
    connection = sqlite3.connect(db_path)
    try:
        present = {row[0] for row in connection.execute("SELECT id FROM artifact_version")}
        result.integrity_problems = [
            f"{table} row {rowid} points to a missing {parent}"
            for table, rowid, parent, _ in connection.execute("PRAGMA foreign_key_check")
        ]
    finally:
        connection.close()
    root = result.store_root.rstrip("/") + "/"
    result.live_versions_checked = len(kept)
    result.live_versions_missing = [
        version_id for version_id, uri in kept
        if version_id not in present or (uri.startswith(root) and not os.path.exists(uri))
    ]
