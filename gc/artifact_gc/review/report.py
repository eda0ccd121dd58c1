"""``gc report``: one self-contained HTML page for reviewing a manifest.

The charts are drawn by plotly.js, inlined into the page, so the page makes no network
fetch and can be mailed or attached to a ticket. The numbers come from the same review
queries as ``gc show`` (``artifact_gc/review/queries``); the candidate table is sortable with a
few lines of inline JavaScript.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

from artifact_gc.errors import UsageError
from artifact_gc.manifest.reasons import STATUS_CANDIDATE, STATUS_PROTECTED, STATUS_REACHABLE
from artifact_gc.review.progress import SweepProgress, sweep_progress
from artifact_gc.review.session import Review, StorageOptions, checksum_ok, open_review
from artifact_gc.storage.urls import is_remote, url_to_fs
from artifact_gc.units import human_bytes

#: Colours of the statuses, the same in every chart.
STATUS_COLOURS = {
    STATUS_REACHABLE: "#2e7d32",
    STATUS_PROTECTED: "#f9a825",
    STATUS_CANDIDATE: "#c62828",
}
STATE_COLOURS = {
    "deleted": "#2e7d32", "revived": "#1565c0", "protected": "#f9a825",
    "failed": "#c62828", "in_progress": "#8e24aa", "pending": "#9e9e9e",
}

_CANDIDATE_COLUMNS = (
    ("artifact_name", "artifact", "text"),
    ("project", "project", "text"),
    ("version", "version", "text"),
    ("created", "created (UTC)", "text"),
    ("age_days", "age (days)", "num"),
    ("size_bytes", "bytes", "num"),
    ("file_count", "files", "num"),
    ("save_type", "save type", "text"),
    ("uri", "uri", "text"),
    ("artifact_version_id", "version id", "text"),
)

_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, index) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var numeric = th.dataset.type === 'num';
      var ascending = th.dataset.order !== 'asc';
      table.querySelectorAll('th').forEach(function (o) { delete o.dataset.order; });
      th.dataset.order = ascending ? 'asc' : 'desc';
      rows.sort(function (a, b) {
        var x = a.cells[index].dataset.v, y = b.cells[index].dataset.v;
        if (numeric) {
          x = x === '' ? -Infinity : parseFloat(x);
          y = y === '' ? -Infinity : parseFloat(y);
        }
        var c = x < y ? -1 : x > y ? 1 : 0;
        return ascending ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px;
       color: #212121; background: #fafafa; }
h1 { margin-bottom: 4px; } h2 { margin-top: 32px; border-bottom: 1px solid #ddd; }
.muted { color: #666; } .bad { color: #c62828; font-weight: bold; }
.cards { display: flex; gap: 16px; flex-wrap: wrap; }
.card { background: white; border: 1px solid #ddd; border-radius: 6px; padding: 12px 20px;
        min-width: 160px; }
.card .n { font-size: 28px; font-weight: bold; }
.charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; }
@media (max-width: 900px) { .charts { grid-template-columns: minmax(0, 1fr); } }
.gc-chart { background: white; border: 1px solid #ddd; border-radius: 6px; min-height: 380px;
            overflow: hidden; }
table { border-collapse: collapse; background: white; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eee; position: sticky; top: 0; }
table.sortable th { cursor: pointer; }
table.sortable th[data-order="asc"]::after { content: " \\25B2"; }
table.sortable th[data-order="desc"]::after { content: " \\25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.uri { font-family: monospace; font-size: 12px; word-break: break-all; max-width: 520px; }
"""


@dataclass
class ReportResult:
    """A written report."""

    url: str
    candidates_total: int
    candidates_shown: int
    charts: list[str]


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _figure_html(figure: Any, div_id: str) -> str:
    import plotly.io as pio  # type: ignore[import-untyped]

    figure.update_layout(
        margin={"l": 60, "r": 20, "t": 50, "b": 60}, height=380,
        paper_bgcolor="white", plot_bgcolor="white", font={"size": 12},
    )
    rendered: str = pio.to_html(
        figure, include_plotlyjs=False, full_html=False, div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )
    return f'<div class="gc-chart" id="{div_id}-box">{rendered}</div>'


