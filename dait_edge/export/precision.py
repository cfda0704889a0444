"""fp32 ONNX -> fp16 ONNX with fp32 inputs/outputs and range-sensitive ops left in fp32."""

from __future__ import annotations

import warnings
from pathlib import Path

DEFAULT_BLOCK_LIST = ("Softmax", "Resize", "Upsample", "ReduceMean", "GlobalAveragePool")


def convert_fp16(
    src: str | Path,
    dst: str | Path,
    *,
    op_block_list: list[str] | tuple[str, ...] = DEFAULT_BLOCK_LIST,
    keep_io_types: bool = True,
) -> Path:
    """Convert with onnxconverter-common; callers keep feeding and reading float32."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    # Its default block list holds ML-domain ops (never in a CNN) plus Resize / TopK / Range ...;
    # ours adds the reductions whose fp16 accumulation drifts on large feature maps.
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(op_block_list))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one "truncated to 1e-07" warning per tiny weight: noise, not news
        converted = float16.convert_float_to_float16(model, keep_io_types=keep_io_types, op_block_list=block)
    onnx.save(converted, str(dst))
    onnx.checker.check_model(str(dst), full_check=True)
    return Path(dst)
