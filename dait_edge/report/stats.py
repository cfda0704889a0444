"""How sure a choice is: a paired interval for a top-1 drop and a noise test for a latency difference.

Pure Python and numpy (the report runs on a device's light install, without scipy).
"""

from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95


def _log_binom_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1.0:
        return 0.0 if k == n else -math.inf
    return (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )


def _tail_at_least(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return min(1.0, sum(math.exp(_log_binom_pmf(i, n, p)) for i in range(k, n + 1)))


def clopper_pearson(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a binomial proportion, by bisection on the binomial tails."""
    alpha = 1.0 - confidence

    def solve(f) -> float:  # the p in (0, 1) where f(p) = alpha / 2, f increasing in p
        low, high = 0.0, 1.0
        for _ in range(80):
            middle = (low + high) / 2
            if f(middle) < alpha / 2:
                low = middle
            else:
                high = middle
        return (low + high) / 2

    # lower: P(X >= k) = alpha/2 (increasing in p); upper: P(X <= k) = alpha/2 (decreasing: solve its negation)
    lower = 0.0 if successes == 0 else solve(lambda p: _tail_at_least(successes, trials, p))
    upper = (
        1.0
        if successes == trials
        else solve(lambda p: alpha - (1.0 - _tail_at_least(successes + 1, trials, p)))
    )
    return lower, upper


def paired_drop_interval(
    reference: np.ndarray, candidate: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """(drop, low, high) in top-1 points of `candidate` below `reference` on the same images (bool arrays of
    correct predictions). Exact, conditional on the discordant pairs (McNemar's setting): with b images only
    the reference gets right and c only the candidate, drop = 100 (b - c) / n and b ~ Binomial(b + c, pi),
    so the Clopper-Pearson interval of pi maps to 100 (b + c) / n (2 pi - 1). With no discordant image the
    interval is +- the exact upper bound of the discordance rate."""
    reference, candidate = np.asarray(reference, bool), np.asarray(candidate, bool)
    n = len(reference)
    b = int(np.sum(reference & ~candidate))
    c = int(np.sum(~reference & candidate))
    drop = 100.0 * (b - c) / n
    if b + c == 0:  # no image tells them apart: the drop is bounded by how often they could disagree
        _, most = clopper_pearson(0, n, confidence)
        return drop, -100.0 * most, 100.0 * most
    low, high = clopper_pearson(b, b + c, confidence)
    scale = 100.0 * (b + c) / n
    return drop, scale * (2 * low - 1), scale * (2 * high - 1)


def p50_difference_interval(
    slower: list[float], faster: list[float], seed: int, rounds: int = 2000, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Bootstrap interval of p50(slower) - p50(faster) in ms, each artifact's latency samples resampled on
    their own (they were measured one after the other, not in pairs). Seeded: the same samples give the
    same interval."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(slower, np.float64), np.asarray(faster, np.float64)
    a_medians = np.median(a[rng.integers(0, len(a), (rounds, len(a)))], axis=1)
    b_medians = np.median(b[rng.integers(0, len(b), (rounds, len(b)))], axis=1)
    differences = a_medians - b_medians
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return float(low), float(high)