def _charts(review: Review, top: int, sizes: bool,
            progress: SweepProgress) -> list[tuple[str, str]]:
    import plotly.graph_objects as go  # type: ignore[import-untyped]

    metric = "bytes" if sizes else "versions"
    charts: list[tuple[str, str]] = []

    status_rows = review.run("by_status")
    split = go.Figure(go.Pie(
        labels=[row["status"] for row in status_rows],
        values=[row["versions"] for row in status_rows],
        marker={"colors": [STATUS_COLOURS.get(r["status"], "#777") for r in status_rows]},
        hole=0.45, sort=False, textinfo="label+value+percent",
    ))
    split.update_layout(showlegend=False)
    split.update_layout(title="Versions: reachable / protected / candidate")
    charts.append(("chart-status", _figure_html(split, "chart-status")))

    largest = review.run("largest_candidates", top=top)
    labels = [f"{r['artifact_name']} ({r['project']})" for r in largest]
    amounts = [(r["bytes"] or 0) if sizes else r["versions"] for r in largest]
    by_artifact = go.Figure(go.Bar(
        x=amounts[::-1], y=labels[::-1], orientation="h",
        marker={"color": STATUS_COLOURS[STATUS_CANDIDATE]},
        hovertext=[human_bytes(a) if sizes else f"{a} versions" for a in amounts[::-1]],
    ))
    by_artifact.update_layout(
        title=f"Candidate {metric} by artifact (top {top})",
        xaxis={"title": metric}, yaxis={"automargin": True},
    )
    charts.append(("chart-artifacts", _figure_html(by_artifact, "chart-artifacts")))

    projects = review.run("by_project")
    names = [r["project"] for r in projects]
    by_project = go.Figure()
    if sizes:
        by_project.add_bar(x=names, y=[r["candidate_bytes"] or 0 for r in projects],
                           name="candidate bytes",
                           marker={"color": STATUS_COLOURS[STATUS_CANDIDATE]})
    else:
        for status, key in ((STATUS_CANDIDATE, "candidates"),
                            (STATUS_PROTECTED, "protected"),
                            (STATUS_REACHABLE, "reachable")):
            by_project.add_bar(x=names, y=[r[key] for r in projects], name=status,
                               marker={"color": STATUS_COLOURS[status]})
        by_project.update_layout(barmode="stack")
    by_project.update_layout(
        title=f"{'Candidate bytes' if sizes else 'Versions'} by project",
        yaxis={"title": metric},
    )
    charts.append(("chart-projects", _figure_html(by_project, "chart-projects")))

    as_of = review.info.started_at or None
    ages = review.run("candidate_age", **({"as_of": as_of} if as_of else {}))
    by_age = go.Figure(go.Bar(
        x=[r["age"] for r in ages],
        y=[(r["bytes"] or 0) if sizes else r["versions"] for r in ages],
        marker={"color": STATUS_COLOURS[STATUS_CANDIDATE]},
    ))
    by_age.update_layout(
        title=f"Candidate {metric} by age at mark time",
        xaxis={"title": "age", "type": "category"}, yaxis={"title": metric},
    )
    charts.append(("chart-age", _figure_html(by_age, "chart-age")))

    if progress.state != "none":
        states = list(progress.by_state)
        sweep = go.Figure(go.Bar(
            x=states, y=[progress.by_state[s] for s in states],
            marker={"color": [STATE_COLOURS.get(s, "#777") for s in states]},
        ))
        sweep.update_layout(title=f"Sweep progress: {progress.state}",
                            yaxis={"title": "candidate versions"})
        charts.append(("chart-sweep", _figure_html(sweep, "chart-sweep")))
    return charts


def _table(rows: list[dict[str, Any]], columns: list[str], css: str = "") -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="num">{_esc(row.get(c))}</td>' if isinstance(row.get(c), int | float)
            else f"<td>{_esc(row.get(c))}</td>"
            for c in columns
        ) + "</tr>"
        for row in rows
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _candidate_table(rows: list[dict[str, Any]]) -> str:
    head = "".join(
        f'<th data-type="{kind}">{_esc(label)}</th>' for _, label, kind in _CANDIDATE_COLUMNS
    )
    lines = []
    for row in rows:
        cells = []
        for key, _, kind in _CANDIDATE_COLUMNS:
            value = row.get(key)
            shown = human_bytes(value) if key == "size_bytes" and value is not None else value
            sort_value = "" if value is None else str(value)
            css = "num" if kind == "num" else ("uri" if key == "uri" else "")
            cells.append(
                f'<td class="{css}" data-v="{_esc(sort_value)}">{_esc(shown)}</td>'
            )
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="sortable" id="candidates"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(lines)}</tbody></table>"
    )


