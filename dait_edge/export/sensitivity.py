"""Which activations int8 hurts the predictions through: each quantised activation on its own, and all but
the most sensitive, measured by their effect on the model's output (NNCF's accuracy control ranks by that
effect; `layer_error` ranks by each layer's own error, which says nothing of what follows the layer).

The quantised graph's own grids (scale, zero point) are applied as QuantizeLinear/DequantizeLinear pairs on
chosen tensors of the float graph (fake quantisation), so one activation can be quantised alone. On the
float graph with every grid applied this reproduces the int8 artifact's predictions (the demo's
EfficientNet-B0: 16.7% agreement with fp32 either way); weights and the input pixels stay float, and
`tools/int8_sensitivity.py` measures the real artifact beside it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np


@dataclass
class Sensitivity:
    """One activation quantised alone: how far the logits move and how many predictions change."""

    tensor: str
    node: str
    op: str
    logit_error_rms: float
    agreement: float  # % of images predicted as fp32 predicts them


def fake_quantised(model, grids: dict[str, tuple[float, int, int, int]], tensors):
    """A copy of the ONNX `model` with each of `tensors` quantised and dequantised on its grid right after
    its producer, every consumer reading the dequantised copy (nodes stay in topological order)."""
    from onnx import helper, numpy_helper

    out = copy.deepcopy(model)
    graph = out.graph
    chosen = [t for t in tensors if t in grids]
    renamed = {t: f"{t}__fq" for t in chosen}
    nodes = []
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
        nodes.append(node)
        for name in node.output:
            if name not in renamed:
                continue
            scale, zero_point, low, _ = grids[name]
            dtype = np.uint8 if low == 0 else np.int8
            graph.initializer.extend(
                [
                    numpy_helper.from_array(np.array(scale, np.float32), f"{name}__fq_scale"),
                    numpy_helper.from_array(np.array(zero_point, dtype), f"{name}__fq_zero"),
                ]
            )
            q = [f"{name}__fq_scale", f"{name}__fq_zero"]
            nodes.append(helper.make_node("QuantizeLinear", [name, *q], [f"{name}__fq_q"]))
            nodes.append(helper.make_node("DequantizeLinear", [f"{name}__fq_q", *q], [renamed[name]]))
    for output in graph.output:  # a quantised graph output (the logits) is read in float, as before
        if output.name in renamed:
            output.name = renamed[output.name]
    del graph.node[:]
    graph.node.extend(nodes)
    return out


def logits_of(model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Run an in-memory ONNX model on the CPU without graph rewrites (a fused Q/DQ pair would not be the
    fake quantisation asked for)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate(
        [session.run(None, {name: images[i : i + batch]})[0] for i in range(0, len(images), batch)]
    )


def compare(reference: np.ndarray, logits: np.ndarray) -> tuple[float, float]:
    """(logit error rms, % agreement of the predictions) against the float model's logits."""
    error = float(np.sqrt(np.mean((logits.astype(np.float64) - reference) ** 2)))
    return round(error, 4), round(float((logits.argmax(1) == reference.argmax(1)).mean() * 100), 3)


def median_margin(logits: np.ndarray) -> float:
    """The median over images of the top logit minus the runner-up: how far a prediction is from flipping."""
    if logits.shape[1] < 2:
        return 0.0
    ordered = np.sort(logits, axis=1)
    return round(float(np.median(ordered[:, -1] - ordered[:, -2])), 4)


def activation_sensitivity(
    model, grids, images: np.ndarray, reference: np.ndarray, log=None
) -> list[Sensitivity]:
    """Every activation with a grid (`layer_error.quantisation_grids` of the QDQ graph made from `model`),
    quantised alone in the float ONNX `model`, against `reference` (the float model's logits on `images`),
    most sensitive first (largest logit error, then lowest agreement). `log(done, total)` is called after
    each (a progress bar: one inference session per activation)."""
    producers = {output: node for node in model.graph.node for output in node.output}
    rows = []
    tensors = [t for t in grids if t in producers]
    for index, tensor in enumerate(tensors):
        error, agreement = compare(reference, logits_of(fake_quantised(model, grids, [tensor]), images))
        node = producers[tensor]
        rows.append(Sensitivity(tensor, node.name, node.op_type, error, agreement))
        if log is not None:
            log(index + 1, len(tensors))
    rows.sort(key=lambda r: (-r.logit_error_rms, r.agreement, r.tensor))
    return rows
