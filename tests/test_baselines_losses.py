"""The baselines' loss functions and DHO's inference rule against independent formulas (golden values),
the labelled split and validation hold-out, and DHO's paired batches."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dait_edge.data.splits import held_out_indices, labelled_indices
from dait_edge.engine.paired import PairedBatchSampler
from dait_edge.losses import choose_combination, dho_combine, labelled_ce, rkd_loss
from dait_edge.losses.dual_head import DHO_A_GRID, DHO_B_GRID
from dait_edge.methods.borlan import borlan_alignment

# ------------------------------------------------------------------------------ RKD


def _smooth_l1(a: np.ndarray, b: np.ndarray) -> float:
    d = np.abs(a - b)
    return float(np.where(d < 1, 0.5 * d**2, d - 0.5).mean())


def _rkd_reference(s: np.ndarray, t: np.ndarray, w_d: float, w_a: float) -> float:
    """Park et al.'s terms written with loops over pairs and triplets."""
    n = len(s)

    def distances(x):
        d = np.array([[np.linalg.norm(x[i] - x[j]) for j in range(n)] for i in range(n)])
        return d / d[d > 0].mean()

    def angles(x):
        out = np.zeros((n, n, n))
        for i, j, k in itertools.product(range(n), repeat=3):
            u, v = x[j] - x[i], x[k] - x[i]
            nu, nv = np.linalg.norm(u), np.linalg.norm(v)
            out[i, j, k] = 0.0 if nu == 0 or nv == 0 else u @ v / (nu * nv)
        return out

    return w_d * _smooth_l1(distances(s), distances(t)) + w_a * _smooth_l1(angles(s), angles(t))


