"""Static int8 quantisation with ONNX Runtime's quantiser, calibrated on preprocessed images.

Two variants, set by the recipe's [quantize] table:
  u8s8  uint8 activations (asymmetric) / int8 weights: ORT's fast x86 CPU kernels.
  s8s8  symmetric Q/DQ, int8 activations and weights, zero points 0: what TensorRT consumes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from dait_edge.errors import UserError


def cpu_has_vnni() -> bool:
    """AVX-VNNI / AVX512-VNNI do u8s8 dot products in 32 bits; without them AVX2 can saturate."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # not Linux x86 (ARM, macOS): the saturation issue is x86-AVX2 specific
    return "avx512_vnni" in flags or "avx_vnni" in flags or "avx2" not in flags


class ArrayCalibrationReader:
    """Feeds ORT's calibrator one preprocessed image batch at a time."""

    def __init__(self, images: np.ndarray, input_name: str = "input", batch: int = 16):
        self._batches = [images[i : i + batch] for i in range(0, len(images), batch)]
        self._input_name = input_name
        self._index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._index >= len(self._batches):
            return None
        self._index += 1
        return {self._input_name: np.ascontiguousarray(self._batches[self._index - 1], dtype=np.float32)}

    def rewind(self) -> None:
        self._index = 0

    def __iter__(self):  # qdq_loss_debug.collect_activations iterates the reader
        self.rewind()
        return iter(self.get_next, None)


