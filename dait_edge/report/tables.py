"""The report's tables (Markdown and CSV) and report.md itself: one line per artifact and batch size."""

from __future__ import annotations

import csv
import io

from dait_edge.records import BestChoice, Measured, ProfileRow, Report
from dait_edge.report.best import candidate_key, group_key
from dait_edge.report.collect import machine_name

# (key, Markdown/HTML header, CSV header); the display text of each key comes from `display_cells`.
COLUMNS = (
    ("student", "student", "student"),
    ("format", "format", "format"),
    ("precision", "precision", "precision"),
    ("batch", "batch", "batch"),
    ("top1", "top-1 %", "top1"),
    ("top1_drop", "drop vs ref", "top1_drop"),
    ("p50", "p50 ms", "p50_ms"),
    ("p90", "p90 ms", "p90_ms"),
    ("p99", "p99 ms", "p99_ms"),
    ("throughput", "throughput img/s", "throughput_ips"),
    ("size_mb", "size MB", "size_mb"),
    ("params_m", "params (M)", "params_m"),
    ("macs_g", "MACs (G)", "macs_g"),
    ("best", "best", "best"),
)
HEADERS = [header for _, header, _ in COLUMNS]
# The CSV also says where each row comes from, so it can be filtered without report.json.
CSV_EXTRA = ("profile", "artifact", "run_dir", "hardware")
MISSING = "–"


def table_records(rows: list[ProfileRow], best: list[BestChoice]) -> list[dict]:
    """Display records, keyed by COLUMNS and CSV_EXTRA: latency percentiles, top-1 drop against the
    group's reference, best or not."""
    references = {e.group: e.reference_top1 for e in best}
    chosen = {(*e.group, e.chosen, e.chosen_backend, e.winner.batch) for e in best if e.winner is not None}
    records = []
    for row in rows:
        latency = row.latency_ms
        reference = references.get(group_key(row))
        records.append(
            {
                "profile": row.profile,
                "student": row.student,
                "format": row.label,
                "precision": row.precision,
                "batch": row.batch,
                "top1": row.top1,
                "top1_drop": None if reference is None or row.top1 is None else reference - row.top1,
                "p50": latency.p50,
                "p90": latency.p90,
                "p99": latency.p99,
                "throughput": row.throughput_ips,
                "size_mb": row.size_mb,
                "params_m": None if row.params is None else row.params / 1e6,
                "macs_g": None if row.macs is None else row.macs / 1e9,
                "best": (*candidate_key(row), row.batch) in chosen,
                "artifact": row.artifact,
                "run_dir": row.run_dir,
                "hardware": row.hardware,
            }
        )
    return records


def display_cells(record: dict) -> list[str]:
    """The record as table text, in COLUMNS order (missing values as a dash)."""
    formats = {
        "top1": "{:.2f}",
        "top1_drop": "{:+.2f}",
        "p50": "{:.3f}",
        "p90": "{:.3f}",
        "p99": "{:.3f}",
        "throughput": "{:.1f}",
        "size_mb": "{:.2f}",
        "params_m": "{:.2f}",
        "macs_g": "{:.3f}",
    }
    cells = []
    for key, _, _ in COLUMNS:
        value = record.get(key)
        if key == "best":
            cells.append("✓" if value else "")
        elif value is None:
            cells.append(MISSING)
        elif key in formats:
            cells.append(formats[key].format(value))
        else:
            cells.append(str(value))
    return cells


def markdown_table(records: list[dict]) -> str:
    lines = [_md_line(HEADERS), _md_line(["---"] * len(HEADERS))]
    lines += [_md_line(display_cells(record)) for record in records]
    return "\n".join(lines)


def csv_text(records: list[dict]) -> str:
    """One line per row: raw numbers (rounded), best as true/false, then where the row came from."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([name for _, _, name in COLUMNS] + list(CSV_EXTRA))
    for record in records:
        values = [_csv_value(record.get(key)) for key, _, _ in COLUMNS]
        writer.writerow(values + [_csv_value(record.get(key)) for key in CSV_EXTRA])
    return out.getvalue()


def measured_lines(measured_blocks: list[Measured]) -> list[str]:
    """How and where a profile was measured, one sentence per distinct machine/settings (with when)."""
    lines: dict[str, list[str]] = {}  # sentence -> the times it was measured
    for measured in measured_blocks:
        hardware = measured.hardware
        cpus = f" ({hardware.cpu_count} CPUs)" if hardware.cpu_count else ""
        runtimes = ", ".join(f"{name} {version}" for name, version in hardware.versions.items())
        timing = f"{measured.warmup} warm-up + {measured.iterations} timed iterations"
        if measured.duration_s:
            timing += f" (at least {measured.duration_s:g} s)"
        line = (
            f"Measured on {machine_name(hardware)}{cpus}, {hardware.platform or 'unknown platform'};"
            f" runtime {runtimes or 'versions not recorded'}; threads: {measured.threads};"
            f" {timing}"
        )
        if measured.timing:
            line += f"; {measured.timing}"
        lines.setdefault(line, []).append(measured.created)
    out = []
    for line, times in lines.items():
        times = sorted(t for t in times if t)
        when = "" if not times else f"; {times[0]}" if len(times) == 1 else f"; {times[0]} to {times[-1]}"
        out.append(f"{line}{when}.")
    return out


def markdown_report(report: Report, records: list[dict], figure: dict, figure_name: str) -> str:
    """report.md: per profile how it was measured and the table, then the figure and the best artifacts."""
    settings = report.settings
    lines = [
        "# dait-edge report",
        "",
        f"{len(report.rows)} rows from {len(settings.files)} profile result(s); artifacts compared at"
        f" batch {settings.batch}, accuracy budget {settings.max_top1_drop} top-1 points against the"
        " reference (\"drop vs ref\": the fp32 artifact's measured top-1, else the run's PyTorch top-1).",
        "",
    ]
    for profile in profiles_in(report, records):
        lines += [f"## Profile {_md_text(str(profile))}", ""]
        lines += [f"- {_md_text(line)}" for line in measured_lines(report.measured.get(profile, []))]
        lines += ["", markdown_table([r for r in records if r["profile"] == profile]), ""]
    lines += ["## Top-1 vs latency", "", f"![{_md_text(figure['title'])}]({figure_name})", ""]
    if figure.get("caption"):
        lines += [_md_text(figure["caption"]), ""]
    lines += ["## Best artifact per student", ""]
    for entry in report.best:
        winner = entry.winner
        chosen = f"`{entry.chosen}` ({winner.label})" if winner else "nothing qualifies"
        lines += [f"### {_md_text(entry.where)}: {chosen}", "", _md_text(entry.note) + ".", ""]
        losers = [
            f"- {_md_text(c.label)}: {_md_text(c.reason)}" for c in entry.candidates if c.status != "chosen"
        ]
        lines += losers + [""] if losers else []
    return "\n".join(lines).rstrip() + "\n"


def profiles_in(report: Report, records: list[dict]) -> list:
    """Profile names in table order: those with rows, then any measured block without rows."""
    names = list(dict.fromkeys(record["profile"] for record in records))
    return names + [name for name in report.measured if name not in names]


def _md_line(cells: list[str]) -> str:
    return "| " + " | ".join(_md_text(cell) for cell in cells) + " |"


def _md_text(text: str) -> str:
    # Pipes end table cells and newlines end table rows; keep each value in its cell.
    return str(text).replace("|", "\\|").replace("\n", " ")


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