def test_rkd_loss_matches_the_pairwise_and_triplet_formulas():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(5, 7, generator=generator, dtype=torch.float64)
    teacher = torch.randn(5, 3, generator=generator, dtype=torch.float64)  # other width: relations only
    expected = _rkd_reference(student.numpy(), teacher.numpy(), 25.0, 50.0)
    assert rkd_loss(student, teacher).item() == pytest.approx(expected, rel=1e-5)
    assert rkd_loss(student, teacher, w_dist=1.0, w_angle=0.0).item() == pytest.approx(
        _rkd_reference(student.numpy(), teacher.numpy(), 1.0, 0.0), rel=1e-5
    )
    # the same geometry at another scale costs nothing: distances are normalised by their mean
    assert rkd_loss(teacher * 3.0, teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_rkd_loss_trains_the_student_side_only():
    student = torch.randn(4, 6, requires_grad=True)
    teacher = torch.randn(4, 6, requires_grad=True)
    rkd_loss(student, teacher).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0 and teacher.grad is None


# ------------------------------------------------------------------------------ DHO


def _combine_reference(z_ce, z_kd, a, b):
    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return np.log(a * softmax(z_ce) + (1 - a) * softmax(z_kd / b))


@pytest.mark.parametrize("a,b", [(0.35, 1.25), (0.0, 2.0), (1.0, 0.5), (0.05, 4.0)])
def test_dho_combine_is_the_log_of_the_weighted_softmaxes(a, b):
    generator = torch.Generator().manual_seed(1)
    z_ce = torch.randn(6, 5, generator=generator, dtype=torch.float64) * 3
    z_kd = torch.randn(6, 5, generator=generator, dtype=torch.float64) * 3
    log_p = dho_combine(z_ce, z_kd, a, b)
    np.testing.assert_allclose(
        log_p.numpy(), _combine_reference(z_ce.numpy(), z_kd.numpy(), a, b), rtol=1e-10
    )
    assert torch.allclose(log_p.exp().sum(dim=1), torch.ones(6, dtype=torch.float64))


def test_dho_combine_stays_finite_in_fp16_where_the_probabilities_underflow():
    z_ce = torch.tensor([[60.0, -60.0, 0.0]], dtype=torch.float16)  # softmax underflows to 0 in fp16
    z_kd = torch.tensor([[-60.0, 60.0, 0.0]], dtype=torch.float16)
    log_p = dho_combine(z_ce, z_kd, 0.3, 1.0)
    assert torch.isfinite(log_p).all()
    reference = _combine_reference(z_ce.double().numpy(), z_kd.double().numpy(), 0.3, 1.0)
    assert log_p.argmax().item() == int(np.argmax(reference)) == 1


def test_choose_combination_finds_the_best_pair_of_dhos_grid():
    assert len(DHO_A_GRID) == 21 and DHO_A_GRID[0] == 0.0 and DHO_A_GRID[-1] == 1.0
    assert DHO_B_GRID == (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 4.0)
    generator = torch.Generator().manual_seed(2)
    labels = torch.randint(0, 4, (40,), generator=generator)
    # the CE head is right on the first half, the KD head on the second: a mix beats either alone
    z_ce = (
        torch.randn(40, 4, generator=generator) + 4 * F.one_hot(labels, 4) * (torch.arange(40) < 20)[:, None]
    )
    z_kd = (
        torch.randn(40, 4, generator=generator) + 4 * F.one_hot(labels, 4) * (torch.arange(40) >= 20)[:, None]
    )
    a, b, top1 = choose_combination(z_ce, z_kd, labels)
    scores = {
        (pa, pb): 100.0
        * float((_combine_reference(z_ce.numpy(), z_kd.numpy(), pa, pb).argmax(1) == labels.numpy()).mean())
        for pa in DHO_A_GRID
        for pb in DHO_B_GRID
    }
    assert top1 == pytest.approx(max(scores.values()))
    assert scores[(a, b)] == pytest.approx(top1)
    assert top1 > max(scores[(0.0, 1.0)], scores[(1.0, 1.0)])  # better than either head alone


def _dho_search_reference(z_ce: np.ndarray, z_kd: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """DHO's `evaluate(search_param=True)` as train_others.py writes it: beta outer, alpha inner, strictly
    better only, from best_acc 0, best_alpha 0, best_beta 1."""

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    best_acc, best_alpha, best_beta = 0.0, 0.0, 1.0
    for beta in np.array([0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 4.0]):
        for alpha in np.arange(0, 1.05, 0.05):
            probs = alpha * softmax(z_ce) + (1 - alpha) * softmax(z_kd / beta)
            acc = 100.0 * float((probs.argmax(1) == labels).mean())
            if acc > best_acc:
                best_acc, best_alpha, best_beta = acc, float(alpha), float(beta)
    return best_alpha, best_beta, best_acc


def test_choose_combination_breaks_ties_as_dhos_search_does():
    """On validation splits of 3-5 images most pairs tie: the pair chosen is the one DHO's loop order keeps
    (the a-outer order of before would pick another pair in some of these draws)."""
    generator = torch.Generator().manual_seed(5)
    chosen = set()
    for _ in range(60):
        n = int(torch.randint(3, 6, (1,), generator=generator))
        labels = torch.randint(0, 3, (n,), generator=generator)
        z_ce = torch.randn(n, 3, generator=generator, dtype=torch.float64) * 2
        z_kd = torch.randn(n, 3, generator=generator, dtype=torch.float64) * 2
        a, b, top1 = choose_combination(z_ce, z_kd, labels)
        ref_a, ref_b, ref_top1 = _dho_search_reference(z_ce.numpy(), z_kd.numpy(), labels.numpy())
        assert (a, b) == (pytest.approx(ref_a, abs=1e-9), ref_b) and top1 == pytest.approx(ref_top1)
        chosen.add((a, b))
    assert len(chosen) > 3  # the draws exercise more than one outcome of the search
    # no image right whatever the pair: DHO's starting pair stays
    labels = torch.tensor([0, 0])
    wrong = torch.tensor([[0.0, 5.0], [0.0, 5.0]])
    assert choose_combination(wrong, wrong, labels) == (0.0, 1.0, 0.0)


# ------------------------------------------------------------------------------ RISE


def test_rise_text_terms_match_its_released_loops():
    """AD and RD against train_rise.py's per-sample loops: CosineEmbeddingLoss(norm(x_p), t_y, 1), and
    10 * MSE of the softmaxes over each sample's class anchors (teacher: t_y's cosines, student: x_p's)."""
    from dait_edge.methods.rise import absolute_distance, relational_distance

    generator = torch.Generator().manual_seed(4)
    x_p = torch.randn(5, 8, generator=generator, dtype=torch.float64)
    text = F.normalize(torch.randn(3, 8, generator=generator, dtype=torch.float64), dim=-1)
    anchors = torch.randn(3, 4, 8, generator=generator, dtype=torch.float64)  # (C, A, E)
    labels = torch.tensor([0, 2, 1, 2, 0])
    ad = torch.nn.CosineEmbeddingLoss()(F.normalize(x_p, dim=-1), text[labels], torch.ones(5))
    dist_teacher, dist_student = torch.zeros(5, 4, dtype=torch.float64), torch.zeros(5, 4, dtype=torch.float64)
    for i in range(5):
        gt = labels[i]
        dist_teacher[i] = F.cosine_similarity(text[gt].repeat(4, 1), anchors[gt])
        dist_student[i] = F.cosine_similarity(x_p[i].repeat(4, 1), anchors[gt])
    rd = F.mse_loss(dist_student.softmax(dim=1), dist_teacher.softmax(dim=1)) * 10.0
    assert absolute_distance(x_p, text[labels]).mean().item() == pytest.approx(ad.item(), rel=1e-12)
    assert relational_distance(x_p, text[labels], anchors[labels]).mean().item() == pytest.approx(
        rd.item(), rel=1e-12
    )


# ------------------------------------------------------------------------------ BorLan, CE


def test_borlan_alignment_is_the_expected_contrastive_loss_in_closed_form():
    generator = torch.Generator().manual_seed(3)
    q = F.normalize(torch.randn(4, 6, generator=generator, dtype=torch.float64), dim=1)
    mean = torch.randn(3, 6, generator=generator, dtype=torch.float64)
    var = torch.rand(3, 6, generator=generator, dtype=torch.float64) * 1e-2
    targets = torch.tensor([0, 2, 1, 2])
    t = 0.07
    # -q.mu_y / T + log sum_k exp(q.mu_k / T + q^T Sigma_k q / (2 T^2))  (the Gaussian's moment-generating form)
    expected = np.mean(
        [
            -float(q[i] @ mean[targets[i]]) / t
            + math.log(
                sum(
                    math.exp(float(q[i] @ mean[k]) / t + float((q[i] ** 2) @ var[k]) / (2 * t * t))
                    for k in range(3)
                )
            )
            for i in range(4)
        ]
    )
    assert borlan_alignment(q, mean, var, targets, t).item() == pytest.approx(expected, rel=1e-9)


def test_labelled_ce_ignores_unlabelled_samples():
    logits, labels = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    assert labelled_ce(logits, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item())
    partial = torch.tensor([0, -1, 1, -1])
    assert labelled_ce(logits, partial).item() == pytest.approx(
        F.cross_entropy(logits[[0, 2]], labels[[0, 2]]).item()
    )
    none = labelled_ce(logits.requires_grad_(), torch.full((4,), -1))
    assert none.item() == 0.0
    none.backward()  # a batch without labels still has a gradient path (zero)


# ------------------------------------------------------------------------------ splits, paired batches


def _samples(per_class=(10, 6, 3)):
    return [(f"{c}-{i}.jpg", c) for c, n in enumerate(per_class) for i in range(n)]


def test_labelled_split_and_validation_hold_out_are_class_balanced_and_seeded():
    samples = _samples()
    labelled = labelled_indices(samples, 0.5, seed=4)
    assert [sum(samples[i][1] == c for i in labelled) for c in range(3)] == [5, 3, 2]
    assert labelled == labelled_indices(samples, 0.5, seed=4)  # reproducible from the seed
    assert labelled != labelled_indices(samples, 0.5, seed=5)
    held = held_out_indices(samples, labelled, 0.4, seed=4)
    assert set(held) <= set(labelled) and len(held) == 4  # 40% of 10
    per_class = [sum(samples[i][1] == c for i in held) for c in range(3)]
    assert all(abs(k - 0.4 * n) < 1 and k < n for k, n in zip(per_class, [5, 3, 2], strict=True)), per_class
    assert held == held_out_indices(samples, labelled, 0.4, seed=4)
    # few labels (3 per class at 10%): some classes give one image, and every class keeps two
    three_each = _samples((3,) * 10)
    held = held_out_indices(three_each, list(range(30)), 0.1, seed=0)
    assert len(held) == 3 and all(sum(three_each[i][1] == c for i in held) <= 1 for c in range(10))
    # a class keeps at least one labelled image for training: one labelled image gives none
    one_each = labelled_indices(samples, 0.01, seed=0)
    assert held_out_indices(samples, one_each, 0.5, seed=0) == []
    assert held_out_indices(samples, labelled, 0.0, seed=0) == []


def test_paired_batches_are_one_to_one_cycle_the_labelled_images_and_resume_exactly():
    labelled, unlabelled = [0, 1, 2], list(range(3, 13))
    sampler = PairedBatchSampler(labelled, unlabelled, 2, seed=7)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    assert len(epochs[0]) == len(sampler) == 5
    for epoch, batches in enumerate(epochs):
        unlabelled_seen = []
        for batch in batches:
            assert [item in labelled for item, _ in batch] == [True, True, False, False]
            assert all(view_epoch == epoch for item, view_epoch in batch[2:])
            unlabelled_seen += [item for item, _ in batch[2:]]
        assert sorted(unlabelled_seen) == unlabelled  # an epoch is one pass over the unlabelled images
    stream = [item for batches in epochs for batch in batches for item in batch[:2]]
    for cycle in range(len(stream) // 3):  # the labelled images cycle, each cycle a permutation, its own view
        assert sorted(item for item, _ in stream[3 * cycle : 3 * cycle + 3]) == labelled
        assert {view for _, view in stream[3 * cycle : 3 * cycle + 3]} == {cycle}
    # more labelled than unlabelled images (a high labelled fraction): the labelled set drives the epoch
    wide = PairedBatchSampler(list(range(10)), [10, 11], 2, seed=7)
    assert len(wide) == 5 and sorted(i for b in wide for i, _ in b[:2]) == list(range(10))
    assert sorted({i for b in wide for i, _ in b[2:]}) == [10, 11]
    fresh = PairedBatchSampler(labelled, unlabelled, 2, seed=7)
    fresh.set_epoch(2)
    assert list(fresh) == epochs[2]  # a resumed run draws the same batches, with no state saved
    ranks = [PairedBatchSampler(labelled, unlabelled, 1, seed=7, rank=r, world_size=2) for r in range(2)]
    first = [next(iter(r)) for r in ranks]
    assert first[0][1][0] != first[1][1][0]  # the ranks split each permutation
