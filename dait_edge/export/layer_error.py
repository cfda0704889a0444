"""Which layers int8 hurts: the per-tensor quantisation error of a quantised graph, as ONNX Runtime's
`qdq_loss_debug` measures it, mapped to the nodes that produce and consume each tensor.

The quantised graph is built in QDQ form with the artifact's own settings (a QOperator artifact has no
Q/DQ pairs to compare), both it and the float graph are run on calibration images with every
intermediate tensor as an output, and each quantised activation is compared before and after its
Q/DQ pair (the layer's own error) and against the float model (the error accumulated up to it).
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LAYER_SAMPLES = 16  # calibration images the comparison runs on (enough to rank layers; every intermediate
# tensor of both graphs is held for them, so memory grows with this)


@dataclass
class LayerError:
    """One quantised activation: the node that makes it, its error, and what falls back to float for it."""

    node: str
    op: str
    tensor: str
    channel_sqnr_db: (
        float  # the ranking: mean over channels of the SQNR (an outlier channel cannot hide the rest)
    )
    sqnr_db: float  # 10 log10(|x|^2 / |x - q(x)|^2) over the whole activation, x the float model's
    rel_l2: float  # |x - q(x)| / |x|
    xmodel_sqnr_db: float | None  # the same against the float model: the error accumulated up to here
    fallback: list[str] = field(default_factory=list)  # the producer and the consumers that quantise it
    in_float: bool = False


def _sqnr_db(reference: np.ndarray, quantised: np.ndarray) -> tuple[float, float]:
    signal = float(np.sum(reference.astype(np.float64) ** 2))
    noise = float(np.sum((reference.astype(np.float64) - quantised) ** 2))
    rel = math.sqrt(noise / signal) if signal > 0 else (0.0 if noise == 0 else math.inf)
    if noise == 0:
        return math.inf, rel
    return (10 * math.log10(signal / noise) if signal > 0 else -math.inf), rel


CAP_DB = 100.0  # an exact channel counts as 100 dB (no noise)


def _channel_sqnr_db(reference: np.ndarray, quantised: np.ndarray) -> float:
    """Mean over channels (axis 1) of each channel's SQNR, channels without signal left out. A whole-tensor
    SQNR is dominated by the largest channel: a planted 800 in one channel scores 53 dB while the quantiser's
    3.1 step has erased the other seven."""
    if reference.ndim < 2:
        return min(CAP_DB, _sqnr_db(reference.ravel(), quantised.ravel())[0])
    ref = np.moveaxis(reference, 1, 0).reshape(reference.shape[1], -1).astype(np.float64)
    out = np.moveaxis(quantised, 1, 0).reshape(quantised.shape[1], -1).astype(np.float64)
    signal = (ref**2).sum(axis=1)
    noise = ((ref - out) ** 2).sum(axis=1)
    live = signal > 0
    if not live.any():
        return CAP_DB
    ratio = np.where(noise[live] > 0, signal[live] / np.maximum(noise[live], 1e-300), np.inf)
    return float(np.mean(np.minimum(10 * np.log10(ratio), CAP_DB)))


def _fallback(node, producers: dict, consumers: list) -> list[str]:
    """The nodes to keep in float so that `node`'s output is never quantised: the node, the layer a Relu /
    Clip follows (ORT quantises that layer's output in the activation's place), and every consumer that
    would quantise the tensor as its input."""
    nodes = [node.name]
    if node.op_type in ("Relu", "Clip") and node.input and node.input[0] in producers:
        nodes.append(producers[node.input[0]].name)
    return nodes + [c.name for c in consumers if c.name not in nodes]


def _per_sample_shapes(graph) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape without the batch axis, where the pre-processed graph knows it."""
    shapes = {}
    for info in [*graph.value_info, *graph.output]:
        dims = info.type.tensor_type.shape.dim
        rest = [d.dim_value for d in dims[1:]]
        if dims and all(v > 0 for v in rest):
            shapes[info.name] = tuple(rest)
    return shapes


def _batched(arrays: list[np.ndarray], shape: tuple[int, ...] | None) -> np.ndarray:
    if shape is None:
        return np.concatenate([a.ravel() for a in arrays])
    return np.concatenate([a.reshape(-1, *shape) for a in arrays])


