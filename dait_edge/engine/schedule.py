"""The learning rate of every optimiser step: an optional linear warm-up, then step decay, a cosine or a
linear decay to 0 (DHO's `get_linear_schedule_with_warmup`).

The rate is a pure function of the step's index (`LambdaLR` stepped once per optimiser step), so a resumed
run and every DDP rank (which all take the same number of steps per epoch) follow the same curve exactly.
Step decay depends only on the epoch a step falls in: at the paper's 100 epochs, halved every 30, it is the
epoch-wise StepLR of VL2Lite's code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LRSchedule:
    """How the rate moves over one stage of `epochs` epochs of `steps_per_epoch` steps each."""

    kind: str  # "step", "cosine" or "linear"
    epochs: int
    steps_per_epoch: int
    step_epochs: int = 30  # step: multiply by gamma every step_epochs epochs
    gamma: float = 0.5
    warmup_epochs: int = 0

    def factor(self, step: int) -> float:
        """The multiple of the base rate at optimiser step `step` (0-based, counted over the stage)."""
        per_epoch = max(1, self.steps_per_epoch)
        warmup_steps = min(self.warmup_epochs, self.epochs) * per_epoch
        warm = (step + 1) / warmup_steps if step < warmup_steps else 1.0
        if self.kind == "step":
            return warm * self.gamma ** ((step // per_epoch) // max(1, self.step_epochs))
        if step < warmup_steps:
            return warm
        # cosine / linear over the steps after warm-up: 1 at its first step, near 0 at the stage's last
        progress = (step - warmup_steps) / max(1, self.epochs * per_epoch - warmup_steps)
        if self.kind == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def scheduler(self, optimiser):
        import torch

        return torch.optim.lr_scheduler.LambdaLR(optimiser, self.factor)


def make_optimiser(kind: str, parameters, lr: float, weight_decay: float):
    """The optimiser a recipe names (records.recipe.OPTIMIZERS): AdamW, or SGD with momentum 0.9."""
    import torch

    from dait_edge.records.recipe import SGD_MOMENTUM

    if kind == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    if kind in ("sgd", "sgd-nesterov"):
        return torch.optim.SGD(
            parameters, lr=lr, momentum=SGD_MOMENTUM, weight_decay=weight_decay, nesterov=kind == "sgd-nesterov"
        )
    raise ValueError(f"unknown optimiser {kind!r}")
