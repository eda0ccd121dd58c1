"""``gc report``: one self-contained HTML page for reviewing a manifest.

The charts are SVG drawn by pygal and inlined into the page: no chart library travels
with it (plotly.js alone made a 54-row report 4.85 MB) and the page makes no network
fetch, so it can be mailed or attached to a ticket. Its size is bounded whatever the
manifest's: the charts aggregate (top N artifacts and projects, age buckets) and the
candidate table lists at most ``max_rows``. The numbers come from the same review
queries as ``gc show`` (``artifact_gc/review/queries``); the candidate table is sortable
with a few lines of inline JavaScript.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

from artifact_gc.errors import UsageError
from artifact_gc.manifest.reasons import STATUS_CANDIDATE, STATUS_PROTECTED, STATUS_REACHABLE
from artifact_gc.mark.summary import STATUS_MEANINGS, decides, reason_meaning
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
        var p = a.cells[index], q = b.cells[index];
        var x = p.dataset.v === undefined ? p.textContent : p.dataset.v;
        var y = q.dataset.v === undefined ? q.textContent : q.dataset.v;
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
.gc-chart { background: white; border: 1px solid #ddd; border-radius: 6px; overflow: hidden; }
.gc-chart svg { display: block; width: 100%; height: auto; }
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


#: Projects drawn one by one in the "by project" chart; the rest are summed as one bar.
TOP_PROJECTS = 15


def _style(colours: list[str]) -> Any:
    from pygal.style import Style  # type: ignore[import-untyped]

    return Style(
        background="white", plot_background="white", foreground="#212121",
        foreground_strong="#212121", foreground_subtle="#666", colors=tuple(colours),
        font_family='system-ui, -apple-system, "Segoe UI", sans-serif',
        title_font_size=15, label_font_size=11, major_label_font_size=11,
        value_font_size=11, legend_font_size=12, tooltip_font_size=12,
    )


def _svg(chart: Any, chart_id: str) -> str:
    """The chart as inline SVG. ``js=[]``: pygal would otherwise add a <script> that
    fetches its tooltip code from the network; values are printed on the chart instead."""
    chart.config.js = []
    chart.config.disable_xml_declaration = True
    chart.config.width, chart.config.height = 600, 380
    chart.config.explicit_size = False
    svg: str = chart.render(is_unicode=True)
    return f'<div class="gc-chart" id="{chart_id}">{svg}</div>'


def _config(colours: list[str], title: str, **options: Any) -> dict[str, Any]:
    return {"style": _style(colours), "title": title, "print_values": True,
            "print_values_position": "top", "margin": 16, "legend_at_bottom": True,
            "truncate_label": 40, "truncate_legend": 30, **options}


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _top_projects(projects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first :data:`TOP_PROJECTS` projects, and the others summed into one row."""
    if len(projects) <= TOP_PROJECTS:
        return projects
    rest = projects[TOP_PROJECTS - 1:]
    summed: dict[str, Any] = {"project": f"({len(rest):,} other projects)"}
    for key in ("versions", "reachable", "protected", "candidates", "candidate_bytes"):
        summed[key] = sum(r[key] or 0 for r in rest)
    return [*projects[:TOP_PROJECTS - 1], summed]


