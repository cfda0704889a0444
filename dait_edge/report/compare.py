"""`dait-edge compare`: finished distill runs -> a Table-1-style matrix of methods x students.

One table per (dataset, labelled fraction); each cell the test top-1 of a method on a student, as mean +- std
over the runs that differ only in seed; the best mean of each column marked; beside each method what taught
it and its mean training seconds. Written as compare.md, compare.csv, compare.png (grouped bars) and
compare.json. Reads summaries only (no torch), so it runs wherever the runs' folders are.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import time
from collections import defaultdict
from pathlib import Path

from dait_edge.errors import UserError
from dait_edge.records import (
    Comparison,
    ComparisonCell,
    ComparisonRow,
    ComparisonTable,
    RecordError,
    RunManifest,
    RunSummary,
)
from dait_edge.records.layout import runs_under
from dait_edge.records.recipe import SHARED_RECIPE
from dait_edge.utils.io import write_bytes_atomic, write_text_atomic

FILES = {"markdown": "compare.md", "csv": "compare.csv", "figure": "compare.png", "json": Comparison.FILE}
# Table order: the paper's (baselines first, DAIT last); other methods after, by name.
METHOD_ORDER = ("none", "kd", "rkd", "rise", "borlan", "vl2lite", "dho", "dait_l", "dait_f")
SYNTHETIC_NOTE = (
    "Synthetic data and a few epochs prove that the chain runs, not which method is better: on real data the"
    " paper's Table 1 is the reference."
)


def find_runs(sources: list[str | Path]) -> tuple[list[tuple[Path, RunSummary]], list[str]]:
    """(finished runs with a student top-1, notes on what was passed over) under `sources`."""
    if not sources:
        raise UserError("no runs given; pass run folders or folders holding runs (e.g. runs/).")
    runs, notes, seen = [], [], set()
    for source in map(Path, sources):
        if not source.exists():
            raise UserError(f"{source} does not exist; pass run folders or folders holding runs.")
        if source.is_file():
            found = [source] if source.name == RunSummary.FILE else []
        else:  # the run itself, its children (runs/), its grandchildren (a sweep's)
            found = runs_under(source)
        if not found:
            raise UserError(
                f"{source} holds no run (no summary.json in it or the folders below); distil first."
            )
        for path in found:
            run_dir = path.parent.resolve()
            if run_dir in seen:
                continue
            seen.add(run_dir)
            try:
                summary = RunSummary.read(path)
            except RecordError as err:
                notes.append(f"skipped {run_dir}: {err}")
                continue
            if not summary.completed or summary.student_top1 is None:
                notes.append(f"skipped {run_dir}: not finished (no student top-1)")
                continue
            runs.append((run_dir, summary))
    if not runs:
        why = f" ({notes[0]}{f'; and {len(notes) - 1} more' if len(notes) > 1 else ''})" if notes else ""
        raise UserError(
            f"no finished run with a student under {', '.join(map(str, sources))}{why}; finish a distill run"
            " first."
        )
    return runs, notes


# Settings that may differ between the runs of one table: what the table's rows and columns vary, where
# files go, and how fast it ran. Any other difference makes the comparison unfair and is warned about.
PER_RUN = frozenset(
    {
        "student",
        "student_weights",
        "method",
        "kd_teacher",
        "seed",
        "out",
        "device",
        "workers",
        "progress",
        "teacher_cache",
        "cache_dir",
        "vlm_views",
        "extra",
    }
)


NOT_READ = object()  # a recipe's value for a setting only other methods read (DAIT-F's sra_form in `none`)


def _recipe(run_dir: Path) -> dict:
    manifest = RunManifest.read_if_present(run_dir)
    if manifest is None:
        return {}
    from dait_edge.methods.base import (  # torch: only where runs are compared
        settings_of_other_methods,
        validation_fraction,
    )

    recipe = manifest.config.to_dict()
    # The validation share decides which images a method trains on, so it must agree across a table; a
    # manifest from before it was one setting held out its method's default of that time (DHO's 0.1).
    recipe["val_fraction"] = validation_fraction(manifest.config.method, manifest.config.val_fraction)
    for name in settings_of_other_methods(manifest.config.method):  # e.g. sra_form in a `none` run
        recipe[name] = NOT_READ
    return recipe


def _seed(summary: RunSummary, recipe: dict) -> int | None:
    return summary.seed if summary.seed is not None else recipe.get("seed")


def _row_label(summary: RunSummary, recipe: str) -> tuple[str, str]:
    """(row label, teacher words) of a run: KD and RKD get one row per teacher, and a method trained with
    another recipe than the shared one its own row."""
    teacher = summary.taught_by or (
        f"{summary.teacher} (stage 1)" if summary.teacher_top1 is not None else "-"
    )
    label = summary.method
    if summary.kd_teacher:
        label += f" (T: {'VLM' if summary.kd_teacher == 'vlm' else summary.kd_teacher})"
    if recipe != SHARED_RECIPE:
        label += f" [{recipe} recipe]"
    return label, teacher


def _seconds(summary: RunSummary) -> float:
    """Training time of the run: stage 2, its teacher's stage 1 (in full, wherever it was trained) and the
    VLM cache build this run paid for."""
    teacher = summary.teacher_seconds if summary.teacher_seconds is not None else summary.stage1_seconds
    return (summary.stage2_seconds or 0.0) + (teacher or 0.0) + (summary.cache_seconds or 0.0)


def _order(label: str) -> tuple[int, str]:
    method = label.split(" ")[0]
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), label)


def build_comparison(runs: list[tuple[Path, RunSummary]], sources: list[str], note: str = "") -> Comparison:
    groups: dict[tuple, dict] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    teachers: dict[tuple, str] = {}
    seconds: dict[tuple, list[float]] = defaultdict(list)
    recipes: dict[tuple, list[dict]] = defaultdict(list)
    row_recipe: dict[tuple, str] = {}
    for run_dir, summary in runs:
        recipe = _recipe(run_dir)
        fraction = float(summary.labelled_fraction)
        # --no-unlabelled changes what a semi-supervised run learns from: its own table
        unlabelled = fraction >= 1 or bool(recipe.get("train_unlabelled", True))
        table_key = (summary.dataset, fraction, unlabelled)
        recipe_name = recipe.get("recipe") or summary.recipe or SHARED_RECIPE
        label, teacher = _row_label(summary, recipe_name)
        row_recipe[(*table_key, label)] = recipe_name
        groups[table_key][label][summary.student].append(
            (_seed(summary, recipe), summary.student_top1, run_dir)
        )
        teachers[(*table_key, label)] = teacher
        seconds[(*table_key, label)].append(_seconds(summary))
        recipes[table_key].append({k: v for k, v in recipe.items() if k not in PER_RUN})

    tables, warnings = [], []
    ordered = sorted(groups.items(), key=lambda item: (item[0][0], -item[0][1], not item[0][2]))
    for (dataset, fraction, unlabelled), by_label in ordered:
        table = ComparisonTable(dataset, fraction, [], [], unlabelled)
        recipes_here = recipes[(dataset, fraction, unlabelled)]
        differing = sorted(k for k in {k for r in recipes_here for k in r} if not _same(recipes_here, k))
        if differing:
            warnings.append(
                f"{table_title(table)}: its runs differ in {', '.join(differing)}; compare runs of one recipe"
                " (as a sweep makes them)"
            )
        students = sorted({student for cells in by_label.values() for student in cells})
        rows = []
        for label in sorted(by_label, key=_order):
            cells = {}
            for student, entries in sorted(by_label[label].items()):
                entries.sort(key=lambda e: (e[0] is None, e[0] or 0, str(e[2])))
                seeds = [e[0] for e in entries if e[0] is not None]
                if len(set(seeds)) < len(seeds):
                    warnings.append(
                        f"{table_title(table)}: {label} on {student} has several runs of one seed"
                    )
                values = [e[1] for e in entries]
                cells[student] = ComparisonCell(
                    mean=round(statistics.fmean(values), 4),
                    std=round(statistics.stdev(values), 4) if len(values) > 1 else None,
                    runs=len(values),
                    seeds=seeds,
                    run_dirs=[str(e[2]) for e in entries],
                )
            key = (dataset, fraction, unlabelled, label)
            rows.append(
                ComparisonRow(
                    method=label.split(" ")[0],
                    label=label,
                    teacher=teachers[key],
                    seconds=round(statistics.fmean(seconds[key]), 2),
                    cells=cells,
                    recipe=row_recipe[key],
                )
            )
        for student in students:  # the best mean of each column (every one that ties)
            means = [row.cells[student].mean for row in rows if student in row.cells]
            for row in rows:
                if student in row.cells and math.isclose(row.cells[student].mean, max(means)):
                    row.cells[student].best = True
        table.students, table.rows = students, rows
        tables.append(table)
    return Comparison(
        sources=[str(s) for s in sources],
        runs=len(runs),
        tables=tables,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        note=note,
        warnings=warnings,
    )


def _same(recipes: list[dict], key: str) -> bool:
    """Do the runs agree on `key`? Runs whose method does not read it (NOT_READ) have no say."""
    values = [r.get(key) for r in recipes if r.get(key) is not NOT_READ]
    return all(value == values[0] for value in values)


# ------------------------------------------------------------------------------------- rendering


def table_title(table: ComparisonTable) -> str:
    if table.labelled_fraction >= 1:
        return f"{table.dataset}, all labelled"
    rest = "" if table.unlabelled else " (the rest not trained on)"
    return f"{table.dataset}, {table.labelled_fraction:.0%} labelled{rest}"


def table_setting(table: ComparisonTable) -> str | None:
    """What the runs of a partly labelled table trained on, in one line (None when every image is labelled):
    the paper's Table 3 (the subset alone) and the semi-supervised setting are different experiments."""
    if table.labelled_fraction >= 1:
        return None
    if table.unlabelled:
        return (
            f"Trained on the {table.labelled_fraction:.0%} labelled images, and on the other"
            f" {1 - table.labelled_fraction:.0%} without their labels through the distillation terms"
            " (semi-supervised, `--unlabelled`: not the paper's Table 3)."
        )
    return (
        f"Trained on the {table.labelled_fraction:.0%} labelled images alone; the others are not used (the paper's"
        " Table 3 setting, `--no-unlabelled`)."
    )


