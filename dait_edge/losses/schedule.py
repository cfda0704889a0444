"""The alpha schedule that moves the weight from distillation to cross-entropy over training."""

from __future__ import annotations


def alpha_at(epoch: int, rate: float, bias: float = 0.0) -> float:
    """alpha(e) = clip(rate * e + bias, 0, 1), e the 0-based epoch (method.md, Eq. 11)."""
    return float(min(1.0, max(0.0, rate * epoch + bias)))


def default_alpha_rate(epochs: int) -> float:
    """VL2Lite's default: alpha reaches 1/8 at the last epoch (k = 1 / (8 * epochs))."""
    return 1.0 / (8.0 * max(1, epochs))
