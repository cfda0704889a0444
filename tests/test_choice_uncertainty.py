"""How sure a choice is: the paired interval of a top-1 drop (against an independent computation on planted
correctness vectors), the plain statement when the test set cannot resolve the budget, and latency ties
inside the measurement's own noise going to more precision."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import binomtest

from dait_edge.records import Latency
from dait_edge.records.profile import decode_correct, encode_correct
from dait_edge.report import choose_best
from dait_edge.report.stats import clopper_pearson, p50_difference_interval, paired_drop_interval


def _planted(n: int, only_ref: int, only_candidate: int, both: int, seed: int = 0):
    """Correctness vectors with the given discordant counts, shuffled."""
    ref = np.zeros(n, bool)
    cand = np.zeros(n, bool)
    ref[:only_ref] = True
    cand[only_ref : only_ref + only_candidate] = True
    ref[only_ref + only_candidate : only_ref + only_candidate + both] = True
    cand[only_ref + only_candidate : only_ref + only_candidate + both] = True
    order = np.random.default_rng(seed).permutation(n)
    return ref[order], cand[order]


@pytest.mark.parametrize("n,b,c", [(574, 9, 4), (200, 0, 3), (1000, 30, 30), (50, 5, 0)])
def test_paired_drop_interval_matches_the_exact_binomial_on_discordant_pairs(n, b, c):
    ref, cand = _planted(n, b, c, both=n // 2)
    drop, low, high = paired_drop_interval(ref, cand)
    assert drop == pytest.approx(100 * (b - c) / n)
    ci = binomtest(b, b + c).proportion_ci(confidence_level=0.95, method="exact")  # independent: scipy
    scale = 100 * (b + c) / n
    assert low == pytest.approx(scale * (2 * ci.low - 1), abs=1e-9)
    assert high == pytest.approx(scale * (2 * ci.high - 1), abs=1e-9)
    assert low <= drop <= high
    for k, m in ((0, 7), (7, 7), (3, 11)):
        ours, theirs = clopper_pearson(k, m), binomtest(k, m).proportion_ci(method="exact")
        assert ours == pytest.approx((theirs.low, theirs.high), abs=1e-9)


def test_correctness_bitmaps_round_trip():
    correct = np.random.default_rng(3).random(574) < 0.7
    text = encode_correct(correct)
    assert len(text) <= 100 and np.array_equal(decode_correct(text, 574), correct)


def _scored(row, correct: np.ndarray, key: str = "list-a"):
    return dataclasses.replace(
        row,
        top1=round(100 * correct.mean(), 3),
        top1_data=f"cub test split of /data, {len(correct)} images",
        correct=encode_correct(correct),
        test_images=key,
    )


def test_the_report_says_when_the_test_set_cannot_resolve_the_budget(profile_row):
    ref, cand = _planted(574, only_ref=9, only_candidate=4, both=300)  # drop 0.87 points
    rows = [
        _scored(profile_row("onnx-fp32", 4.0), ref),
        _scored(profile_row("onnx-int8-u8s8", 1.5), cand),
    ]
    (entry,) = choose_best(rows, max_top1_drop=1.0)
    int8 = next(c for c in entry.candidates if c.format == "onnx-int8-u8s8")
    assert entry.chosen_format == "onnx-int8-u8s8"  # the rule itself is unchanged: 0.87 <= 1.0
    assert int8.drop_resolved is False and int8.top1_drop_low < 1.0 < int8.top1_drop_high
    assert "574 test images cannot resolve a 1.0-point budget" in int8.reason
    assert f"95% interval {int8.top1_drop_low:.1f} to {int8.top1_drop_high:.1f}" in int8.reason
    # a large test set settles it: no such sentence
    ref, cand = _planted(20000, only_ref=20, only_candidate=10, both=10000)
    rows = [_scored(profile_row("onnx-fp32", 4.0), ref), _scored(profile_row("onnx-int8-u8s8", 1.5), cand)]
    int8 = next(c for c in choose_best(rows)[0].candidates if c.format == "onnx-int8-u8s8")
    assert int8.drop_resolved and "cannot resolve" not in int8.reason
    # different test images are never paired
    rows[1] = dataclasses.replace(rows[1], test_images="list-b")
    int8 = next(c for c in choose_best(rows)[0].candidates if c.format == "onnx-int8-u8s8")
    assert int8.top1_drop_low is None


def _timed(row, samples: np.ndarray):
    values = [round(float(v), 4) for v in samples]
    latency = Latency(
        mean=float(np.mean(values)),
        p50=float(np.median(values)),
        p90=float(np.percentile(values, 90)),
        p99=float(np.percentile(values, 99)),
        min=float(np.min(values)),
        samples=len(values),
        values=values,
    )
    return dataclasses.replace(row, latency_ms=latency)


def test_a_latency_difference_inside_the_noise_is_a_tie_that_goes_to_more_precision(profile_row):
    rng = np.random.default_rng(0)
    choices = []
    for _trial in range(3):  # the same two artifacts profiled again: the same choice each time
        fp32 = _timed(profile_row("onnx-fp32", 1.0, top1=80.0), 0.99 + rng.normal(0, 0.08, 200))
        int8 = _timed(profile_row("onnx-int8-u8s8", 1.0, top1=80.0), 0.99 + rng.normal(0, 0.08, 200))
        (entry,) = choose_best([fp32, int8])
        choices.append(entry.chosen_format)
        lost = next(c for c in entry.candidates if c.status == "lost")
        chosen = next(c for c in entry.candidates if c.status == "chosen")
        if lost.latency_p50 < chosen.latency_p50:  # int8 measured faster, but not beyond the noise
            assert "within this machine's noise" in lost.reason and "more precision" in lost.reason
            assert "within this machine's noise" in chosen.reason and "fp32 kept" in chosen.reason
    assert choices == ["onnx-fp32"] * 3
    # a real speed-up is not a tie
    fp32 = _timed(profile_row("onnx-fp32", 1.0, top1=80.0), 3.0 + rng.normal(0, 0.05, 200))
    int8 = _timed(profile_row("onnx-int8-u8s8", 1.0, top1=80.0), 1.1 + rng.normal(0, 0.05, 200))
    assert choose_best([fp32, int8])[0].chosen_format == "onnx-int8-u8s8"


def test_the_p50_interval_is_seeded():
    a, b = np.random.default_rng(1).normal(1, 0.1, 100), np.random.default_rng(2).normal(1, 0.1, 100)
    assert p50_difference_interval(a, b, seed=5) == p50_difference_interval(a, b, seed=5)
    low, high = p50_difference_interval(a + 1.0, b, seed=5)
    assert 0.8 < low < high < 1.2


def test_a_third_candidate_faster_than_a_tied_winner_says_why_it_lost(profile_row):
    rng = np.random.default_rng(4)
    fp32 = _timed(profile_row("onnx-fp32", 1.0, top1=80.0), 1.00 + rng.normal(0, 0.08, 200))
    fp16 = _timed(profile_row("onnx-fp16", 1.0, top1=80.0), 0.995 + rng.normal(0, 0.08, 200))
    int8 = _timed(profile_row("onnx-int8-u8s8", 1.0, top1=80.0), 0.99 + rng.normal(0, 0.08, 200))
    (entry,) = choose_best([fp32, fp16, int8])
    by_format = {c.format: c for c in entry.candidates}
    assert entry.chosen_format == "onnx-fp32"  # every difference is inside the noise: the most precision
    for name in ("onnx-fp16", "onnx-int8-u8s8"):
        lost = by_format[name]
        if lost.latency_p50 < by_format["onnx-fp32"].latency_p50:  # faster, yet lost: the reason says why
            assert "noise" in lost.reason and "slower" not in lost.reason, lost.reason


def test_no_discordant_image_still_gives_an_interval():
    same = np.random.default_rng(5).random(100) < 0.8
    drop, low, high = paired_drop_interval(same, same.copy())
    assert drop == 0.0 and low < 0.0 < high and high == pytest.approx(100 * (1 - 0.025 ** (1 / 100)))


def test_the_layer_note_says_when_the_budget_was_missed():
    from dait_edge.report.tables import _fallback_note

    base = {"checked": True, "budget": 1.0, "val_top1": 60.0, "fp32_val_top1": 63.0, "plain_val_top1": 58.0}
    assert "met the budget" in _fallback_note(base | {"budget_met": True, "nodes_in_float": []})
    missed = _fallback_note(base | {"budget_met": False, "nodes_in_float": [], "max_fallback_nodes": 0})
    assert "over the 1-point budget" in missed and "met the budget" not in missed
    partial = _fallback_note(
        base | {"budget_met": False, "nodes_in_float": ["a", "b"], "max_fallback_nodes": 2}
    )
    assert "still missed" in partial and "to keep top-1 within" not in partial