def recipe_line(table: ComparisonTable) -> str:
    """Which training protocol the table's rows used, in one line."""
    used = sorted({row.recipe for row in table.rows})
    if used == [SHARED_RECIPE]:
        return "Every row trained with the shared recipe (`--recipe shared`: one protocol for every method)."
    if len(used) == 1:
        return f"Every row trained with the {used[0]} recipe (`--recipe {used[0]}`)."
    own = ", ".join(f"{row.label}: {row.recipe}" for row in table.rows if row.recipe != SHARED_RECIPE)
    return (
        f"The rows trained with different recipes ({own}; the others shared): their differences are the"
        " method's and its protocol's together."
    )


def cell_text(cell: ComparisonCell | None, bold: str = "**") -> str:
    if cell is None:
        return "-"
    text = f"{cell.mean:.2f}" if cell.std is None else f"{cell.mean:.2f} ± {cell.std:.2f}"
    if cell.runs > 1:
        text += f" (n={cell.runs})"
    return f"{bold}{text}{bold}" if cell.best else text


def _seconds_text(seconds: float) -> str:
    return f"{seconds:.1f}" if seconds < 10 else f"{seconds:.0f}"


def markdown(comparison: Comparison, figure_name: str | None = FILES["figure"]) -> str:
    lines = ["# Method comparison", ""]
    lines.append(
        f"Test top-1 (%) of {comparison.runs} run(s); mean ± std over seeds where several exist; the best mean"
        " of each column in bold. Training seconds: stage 2, plus the stage-1 teacher and the VLM cache"
        " build where the method needs them."
    )
    if comparison.note:
        lines += ["", f"> {comparison.note}"]
    lines += [f"\nWarning: {warning}." for warning in comparison.warnings]
    for table in comparison.tables:
        lines += ["", f"## {table_title(table)}", ""]
        if table_setting(table):
            lines += [table_setting(table), ""]
        lines += [recipe_line(table), ""]
        lines.append("| method | teacher | train s | " + " | ".join(table.students) + " |")
        lines.append("|---|---|---:|" + "---:|" * len(table.students))
        for row in table.rows:
            cells = " | ".join(cell_text(row.cells.get(s)) for s in table.students)
            lines.append(f"| {row.label} | {row.teacher} | {_seconds_text(row.seconds)} | {cells} |")
    if figure_name:
        lines += ["", f"![top-1 per method and student]({figure_name})"]
    return "\n".join(lines) + "\n"


