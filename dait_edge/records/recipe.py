"""Training recipes: the protocol a run trains with (optimiser, rate, its schedule, batch, training crop).

DAIT's Table 1 compares every method under one protocol (`SHARED`); each baseline's released code trained
with its own. `--recipe shared` trains every method alike (the fair comparison), `--recipe own` (or the
method's name) with the method's own recipe, declared beside its loss (`Distiller.recipe`). A recipe only
fills the settings a run leaves open: an option given on the command line or in a config file wins, and
the manifest records the values used and the recipe's name. Step and warm-up lengths are shares of the
stage's epochs (a method's own recipe trains its one stage, the student's).
"""

from __future__ import annotations

from dataclasses import dataclass

OPTIMIZERS = ("adamw", "sgd", "sgd-nesterov")  # SGD with momentum 0.9 (every released recipe here uses it)
SGD_MOMENTUM = 0.9
# The settings a recipe fills: None in a DistillConfig means "the recipe's".
RECIPE_SETTINGS = (
    "optimizer",
    "lr",
    "weight_decay",
    "batch_size",
    "lr_schedule",
    "lr_step",
    "lr_gamma",
    "warmup_epochs",
    "train_crop",
)
SHARED_RECIPE = "shared"
OWN_RECIPE = "own"


@dataclass(frozen=True)
class TrainingRecipe:
    """One training protocol, in the words of the code it comes from (`source`)."""

    name: str
    source: str  # the released file (and what in it) the values come from
    optimizer: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 32  # per step; DHO's paired batches: this many labelled and as many unlabelled
    lr_schedule: str = "step"  # step, cosine or linear (to 0 at the stage's end)
    lr_step_share: float | None = None  # step decay every this share of the epochs; None: the run's default
    lr_gamma: float = 0.5
    warmup_share: float = 0.0  # linear warm-up over this share of the epochs
    train_crop: str = "resize"  # records.config.parse_train_crop: "resize" or "rrc:MIN_SCALE"

    def settings(self, epochs: int) -> dict:
        """The DistillConfig values of this recipe for a stage of `epochs` epochs."""
        step = None if self.lr_step_share is None else max(1, round(self.lr_step_share * epochs))
        return {
            "optimizer": self.optimizer,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "lr_schedule": self.lr_schedule,
            "lr_step": step,
            "lr_gamma": self.lr_gamma,
            "warmup_epochs": round(self.warmup_share * epochs),
            "train_crop": self.train_crop,
        }

    def describe(self) -> str:
        step = (
            f", x{self.lr_gamma:g} every {self.lr_step_share:.0%} of the epochs"
            if self.lr_schedule == "step" and self.lr_step_share is not None
            else f", x{self.lr_gamma:g} every 30% of the epochs"
            if self.lr_schedule == "step"
            else f", {self.lr_schedule} decay"
        )
        warm = f", {self.warmup_share:.0%} warm-up" if self.warmup_share else ""
        return (
            f"{self.optimizer} lr {self.lr:g} wd {self.weight_decay:g}{step}{warm}, batch {self.batch_size},"
            f" crop {self.train_crop}"
        )


# DAIT's protocol for every method (method.md; VL2Lite's released recipe): what the runs made before
# recipes were a setting trained with, unless they changed a value.
SHARED = TrainingRecipe(
    name=SHARED_RECIPE,
    source="DAIT (method.md): VL2Lite's released recipe, AdamW 1e-4 halved every 30 of 100 epochs",
)