def layer_errors(
    prepared: str | Path,
    calibration: np.ndarray,
    options: dict[str, Any],
    exclude: list[str] | tuple[str, ...] = (),
    samples: int = LAYER_SAMPLES,
    ranges: str | Path | None = None,
) -> list[LayerError]:
    """Every quantised activation of `prepared` (the float graph after ORT's pre-processing) quantised with
    `options` (a recipe's [quantize] table) and `exclude` kept in float, worst first (lowest mean channel
    SQNR). `ranges`: the calibrated ranges' cache file (see `quantize_int8`).

    A layer's own error is its Q/DQ pair (the scale and zero point the calibration chose) applied to the
    float model's activation: measured inside the quantised model instead, every layer after a damaged
    one would look damaged too. The accumulated error (`xmodel_sqnr_db`) compares the quantised model's
    dequantised activation with the float one, as ONNX Runtime's qdq_loss_debug does."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    from dait_edge.export.quantize import ArrayCalibrationReader, quantize_int8

    images = calibration[: max(1, samples)]
    with tempfile.TemporaryDirectory(prefix="dait-layers-") as tmp:
        folder = Path(tmp)
        qdq = quantize_int8(
            prepared,
            folder / "qdq.onnx",
            calibration,
            {**options, "format": "QDQ"},
            prepared,
            exclude,
            ranges,
        )
        grids = quantisation_grids(onnx.load(str(qdq), load_external_data=False).graph)
        modify_model_output_intermediate_tensors(str(prepared), str(folder / "float-all.onnx"))
        modify_model_output_intermediate_tensors(str(qdq), str(folder / "qdq-all.onnx"))
        float_acts = collect_activations(str(folder / "float-all.onnx"), ArrayCalibrationReader(images))
        qdq_acts = collect_activations(str(folder / "qdq-all.onnx"), ArrayCalibrationReader(images))
    accumulated = create_activation_matching(qdq_acts, float_acts)

    from dait_edge.export.quantize import float_only_nodes

    always_float = set(float_only_nodes(prepared))  # never quantised: not part of any fallback
    graph = onnx.load(str(prepared), load_external_data=False).graph
    producers = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    shapes = _per_sample_shapes(graph)
    rows = []
    for tensor, grid in grids.items():
        node = producers.get(tensor)
        if node is None or tensor not in float_acts:
            continue  # the graph input (normalised pixels)
        match = accumulated.get(tensor, {})
        post = match.get("post_qdq") if match.get("float") else None
        fallback = [n for n in _fallback(node, producers, consumers[tensor]) if n not in always_float]
        rows.append(_layer_row(node, tensor, grid, float_acts[tensor], post, shapes.get(tensor), fallback))
    return _worst_first(rows)


def _layer_row(node, tensor: str, grid, float_act: list, post_qdq: list | None, shape, fallback: list[str]):
    """One activation's row: its own error (`grid` applied to the float model's activation) and, where the
    quantised model's dequantised activation `post_qdq` is known, the error accumulated up to it."""
    scale, zero_point, low, high = grid
    # the debug graph saves every tensor flattened: restore (N, C, ...) for the per-channel measure
    x = _batched(float_act, shape).astype(np.float64)
    q = (np.clip(np.round(x / scale) + zero_point, low, high) - zero_point) * scale
    sqnr, rel = _sqnr_db(x.ravel(), q.ravel())
    xmodel = None
    if post_qdq:
        post = np.concatenate([a.ravel() for a in post_qdq])
        xmodel = _sqnr_db(x.ravel(), post)[0]
    return LayerError(
        node=node.name,
        op=node.op_type,
        tensor=tensor,
        channel_sqnr_db=round(_channel_sqnr_db(x, q), 3),
        sqnr_db=round(sqnr, 3),
        rel_l2=round(rel, 6),
        xmodel_sqnr_db=None if xmodel is None else round(xmodel, 3),
        fallback=fallback,
    )


def _worst_first(rows: list[LayerError]) -> list[LayerError]:
    return sorted(rows, key=lambda r: (r.channel_sqnr_db, r.sqnr_db, r.node))