def _charts(review: Review, top: int, sizes: bool,
            progress: SweepProgress) -> list[tuple[str, str]]:
    import pygal  # type: ignore[import-untyped]

    metric = "bytes" if sizes else "versions"
    formatter = human_bytes if sizes else _count
    charts: list[tuple[str, str]] = []

    status_rows = review.run("by_status")
    split = pygal.Pie(**_config(
        [STATUS_COLOURS.get(r["status"], "#777") for r in status_rows],
        "Versions: reachable / protected / candidate", inner_radius=0.45,
        value_formatter=_count, print_values_position="center"))
    for row in status_rows:
        split.add(row["status"], row["versions"])
    charts.append(("chart-status", _svg(split, "chart-status")))

    largest = review.run("largest_candidates", top=top)
    by_artifact = pygal.HorizontalBar(**_config(
        [STATUS_COLOURS[STATUS_CANDIDATE]], f"Candidate {metric} by artifact (top {top})",
        value_formatter=formatter, show_legend=False, print_values_position="top"))
    by_artifact.x_labels = [f"{r['artifact_name']} ({r['project']})" for r in largest][::-1]
    by_artifact.add("candidates", [(r["bytes"] or 0) if sizes else r["versions"]
                                   for r in largest][::-1])
    charts.append(("chart-artifacts", _svg(by_artifact, "chart-artifacts")))

    # Largest first, drawn top down: horizontal bars keep long project names readable.
    projects = _top_projects(review.run("by_project"))[::-1]
    if sizes:
        by_project = pygal.HorizontalBar(**_config(
            [STATUS_COLOURS[STATUS_CANDIDATE]], "Candidate bytes by project",
            value_formatter=formatter, show_legend=False))
        by_project.add("candidate bytes", [r["candidate_bytes"] or 0 for r in projects])
    else:
        statuses = ((STATUS_CANDIDATE, "candidates"), (STATUS_PROTECTED, "protected"),
                    (STATUS_REACHABLE, "reachable"))
        by_project = pygal.HorizontalStackedBar(**_config(
            [STATUS_COLOURS[s] for s, _ in statuses], "Versions by project",
            value_formatter=formatter, print_values=False))
        for status, key in statuses:
            by_project.add(status, [r[key] for r in projects])
    by_project.x_labels = [r["project"] for r in projects]
    charts.append(("chart-projects", _svg(by_project, "chart-projects")))

    as_of = review.info.started_at or None
    ages = review.run("candidate_age", **({"as_of": as_of} if as_of else {}))
    by_age = pygal.Bar(**_config(
        [STATUS_COLOURS[STATUS_CANDIDATE]], f"Candidate {metric} by age at mark time",
        value_formatter=formatter, show_legend=False))
    by_age.x_labels = [r["age"] for r in ages]
    by_age.add(metric, [(r["bytes"] or 0) if sizes else r["versions"] for r in ages])
    charts.append(("chart-age", _svg(by_age, "chart-age")))

    if progress.state != "none":
        states = list(progress.by_state)
        sweep = pygal.Bar(**_config(
            [STATE_COLOURS.get(s, "#777") for s in states],
            f"Sweep progress: {progress.state} (candidate versions)",
            value_formatter=_count))
        for state in states:
            sweep.add(state, [progress.by_state[state]])
        charts.append(("chart-sweep", _svg(sweep, "chart-sweep")))
    return charts


def _shown(column: str, value: Any) -> Any:
    """A table cell as the page shows it: sizes as people read them (1.5 MiB), counts
    with thousands separators, like every other number on the page."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if column == "bytes" or column.endswith("_bytes"):
        return human_bytes(int(value))
    return f"{value:,}"


def _table(rows: list[dict[str, Any]], columns: list[str], css: str = "") -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="num">{_esc(_shown(c, row.get(c)))}</td>'
            if isinstance(row.get(c), int | float) else f"<td>{_esc(row.get(c))}</td>"
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
            if kind == "num":
                # Numbers sort by value (1.5 MiB > 900 KiB); text by what it shows.
                sort_value = "" if value is None else str(value)
                cells.append(f'<td class="num" data-v="{sort_value}">{_esc(shown)}</td>')
            elif key == "uri":
                cells.append(f'<td class="uri">{_esc(shown)}</td>')
            else:
                cells.append(f"<td>{_esc(shown)}</td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="sortable" id="candidates"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(lines)}</tbody></table>"
    )


def render_report(url: str, *, top: int = 20, max_rows: int = 2000,
                  storage_options: StorageOptions = None,
                  journal_location: str | None = None) -> tuple[str, ReportResult]:
    """The report's HTML for the manifest at ``url``, and what it holds."""
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
        by_kind = review.run("by_kind")
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
    # A reachable version's protections (a young one's grace_period) do not decide.
    also = "".join(
        f"<li>{r['versions']:,} reachable versions also have {_esc(r['reason'])}: a "
        "reference keeps them either way.</li>"
        for r in by_reason if not decides(r["status"], r["reason"])
    )
    by_reason = [r for r in by_reason if decides(r["status"], r["reason"])]
    meanings = "".join(
        f"<tr><th>{_esc(word)}</th><td>{_esc(STATUS_MEANINGS.get(word) or reason_meaning(word))}"
        "</td></tr>"
        for word in dict.fromkeys([r["status"] for r in by_reason]
                                  + [r["reason"] for r in by_reason if r["reason"] != "(none)"])
    )
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
<details><summary>What the statuses and reasons mean</summary><table>{meanings}</table>
</details>{f"<ul class='muted'>{also}</ul>" if also else ""}
{_table(by_reason, ["status", "reason", "versions", "bytes"])}
<h2>By kind and class</h2>
<p class="muted">Reclaimable bytes: those of the candidates.</p>
{_table(by_kind, ["item_kind", "orphan_class", "status", "items", "objects", "bytes",
                  "reclaimable_bytes"])}
<h2>Candidates</h2>
<p class="muted">{shown:,} of {total:,} candidates, largest first; click a column to sort.</p>
{_candidate_table(candidates)}
<script type="text/javascript">{_SORT_JS}</script>
</body></html>
"""
    return page, ReportResult(url="", candidates_total=total, candidates_shown=shown,
                              charts=[name for name, _ in charts])


def build_report(url: str, out: str, *, top: int = 20, max_rows: int = 2000,
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
