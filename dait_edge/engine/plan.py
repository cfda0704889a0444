"""The records a training stage is described by and ends with: its plan, its files, its result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dait_edge.losses.schedule import default_alpha_rate
from dait_edge.records import EpochMetrics


@dataclass
class StagePlan:
    """The recipe of one training stage."""

    stage: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    lr_step: int
    lr_gamma: float
    alpha_rate: float | None
    alpha_bias: float
    seed: int
    workers: int = 0
    eval_batch_size: int = 64
    log_every: int = 25  # steps between reads of the loss sums (each read waits for the device)
    sync_bn: bool = False  # DDP: BatchNorm statistics over the global batch (small per-GPU batches)
    lr_schedule: str = "step"
    warmup_epochs: int = 0
    optimizer: str = "adamw"  # records.recipe.OPTIMIZERS

    @property
    def rate(self) -> float:
        return self.alpha_rate if self.alpha_rate is not None else default_alpha_rate(self.epochs)


@dataclass
class FitResult:
    """What one stage's training ended with: the last epoch's metrics, the epoch best on validation (and
    its test top-1), the time. Without validation images no epoch is called best (None)."""

    last: EpochMetrics | None  # None when no epoch has finished
    best_top1: float | None  # the test top-1 of the best epoch on validation
    best_epoch: int | None
    seconds: float
    best_val_top1: float | None = None


@dataclass
class StageFiles:
    """Where one stage writes: resume state, the trained model's last and best weights."""

    state: Path
    last_weights: Path
    best_weights: Path
