"""`choose_best`: per trained model, profile and machine, the fastest artifact that keeps its accuracy, and why
the others lost."""

from __future__ import annotations

import zlib

from dait_edge.records import BestChoice, Candidate, ProfileRow

# Fewer bits should run faster; when one does not, the report says so in those words.
PRECISION_BITS = {"int4": 4, "int8": 8, "fp8": 8, "fp16": 16, "bf16": 16, "fp32": 32}
PARITY_FAILED = "failed parity against PyTorch at export"
PARITY_WAIVED = "below the parity threshold at export, but its measured top-1 is within the budget"
NO_TOP1 = "top-1 not measured (profile with --dataset/--data-root); accuracy judged by export parity"
NOTHING_TO_COMPARE = (
    "top-1 measured, but nothing to compare it with (no fp32 artifact scored, no PyTorch top-1 in the run or"
    " sidecar) and no parity check at export"
)
UNVERIFIED = (
    "accuracy not verified: no top-1 measured and no parity check at export (TensorRT engines are not"
    " checked there); profile with --dataset/--data-root"
)
NO_REFERENCE = (
    "no fp32 reference top-1 (no fp32 artifact profiled with --dataset, no PyTorch top-1 in the run summary);"
    " accuracy judged by export parity"
)
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


def describe_best(entries: list[BestChoice]) -> list[str]:
    """Lines for a terminal: the chosen artifact per student and profile, then why each other one lost."""
    lines = []
    for entry in entries:
        winner = entry.winner
        if winner is None:
            lines.append(f"{entry.where}: no artifact qualifies")
        else:
            lines.append(f"{entry.where}: {winner.label}  {entry.chosen}")
        lines.append(f"  {entry.note}")
        lines += [f"  - {c.label}: {c.reason}" for c in entry.candidates if c.status != "chosen"]
    return lines


def _best_of_group(rows: list[ProfileRow], max_top1_drop: float, batch: int) -> BestChoice:
    first = rows[0]
    reference, reference_label = reference_top1(rows)
    short_reference = "fp32" if reference_label and reference_label.endswith("artifact") else "PyTorch"
    ref_row = reference_row(rows) if reference_label and reference_label.endswith("artifact") else None
    candidates = [
        _candidate(row, reference, short_reference, max_top1_drop, ref_row)
        for row in rows_at_batch(rows, batch)
    ]
    accurate = [c for c in candidates if not c.accuracy_failures and c.latency_p50 is not None]
    in_budget = [c for c in accurate if not c.over_budget]
    nothing_meets_budget = bool(accurate) and not in_budget
    pool = in_budget or accurate
    fastest = min(pool, key=_speed_order) if pool else None
    winner, noise = _within_noise(fastest, pool)

    for c in candidates:
        tied = fastest is not winner  # the winner is not the fastest: a tie within the noise went its way
        if c is winner:
            c.status, c.reason = "chosen", _why_chosen(c, pool, candidates, nothing_meets_budget)
            if tied:  # the tie replaces "fastest of N"; what _why_chosen adds after it stays
                extras = c.reason.split("; ", 1)[1:]
                c.reason = "; ".join([f"{noise[id(fastest)]}, {c.precision} kept", *extras])
        else:
            c.status, c.reason = "lost", _why_lost(c, winner, nothing_meets_budget)
            if id(c) in noise:
                c.reason = f"{noise[id(c)]}; the tie goes to more precision ({winner.label})"
            elif tied and c in pool and c.latency_p50 is not None and c.latency_p50 < winner.latency_p50:
                c.reason = (
                    f"faster than {winner.label} (p50 {_ms(c.latency_p50)} vs {_ms(winner.latency_p50)} ms), but"
                    f" the fastest, {fastest.label}, is within this machine's noise of it; the tie goes to more"
                    " precision"
                )
        if c.top1_drop_low is not None and not c.drop_resolved:
            c.reason += f"; {unresolved_text(c, max_top1_drop)}"
        if c.batch != batch:
            c.reason += f" (measured at batch {c.batch}; no batch-{batch} run)"

    note = _note(
        winner,
        candidates,
        reference,
        reference_label,
        max_top1_drop,
        batch,
        nothing_meets_budget,
        tied=fastest is not winner,
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
    low, high = said[id(winner)]
    text = (
        f"{fastest.precision} {_ms(fastest.latency_p50)} vs {winner.precision} {_ms(winner.latency_p50)} ms:"
        f" within this machine's noise (95% interval of the p50 difference {low:+.3f} to {high:+.3f} ms)"
    )
    return winner, {id(fastest): text}


def unresolved_text(c: Candidate, budget: float) -> str:
    return (
        f"drop {c.top1_drop:.1f} points, 95% interval {c.top1_drop_low:.1f} to {c.top1_drop_high:.1f}:"
        f" {c.test_images} test images cannot resolve a {_num(budget)}-point budget"
    )


def _candidate(
    row: ProfileRow, reference, short_reference: str, max_top1_drop: float, ref_row: ProfileRow | None = None
) -> Candidate:
    top1 = row.top1
    drop = reference - top1 if reference is not None and top1 is not None else None
    interval = _drop_interval(row, ref_row, max_top1_drop) if drop is not None else {}
    accuracy = []
    # Export parity (top-1 agreement with PyTorch) stands in for accuracy only where top-1 was not measured:
    # a near-tied model flips a few predictions either way, and the user's budget is in top-1 points.
    if drop is None and row.parity_passed is False:
        accuracy.append(PARITY_FAILED)
    elif drop is None and row.parity_passed is None and not row.reference:
        # the PyTorch model is what parity compares against: it needs none
        accuracy.append(UNVERIFIED if top1 is None else NOTHING_TO_COMPARE)
    if drop is not None and drop > max_top1_drop + DROP_SLACK:
        accuracy.append(
            f"top-1 {top1:.1f}% is {_drop_text(drop, max_top1_drop)} points below {short_reference}"
            f" (budget {_num(max_top1_drop)})"
        )
    over_budget = None
    if row.within_budget is False:
        budget = row.latency_budget_ms
        budget_text = f"{budget:g} ms budget" if budget is not None else "latency budget"
        over_budget = f"p99 {_ms(row.latency_ms.p99)} ms over the profile's {budget_text}"
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
        **interval,
    )