def render_report(url: str, *, top: int = 20, max_rows: int = 5000,
                  storage_options: StorageOptions = None,
                  journal_location: str | None = None) -> tuple[str, ReportResult]:
    """The report's HTML for the manifest at ``url``, and what it holds."""
    import plotly.offline as po  # type: ignore[import-untyped]

    if top < 1 or max_rows < 0:
        raise UsageError("--top must be 1 or more and --max-rows 0 or more")
    with open_review(url, storage_options, journal_location=journal_location) as review:
        info = review.info
        progress = sweep_progress(review)
        sizes = bool(review.connection.execute(
            "SELECT count(size_bytes) > 0 FROM manifest WHERE status = 'candidate'"
        ).fetchall()[0][0])
        verified = checksum_ok(review)
        charts = _charts(review, top, sizes, progress)
        by_status = review.run("by_status")
        by_reason = review.run("by_reason")
        candidates = review.rows(
            "SELECT *, round(date_diff('second', created, "
            "  coalesce(getvariable('as_of')::TIMESTAMP, now() AT TIME ZONE 'UTC'))"
            "  / 86400.0, 2) AS age_days "
            f"FROM manifest WHERE status = '{STATUS_CANDIDATE}' "
            "ORDER BY size_bytes DESC NULLS LAST, created, artifact_version_id "
            f"LIMIT {int(max_rows)}",
            **({"as_of": info.started_at} if info.started_at else {}),
        )
    total = progress.candidates
    for row in candidates:
        row["created"] = None if row["created"] is None else str(row["created"])[:19]
    cards = "".join(
        f'<div class="card"><div class="muted">{_esc(r["status"])}</div>'
        f'<div class="n">{r["versions"]:,}</div><div>{_esc(human_bytes(r["bytes"]))}</div></div>'
        for r in by_status
    )
    database = info.database
    facts = [
        ("manifest", url), ("mark id", info.mark_id),
        ("started", info.started_at), ("finished", info.finished_at),
        ("store", f"{database.get('store_id')} ({database.get('dialect')} "
                  f"{database.get('host') or ''} {database.get('database') or ''})"),
        ("schema version", database.get("schema_version")),
        ("format", f"{info.format} {info.format_version} (written by {info.tool_version})"),
        ("checksum", ("ok " if verified else "MISMATCH ") + str(info.checksum)),
    ]
    bad = ' class="bad"'
    facts_html = "".join(
        f"<tr><th>{_esc(k)}</th><td{bad if k == 'checksum' and not verified else ''}>"
        f"{_esc(v)}</td></tr>"
        for k, v in facts
    )
    parameters = json.dumps(info.parameters, indent=2, sort_keys=True, default=str)
    lineage = "".join(
        f"<li>filtered from mark {_esc(e.get('parent_mark_id'))} at {_esc(e.get('at'))} "
        f"with <code>{_esc(e.get('predicate'))}</code></li>"
        for e in info.lineage
    )
    warnings = "".join(f"<li>{_esc(w)}</li>" for w in info.warnings)
    sweep_html = (
        "<p class='muted'>No sweep journal: this manifest has not been swept.</p>"
        if progress.state == "none" else
        f"<p>State: <b>{_esc(progress.state)}</b>, {progress.sweeps} sweep run(s), last "
        f"event {_esc(progress.last_event_at)}, "
        f"freed {_esc(human_bytes(progress.bytes_freed))}.</p>"
        + _table([{"state": k, "versions": v} for k, v in progress.by_state.items()],
                 ["state", "versions"])
    )
    shown = len(candidates)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>artifact-gc report: mark {_esc(info.mark_id[:8])}</title>
<style>{_CSS}</style>
<script type="text/javascript">{po.get_plotlyjs()}</script>
</head><body>
<h1>artifact-gc manifest report</h1>
<p class="muted">{_esc(url)}</p>
<div class="cards">{cards}</div>
<h2>Mark</h2>
<table>{facts_html}</table>
{f"<h3>Warnings</h3><ul>{warnings}</ul>" if warnings else ""}
{f"<h3>Lineage</h3><ul>{lineage}</ul>" if lineage else ""}
<details><summary>Parameters</summary><pre>{_esc(parameters)}</pre></details>
<h2>Charts</h2>
<p class="muted">{"Sizes measured: bytes are shown." if sizes else
 "Sizes not measured (gc mark --sizes): version counts are shown."}</p>
<div class="charts">{"".join(body for _, body in charts)}</div>
<h2>Sweep progress</h2>
{sweep_html}
<h2>Decision by status and reason</h2>
{_table(by_reason, ["status", "reason", "versions", "bytes"])}
<h2>Candidates</h2>
<p class="muted">{shown:,} of {total:,} candidates, largest first; click a column to sort.</p>
{_candidate_table(candidates)}
<script type="text/javascript">{_SORT_JS}</script>
</body></html>
"""
    return page, ReportResult(url="", candidates_total=total, candidates_shown=shown,
                              charts=[name for name, _ in charts])


def build_report(url: str, out: str, *, top: int = 20, max_rows: int = 5000,
                 storage_options: StorageOptions = None,
                 journal_location: str | None = None) -> ReportResult:
    """Write the HTML report of the manifest at ``url`` to ``out`` (any fsspec URL)."""
    from artifact_gc.manifest.locations import check_writable, writing

    check_writable(out, "report", storage_options=storage_options)
    page, result = render_report(url, top=top, max_rows=max_rows,
                                 storage_options=storage_options,
                                 journal_location=journal_location)
    with writing(out, "report"):
        fs, path = url_to_fs(out, storage_options)
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent and not is_remote(out):
            fs.makedirs(parent, exist_ok=True)
        with fs.open(path, "wb") as handle:
            handle.write(page.encode("utf-8"))
    result.url = out
    return result
