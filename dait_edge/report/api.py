"""`build_report`: profile results -> report.md, report.csv, report.json, pareto.png and report.html."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from dait_edge.records import BestChoice, Record, Report, ReportSettings
from dait_edge.report.best import choose_best
from dait_edge.report.collect import collect
from dait_edge.report.html import render_html
from dait_edge.report.pareto import plot_pareto
from dait_edge.report.tables import csv_text, markdown_report, table_records
from dait_edge.utils.io import write_bytes_atomic, write_text_atomic

FILES = {
    "html": "report.html",
    "markdown": "report.md",
    "csv": "report.csv",
    "json": Report.FILE,
    "figure": "pareto.png",
}


@dataclass
class BuiltReport(Record):
    """What `build_report` wrote (also what `dait-edge report --json` prints)."""

    out_dir: str
    files: dict[str, str]
    best: list[BestChoice]
    rows: int


def build_report(
    sources: list[str | Path],
    out_dir: str | Path,
    *,
    max_top1_drop: float = 1.0,
    batch: int = 1,
    log=print,
) -> BuiltReport:
    """Collect the rows under `sources`, choose the best artifact per student, write the five files."""
    collected = collect(sources)
    log(f"{len(collected.rows)} rows from {len(collected.files)} profile result(s)")
    best = choose_best(collected.rows, max_top1_drop=max_top1_drop, batch=batch)
    report = Report(
        settings=ReportSettings(
            sources=[str(source) for source in sources],
            files=collected.files,
            max_top1_drop=max_top1_drop,
            batch=batch,
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        ),
        measured=collected.measured,
        rows=collected.rows,
        best=best,
    )
    records = table_records(collected.rows, best)
    figure = plot_pareto(collected.rows, best, batch)

    out = Path(out_dir)
    paths = {kind: out / name for kind, name in FILES.items()}
    # Each file appears whole or not at all; the HTML, which embeds everything, goes last.
    write_bytes_atomic(paths["figure"], figure["png"])
    write_text_atomic(paths["csv"], csv_text(records))
    report.write(paths["json"])
    write_text_atomic(paths["markdown"], markdown_report(report, records, figure, FILES["figure"]))
    write_text_atomic(paths["html"], render_html(report, records, figure))
    return BuiltReport(
        out_dir=str(out),
        files={kind: str(path) for kind, path in paths.items()},
        best=best,
        rows=len(collected.rows),
    )
