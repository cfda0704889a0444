"""pareto.png: top-1 against p50 latency per profile, with the Pareto front; latency bars when no top-1."""

from __future__ import annotations

import io
import math

from dait_edge.records import BestChoice, ProfileRow
from dait_edge.report.best import candidate_key, rows_at_batch

MARKERS = {"fp32": "o", "fp16": "s", "bf16": "s", "int8": "^"}
OTHER_MARKER = "D"


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (latency, top-1) points no other point beats on both (lower latency, higher top-1), fastest first."""
    front: list[tuple[float, float]] = []
    for latency, top1 in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or top1 > front[-1][1]:
            front.append((latency, top1))
    return front


def plot_pareto(rows: list[ProfileRow], best: list[BestChoice], batch: int) -> dict:
    """{"png": bytes, "title", "caption"}: one subplot per profile; rows without top-1 are left out."""
    # The Agg canvas directly: no pyplot, so no global backend switch and no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    by_profile: dict = {}
    for row in rows_at_batch(rows, batch):
        by_profile.setdefault(row.profile, []).append(row)
    students = sorted({str(row.student) for group in by_profile.values() for row in group})
    colours = {student: f"C{i % 10}" for i, student in enumerate(students)}
    chosen = {(*e.group, e.chosen, e.chosen_backend) for e in best if e.chosen}

    profiles = list(by_profile) or [None]
    ncols = min(len(profiles), 2)
    nrows = math.ceil(len(profiles) / ncols)
    figure = Figure(figsize=(6.4 * ncols, 4.8 * nrows), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    captions, any_scatter = [], False
    for index, profile in enumerate(profiles):
        ax = figure.add_subplot(nrows, ncols, index + 1)
        group = by_profile.get(profile, [])
        measured = [row for row in group if row.top1 is not None]
        if not group:
            ax.set_title("nothing to plot: no row has a latency")
            ax.set_axis_off()
        elif measured:
            any_scatter = True
            _scatter(ax, profile, measured, colours, chosen, batch)
            left_out = len(group) - len(measured)
            if left_out:
                text = f"{left_out} artifact(s) without top-1 left out (profile with --dataset)"
                ax.text(0.01, 0.01, text, transform=ax.transAxes, fontsize=8, color="0.35")
                captions.append(f"{profile}: {text}.")
        else:
            _bars(ax, profile, group, colours, chosen, batch)
            captions.append(f"{profile}: no top-1 measured, so the plot shows p50 latency per artifact.")
    title = (
        f"Top-1 vs p50 latency at batch {batch} (Pareto front: lower latency, higher top-1)"
        if any_scatter
        else f"p50 latency per artifact at batch {batch} (no top-1 measured: profile with --dataset)"
    )
    figure.suptitle(title, fontsize=11)
    png = io.BytesIO()
    figure.savefig(png, format="png")
    return {"png": png.getvalue(), "title": title, "caption": " ".join(captions)}


def _scatter(ax, profile, rows: list[ProfileRow], colours: dict, chosen: set, batch: int) -> None:
    from matplotlib.lines import Line2D

    points = []
    for row in rows:
        latency, top1 = row.latency_ms.p50, row.top1
        points.append((latency, top1))
        marker = MARKERS.get(row.precision, OTHER_MARKER)
        ax.scatter(latency, top1, s=60, marker=marker, color=colours[str(row.student)], zorder=3)
        label = row.label.removeprefix("onnx-")
        ax.annotate(
            label, (latency, top1), xytext=(5, 4), textcoords="offset points", fontsize=7, color="0.3"
        )
        if candidate_key(row) in chosen:
            ax.scatter(latency, top1, s=220, facecolors="none", edgecolors="black", linewidths=1.5, zorder=4)
    front = pareto_front(points)
    xs, ys = [p[0] for p in front], [p[1] for p in front]
    right = max(p[0] for p in points)
    if right > xs[-1]:  # the best top-1 reachable stays the same out to the slowest point
        xs, ys = xs + [right], ys + [ys[-1]]
    ax.step(xs, ys, where="post", color="0.4", linestyle="--", linewidth=1, zorder=2)
    ax.set_title(f"{profile}: top-1 vs p50 latency (batch {batch})", fontsize=10)
    ax.set_xlabel("p50 latency (ms), lower is better")
    ax.set_ylabel("top-1 (%), higher is better")
    ax.grid(True, alpha=0.3)
    present = sorted({str(row.student) for row in rows})
    handles = [Line2D([], [], marker="o", linestyle="", color=colours[s], label=s) for s in present]
    precisions = sorted({row.precision for row in rows})
    handles += [
        Line2D([], [], marker=MARKERS.get(p, OTHER_MARKER), linestyle="", color="0.5", label=p)
        for p in precisions
    ]
    handles += [
        Line2D([], [], color="0.4", linestyle="--", label="Pareto front"),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markersize=12,
            markerfacecolor="none",
            color="black",
            label="best",
        ),
    ]
    ax.legend(handles=handles, fontsize=7, loc="best")


def _bars(ax, profile, rows: list[ProfileRow], colours: dict, chosen: set, batch: int) -> None:
    rows = sorted(rows, key=lambda row: (str(row.student), row.latency_ms.p50))
    labels = [
        f"{row.student} {row.label}" + (" (best)" if candidate_key(row) in chosen else "") for row in rows
    ]
    ax.barh(
        range(len(rows)),
        [row.latency_ms.p50 for row in rows],
        color=[colours[str(row.student)] for row in rows],
    )
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_title(f"{profile}: p50 latency per artifact (batch {batch}; no top-1 measured)", fontsize=10)
    ax.set_xlabel("p50 latency (ms), lower is better")
    ax.grid(True, axis="x", alpha=0.3)
