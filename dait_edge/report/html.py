"""report.html: one self-contained page (inline CSS, the figure as a data URI, no external URLs)."""

from __future__ import annotations

import base64
from html import escape

from dait_edge.records import BestChoice, Report
from dait_edge.report.tables import (
    HEADERS,
    answer_rows,
    display_cells,
    int8_layer_sections,
    loser_reason,
    measured_lines,
    profiles_in,
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1, h2, h3 { font-weight: 600; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f0f0f0; }
td:nth-child(-n+3), th:nth-child(-n+3) { text-align: left; }
tr.best td { background: #e8f5e9; font-weight: 600; }
img { max-width: 100%; border: 1px solid #ddd; }
.note { color: #555; }
code { background: #f5f5f5; padding: 0 0.2em; }
"""


def render_html(report: Report, records: list[dict], figure: dict, compare_link: str | None = None) -> str:
    """The whole page; every value from the rows is escaped."""
    settings = report.settings
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>dait-edge report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>dait-edge report</h1>",
        f"<p>{len(report.rows)} rows from {len(settings.files)} profile result(s); artifacts compared at"
        f" batch {settings.batch}, accuracy budget {settings.max_top1_drop}"
        " top-1 points against the reference (&quot;drop vs ref&quot;: the fp32 artifact's measured top-1,"
        " else the run's PyTorch top-1).</p>",
    ]
    answer = answer_rows(report)
    if answer:
        parts.append("<h2>The answer: what to ship</h2>")
        parts.append(_plain_table(answer))
    for profile in profiles_in(report, records):
        parts.append(f"<h2>Profile {escape(str(profile))}</h2>")
        parts += [
            f'<p class="note">{escape(line)}</p>' for line in measured_lines(report.measured.get(profile, []))
        ]
        parts.append(_table([record for record in records if record["profile"] == profile]))
    encoded = base64.b64encode(figure["png"]).decode("ascii")
    parts += [
        "<h2>Top-1 vs latency</h2>",
        f'<img alt="{escape(figure["title"])}" src="data:image/png;base64,{encoded}">',
    ]
    if figure.get("caption"):
        parts.append(f'<p class="note">{escape(figure["caption"])}</p>')
    parts.append("<h2>Best artifact per student</h2>")
    parts += [_best_entry(entry) for entry in report.best]
    layers = int8_layer_sections(report)
    if layers:
        parts.append("<h2>The layers int8 hurts most (chosen int8 artifacts)</h2>")
        for title, note, table in layers:
            parts += [f"<h3>{escape(title)}</h3>", f'<p class="note">{escape(note)}</p>', _plain_table(table)]
    if compare_link:
        link = escape(compare_link, quote=True)
        parts.append(
            f'<h2>Method comparison</h2><p>The profiled runs used several methods: <a href="{link}">{link}</a>.</p>'
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _table(records: list[dict]) -> str:
    head = "".join(f"<th>{escape(header)}</th>" for header in HEADERS)
    body = []
    for record in records:
        cells = "".join(f"<td>{escape(cell)}</td>" for cell in display_cells(record))
        title = escape(str(record.get("artifact")), quote=True)
        row_class = ' class="best"' if record["best"] else ""
        body.append(f'<tr{row_class} title="{title}">{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _best_entry(entry: BestChoice) -> str:
    winner = entry.winner
    chosen = (
        f"<code>{escape(entry.chosen)}</code> ({escape(winner.label)})" if winner else "nothing qualifies"
    )
    losers = "".join(
        f"<li>{escape(c.label)}: {escape(loser_reason(c))}</li>"
        for c in entry.candidates
        if c.status != "chosen"
    )
    return f"<h3>{escape(entry.where)}: {chosen}</h3><p>{escape(entry.note)}.</p>" + (
        f"<ul>{losers}</ul>" if losers else ""
    )


def _plain_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(str(cell))}</th>" for cell in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows[1:]
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
