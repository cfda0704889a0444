"""`choose_best`: per trained model, profile and machine, the fastest artifact that keeps its accuracy. The
rule's gates and its noise test are here; how each choice is put in words is `reasons.py`'s."""

from __future__ import annotations

import dataclasses
import zlib

from dait_edge.records import BestChoice, Candidate, ProfileRow
from dait_edge.records.profile import decode_correct
from dait_edge.report import reasons

# Fewer bits should run faster; when one does not, the report says so in those words.
PRECISION_BITS = {"int4": 4, "int8": 8, "fp8": 8, "fp16": 16, "bf16": 16, "fp32": 32}
DROP_SLACK = 1e-9  # a drop of exactly the budget is within it, whatever the float rounding


def group_key(row: ProfileRow) -> tuple:
    """What one choice is made among: the formats of one trained model (its weights' hash, else its run
    folder) on one profile and machine. Two runs of one student, or two machines under one profile name,
    are separate choices, each judged against its own fp32. `BestChoice.group` is the same key."""
    return (row.student, row.profile, row.model or row.run_dir, row.hardware)


def candidate_key(row: ProfileRow) -> tuple:
    """What is chosen between: an artifact as run by one backend, within its `group_key` (one path can be
    measured on two boards)."""
    return (*group_key(row), row.artifact, row.backend)


def rows_at_batch(rows: list[ProfileRow], batch: int) -> list[ProfileRow]:
    """One row per candidate: the one at `batch`, else the one at the smallest batch measured."""
    by_artifact: dict[tuple, list[ProfileRow]] = {}
    for row in rows:
        by_artifact.setdefault(candidate_key(row), []).append(row)
    picked = []
    for measured in by_artifact.values():
        exact = [row for row in measured if row.batch == batch]
        picked.append(exact[0] if exact else min(measured, key=lambda row: row.batch))
    return picked


def choose_best(rows: list[ProfileRow], max_top1_drop: float = 1.0, batch: int = 1) -> list[BestChoice]:
    """The fastest artifact per trained model, profile and machine (`group_key`) that keeps its accuracy;
    entries ordered by student, profile, run and machine.

    Each artifact is compared at `batch` (else at the smallest batch it was measured at, and it says so).
    Gates, in order: top-1 may be at most `max_top1_drop` points below the reference (the best measured
    fp32 artifact's top-1, else the run's PyTorch top-1); without a measured top-1 or a reference, export
    parity must not have failed instead; p99 must meet the profile's latency budget, unless no accurate
    artifact does. The lowest p50 among the rest wins; every candidate carries
    the reason it was chosen or lost.
    """
    groups: dict[tuple, list[ProfileRow]] = {}
    for row in rows:
        groups.setdefault(group_key(row), []).append(row)
    ordered = sorted(groups.items(), key=lambda item: tuple(str(part or "") for part in item[0]))
    entries = [_best_of_group(group, max_top1_drop, batch) for _, group in ordered]
    _name_places(entries)
    return entries


ACROSS_RUNTIMES = "all runtimes"  # the profile name of a choice made across every runtime measured on a machine


def runtime_of(row: ProfileRow) -> str:
    """The runtime a row measured: its backend without the mode (onnxruntime-cudagraph -> onnxruntime)."""
    return (row.backend or "").split("-")[0]


def choose_across_runtimes(
    rows: list[ProfileRow], max_top1_drop: float = 1.0, batch: int = 1
) -> list[BestChoice]:
    """Per trained model and machine, the fastest accurate artifact among every runtime measured there (ONNX
    Runtime, ExecuTorch, LiteRT, TensorRT): the rows of all its profiles as one group, judged by the same
    rule against the best fp32 artifact of any runtime. Only where two runtimes or more were measured."""
    from dait_edge.report.collect import machine_of

    groups: dict[tuple, list[ProfileRow]] = {}
    for row in rows:
        groups.setdefault((row.student, row.model or row.run_dir, machine_of(row.hardware)), []).append(row)
    merged = [
        dataclasses.replace(row, profile=ACROSS_RUNTIMES, hardware=machine_of(row.hardware))
        for group in groups.values()
        if len({runtime_of(row) for row in group if not row.reference}) >= 2
        for row in group
    ]
    return choose_best(merged, max_top1_drop, batch) if merged else []


