"""TensorRT engines (10.x and 11.x) from the fp16 / s8s8 / QAT Q/DQ ONNX graphs, as strongly typed networks.

TensorRT 11 removed the FP16/INT8 builder flags and calibrators: precision comes from the graph
(fp16 tensors, explicit Q/DQ). The strongly typed flag gives the same behaviour on 10.x (JetPack 6
ships 10.3), so one code path serves both. Everything that needs no GPU (naming, profile shapes,
the skip decision) is plain Python so the CPU-only test machines cover it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dait_edge.errors import UserError
from dait_edge.records import TensorRTBuild


@dataclass
class TrtAvailability:
    ok: bool
    reason: str = ""
    version: str | None = None
    gpu: str | None = None


def trt_availability() -> TrtAvailability:
    """Can this machine build engines? When not, `reason` is the one line the export prints."""
    try:
        import tensorrt as trt
    except ImportError:
        return TrtAvailability(
            False, "TensorRT is not installed; pip install 'dait-edge[tensorrt]' on the CUDA machine"
        )
    except Exception as err:  # noqa: BLE001  (a broken install failing to load its CUDA libraries)
        detail = (str(err).splitlines() or [""])[0][:120]
        return TrtAvailability(False, f"TensorRT failed to load ({type(err).__name__}: {detail})")
    gpu = cuda_gpu_name()
    if gpu is None:
        return TrtAvailability(
            False, "no CUDA GPU found; TensorRT engines are built on the target GPU", trt.__version__
        )
    return TrtAvailability(True, "", trt.__version__, gpu)


def cuda_gpu_name() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def skip_message(formats: list[str], reason: str) -> str:
    return f"skipped {', '.join(formats)}: {reason}."


def slug(text: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def short_version(version: str) -> str:
    """'10.3.0.26' -> '10.3': engines are tied to the TensorRT minor version that built them."""
    parts = version.split(".")
    return ".".join(parts[:2])


def engine_name(stem: str, format_name: str, trt_version: str, gpu_name: str) -> str:
    """student-trt-fp16-trt10.3-nvidia-h100-80gb-hbm3.engine: an engine only runs where it was built."""
    return f"{stem}-{format_name}-trt{short_version(trt_version)}-{slug(gpu_name)}.engine"


def profile_shapes(
    input_size: list[int] | tuple[int, ...], batch_range: tuple[int, int, int]
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) input shapes of the optimisation profile."""
    lo, opt, hi = batch_range
    c, h, w = input_size
    return (lo, c, h, w), (opt, c, h, w), (hi, c, h, w)


def network_flags(trt: Any) -> int:
    """Strongly typed: precisions come from the ONNX graph. EXPLICIT_BATCH is implicit since 10.0."""
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def explicit_quantization(onnx_path: str | Path, precision: str) -> str | None:
    """What an int8 engine's precision comes from: the graph's own Q/DQ nodes (explicit quantisation, as
    QAT's and the s8s8 files carry them). A strongly typed network from a graph without them would build an
    fp32 engine under an int8 name, so that is refused; TensorRT never calibrates here."""
    if precision != "int8":
        return None
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    count = sum(node.op_type == "QuantizeLinear" for node in graph.node)
    if count == 0:
        raise UserError(
            f"{onnx_path} has no QuantizeLinear nodes, so a TensorRT engine built from it would not be int8;"
            " build int8 engines from a Q/DQ graph (onnx-int8-s8s8 or onnx-int8-qat as the recipe's source)."
        )
    return f"explicit: {count} QuantizeLinear nodes from the graph (no calibrator, no INT8 flag)"


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    input_name: str,
    input_size: list[int] | tuple[int, ...],
    batch_range: tuple[int, int, int],
    workspace_mb: int = 2048,
    timing_cache: str | Path | None = None,
    precision: str = "fp16",
) -> TensorRTBuild:
    """Parse the ONNX file, build and serialise the engine to `engine_path`; returns build facts. The
    network is strongly typed, so an int8 engine takes its scales from the graph's Q/DQ nodes as they are:
    no builder flag or calibrator could re-calibrate what QAT trained."""
    quantization = explicit_quantization(onnx_path, precision)
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT cannot parse {onnx_path}: {errors}; check the ONNX opset and ops.")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)

    profile = builder.create_optimization_profile()
    shape_min, shape_opt, shape_max = profile_shapes(input_size, batch_range)
    profile.set_shape(input_name, shape_min, shape_opt, shape_max)
    config.add_optimization_profile(profile)

    # The timing cache makes rebuilds (other students, same GPU) skip most kernel timing.
    cache_path = Path(timing_cache) if timing_cache else None
    cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=True)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"TensorRT could not build an engine from {onnx_path}; see the TensorRT log above.")
    Path(engine_path).write_bytes(bytes(serialized))
    if cache_path:
        from dait_edge.utils.io import write_bytes_atomic

        write_bytes_atomic(cache_path, bytes(config.get_timing_cache().serialize()))
    return TensorRTBuild(
        tensorrt=trt.__version__,
        profile={"min": list(shape_min), "opt": list(shape_opt), "max": list(shape_max)},
        strongly_typed=True,
        timing_cache=str(cache_path) if cache_path else None,
        quantization=quantization,
    )
