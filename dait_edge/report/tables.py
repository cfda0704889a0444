"""The report's tables (Markdown and CSV) and report.md itself: one line per artifact and batch size."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from dait_edge.records import BestChoice, Int8Accuracy, Measured, ProfileRow, Report
from dait_edge.report.best import candidate_key, group_key, reference_top1
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
    by_group: dict[tuple, list[ProfileRow]] = {}
    for row in rows:
        by_group.setdefault(group_key(row), []).append(row)
    # the table reports the test split: each row's drop against its group's fp32 test top-1 (the choice
    # itself was judged on validation images: `BestChoice.judged_on`)
    references = {key: reference_top1(group)[0] for key, group in by_group.items()}
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
    answer = answer_rows(report)
    if answer:
        lines += ["## The answer: what to ship", ""]
        lines += [_md_line(answer[0]), _md_line(["---"] * len(answer[0]))]
        lines += [_md_line(row) for row in answer[1:]]
        lines += [
            "",
            "Each cell: the chosen artifact, its p50 at the compared batch and its top-1; the detail follows.",
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
            f"- {_md_text(c.label)}: {_md_text(loser_reason(c))}"
            for c in entry.candidates
            if c.status != "chosen"
        ]
        lines += losers + [""] if losers else []
    layers = int8_layer_sections(report)
    if layers:
        lines += ["## The layers int8 hurts most (chosen int8 artifacts)", ""]
        for title, note, table in layers:
            lines += [f"### {_md_text(title)}", "", _md_text(note), ""]
            lines += [_md_line(table[0]), _md_line(["---"] * len(table[0]))]
            lines += [_md_line(row) for row in table[1:]] + [""]
    return "\n".join(lines).rstrip() + "\n"


def answer_rows(report: Report) -> list[list[str]]:
    """Students x profiles, each cell the chosen artifact with its p50 and top-1 (and the drop's interval
    where the test set cannot resolve the budget); the first row is the header."""
    from dait_edge.report.reasons import format_ms, unresolved_text

    profiles = list(dict.fromkeys(entry.profile for entry in report.best))
    by_place: dict[tuple, list[str]] = {}
    names: dict[tuple, str] = {}
    runs: dict[tuple, str | None] = {}
    for entry in report.best:
        winner = entry.winner
        if winner is None:
            text = "nothing qualifies"
        else:
            text = f"{winner.label}, p50 {format_ms(winner.latency_p50)} ms"
            if winner.test_top1 is not None:
                text += f", test top-1 {winner.test_top1:.1f}%"
            elif winner.top1 is not None:
                text += f", top-1 {winner.top1:.1f}%"
            if winner.top1_drop_low is not None and not winner.drop_resolved:
                text += f" ({unresolved_text(winner, entry.max_top1_drop)})"
        # one row per trained model (the profiles name the machines); a second machine under one profile
        # name gets a row of its own
        column = profiles.index(entry.profile)
        key = (entry.student, entry.model or entry.run_dir)
        if by_place.get(key, [MISSING] * len(profiles))[column] != MISSING:
            key = (*key, entry.hardware)
        names.setdefault(key, _row_name(entry) + (f" ({entry.hardware})" if len(key) == 3 else ""))
        runs.setdefault(key, entry.run_dir)
        by_place.setdefault(key, [MISSING] * len(profiles))[column] = text
    if not by_place:
        return []
    counts: dict[str, int] = {}
    for name in names.values():
        counts[name] = counts.get(name, 0) + 1
    for key, name in names.items():  # one student, several trained models: name each by its run
        if counts[name] > 1:
            run = runs.get(key)
            names[key] = f"{name} (run {Path(run).name})" if run else f"{name} (model {str(key[1])[:8]})"
    header = ["student", *profiles]
    return [header, *([names[key], *cells] for key, cells in by_place.items())]


def _row_name(entry) -> str:
    """The student, plus the run or machine `where` names when one student holds several rows."""
    student = str(entry.student or "unknown student")
    detail = entry.where.split(" (", 1)[1].rstrip(")") if " (" in (entry.where or "") else ""
    return f"{student} ({detail})" if detail else student


def int8_layer_sections(report: Report, worst: int = 10) -> list[tuple[str, str, list[list[str]]]]:
    """For each chosen int8 artifact whose per-layer table is on this machine: (title, what falling back cost,
    the ten worst layers)."""
    sections = []
    for entry in report.best:
        winner = entry.winner
        if winner is None or winner.precision != "int8":
            continue
        table = Int8Accuracy.table_for(winner.artifact)
        if not table.is_file():
            continue
        with table.open(newline="", encoding="utf-8") as handle:
            layers = list(csv.DictReader(handle))[:worst]
        accuracy, qat = _int8_accuracy(winner.artifact), _qat_details(winner.artifact)
        note = _qat_note(accuracy, qat) if qat else _fallback_note(accuracy)
        sections.append((f"{entry.where}: {winner.label}", note, _layer_rows(layers)))
    return sections


def loser_reason(candidate) -> str:
    """Why `candidate` lost; for an int8 artifact whose export missed its budget, the export's own reading
    of why (its sidecar's diagnosis), where the sidecar is on this machine."""
    from pathlib import Path

    if candidate.precision != "int8" or not Path(candidate.artifact).is_file():
        return candidate.reason
    accuracy, qat = _int8_accuracy(candidate.artifact), _qat_details(candidate.artifact)
    reason = candidate.reason + _diagnosis(accuracy, "The export's reading")
    return f"{reason.rstrip('.')}. {_qat_note(accuracy, qat)}" if qat else reason


def _quantization(artifact: str) -> dict:
    """The sidecar's `quantization` table; {} without a sidecar this version can read (the report may be
    built on another machine, or from older exports)."""
    from dait_edge.errors import UserError
    from dait_edge.records import RecordError, Sidecar

    try:
        return Sidecar.read_for(artifact).quantization or {}
    except (RecordError, UserError, OSError):
        return {}


def _int8_accuracy(artifact: str) -> dict:
    """The int8 accuracy search's record from the artifact's sidecar ({} where there is none)."""
    return _quantization(artifact).get("accuracy") or {}


def _qat_details(artifact: str) -> dict:
    """What QAT did (`quantization.qat`: epochs, teacher, losses, seconds); {} for post-training int8. The
    u8s8 conversion of a QAT file carries none: it is post-training int8 of the fine-tuned weights."""
    return _quantization(artifact).get("qat") or {}


def _qat_note(accuracy: dict, qat: dict) -> str:
    """A QAT file in one sentence: how it was trained and what the validation images made of it."""
    how = (
        f"QAT: {qat.get('epochs')} epoch(s) on {qat.get('train_images')} training images, taught by the run's"
        f" {'fp32 student' if qat.get('teacher') == 'student' else 'intermediate teacher'}, {qat.get('seconds')} s"
    )
    if not accuracy.get("checked"):
        return f"{how}; budget not checked: {accuracy.get('reason')}."
    verdict = "within" if accuracy.get("budget_met") else "over"
    return (
        f"{how}; validation top-1 {accuracy.get('val_top1')}% vs fp32 {accuracy.get('fp32_val_top1')}% (calibrated,"
        f" before fine-tuning: {accuracy.get('plain_val_top1')}%), {verdict} the {accuracy.get('budget'):g}-point"
        f" budget{_diagnosis(accuracy)}."
    )


def _fallback_note(accuracy: dict) -> str:
    nodes = accuracy.get("nodes_in_float") or []
    if not accuracy:
        return "No accuracy search recorded in the sidecar (exported before it existed)."
    if not accuracy.get("checked"):
        return f"Plain int8, budget not checked: {accuracy.get('reason')}."
    if not nodes:
        if accuracy.get("budget_met"):
            return "Plain int8 met the budget: no layer returned to float."
        return (
            f"Plain int8 kept, over the {accuracy.get('budget'):g}-point budget (validation {accuracy.get('val_top1')}%"
            f" vs fp32 {accuracy.get('fp32_val_top1')}%): no fallback within the cap of"
            f" {accuracy.get('max_fallback_nodes')} node(s) did better{_diagnosis(accuracy)}."
        )
    kept, plain = accuracy.get("latency_ms"), accuracy.get("plain_latency_ms")
    cost = ""
    if kept and plain:
        change = 100.0 * (kept - plain) / plain
        cost = f" ORT at batch 1 on the exporting machine: {kept:.3f} ms vs {plain:.3f} ms for plain int8 ({change:+.0f}%)."
    goal = (
        f"to keep top-1 within {accuracy.get('budget'):g} points"
        if accuracy.get("budget_met")
        else f"(the best found within the cap; the {accuracy.get('budget'):g}-point budget is still missed)"
    )
    return (
        f"{len(nodes)} node(s) returned to float {goal} (validation {accuracy.get('val_top1')}% vs plain int8"
        f" {accuracy.get('plain_val_top1')}%, fp32 {accuracy.get('fp32_val_top1')}%){_diagnosis(accuracy)}.{cost}"
    )


def _diagnosis(accuracy: dict, lead: str = "Why") -> str:
    """The search's reading of a missed budget (older sidecars have none)."""
    text = accuracy.get("diagnosis")
    return f". {lead}: {text}" if text else ""


def _layer_rows(layers: list[dict]) -> list[list[str]]:
    header = ["rank", "node", "op", "channel SQNR dB", "SQNR dB", "in float"]
    rows = [
        [
            layer["rank"],
            layer["node"],
            layer["op"],
            layer["channel_sqnr_db"],
            layer["sqnr_db"],
            "yes" if layer["in_float"] == "1" else "",
        ]
        for layer in layers
    ]
    return [header, *rows]


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
