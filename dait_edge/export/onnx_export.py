"""PyTorch student -> ONNX fp32, checked by onnx.checker before anything else touches it."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from dait_edge.errors import UserError

if TYPE_CHECKING:
    from torch import nn

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_size: tuple[int, int, int] | list[int],
    *,
    opset: int = 18,
    exporter: str = "torchscript",
    dynamic_batch: bool = True,
) -> Path:
    """Export `model` (eval mode, on the CPU) to `path`: input `input` (B,C,H,W), output `logits`."""
    import onnx
    import torch

    from dait_edge.export.graph_passes import spatial_mean_to_global_pool

    model = model.eval().cpu()
    dummy = torch.zeros(2, *input_size)  # batch 2, so nothing specialises on a batch of 1
    path = Path(path)
    with warnings.catch_warnings(), torch.no_grad(), _opset_errors(opset):
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice, on every export
        if exporter == "torchscript":
            # The TorchScript exporter (dynamo=False) still works in torch 2.14 and is the robust path
            # for timm / torchvision CNNs: plain ops, no onnxscript functions, dynamic_axes for batch.
            torch.onnx.export(
                model,
                (dummy,),
                str(path),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None,
                opset_version=opset,
                do_constant_folding=True,
            )
        elif exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=4096) if dynamic_batch else None
            program = torch.onnx.export(
                model,
                (dummy,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},) if dynamic_batch else None,
                opset_version=opset,
                external_data=False,
            )
            program.save(str(path))
        else:
            raise UserError(f"unknown exporter {exporter!r}; use 'torchscript' or 'dynamo' in the recipe.")
    graph = onnx.load(str(path))
    if spatial_mean_to_global_pool(graph):  # lets int8 keep squeeze-excite blocks quantised
        onnx.save(graph, str(path))
    # full_check runs strict shape inference too: a graph ORT or TensorRT would reject fails here.
    onnx.checker.check_model(str(path), full_check=True)
    return path


@contextlib.contextmanager
def _opset_errors(opset: int | None):
    """torch.onnx's refusal of an opset it cannot write, as a one-line error naming the setting."""
    try:
        yield
    except (RuntimeError, ValueError) as err:
        if "opset" not in str(err).lower():
            raise
        from dait_edge.errors import UserError

        raise UserError(
            f"torch.onnx cannot export opset {opset} ({str(err).splitlines()[0]}); pick another opset (17 or 18"
            " work with every recipe).",
            setting="opset",
        ) from None
