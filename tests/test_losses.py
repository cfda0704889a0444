"""Golden values for every loss, against formulas written independently here with numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dait_edge.losses import alpha_at, ira_loss, kd_loss, sia_loss, sra_loss


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _kl_batchmean(p, q):
    return float(np.sum(p * (np.log(p) - np.log(q))) / p.shape[0])


def _norm(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-10)


@pytest.fixture()
def rng():
    return np.random.default_rng(1234)


def test_kd_loss_hand_computed_value():
    # teacher p = softmax([2, 0] / 2) = [e/(e+1), 1/(e+1)]; student q = [0.5, 0.5]; tau^2 = 4
    p = np.array([math.e / (math.e + 1), 1 / (math.e + 1)])
    expected = 4 * float(np.sum(p * np.log(p / 0.5)))
    got = kd_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]]), tau=2.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert got.item() == pytest.approx(0.44378, abs=1e-5)


@pytest.mark.parametrize("tau", [1.0, 2.0, 4.0])
def test_kd_loss_matches_formula(rng, tau):
    student, teacher = rng.normal(size=(5, 7)), rng.normal(size=(5, 7)) * 3
    expected = tau**2 * _kl_batchmean(_softmax(teacher / tau), _softmax(student / tau))
    got = kd_loss(torch.tensor(student), torch.tensor(teacher), tau=tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_kd_loss_is_zero_for_identical_logits_and_has_gradient(rng):
    logits = torch.tensor(rng.normal(size=(3, 4)), requires_grad=True)
    assert kd_loss(logits, logits.detach()).item() == pytest.approx(0.0, abs=1e-7)
    shifted = torch.tensor(rng.normal(size=(3, 4)))
    kd_loss(logits, shifted).backward()
    assert logits.grad.abs().sum() > 0


def test_sia_loss_matches_formula(rng):
    b, c, e, d = 4, 6, 10, 8
    v, t = _norm(rng.normal(size=(b, e))), _norm(rng.normal(size=(c, e)))
    f, ft = _norm(rng.normal(size=(b, d))), _norm(rng.normal(size=(c, d)))
    tau, s = 2.0, 1 / 0.07
    p_vlm = _softmax(s * v @ t.T / tau)
    p_m = _softmax(s * f @ ft.T / tau)
    expected = tau**2 * _kl_batchmean(p_vlm, p_m)
    got = sia_loss(*(torch.tensor(x) for x in (v, t, f, ft)), tau=tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # the VLM's distribution is the target: swapping the roles changes the value
    swapped = sia_loss(*(torch.tensor(x) for x in (f, ft, v, t)), tau=tau)
    assert swapped.item() != pytest.approx(expected, rel=1e-3)


def test_sia_loss_scale_option(rng):
    v, t = _norm(rng.normal(size=(2, 5))), _norm(rng.normal(size=(3, 5)))
    f, ft = _norm(rng.normal(size=(2, 4))), _norm(rng.normal(size=(3, 4)))
    expected = 4.0 * _kl_batchmean(_softmax(10 * v @ t.T / 2), _softmax(10 * f @ ft.T / 2))
    got = sia_loss(*(torch.tensor(x) for x in (v, t, f, ft)), tau=2.0, scale=10.0)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_ira_loss_is_mean_l1(rng):
    a, b = rng.normal(size=(3, 8)), rng.normal(size=(3, 8))
    assert ira_loss(torch.tensor(a), torch.tensor(b)).item() == pytest.approx(np.abs(a - b).mean(), rel=1e-6)
    assert ira_loss(torch.tensor([[1.0, -1.0]]), torch.tensor([[0.0, 1.0]])).item() == pytest.approx(1.5)


def test_sra_pearson_golden_and_blind_to_the_student_map_scale():
    # one channel over a batch of 2 at 1x2: student (0, 1, 2, 4), teacher (1, 3, 2, 0)
    student = torch.tensor([[[[0.0, 1.0]]], [[[2.0, 4.0]]]])
    teacher = torch.tensor([[[[1.0, 3.0]]], [[[2.0, 0.0]]]])
    zs = (student - 1.75) / np.sqrt(2.1875)  # population mean and std over the batch and positions
    zt = (teacher - 1.5) / np.sqrt(1.25)
    expected = ((zs - zt) ** 2).mean().item() / 2
    assert expected == pytest.approx(1 - np.corrcoef([0, 1, 2, 4], [1, 3, 2, 0])[0, 1])  # 1 - Pearson's r
    assert sra_loss(student, teacher, "pearson").item() == pytest.approx(expected, rel=1e-5)
    # the student map's scale and offset per channel cost nothing: shrinking it gains nothing
    assert sra_loss(0.01 * student + 3, teacher, "pearson").item() == pytest.approx(expected, rel=1e-4)
    assert sra_loss(teacher * 7 - 1, teacher, "pearson").item() == pytest.approx(0.0, abs=1e-6)
    assert sra_loss(-teacher, teacher, "pearson").item() == pytest.approx(2.0, rel=1e-5)


def test_sra_standardised_targets_the_standardised_teacher_and_dead_channels_stay_finite():
    teacher = torch.tensor([[[[1.0, 3.0]]], [[[2.0, 0.0]]]])
    zt = (teacher - 1.5) / np.sqrt(1.25)
    assert sra_loss(torch.zeros_like(teacher), teacher, "standardised").item() == pytest.approx(1.0, rel=1e-5)
    assert sra_loss(zt, teacher, "standardised").item() == pytest.approx(0.0, abs=1e-6)
    dead = torch.zeros(2, 1, 1, 2)  # a ReLU channel that is zero on the whole batch
    for form in ("standardised", "pearson"):
        assert torch.isfinite(sra_loss(dead, dead, form)) and sra_loss(dead, dead, form).item() == 0.0
    with pytest.raises(ValueError, match="unknown SRA form"):
        sra_loss(dead, dead, "cosine")


def test_sra_loss_is_mse(rng):
    a, b = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 3, 4, 4))
    assert sra_loss(torch.tensor(a), torch.tensor(b)).item() == pytest.approx(((a - b) ** 2).mean(), rel=1e-6)
    assert sra_loss(torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, 3.0]]]])).item() == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("epoch", "rate", "bias", "expected"),
    [
        (0, 0.1, 0.0, 0.0),
        (3, 0.1, 0.0, 0.3),
        (20, 0.1, 0.0, 1.0),
        (0, 0.1, -0.5, 0.0),
        (7, 0.1, -0.5, 0.2),
        (2, 0.0, 0.4, 0.4),
        (0, 1 / 800, 0.0, 0.0),
        (99, 1 / 800, 0.0, 99 / 800),
    ],
)
def test_alpha_schedule(epoch, rate, bias, expected):
    assert alpha_at(epoch, rate, bias) == pytest.approx(expected)
