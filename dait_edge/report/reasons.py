"""The words of the best-artifact rule: why an artifact was chosen or lost, the note on each choice, the
terminal lines, and how figures are written (`format_ms`). The rule itself is `best.py`'s."""

from __future__ import annotations

from dait_edge.records import BestChoice, Candidate, ProfileRow

# which images the accuracy gate judged (Candidate.judged_on, BestChoice.judged_on)
VALIDATION = "validation images"
TEST = "test split"

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


def format_ms(value) -> str:
    """Milliseconds with the digits that matter: 12.3, 1.2, 0.64, 0.052 ("?" when unknown)."""
    if value is None:
        return "?"
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def format_points(value: float) -> str:
    """A budget in points: 1.0, 0.5, 0.25."""
    return f"{value:.1f}" if round(value, 1) == value else f"{value:g}"


def _drop_text(drop: float, budget: float) -> str:
    # 1.04 points over a 1.0 budget must not read "1.0 points below (budget 1.0)".
    text = f"{drop:.1f}"
    return text if float(text) > budget else f"{drop:.2f}"


def top1_name(judged_on: str | None) -> str:
    """What a judged top-1 is called: the validation images' must not read as the test split's."""
    return "validation top-1" if judged_on == VALIDATION else "top-1"


def below_reference(
    top1: float, drop: float, budget: float, reference: str, judged_on: str | None = None
) -> str:
    """The accuracy gate's failure: top-1 more than the budget below the reference (fp32 or PyTorch)."""
    return (
        f"{top1_name(judged_on)} {top1:.1f}% is {_drop_text(drop, budget)} points below {reference}"
        f" (budget {format_points(budget)})"
    )


def over_latency_budget(row: ProfileRow) -> str:
    budget = row.latency_budget_ms
    budget_text = f"{budget:g} ms budget" if budget is not None else "latency budget"
    return f"p99 {format_ms(row.latency_ms.p99)} ms over the profile's {budget_text}"


def noise_tie(fastest: Candidate, winner: Candidate, low: float, high: float) -> str:
    """The fastest artifact against a slower one with more precision, within this machine's noise."""
    return (
        f"{fastest.precision} {format_ms(fastest.latency_p50)} vs {winner.precision}"
        f" {format_ms(winner.latency_p50)} ms: within this machine's noise (95% interval of the p50"
        f" difference {low:+.3f} to {high:+.3f} ms)"
    )


def unresolved_text(c: Candidate, budget: float) -> str:
    return (
        f"drop {c.top1_drop:.1f} points, 95% interval {c.top1_drop_low:.1f} to {c.top1_drop_high:.1f}:"
        f" {c.test_images} {'validation' if c.judged_on == 'validation images' else 'test'} images cannot"
        f" resolve a {format_points(budget)}-point budget"
    )


def explain(
    candidates, winner, fastest, pool, noise: dict, nothing_meets_budget: bool, budget: float, batch: int
):
    """Give every candidate its status and the reason it was chosen or lost (`noise`: by candidate id, what
    the noise test said of a tie)."""
    tied = fastest is not winner  # the winner is not the fastest: a tie within the noise went its way
    for c in candidates:
        if c is winner:
            c.status, c.reason = "chosen", why_chosen(c, pool, candidates, nothing_meets_budget)
            if tied:  # the tie replaces "fastest of N"; what why_chosen adds after it stays
                extras = c.reason.split("; ", 1)[1:]
                c.reason = "; ".join([f"{noise[id(fastest)]}, {c.precision} kept", *extras])
        else:
            c.status, c.reason = "lost", why_lost(c, winner, nothing_meets_budget)
            if id(c) in noise:
                c.reason = f"{noise[id(c)]}; the tie goes to more precision ({winner.label})"
            elif tied and c in pool and c.latency_p50 is not None and c.latency_p50 < winner.latency_p50:
                c.reason = (
                    f"faster than {winner.label} (p50 {format_ms(c.latency_p50)} vs"
                    f" {format_ms(winner.latency_p50)} ms), but the fastest, {fastest.label}, is within this"
                    " machine's noise of it; the tie goes to more precision"
                )
        if c.top1_drop_low is not None and not c.drop_resolved:
            c.reason += f"; {unresolved_text(c, budget)}"
        if c.batch != batch:
            c.reason += f" (measured at batch {c.batch}; no batch-{batch} run)"


def why_chosen(
    c: Candidate, pool: list[Candidate], candidates: list[Candidate], nothing_meets_budget: bool
) -> str:
    if len(candidates) == 1:
        reason = f"the only artifact profiled (p50 {format_ms(c.latency_p50)} ms)"
    elif len(pool) == 1:
        reason = f"the only artifact that passes the gates (p50 {format_ms(c.latency_p50)} ms)"
    else:
        reason = (
            f"fastest of {len(pool)} artifacts within the accuracy budget (p50 {format_ms(c.latency_p50)} ms)"
        )
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


def why_lost(c: Candidate, winner: Candidate | None, nothing_meets_budget: bool) -> str:
    if c.accuracy_failures:
        return "; ".join(c.accuracy_failures)
    if c.latency_p50 is None:
        return "no latency measured"
    if c.over_budget and not nothing_meets_budget:
        return c.over_budget
    mine, theirs = c.latency_p50, winner.latency_p50
    if mine == theirs:
        return f"ties with {winner.label} at p50 {format_ms(mine)} ms; the tie goes to more precision, then by name"
    if c.bits < winner.bits:
        return (
            f"{c.precision} slower than {winner.precision} on this hardware (p50 {format_ms(mine)} vs"
            f" {format_ms(theirs)} ms)"
        )
    ratio = f" ({mine / theirs:.1f}x)" if theirs > 0 else ""
    return f"slower: p50 {format_ms(mine)} ms vs {format_ms(theirs)} ms for {winner.label}{ratio}"


def note(
    winner, candidates, reference, reference_label, max_top1_drop, batch, nothing_meets_budget, tied=False
) -> str:
    """The choice in one line: what won and why, against which reference."""
    if winner is None:
        lost = "; ".join(f"{c.label}: {c.reason}" for c in candidates)
        text = f"no artifact qualifies ({lost})"
        return f"{text}; {NO_TOP1}" if all(c.top1 is None for c in candidates) else text
    # tied: a faster artifact is within this machine's noise of the winner, which has more precision
    how = (
        "is kept: the faster one is within this machine's noise"
        if tied
        else "is the fastest accurate artifact"
    )
    parts = [f"{winner.label} {how} (p50 {format_ms(winner.latency_p50)} ms"]
    parts[0] += f" at batch {winner.batch}, not {batch})" if winner.batch != batch else f" at batch {batch})"
    if winner.top1 is None:
        parts.append(NO_TOP1)
    elif reference is None:
        parts.append(NO_REFERENCE)
    elif winner.precision == "fp32" and winner.top1 == reference:
        parts.append(f"{top1_name(winner.judged_on)} {winner.top1:.1f}%, the fp32 reference")
    else:
        parts.append(
            f"{top1_name(winner.judged_on)} {winner.top1:.1f}% against {reference:.1f}% for the {reference_label}"
            f" (budget {format_points(max_top1_drop)} point{'' if max_top1_drop == 1 else 's'})"
        )
    if nothing_meets_budget:
        parts.append("nothing meets the profile's latency budget; chose the fastest accurate artifact anyway")
    if winner.top1_drop_low is not None and not winner.drop_resolved:
        parts.append(unresolved_text(winner, max_top1_drop))
    return "; ".join(parts)


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