def csv_text(comparison: Comparison) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "dataset",
            "labelled_fraction",
            "method",
            "label",
            "teacher",
            "seconds",
            "student",
            "top1_mean",
            "top1_std",
            "runs",
            "seeds",
            "best",
        ]
    )
    for table in comparison.tables:
        for row in table.rows:
            for student, cell in row.cells.items():
                writer.writerow(
                    [
                        table.dataset,
                        table.labelled_fraction,
                        row.method,
                        row.label,
                        row.teacher,
                        row.seconds,
                        student,
                        cell.mean,
                        "" if cell.std is None else cell.std,
                        cell.runs,
                        " ".join(map(str, cell.seeds)),
                        int(cell.best),
                    ]
                )
    return out.getvalue()


def plot(comparison: Comparison) -> bytes:
    """Grouped bars: students on the x axis, one bar per method, std as error bars; one panel per table."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tables = comparison.tables
    labels = list(dict.fromkeys(row.label for table in tables for row in table.rows))
    colours = {label: f"C{i % 10}" for i, label in enumerate(labels)}  # one colour per method everywhere
    figure = Figure(
        figsize=(max(6.4, 1.8 * max(len(t.students) for t in tables) + 3), 4.2 * len(tables)),
        dpi=100,
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    for index, table in enumerate(tables):
        ax = figure.add_subplot(len(tables), 1, index + 1)
        width = 0.8 / max(1, len(table.rows))
        for r, row in enumerate(table.rows):
            xs = [
                i + (r - (len(table.rows) - 1) / 2) * width
                for i, s in enumerate(table.students)
                if s in row.cells
            ]
            cells = [row.cells[s] for s in table.students if s in row.cells]
            spread = [c.std for c in cells] if any(c.std for c in cells) else None
            ax.bar(
                xs,
                [c.mean for c in cells],
                width,
                yerr=None if spread is None else [v or 0.0 for v in spread],
                capsize=2,
                label=row.label,
                color=colours[row.label],
            )
        ax.set_xticks(range(len(table.students)), table.students)
        ax.set_ylabel("test top-1 (%)")
        ax.set_title(table_title(table))
        ax.legend(fontsize="small", ncols=2)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_comparison(comparison: Comparison, out_dir: str | Path) -> dict[str, str]:
    """The four files in `out_dir` (each whole or not at all); returns their paths."""
    out = Path(out_dir)
    paths = {kind: out / name for kind, name in FILES.items()}
    write_bytes_atomic(paths["figure"], plot(comparison))
    write_text_atomic(paths["csv"], csv_text(comparison))
    comparison.write(paths["json"])
    write_text_atomic(paths["markdown"], markdown(comparison))
    return {kind: str(path) for kind, path in paths.items()}


def compare_runs(
    sources: list[str | Path], out_dir: str | Path, note: str = "", log=print
) -> tuple[Comparison, dict]:
    runs, notes = find_runs(sources)
    for line in notes:
        log(line)
    comparison = build_comparison(runs, [str(s) for s in sources], note)
    for warning in comparison.warnings:
        log(f"warning: {warning}")
    return comparison, write_comparison(comparison, out_dir)
