"""The contract every distillation method keeps (mdistiller's Distiller, timm's TrainingTask).

A method is an nn.Module built from a student and a `MethodContext` (the teachers, the VLM provider and
options it may need). `forward(batch, step)` takes a `methods.batch.Batch` (pixels, labels, global indices,
views, labelled mask, cached teacher outputs) and a `Step` (epoch, step, alpha), and returns
`{"loss": ..., "logits": ..., "loss_<term>": ...}`. VLM outputs come from `context.vlm`, a
`vlm.provider.VLMProvider` (the live VLM or its embedding cache; the method cannot tell). Adapters and
projection heads live inside the method, so the optimiser and DDP see them; frozen teachers stay in eval
mode whatever `train()` says and never receive gradients. Only `student` is exported.

A method also says, as class attributes, what the run must prepare for it: which teachers
(`requirements(options)`), whether unlabelled images serve it (`learns_from_unlabelled`), whether it wants
one labelled and one unlabelled batch per step (`paired_batches`), and which student it trains
(`wrap_student`: DHO's has two heads). `calibrate` fits inference-time settings on validation images
at every epoch's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dait_edge.errors import UserError
from dait_edge.losses.supervised import labelled_ce
from dait_edge.methods.batch import Batch, Step
from dait_edge.records.recipe import OWN_RECIPE, SHARED, SHARED_RECIPE, TrainingRecipe
from dait_edge.registry import Registry

METHODS: Registry[type[Distiller]] = Registry("method")
CONTEXT_FIELD = {"teacher": "teacher", "task_teacher": "teacher", "vlm": "vlm"}  # requirement -> context


def register_method(name: str, description: str = "", aliases: tuple[str, ...] = ()):
    return METHODS.register(name, description, aliases)


def validation_fraction(method: str, given: float | None) -> float:
    """The share of labelled images held out for validation: `given` (--val-fraction, one default for every
    method), else, for manifests written before it was one setting (None), the method's default of that time
    (DHO held 0.1 out; the others none; an unregistered method, e.g. an untrained run, none)."""
    if given is not None:
        return given
    return METHODS.get(method).default_val_fraction if method in METHODS else 0.0


def owned_settings() -> frozenset[str]:
    """Every run setting that some registered method declares as its own (`Distiller.own_settings`)."""
    return frozenset().union(*(METHODS.get(name).own_settings for name in METHODS))


def settings_of_other_methods(method: str) -> frozenset[str]:
    """Run settings that some method reads but `method` does not: they cannot change what its run computed."""
    return owned_settings() - (METHODS.get(method).own_settings if method in METHODS else frozenset())


def recipes() -> dict[str, TrainingRecipe]:
    """Every training recipe by name: the shared one and each method's own (`Distiller.recipe`)."""
    own = {name: METHODS.get(name).recipe for name in METHODS if METHODS.get(name).recipe is not None}
    return {SHARED_RECIPE: SHARED, **own}


def training_recipe(name: str, method: str) -> TrainingRecipe:
    """The recipe --recipe `name` gives a run of `method`: shared, own (the method's, else the shared one:
    DAIT's own protocol is the shared one) or any method's by its name."""
    known = recipes()
    if name == OWN_RECIPE:
        return known.get(method, SHARED)
    if name in METHODS and name not in known:  # a method without a recipe of its own trains with shared
        return SHARED
    if name not in known:
        raise UserError(
            f"unknown recipe {name!r}; use shared, own, or one of {', '.join(sorted(known))}"
            " (`dait-edge list recipes`).",
            setting="recipe",
        )
    return known[name]


@dataclass
class MethodContext:
    """What a method may draw on. Which fields must be set is in the method's `needs`."""

    num_classes: int
    input_mean: Sequence[float]  # normalisation of the batches the student sees
    input_std: Sequence[float]
    tau: float = 2.0
    teacher: nn.Module | None = None  # the frozen intermediate teacher (stage 2) or a task teacher (KD, RKD)
    vlm: nn.Module | None = None  # a VLMProvider: image and class-text embeddings (stage 1, VLM baselines)
    options: dict[str, Any] = field(default_factory=dict)


