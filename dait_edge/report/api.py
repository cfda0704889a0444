"""`build_report`: profile results -> report.md, report.csv, report.json, pareto.png and report.html."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from dait_edge.records import BestChoice, Record, Report, ReportSettings
from dait_edge.report.best import choose_across_runtimes, choose_best
from dait_edge.report.collect import collect
from dait_edge.report.compare import FILES as COMPARE_FILES
from dait_edge.report.html import render_html
from dait_edge.report.pareto import plot_pareto
from dait_edge.report.tables import csv_text, markdown_report, table_records
from dait_edge.utils.io import write_bytes_atomic, write_text_atomic

COMPARE_DIR = "compare"
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
    compare: str | None = None  # compare/compare.md when the profiled runs used several methods


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
    # and per machine across runtimes: ONNX Runtime against ExecuTorch against LiteRT, where several were measured
    best += choose_across_runtimes(collected.rows, max_top1_drop=max_top1_drop, batch=batch)
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
    compared = _compare_methods(collected.rows, out / COMPARE_DIR, log)
    link = f"{COMPARE_DIR}/{COMPARE_FILES['markdown']}" if compared else None
    # Each file appears whole or not at all; the HTML, which embeds everything, goes last.
    write_bytes_atomic(paths["figure"], figure["png"])
    write_text_atomic(paths["csv"], csv_text(records))
    report.write(paths["json"])
    text = markdown_report(report, records, figure, FILES["figure"])
    if link:
        text += f"\n## Method comparison\n\nThe profiled runs used several methods: [{link}]({link}).\n"
    write_text_atomic(paths["markdown"], text)
    write_text_atomic(paths["html"], render_html(report, records, figure, compare_link=link))
    return BuiltReport(
        out_dir=str(out),
        files={kind: str(path) for kind, path in paths.items()},
        best=best,
        rows=len(collected.rows),
        compare=str(out / link) if link else None,
    )


def _compare_methods(rows, out_dir: Path, log) -> bool:
    """When the profiled runs trained students with more than one method, write the method comparison of
    those runs (`dait-edge compare`) beside the report."""
    from dait_edge.records import RunSummary
    from dait_edge.report.compare import build_comparison, write_comparison

    runs = []
    for run_dir in sorted({row.run_dir for row in rows if row.run_dir}):
        summary = RunSummary.read_if_present(run_dir)
        if summary is not None and summary.completed and summary.student_top1 is not None:
            runs.append((Path(run_dir), summary))
    if len({summary.method for _, summary in runs}) < 2:
        return False
    write_comparison(build_comparison(runs, [str(d) for d, _ in runs]), out_dir)
    log(f"method comparison of {len(runs)} runs -> {out_dir}")
    return True
