"""LiteRT runner: `.tflite` models through the LiteRT interpreter (`ai_edge_litert`), without torch.

On CPUs the interpreter hands what it can to its default XNNPACK delegate; what the delegate did not take
runs on LiteRT's builtin kernels. `delegation` reads which ops those are from the interpreter itself (the
ops still executed once the delegate has replaced its partitions), for the sidecar and the rows. An int8
file from litert-torch takes and returns int8 tensors: images are quantised with the input's scale and
zero point, logits dequantised with the output's, so a caller always gives float images. The profile's
`threads` is the interpreter's `num_threads` (0: LiteRT's default).
"""

from __future__ import annotations

import functools

import numpy as np

from dait_edge.errors import UserError
from dait_edge.profiling.runner import Runner, random_input, register_runner
from dait_edge.profiling.target import Profile
from dait_edge.profiling.timing import Timed
from dait_edge.records import Sidecar

INSTALL = "pip install 'dait-edge[litert]' (ai-edge-litert, the LiteRT interpreter; no torch needed)"


def require_litert(what: str) -> dict[str, str]:
    """LiteRT's version, or a one-line error naming what to install."""
    try:
        import ai_edge_litert
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401
    except ImportError:
        raise UserError(f"{what} needs the LiteRT interpreter: {INSTALL}.") from None
    return {"ai-edge-litert": getattr(ai_edge_litert, "__version__", "unknown")}


def delegation(interpreter) -> dict:
    """Which delegate runs the model and which ops it left to LiteRT's kernels. Walks back from the outputs
    over the executed graph: a tensor a DELEGATE node produces comes from that node, any other from the op
    that wrote it, which therefore still runs."""
    ops = interpreter._get_ops_details()  # every node; the delegate's are appended after the originals
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
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads or None)
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


@register_runner("litert", "LiteRT (TensorFlow Lite): .tflite models, XNNPACK delegate on CPUs, no torch")
class LiteRTRunner(Runner):
    suffixes = (".tflite",)

    @classmethod
    def require(cls, profile: Profile) -> dict[str, str]:
        return require_litert(f"profile {profile.name}")

    def activate_impl(self) -> None:
        self.sidecar = Sidecar.verified_for(self.artifact)
        self.model = TfliteModel(self.artifact, self.profile.threads)
        self.input_size = tuple(self.sidecar.input_size)
        if tuple(self.model.input_shape[1:]) != self.input_size:
            raise UserError(
                f"{self.artifact} takes inputs of shape {list(self.model.input_shape)}, but its sidecar says"
                f" [1, {', '.join(map(str, self.input_size))}]: the sidecar belongs to another file; export it"
                " again."
            )
        found = delegation(self.model.interpreter)  # on this machine, which may differ from the exporter's
        self.providers = [found["backend"] or "builtin kernels"]
        if found["undelegated_ops"]:
            self.note = f"ops outside the delegate: {', '.join(found['undelegated_ops'])}"

    def infer(self, images: np.ndarray) -> np.ndarray:
        return self.model.logits(images)

    def timed(self, batch: int, mode: str = "default") -> Timed:
        images = random_input(self.input_size, batch)
        if batch == 1:
            return Timed(functools.partial(self.model.run, images), "litert")
        return Timed(
            functools.partial(self.model.logits, images),
            "litert",
            note=f"a static batch of 1: {batch} requests one after another",
        )

    def deactivate_impl(self) -> None:
        self.model = None