def qat_layer_errors(
    qdq: str | Path, float_graph: str | Path, images: np.ndarray, samples: int = LAYER_SAMPLES
) -> list[LayerError]:
    """Every activation a QAT Q/DQ graph quantises, worst first, measured against `float_graph` (the same
    fine-tuned weights exported without their quantisers, so both graphs name their tensors alike). A layer's
    own error is the QuantizeLinear's grid applied to the float activation; the accumulated one compares the
    Q/DQ graph's dequantised activation with it. Nothing falls back: QAT's quantisers are fixed in training."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        modify_model_output_intermediate_tensors,
    )

    from dait_edge.export.quantize import ArrayCalibrationReader

    chosen = images[: max(1, samples)]
    with tempfile.TemporaryDirectory(prefix="dait-qat-layers-") as tmp:
        folder = Path(tmp)
        modify_model_output_intermediate_tensors(str(float_graph), str(folder / "float-all.onnx"))
        modify_model_output_intermediate_tensors(str(qdq), str(folder / "qdq-all.onnx"))
        float_acts = collect_activations(str(folder / "float-all.onnx"), ArrayCalibrationReader(chosen))
        qdq_acts = collect_activations(str(folder / "qdq-all.onnx"), ArrayCalibrationReader(chosen))
    qdq_graph = onnx.load(str(qdq), load_external_data=False).graph
    dequantised = {n.input[0]: n.output[0] for n in qdq_graph.node if n.op_type == "DequantizeLinear"}
    casts = {n.output[0]: n.input[0] for n in qdq_graph.node if n.op_type in ("Cast", "Identity")}
    graph = onnx.load(str(float_graph), load_external_data=False).graph
    producers = {output: node for node in graph.node for output in node.output}
    shapes = _per_sample_shapes(graph)
    rows: dict[str, LayerError] = {}
    for tensor, grid, quantised in _activation_grids(qdq_graph):
        while tensor not in producers and tensor in casts:  # a quantiser's own cast of a float tensor
            tensor = casts[tensor]
        node = producers.get(tensor)
        if node is None or tensor not in float_acts:
            continue  # the graph input, or a tensor the float graph names otherwise
        post = qdq_acts.get(dequantised.get(quantised, ""))
        row = _layer_row(node, tensor, grid, float_acts[tensor], post, shapes.get(tensor), [])
        if tensor not in rows or row.channel_sqnr_db < rows[tensor].channel_sqnr_db:
            rows[tensor] = row  # one tensor quantised for several consumers: its worst grid
    return _worst_first(list(rows.values()))


def _activation_grids(qdq_graph):
    """(float tensor, (scale, zero point, lowest, highest code), quantised tensor) for each per-tensor
    QuantizeLinear, its scale an initializer or a Constant (the TorchScript exporter writes both)."""
    import onnx

    values = {i.name: onnx.numpy_helper.to_array(i) for i in qdq_graph.initializer}
    for node in qdq_graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    for node in qdq_graph.node:
        scale = values.get(node.input[1]) if node.op_type == "QuantizeLinear" else None
        if scale is None or scale.size != 1:
            continue  # per-channel: weights, not activations
        zero = values.get(node.input[2]) if len(node.input) > 2 else None
        info = np.iinfo(zero.dtype if zero is not None else np.dtype(np.uint8))
        grid = (float(scale), int(zero) if zero is not None else 0, int(info.min), int(info.max))
        yield node.input[0], grid, node.output[0]


def quantisation_grids(qdq_graph) -> dict[str, tuple[float, int, int, int]]:
    """Each activation's (scale, zero point, lowest and highest code) from the QDQ graph's QuantizeLinear
    nodes, by the float graph's tensor name (ORT renames a graph output's input `<name>_QuantizeLinear_Input`)."""
    return {
        tensor.removesuffix("_QuantizeLinear_Input"): grid for tensor, grid, _ in _activation_grids(qdq_graph)
    }


def quantisable_nodes(prepared: str | Path) -> int:
    """How many nodes of `prepared` carry quantised activations (the fallback cap's base)."""
    import onnx

    graph = onnx.load(str(prepared), load_external_data=False).graph
    quantised = {
        "Conv",
        "Gemm",
        "MatMul",
        "Add",
        "Mul",
        "Relu",
        "Clip",
        "GlobalAveragePool",
        "MaxPool",
        "AveragePool",
        "Concat",
        "Sigmoid",
        "HardSigmoid",
        "Resize",
        "Reshape",
        "Transpose",
        "Flatten",
        "Split",
        "Softmax",
    }
    return sum(1 for node in graph.node if node.op_type in quantised)


def layer_table_csv(rows: list[LayerError]) -> str:
    """The per-layer error table, worst first: what `<artifact>.layers.csv` holds."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["rank", "node", "op", "tensor", "channel_sqnr_db", "sqnr_db", "rel_l2", "xmodel_sqnr_db", "in_float"]
    )
    for rank, row in enumerate(rows, 1):
        writer.writerow(
            [
                rank,
                row.node,
                row.op,
                row.tensor,
                row.channel_sqnr_db,
                row.sqnr_db,
                row.rel_l2,
                "" if row.xmodel_sqnr_db is None else row.xmodel_sqnr_db,
                int(row.in_float),
            ]
        )
    return out.getvalue()
