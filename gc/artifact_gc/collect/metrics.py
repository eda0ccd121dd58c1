"""``--metrics FILE``: a collection's outcome in the Prometheus text format, for
node_exporter's textfile collector.

The file is replaced in one rename, so the collector never reads half of it. The
``*_total`` counters run on across collections (each record carries them forward);
the ``last_run`` gauges describe the run that wrote the file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from artifact_gc.collect.brakes import BRAKES
from artifact_gc.collect.records import write_atomically
from artifact_gc.collect.report import CollectReport
from artifact_gc.manifest.locations import writing

PREFIX = "artifact_gc_"


def render_metrics(report: CollectReport) -> str:
    """The text exposition (format 0.0.4) of ``report``."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str,
               samples: list[tuple[dict[str, str], float]]) -> None:
        full = PREFIX + name
        lines.append(f"# HELP {full} {help_text}")
        lines.append(f"# TYPE {full} {kind}")
        for labels, value in samples:
            rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{full}{{{rendered}}} {_number(value)}" if rendered
                         else f"{full} {_number(value)}")

    c = report.counters
    for name, key, help_text in (
        ("versions_deleted_total", "versions_deleted", "Artifact versions deleted."),
        ("bytes_deleted_total", "bytes_deleted", "Bytes of artifact files deleted."),
        ("versions_revived_total", "versions_revived",
         "Candidates kept because something referred to them again before the sweep."),
        ("versions_failed_total", "versions_failed", "Artifact versions that failed to delete."),
        ("collections_total", "collections", "Collections run."),
        ("brakes_fired_total", "brakes_fired", "Collections stopped by a brake."),
    ):
        metric(name, "counter", help_text, [({}, float(c.get(key, 0)))])
    fired = {b.name for b in report.fired}
    metric("brake_fired", "gauge", "1 when this brake stopped the last collection.",
           [({"brake": name}, 1.0 if name in fired else 0.0) for name in BRAKES])
    totals = report.totals
    metric("last_run_candidates", "gauge", "Candidates found by the last collection.",
           [({}, float(totals.candidates if totals else 0))])
    metric("last_run_success", "gauge", "1 when the last collection ended without error.",
           [({}, 1.0 if report.succeeded else 0.0)])
    metric("last_run_duration_seconds", "gauge", "Duration of the last collection.",
           [({}, report.duration_seconds)])
    metric("last_run_timestamp_seconds", "gauge", "When the last collection finished.",
           [({}, _timestamp(report.finished_at or report.started_at))])
    if report.last_success_at is not None:
        metric("last_success_timestamp_seconds", "gauge",
               "When a collection last ended without error.",
               [({}, _timestamp(report.last_success_at))])
    return "\n".join(lines) + "\n"


def write_metrics(report: CollectReport, path: str | Path) -> None:
    """Replace the file at ``path`` with the metrics of ``report``, in one rename."""
    with writing(str(path), "metrics file"):
        write_atomically(Path(path), render_metrics(report).encode())


def _timestamp(naive_utc: str) -> float:
    return datetime.fromisoformat(naive_utc).replace(tzinfo=UTC).timestamp()


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
