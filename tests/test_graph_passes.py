"""The fp32 graph rewrite: spatial ReduceMean -> GlobalAveragePool, same outputs, int8-friendly."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from dait_edge.export.graph_passes import spatial_mean_to_global_pool
from dait_edge.export.onnx_export import export_onnx


class Means(nn.Module):
    """An SE-style spatial mean (rewritten) beside means that must stay ReduceMean."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        gate = torch.sigmoid(y.mean((2, 3), keepdim=True))  # -> GlobalAveragePool
        channel_mean = y.mean(1, keepdim=True)  # over channels: not a pool
        flat = y.mean((2, 3))  # keepdim=False: a different output shape
        return (y * gate * channel_mean).flatten(1)[:, :8] + flat


def ops(model: onnx.ModelProto) -> collections.Counter:
    return collections.Counter(node.op_type for node in model.graph.node)


def run(path_or_model, x: np.ndarray) -> np.ndarray:
    data = (
        path_or_model.SerializeToString()
        if isinstance(path_or_model, onnx.ModelProto)
        else str(path_or_model)
    )
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


@pytest.mark.parametrize("opset", [13, 18])  # axes an attribute (opset < 18) or an input (18)
def test_only_the_keepdim_spatial_mean_becomes_a_global_pool(tmp_path, opset):
    torch.manual_seed(0)
    model = Means().eval()
    path = export_onnx(model, tmp_path / "means.onnx", (3, 12, 12), opset=opset)  # the pass runs inside
    exported = onnx.load(str(path))
    assert ops(exported)["GlobalAveragePool"] == 1 and ops(exported)["ReduceMean"] == 2
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run(path, x), expected, atol=1e-5)


def test_a_5d_mean_over_two_axes_is_not_a_global_pool():
    x = onnx.helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 2, 3, 4, 5])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    node = onnx.helper.make_node("ReduceMean", ["input"], ["y"], axes=[2, 3], keepdims=1)
    graph = onnx.helper.make_graph([node], "g", [x], [y])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    assert spatial_mean_to_global_pool(model) == 0 and ops(model) == {"ReduceMean": 1}


def test_squeeze_excite_stays_int8_after_quantisation(tmp_path):
    """The point of the pass: ORT's quantiser keeps the SE mean in int8 instead of a DQ/Q pair per block."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    torch.manual_seed(0)
    path = export_onnx(Means().eval(), tmp_path / "means.onnx", (3, 12, 12), opset=18)

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(1)
            self.batches = iter([{"input": rng.standard_normal((1, 3, 12, 12), dtype=np.float32)}] * 4)

        def get_next(self):
            return next(self.batches, None)

    quantize_static(
        str(path),
        str(tmp_path / "int8.onnx"),
        Reader(),
        quant_format=QuantFormat.QOperator,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    assert ops(onnx.load(str(tmp_path / "int8.onnx")))["QLinearGlobalAveragePool"] == 1