def prepare_for_quantization(src: str | Path, dst: str | Path) -> Path:
    """ORT's pre-processing (symbolic shape inference, BatchNorm and constant folding): it fills value_info so
    the quantiser sees every tensor's shape. Both int8 variants start from the same prepared graph."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    return Path(dst)


CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
DEFAULT_PERCENTILE = 99.999  # ONNX Runtime's own default cut


def calibration_name(ort_name: str) -> str | None:
    """The `--calibration` name of an ONNX Runtime CalibrationMethod name (None for one not offered here)."""
    return next((name for name, ort in CALIBRATION_METHODS.items() if ort == ort_name), None)


def quantize_int8(
    src: str | Path,
    dst: str | Path,
    calibration: np.ndarray,
    options: dict[str, Any],
    prepared: str | Path | None = None,
    exclude: list[str] | tuple[str, ...] = (),
    ranges: str | Path | None = None,
) -> Path:
    """Quantise `src` statically into `dst`; `prepared` is `src` after `prepare_for_quantization`
    (made here, in a temp folder, when not given). `exclude` names nodes of the prepared graph to keep in
    float (the accuracy search's fallback).

    `ranges`: a file for the calibrated tensor ranges (ONNX Runtime's `calibration_cache_path`): the first
    call writes it, later ones with the same calibration images and method read it instead of running the
    calibration again. The ranges do not depend on `exclude` or the format, so every step of the accuracy
    search shares one file per calibration. Ignored by ONNX Runtime versions without the cache."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if len(calibration) == 0:
        raise UserError(
            "int8 export needs calibration images and got none; calibrate on at least one image.",
            setting="calib_samples",
        )
    try:
        quant_format = QuantFormat[options.get("format", "QDQ")]
        activation_type = QuantType[options.get("activation_type", "QInt8")]
        weight_type = QuantType[options.get("weight_type", "QInt8")]
        method = CalibrationMethod[options.get("calibrate_method", "MinMax")]
    except KeyError as err:
        raise UserError(
            f"int8 recipe: unknown quantiser setting {err.args[0]!r}; fix the [quantize] table."
        ) from err
    reduce_range = options.get("reduce_range", False)
    if reduce_range == "auto":
        reduce_range = (
            activation_type == QuantType.QUInt8 and weight_type == QuantType.QInt8 and not cpu_has_vnni()
        )
    extra = {
        "ActivationSymmetric": bool(options.get("activation_symmetric", False)),
        "WeightSymmetric": bool(options.get("weight_symmetric", True)),
        "CalibPercentile": float(options.get("percentile", DEFAULT_PERCENTILE)),
    }
    with tempfile.TemporaryDirectory(prefix="dait-quant-") as tmp, _quiet_quantiser():
        if prepared is None:
            prepared = prepare_for_quantization(src, Path(tmp) / "prepared.onnx")
        quantize_static(
            str(prepared),
            str(dst),
            ArrayCalibrationReader(calibration),
            quant_format=quant_format,
            per_channel=bool(options.get("per_channel", True)),
            reduce_range=bool(reduce_range),
            activation_type=activation_type,
            weight_type=weight_type,
            calibrate_method=method,
            nodes_to_exclude=sorted({*float_only_nodes(prepared), *exclude}),
            extra_options=extra,
            **_ranges_cache(ranges),
        )
    return Path(dst)


def _ranges_cache(path: str | Path | None) -> dict[str, str]:
    """quantize_static's calibration cache, where this ONNX Runtime has one (added in 2026; older versions
    refuse the keyword, and calibrate every time)."""
    if path is None:
        return {}
    import inspect

    from onnxruntime.quantization import quantize_static

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        return {}
    return {"calibration_cache_path": str(path)}


@contextlib.contextmanager
def _quiet_quantiser():
    """ORT's quantiser prints its percentile range to stdout and warns, on the root logger, about every integer
    tensor it skips (ShuffleNet's shape arithmetic): neither is the user's concern."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def float_only_nodes(path: str | Path) -> list[str]:
    """Nodes int8 leaves in float, found by structure whatever the exporter named them:

    - the layers that produce the logits (the Gemm / MatMul / Conv reached first walking back from the
      graph output): the logits are the one tensor whose small differences are the answer, and an 8-bit
      grid over their whole range erases them. Measured on the demo's students (u8s8, minmax): quantising
      the logits alone changed 8.3% of ShuffleNet-V2's and 5.0% of ResNet-18's validation predictions, and
      keeping the classifier in float raised test-split agreement with fp32 from 91.7 to 98.7% and from
      94.3 to 98.7%, at the cost of one small float matrix product;
    - everything after them, when that stretch holds a LogSoftmax: DHO's head combination (log-softmaxes,
      log-sum-exp), whose log-domain values an 8-bit grid would flatten."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producers = {output: node for node in graph.node for output in node.output}
    tail, heads, stack = {}, set(), [output.name for output in graph.output]
    while stack:
        node = producers.get(stack.pop())
        if node is None or node.name in tail or node.name in heads:
            continue
        if node.op_type in ("Gemm", "MatMul", "Conv"):
            heads.add(node.name)
            continue
        tail[node.name] = node
        stack.extend(node.input)
    keep = heads
    if any(node.op_type == "LogSoftmax" for node in tail.values()):
        keep |= set(tail)
    return [node.name for node in graph.node if node.name in keep]


def graph_stats(path: str | Path) -> dict[str, Any]:
    """What the quantiser made: op counts and the dtypes of the Q/DQ zero points (for tests and the summary)."""
    import onnx

    model = onnx.load(str(path))
    ops = Counter(node.op_type for node in model.graph.node)
    inits = {init.name: init for init in model.graph.initializer}
    # exporters that write Q/DQ parameters as Constant nodes (Model Optimizer's QAT graphs)
    inits |= {
        n.output[0]: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant" and n.attribute
    }
    zero_point_types: Counter = Counter()
    nonzero_zero_points = 0
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            init = inits.get(node.input[2])
            if init is None:
                continue
            zero_point_types[onnx.helper.tensor_dtype_to_np_dtype(init.data_type).name] += 1
            nonzero_zero_points += int(np.any(onnx.numpy_helper.to_array(init) != 0))
    return {
        "QuantizeLinear": ops.get("QuantizeLinear", 0),
        "DequantizeLinear": ops.get("DequantizeLinear", 0),
        "QLinearConv": ops.get("QLinearConv", 0),
        "Conv": ops.get("Conv", 0),
        "zero_point_dtypes": dict(zero_point_types),
        "nonzero_zero_points": nonzero_zero_points,
        "ops": dict(ops),
    }