class Distiller(nn.Module):
    """Base class: holds the student and the frozen teachers; subclasses add their terms."""

    # What the run prepares: "teacher" (DAIT's intermediate teacher: stage 1 runs first), "task_teacher" (a
    # checkpoint fine-tuned on the task, --kd-teacher FILE) and/or "vlm" (the VLM provider).
    needs: frozenset[str] = frozenset()
    stage: int = 2  # 1: trains the intermediate teacher from the VLM; 2: trains the student
    learns_from_unlabelled: bool = True  # has distillation terms: unlabelled images are trained on
    paired_batches: bool = False  # one labelled and one unlabelled batch per step (DHO)
    text_gaussian: bool = False  # needs the per-class Gaussian of the template embeddings (BorLan)
    anchor_phrases: tuple[str, ...] = ()  # needs "a {phrase} of a {class}" embedded per class (RISE's RD)
    teacher_choice: bool = False  # the teacher is the VLM or a task checkpoint (--kd-teacher)
    student_head: str = "linear"  # the head of the student `wrap_student` builds (models.heads: dual, projected)
    default_val_fraction: float = 0.0  # what a manifest without --val-fraction (None) held out: older runs
    own_settings: frozenset[str] = frozenset()  # run settings only this method reads (DAIT-F's sra_form)
    recipe: TrainingRecipe | None = None  # how its released code trains (--recipe own); None: the shared one

    def __init__(self, student: nn.Module, context: MethodContext):
        super().__init__()
        self.student = student
        self.context_tau = context.tau
        missing = [
            name
            for name in self.requirements(context.options)
            if getattr(context, CONTEXT_FIELD[name]) is None
        ]
        if missing:
            raise ValueError(f"{type(self).__name__} needs {', '.join(missing)} in its context")
        self._frozen: list[nn.Module] = []

    @classmethod
    def requirements(cls, options: dict[str, Any]) -> frozenset[str]:
        """What this method needs with these options (KD's teacher is the VLM or a task checkpoint)."""
        return cls.needs

    @classmethod
    def wrap_student(cls, student: nn.Module, context: MethodContext) -> nn.Module:
        """The model this method trains and exports, built around the plain student (DHO adds a head, RISE
        a text-initialised projection head); its kind is `student_head` (models.heads)."""
        return student

    def before_epoch(self, views, epoch: int, loader) -> None:
        """At the start of every training epoch, before its first step: `views` are the training views,
        `loader(keys)` a DataLoader of `Batch`es of the (position, epoch) keys given, in order. BorLan
        relabels its unlabelled images here; most methods do nothing."""

    def calibrate(self, validation, device: torch.device) -> dict[str, float]:
        """Fit inference-time settings on `validation` (batches of (images, labels, ...)), store them in the
        student and return them; the trainer calls it at every epoch's end, before the epoch is scored. Most
        methods have none."""
        return {}

    def calibration(self) -> dict[str, float]:
        """The inference-time settings the student holds now (for the run summary)."""
        return {}

    @staticmethod
    def ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the labelled samples (label -1: unlabelled, no CE)."""
        return labelled_ce(logits, labels)

    def freeze(self, module: nn.Module) -> nn.Module:
        """Mark `module` as a frozen teacher: no gradients, always eval mode."""
        for param in module.parameters():
            param.requires_grad_(False)
        module.eval()
        self._frozen.append(module)
        return module

    def frozen_modules(self) -> list[nn.Module]:
        """The frozen teachers (`freeze`): the trainer keeps them out of DDP and training checkpoints."""
        return list(self._frozen)

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    @staticmethod
    def distils(alpha: float) -> bool:
        """False once alpha reaches 1: the distillation terms then weigh nothing, so methods skip the
        teachers' forward passes and return `labels_only` (the loss and every gradient are the same)."""
        return alpha < 1.0

    def labels_only(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The outputs at alpha = 1: cross-entropy alone. The training-only modules (adapters, MLPs) enter
        the loss with weight 0, so they get zero gradients as when their terms were computed at weight 0:
        AdamW steps them alike, and DDP sees a gradient for every parameter it reduces."""
        loss_ce = labelled_ce(logits, labels)
        idle = [
            p for name, p in self.named_parameters() if p.requires_grad and not name.startswith("student.")
        ]
        anchor = torch.stack([p.sum() for p in idle]).sum() if idle else loss_ce.new_zeros(())
        return {"loss": loss_ce + 0.0 * anchor, "logits": logits, "loss_ce": loss_ce}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Student and adapters; frozen teachers are not saved in training checkpoints."""
        frozen = self.frozen_modules()
        frozen_ids = {id(t) for module in frozen for t in (*module.parameters(), *module.buffers())}
        return {k: v for k, v in self.state_dict(keep_vars=True).items() if id(v) not in frozen_ids}

    def forward(self, batch: Batch, step: Step) -> dict[str, torch.Tensor]:
        raise NotImplementedError
