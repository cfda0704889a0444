"""Relational knowledge distillation (Park et al., CVPR 2019): match the geometry of a batch.

The student and teacher embeddings may have different widths: only distances and angles within each
space are compared, never the embeddings themselves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _pairwise_distances(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(B, B) Euclidean distances, exact zeros on the diagonal."""
    squared = x.pow(2).sum(dim=1)
    product = x @ x.t()
    distances = (squared.unsqueeze(0) + squared.unsqueeze(1) - 2 * product).clamp(min=eps).sqrt()
    distances = distances.clone()
    distances[range(len(x)), range(len(x))] = 0
    return distances


def _normalised_distances(x: torch.Tensor) -> torch.Tensor:
    """Distances divided by the mean of the non-zero ones: the loss ignores the spaces' scales."""
    distances = _pairwise_distances(x)
    positive = distances[distances > 0]
    mean = positive.mean() if positive.numel() else distances.new_ones(())
    return distances / mean


def _angles(x: torch.Tensor) -> torch.Tensor:
    """(B, B, B) cosines of the angle at i between the unit difference vectors to j and k."""
    differences = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2)  # [i, j] = norm(x_j - x_i)
    return torch.bmm(differences, differences.transpose(1, 2))


def rkd_loss(
    student_emb: torch.Tensor, teacher_emb: torch.Tensor, w_dist: float = 25.0, w_angle: float = 50.0
) -> torch.Tensor:
    """w_dist * smoothL1(psi_D(S), psi_D(T)) + w_angle * smoothL1(psi_A(S), psi_A(T)), means over pairs and
    triplets; psi_D the pairwise distances over their mean, psi_A the cosines of the triplet angles.
    Computed in fp32 (under autocast too). The teacher side takes no gradient."""
    with torch.autocast(student_emb.device.type, enabled=False):
        student, teacher = student_emb.float().flatten(1), teacher_emb.float().flatten(1).detach()
        with torch.no_grad():
            teacher_dist = _normalised_distances(teacher)
            teacher_angle = _angles(teacher)
        loss_dist = F.smooth_l1_loss(_normalised_distances(student), teacher_dist)
        loss_angle = F.smooth_l1_loss(_angles(student), teacher_angle)
        return w_dist * loss_dist + w_angle * loss_angle