def _name_places(entries: list[BestChoice]) -> None:
    """`where` of each entry: 'resnet18 on x86-ort-cpu-int8', plus the run and machine where one student and
    profile hold several choices."""
    by_place: dict[tuple, list[BestChoice]] = {}
    for entry in entries:
        by_place.setdefault((entry.student, entry.profile), []).append(entry)
    for (student, profile), same in by_place.items():
        for entry in same:
            where = f"{student or 'unknown student'} on {profile or 'unnamed profile'}"
            details = []
            if len({e.model or e.run_dir for e in same}) > 1:
                run = entry.run_dir
                details.append(
                    f"run {run.rstrip('/').rsplit('/', 1)[-1]}" if run else f"model {str(entry.model)[:8]}"
                )
            if len({e.hardware for e in same}) > 1:
                details.append(str(entry.hardware or "machine not recorded"))
            entry.where = f"{where} ({', '.join(details)})" if details else where


def reference_row(rows: list[ProfileRow]) -> ProfileRow | None:
    """The fp32 artifact the budget is measured against: the best-scoring one."""
    fp32 = [row for row in rows if _is_fp32(row) and row.top1 is not None]
    return max(fp32, key=lambda row: (row.top1, row.correct is not None)) if fp32 else None


def reference_top1(rows: list[ProfileRow]) -> tuple[float | None, str | None]:
    """The top-1 the budget is measured against: the best measured fp32 artifact, else PyTorch's, else none."""
    best = reference_row(rows)
    if best is not None:
        return float(best.top1), f"{best.format or 'fp32'} artifact"
    torch_top1 = [row.torch_top1 for row in rows if row.torch_top1 is not None]
    if torch_top1:
        return float(max(torch_top1)), "PyTorch checkpoint"
    return None, None


VALIDATION, TEST = reasons.VALIDATION, reasons.TEST


def judged_rows(rows: list[ProfileRow]) -> tuple[list[ProfileRow], str | None]:
    """The rows as the accuracy gate sees them, and on what: their validation top-1 (and image-by-image
    correctness) where every scored row of the group has one, so that no choice sees the test labels; the
    test split only for rows profiled before validation images were scored, and the note says so."""
    scored = [row for row in rows if row.top1 is not None or row.val_top1 is not None]
    if not scored:
        return rows, None
    if all(row.val_top1 is not None for row in scored):
        judged = [
            dataclasses.replace(
                row,
                top1=row.val_top1,
                top1_data=row.val_data,
                correct=row.val_correct,
                test_images=row.val_images,
                torch_top1=None,  # the run's PyTorch figure is a test top-1: not a validation reference
            )
            for row in rows
        ]
        return judged, VALIDATION
    return rows, TEST


def _best_of_group(rows: list[ProfileRow], max_top1_drop: float, batch: int) -> BestChoice:
    first = rows[0]
    test_top1 = {candidate_key(row): row.top1 for row in rows}
    rows, judged_on = judged_rows(rows)
    reference, reference_label = reference_top1(rows)
    short_reference = "fp32" if reference_label and reference_label.endswith("artifact") else "PyTorch"
    ref_row = reference_row(rows) if reference_label and reference_label.endswith("artifact") else None
    candidates = [
        _candidate(row, reference, short_reference, max_top1_drop, ref_row, judged_on)
        for row in rows_at_batch(rows, batch)
    ]
    accurate = [c for c in candidates if not c.accuracy_failures and c.latency_p50 is not None]
    in_budget = [c for c in accurate if not c.over_budget]
    nothing_meets_budget = bool(accurate) and not in_budget
    pool = in_budget or accurate
    fastest = min(pool, key=_speed_order) if pool else None
    winner, noise = _within_noise(fastest, pool)
    reasons.explain(candidates, winner, fastest, pool, noise, nothing_meets_budget, max_top1_drop, batch)

    note = reasons.note(
        winner,
        candidates,
        reference,
        reference_label,
        max_top1_drop,
        batch,
        nothing_meets_budget,
        tied=fastest is not winner,
    )
    for c, row in zip(candidates, rows_at_batch(rows, batch), strict=True):
        c.test_top1 = test_top1.get(candidate_key(row))
    if judged_on == VALIDATION:
        note += "; accuracy judged on validation images, never on the test split"
    elif judged_on == TEST:
        note += (
            "; accuracy judged on the test split: these rows were profiled before validation images were"
            " scored (profile them again to choose on validation images)"
        )
    candidates.sort(key=lambda c: (c.status != "chosen", *_speed_order(c)))
    return BestChoice(
        student=first.student,
        profile=first.profile,
        model=first.model,
        run_dir=first.run_dir,
        hardware=first.hardware,
        where="",  # set by choose_best, which sees the other entries
        batch=batch,
        chosen=winner.artifact if winner else None,
        chosen_format=winner.format if winner else None,
        chosen_backend=winner.backend if winner else None,
        reference_top1=reference,
        reference=reference_label,
        max_top1_drop=max_top1_drop,
        note=note,
        candidates=candidates,
        judged_on=judged_on,
    )


