"""What lowering a student for an on-device runtime hands on (export/mobile.py, mobile_int8.py): the `Backend`
contract each runtime implements, the `Lowered` facts (delegation, I/O types) that go into the sidecar, and
the delegation check every file passes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dait_edge.errors import UserError
from dait_edge.export.recipes import Recipe


@dataclass
class Lowered:
    """What lowering reported: the delegation summary (sidecar `delegation`), and the file's I/O types."""

    delegation: dict[str, Any]
    io: dict[str, Any] | None = None


@dataclass
class MobileBuilt:
    lowered: Lowered
    int8: Any = None  # build.Int8Built for int8 files, else None
    quantizer: dict[str, Any] = field(default_factory=dict)  # the quantiser's settings, for the sidecar
    plain_test_logits: np.ndarray | None = None  # all modules quantised, where modules went back to float


class Backend:
    """One on-device runtime: how to lower to its file, its int8 quantiser, how to run the file."""

    kind = ""
    suffix = ""
    runtime = ""  # the runner that profiles the file (profiling/runners/)
    fold_quantize = True  # convert_pt2e's folding of quantised weights (litert-torch wants them unfolded)

    def require(self) -> None:
        raise NotImplementedError

    def quantizer(self, per_channel: bool):
        raise NotImplementedError

    def write(self, module, example, dst: Path, quantizer=None) -> Lowered:
        raise NotImplementedError

    def load(self, path: Path):
        """The file in its runtime: an object with `run(image)` and `logits(images)` (float in, float out)."""
        raise NotImplementedError


def check_delegation(recipe: Recipe, lowered: Lowered, log) -> str | None:
    """A warning naming the ops the delegate did not take (None: all delegated); an error instead where the
    recipe requires full delegation."""
    ops = lowered.delegation.get("undelegated_ops") or {}
    if not ops:
        return None
    listed = ", ".join(f"{name} x{count}" for name, count in ops.items())
    where = "ExecuTorch's portable kernels" if recipe.kind == "executorch" else "LiteRT's builtin kernels"
    if recipe.lowering.get("require_full_delegation", False):
        raise UserError(
            f"{recipe.name}: ops not delegated to XNNPACK ({listed}) would run on {where}; the recipe requires"
            f" full delegation ({recipe.path}): set require_full_delegation = false to keep such a file."
        )
    message = f"warning: {recipe.name}: ops not delegated to XNNPACK run on {where}: {listed}"
    log(message)
    return message