def _drop_interval(row: ProfileRow, ref_row: ProfileRow | None, budget: float) -> dict:
    """The paired interval of the drop against the fp32 reference, where both were scored image by image on
    the same images (the reference itself: no interval)."""
    from dait_edge.report.stats import decode_correct, paired_drop_interval

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


def _why_chosen(
    c: Candidate, pool: list[Candidate], candidates: list[Candidate], nothing_meets_budget: bool
) -> str:
    if len(candidates) == 1:
        reason = f"the only artifact profiled (p50 {_ms(c.latency_p50)} ms)"
    elif len(pool) == 1:
        reason = f"the only artifact that passes the gates (p50 {_ms(c.latency_p50)} ms)"
    else:
        reason = f"fastest of {len(pool)} artifacts within the accuracy budget (p50 {_ms(c.latency_p50)} ms)"
    if nothing_meets_budget:
        reason += f"; {c.over_budget} (no accurate artifact meets it)"
    if c.parity_passed is False and c.top1_drop is not None:
        reason += f"; {PARITY_WAIVED}"
    if c.top1 is None:
        reason += (
            "; top-1 not measured, accuracy judged by export parity"
            if c.parity_passed
            else "; top-1 not measured; the PyTorch checkpoint itself, which export parity compares against"
        )
    return reason


def _why_lost(c: Candidate, winner: Candidate | None, nothing_meets_budget: bool) -> str:
    if c.accuracy_failures:
        return "; ".join(c.accuracy_failures)
    if c.latency_p50 is None:
        return "no latency measured"
    if c.over_budget and not nothing_meets_budget:
        return c.over_budget
    mine, theirs = c.latency_p50, winner.latency_p50
    if mine == theirs:
        return f"ties with {winner.label} at p50 {_ms(mine)} ms; the tie goes to more precision, then by name"
    if c.bits < winner.bits:
        return f"{c.precision} slower than {winner.precision} on this hardware (p50 {_ms(mine)} vs {_ms(theirs)} ms)"
    ratio = f" ({mine / theirs:.1f}x)" if theirs > 0 else ""
    return f"slower: p50 {_ms(mine)} ms vs {_ms(theirs)} ms for {winner.label}{ratio}"


def _note(
    winner, candidates, reference, reference_label, max_top1_drop, batch, nothing_meets_budget, tied=False
) -> str:
    if winner is None:
        lost = "; ".join(f"{c.label}: {c.reason}" for c in candidates)
        note = f"no artifact qualifies ({lost})"
        return f"{note}; {NO_TOP1}" if all(c.top1 is None for c in candidates) else note
    # tied: a faster artifact is within this machine's noise of the winner, which has more precision
    how = (
        "is kept: the faster one is within this machine's noise"
        if tied
        else "is the fastest accurate artifact"
    )
    parts = [f"{winner.label} {how} (p50 {_ms(winner.latency_p50)} ms"]
    parts[0] += f" at batch {winner.batch}, not {batch})" if winner.batch != batch else f" at batch {batch})"
    if winner.top1 is None:
        parts.append(NO_TOP1)
    elif reference is None:
        parts.append(NO_REFERENCE)
    elif winner.precision == "fp32" and winner.top1 == reference:
        parts.append(f"top-1 {winner.top1:.1f}%, the fp32 reference")
    else:
        parts.append(
            f"top-1 {winner.top1:.1f}% against {reference:.1f}% for the {reference_label}"
            f" (budget {_num(max_top1_drop)} point{'' if max_top1_drop == 1 else 's'})"
        )
    if nothing_meets_budget:
        parts.append("nothing meets the profile's latency budget; chose the fastest accurate artifact anyway")
    if winner.top1_drop_low is not None and not winner.drop_resolved:
        parts.append(unresolved_text(winner, max_top1_drop))
    return "; ".join(parts)


def _is_fp32(row: ProfileRow) -> bool:
    return row.format == "onnx-fp32" or row.precision == "fp32"


def _ms(value) -> str:
    if value is None:
        return "?"
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def _num(value: float) -> str:
    return f"{value:.1f}" if round(value, 1) == value else f"{value:g}"


def _drop_text(drop: float, budget: float) -> str:
    # 1.04 points over a 1.0 budget must not read "1.0 points below (budget 1.0)".
    text = f"{drop:.1f}"
    return text if float(text) > budget else f"{drop:.2f}"