def _within_noise(fastest: Candidate | None, pool: list[Candidate]) -> tuple[Candidate | None, dict]:
    """The winner after the noise test: when a candidate with more precision is slower than the fastest by
    less than this machine's noise (the bootstrap interval of the p50 difference contains 0), it is a tie,
    and ties go to more precision. Returns the winner and, by candidate id, what the test said."""
    from dait_edge.report.stats import p50_difference_interval

    if fastest is None or not fastest.latency_values:
        return fastest, {}
    tied = []
    said = {}
    for c in pool:
        if c is fastest or c.bits <= fastest.bits or not c.latency_values:
            continue
        seed = zlib.crc32(f"{c.artifact}|{c.backend}|{fastest.artifact}|{fastest.backend}".encode())
        low, high = p50_difference_interval(c.latency_values, fastest.latency_values, seed)
        if low <= 0.0 <= high:
            tied.append(c)
            said[id(c)] = (low, high)
    if not tied:
        return fastest, {}
    winner = min(tied, key=lambda c: (-c.bits, *_speed_order(c)))
    return winner, {id(fastest): reasons.noise_tie(fastest, winner, *said[id(winner)])}


def _candidate(
    row: ProfileRow,
    reference,
    short_reference: str,
    max_top1_drop: float,
    ref_row: ProfileRow | None = None,
    judged_on: str | None = None,
) -> Candidate:
    top1 = row.top1
    drop = reference - top1 if reference is not None and top1 is not None else None
    interval = _drop_interval(row, ref_row, max_top1_drop) if drop is not None else {}
    accuracy = []
    # Export parity (top-1 agreement with PyTorch) stands in for accuracy only where top-1 was not measured:
    # a near-tied model flips a few predictions either way, and the user's budget is in top-1 points.
    if drop is None and row.parity_passed is False:
        accuracy.append(reasons.PARITY_FAILED)
    elif drop is None and row.parity_passed is None and not row.reference:
        # the PyTorch model is what parity compares against: it needs none
        accuracy.append(reasons.UNVERIFIED if top1 is None else reasons.NOTHING_TO_COMPARE)
    if drop is not None and drop > max_top1_drop + DROP_SLACK:
        accuracy.append(reasons.below_reference(top1, drop, max_top1_drop, short_reference, judged_on))
    over_budget = reasons.over_latency_budget(row) if row.within_budget is False else None
    return Candidate(
        artifact=row.artifact,
        format=row.format,
        backend=row.backend,
        label=row.label,
        precision=row.precision,
        batch=row.batch,
        run_dir=row.run_dir,
        latency_p50=row.latency_ms.p50,
        top1=top1,
        top1_drop=drop,
        accuracy_failures=accuracy,
        over_budget=over_budget,
        parity_passed=row.parity_passed,
        bits=PRECISION_BITS.get(row.precision, 32),
        latency_values=list(row.latency_ms.values),
        judged_on=judged_on,
        **interval,
    )


def _drop_interval(row: ProfileRow, ref_row: ProfileRow | None, budget: float) -> dict:
    """The paired interval of the drop against the fp32 reference, where both were scored image by image on
    the same images (the reference itself: no interval)."""
    from dait_edge.report.stats import paired_drop_interval

    if ref_row is None or row is ref_row or not (row.correct and ref_row.correct):
        return {}
    if row.test_images is None or row.test_images != ref_row.test_images:
        return {}
    count = _image_count(row)
    if count is None:
        return {}
    _, low, high = paired_drop_interval(
        decode_correct(ref_row.correct, count), decode_correct(row.correct, count)
    )
    return {
        "top1_drop_low": round(low, 3),
        "top1_drop_high": round(high, 3),
        "drop_resolved": high <= budget + DROP_SLACK or low > budget + DROP_SLACK,
        "test_images": count,
    }


def _image_count(row: ProfileRow) -> int | None:
    """How many test images the bitmap covers: the top-1 data says it ("..., 574 images")."""
    text = (row.top1_data or "").rsplit(", ", 1)[-1]
    number = text.split(" ")[0]
    return int(number) if number.isdigit() else None


def _speed_order(c: Candidate) -> tuple:
    # Ties go to the artifact with more precision, then by name, so the choice never depends on input order.
    p50 = c.latency_p50
    return (p50 is None, p50 or 0.0, -c.bits, c.format, c.artifact, c.backend)


def _is_fp32(row: ProfileRow) -> bool:
    return row.format == "onnx-fp32" or row.precision == "fp32"
