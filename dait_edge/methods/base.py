"""The contract every distillation method keeps (mdistiller's Distiller, timm's TrainingTask).

A method is an nn.Module built from a student and a `MethodContext` (the teachers, the VLM provider and
options it may need). `forward(batch, step)` takes an `engine.batch.Batch` (pixels, labels, global indices,
views, labelled mask, cached teacher outputs) and a `Step` (epoch, step, alpha), and returns
`{"loss": ..., "logits": ..., "loss_<term>": ...}`. VLM outputs come from `context.vlm`, a
`vlm.provider.VLMProvider` (the live VLM or its embedding cache; the method cannot tell). Adapters and
projection heads live inside the method, so the optimiser and DDP see them; frozen teachers stay in eval
mode whatever `train()` says and never receive gradients. Only `student` is exported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dait_edge.engine.batch import Batch, Step
from dait_edge.registry import Registry

METHODS: Registry[type[Distiller]] = Registry("method")


def register_method(name: str, description: str = "", aliases: tuple[str, ...] = ()):
    return METHODS.register(name, description, aliases)


@dataclass
class MethodContext:
    """What a method may draw on. Which fields must be set is in the method's `needs`."""

    num_classes: int
    input_mean: Sequence[float]  # normalisation of the batches the student sees
    input_std: Sequence[float]
    tau: float = 2.0
    teacher: nn.Module | None = None  # the frozen intermediate teacher (stage 2)
    vlm: nn.Module | None = None  # a VLMProvider: image and class-text embeddings (stage 1, VLM baselines)
    options: dict[str, Any] = field(default_factory=dict)


class Distiller(nn.Module):
    """Base class: holds the student and the frozen teachers; subclasses add their terms."""

    needs: frozenset[str] = frozenset()  # subset of {"teacher", "vlm"}
    stage: int = 2  # 1: trains the intermediate teacher from the VLM; 2: trains the student

    def __init__(self, student: nn.Module, context: MethodContext):
        super().__init__()
        self.student = student
        self.context_tau = context.tau
        missing = [name for name in self.needs if getattr(context, name) is None]
        if missing:
            raise ValueError(f"{type(self).__name__} needs {', '.join(missing)} in its context")
        self._frozen: list[nn.Module] = []

    def freeze(self, module: nn.Module) -> nn.Module:
        """Mark `module` as a frozen teacher: no gradients, always eval mode."""
        for param in module.parameters():
            param.requires_grad_(False)
        module.eval()
        self._frozen.append(module)
        return module

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
        loss_ce = F.cross_entropy(logits.float(), labels)
        idle = [
            p for name, p in self.named_parameters() if p.requires_grad and not name.startswith("student.")
        ]
        anchor = torch.stack([p.sum() for p in idle]).sum() if idle else loss_ce.new_zeros(())
        return {"loss": loss_ce + 0.0 * anchor, "logits": logits, "loss_ce": loss_ce}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Student and adapters; frozen teachers are not saved in training checkpoints."""
        frozen_ids = {id(p) for module in self._frozen for p in module.parameters()}
        frozen_ids |= {id(b) for module in self._frozen for b in module.buffers()}
        return {k: v for k, v in self.state_dict(keep_vars=True).items() if id(v) not in frozen_ids}

    def forward(self, batch: Batch, step: Step) -> dict[str, torch.Tensor]:
        raise NotImplementedError
