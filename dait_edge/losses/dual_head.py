"""DHO's inference rule: one prediction from the CE head and the KD head (method.md)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dho_combine(z_ce: torch.Tensor, z_kd: torch.Tensor, a: float | torch.Tensor, b: float | torch.Tensor):
    """p = a softmax(z_ce) + (1 - a) softmax(z_kd / b), returned as log p.

    log p = logaddexp(log a + log_softmax(z_ce), log(1 - a) + log_softmax(z_kd / b)): finite in fp16 (no
    probability underflows to 0 before the log), and still logits (argmax and softmax see p). a = 0 or 1
    selects one head (log 0 = -inf only on the unused side; logaddexp keeps the other finite).
    """
    a = torch.as_tensor(a, dtype=z_ce.dtype, device=z_ce.device)
    b = torch.as_tensor(b, dtype=z_kd.dtype, device=z_kd.device)
    log_ce = F.log_softmax(z_ce, dim=-1) + torch.log(a)
    log_kd = F.log_softmax(z_kd / b, dim=-1) + torch.log(1.0 - a)
    # logaddexp written out: the TorchScript ONNX exporter has no logaddexp (nor log1p)
    top = torch.maximum(log_ce, log_kd)
    return top + torch.log(torch.exp(log_ce - top) + torch.exp(log_kd - top))


# The grid DHO's official code searches on its validation split (train_others.py `evaluate`):
# alpha_range = np.arange(0, 1.05, 0.05), beta_range = [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 4.0].
DHO_A_GRID = tuple(round(0.05 * i, 2) for i in range(21))
DHO_B_GRID = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 4.0)
DHO_START = (0.0, 1.0, 0.0)  # its best_alpha, best_beta, best_acc before the search


def choose_combination(
    z_ce: torch.Tensor, z_kd: torch.Tensor, labels: torch.Tensor
) -> tuple[float, float, float]:
    """(a, b, top-1 in %) maximising top-1 of `dho_combine` on validation logits, searched as DHO's code
    does: b in the outer loop, a in the inner one, a pair replaces the best only when strictly better, from
    (a 0, b 1, top-1 0). On a small validation split many pairs tie; the order decides which wins."""
    best = DHO_START
    z_ce, z_kd = z_ce.float(), z_kd.float()
    for b in DHO_B_GRID:
        for a in DHO_A_GRID:
            predictions = dho_combine(z_ce, z_kd, a, b).argmax(dim=-1)
            top1 = 100.0 * (predictions == labels).float().mean().item()
            if top1 > best[2]:
                best = (a, b, top1)
    return best
