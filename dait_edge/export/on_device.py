"""The on-device runtimes' files as this machine runs them: an ExecuTorch `.pte` through `executorch.runtime`
(which brings torch) and a LiteRT `.tflite` through the LiteRT interpreter (no torch), each with logits of
float images in and out. Export's parity and int8 judging, `predict` and the profiling runners all run the
files through these, so every figure about a file comes from the same call.

A `.pte` and a `.tflite` have the static batch of 1 they were lowered with: several images run one request
each. An int8 `.tflite` from litert-torch takes and returns int8 tensors: images are quantised with the
input's scale and zero point and logits dequantised with the output's, so callers always give float images.
"""

from __future__ import annotations

import os

import numpy as np

from dait_edge.errors import UserError

EXECUTORCH_INSTALL = (
    "pip install 'dait-edge[executorch]' (the executorch package: its runtime and XNNPACK backend)"
)


def require_executorch(what: str) -> dict[str, str]:
    """ExecuTorch's version, or a one-line error naming what to install."""
    try:
        from executorch.version import __version__
    except ImportError:
        raise UserError(f"{what} needs ExecuTorch: {EXECUTORCH_INSTALL}.") from None
    return {"executorch": __version__}


class PteProgram:
    """A loaded `.pte`'s forward method: logits of float32 images (N, C, H, W), one request per image."""

    def __init__(self, path, threads: int = 0):
        import torch
        from executorch.runtime import Runtime

        if threads:
            from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

            _unsafe_reset_threadpool(threads)  # XNNPACK's pool is per process: the profile's count
        runtime = Runtime.get()
        if not runtime.backend_registry.is_available("XnnpackBackend"):
            raise UserError(
                f"this ExecuTorch build has no XNNPACK backend; reinstall it: {EXECUTORCH_INSTALL}."
            )
        self.torch = torch
        try:
            self.program = runtime.load_program(str(path))
            self.method = self.program.load_method("forward")
        except Exception as err:  # noqa: BLE001 - the runtime raises RuntimeError with its error code
            raise UserError(
                f"ExecuTorch cannot load {path}: {str(err).splitlines()[0]}; export it again."
            ) from None
        meta = self.method.metadata.input_tensor_meta(0)
        self.input_shape = tuple(meta.sizes())  # (1, C, H, W)

    def run(self, image: np.ndarray) -> np.ndarray:
        """One request: (1, C, H, W) -> (1, classes)."""
        return self.method.execute([self.torch.from_numpy(image)])[0].numpy()

    def logits(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        return np.concatenate([self.run(images[i : i + 1]) for i in range(len(images))]).astype(np.float32)


LITERT_INSTALL = "pip install 'dait-edge[litert]' (ai-edge-litert, the LiteRT interpreter; no torch needed)"


def require_litert(what: str) -> dict[str, str]:
    """LiteRT's version, or a one-line error naming what to install."""
    try:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401
    except ImportError:
        raise UserError(f"{what} needs the LiteRT interpreter: {LITERT_INSTALL}.") from None
    return {"ai-edge-litert": getattr(ai_edge_litert, "__version__", "unknown")}


def delegation(interpreter) -> dict:
    """Which delegate runs the model and which ops it left to LiteRT's kernels. Walks back from the outputs
    over the executed graph: a tensor a DELEGATE node produces comes from that node, any other from the op
    that wrote it, which therefore still runs."""
    # every node, the delegate's appended after the originals (a private method, but the interpreter's only
    # account of its graph after delegation)
    ops = interpreter._get_ops_details()
    producer: dict[int, dict] = {}
    for op in ops:
        for tensor in op["outputs"]:
            if op["op_name"] == "DELEGATE" or tensor not in producer:
                producer[tensor] = op
    executed: dict[int, dict] = {}
    stack, seen = [d["index"] for d in interpreter.get_output_details()], set()
    while stack:
        tensor = stack.pop()
        if tensor in seen or tensor not in producer:
            continue
        seen.add(tensor)
        op = producer[tensor]
        if op["index"] not in executed:
            executed[op["index"]] = op
            stack += [int(t) for t in op["inputs"] if t >= 0]
    partitions = sum(op["op_name"] == "DELEGATE" for op in executed.values())
    undelegated: dict[str, int] = {}
    for op in executed.values():
        if op["op_name"] != "DELEGATE":
            undelegated[op["op_name"]] = undelegated.get(op["op_name"], 0) + 1
    originals = sum(op["op_name"] != "DELEGATE" for op in ops)
    return {
        "backend": "XNNPACK (the interpreter's default CPU delegate)" if partitions else None,
        "partitions": partitions,
        "ops": originals,
        "delegated_ops": originals - sum(undelegated.values()),
        "undelegated_ops": dict(sorted(undelegated.items())),
    }


class TfliteModel:
    """A `.tflite` in an interpreter: logits of float32 images (N, C, H, W), one request per image."""

    def __init__(self, path, threads: int = 0):
        from ai_edge_litert.interpreter import Interpreter

        try:
            # 0: every core, as ONNX Runtime and ExecuTorch default to (the interpreter takes None as 1 thread)
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads or (os.cpu_count() or 1))
            self.interpreter.allocate_tensors()
        except Exception as err:  # noqa: BLE001 - the interpreter raises ValueError / RuntimeError
            raise UserError(
                f"LiteRT cannot load {path}: {str(err).splitlines()[0]}; export it again."
            ) from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.input_shape = tuple(int(d) for d in self.input["shape"])  # (1, C, H, W)

    def io(self) -> dict:
        """The input and output tensors' types and (int8) quantisation, for the sidecar."""

        def of(detail):
            scale, zero = detail["quantization"]
            quantised = {"scale": float(scale), "zero_point": int(zero)} if scale else {}
            return {"dtype": np.dtype(detail["dtype"]).name, **quantised}

        return {"input": of(self.input), "output": of(self.output)}

    def run(self, image: np.ndarray) -> np.ndarray:
        """One request: (1, C, H, W) float -> (1, classes) float."""
        scale, zero = self.input["quantization"]
        if scale:  # int8 input: quantised as the converter's input quantiser does
            info = np.iinfo(self.input["dtype"])
            image = np.clip(np.round(image / scale) + zero, info.min, info.max).astype(self.input["dtype"])
        self.interpreter.set_tensor(self.input["index"], image)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])
        scale, zero = self.output["quantization"]
        return (out.astype(np.float32) - zero) * scale if scale else out.astype(np.float32)

    def logits(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        return np.concatenate([self.run(images[i : i + 1]) for i in range(len(images))])
