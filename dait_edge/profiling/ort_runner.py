"""ONNX Runtime runner: one session per artifact, the profile's providers and threads."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from dait_edge.errors import UserError
from dait_edge.profiling.artifacts import read_sidecar
from dait_edge.profiling.profiles import Profile
from dait_edge.profiling.timing import Timed


def require(profile: Profile) -> dict[str, str]:
    """Versions for the hardware line; a one-line error when ONNX Runtime is missing."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError(
            f"profile {profile.name} needs ONNX Runtime: pip install onnxruntime (onnxruntime-gpu on a CUDA machine)."
        ) from None
    return {"onnxruntime": ort.__version__}


def random_input(input_size, batch: int, seed: int = 0) -> np.ndarray:
    """Seeded standard-normal images: what normalised inputs look like to the network."""
    return np.random.default_rng(seed).standard_normal((batch, *input_size), dtype=np.float32)


class OrtRunner:
    modes = ("default",)

    def __init__(self, artifact: Path, profile: Profile):
        import onnxruntime as ort

        self.artifact = artifact
        self.sidecar = read_sidecar(artifact)
        self.versions = {"onnxruntime": ort.__version__}
        providers = profile.providers
        available = ort.get_available_providers()
        chosen = [p for p in providers if p in available] or ["CPUExecutionProvider"]
        if providers and providers[0] not in available:
            # Say it in the row: a TensorRT profile measured on the CPU provider is a different figure.
            self.note = f"{providers[0]} not available here; measured with {chosen[0]}"
        else:
            self.note = ""
        options = ort.SessionOptions()
        if profile.threads:
            options.intra_op_num_threads = profile.threads
        try:
            self.session = ort.InferenceSession(str(artifact), options, providers=chosen)
        except Exception as err:  # noqa: BLE001 - ORT raises its own exception types on a bad file
            raise UserError(
                f"ONNX Runtime cannot load {artifact}: {str(err).splitlines()[0]}; re-export it."
            ) from None
        self.providers = self.session.get_providers()
        self.input_name = self.sidecar.get("input_name") or self.session.get_inputs()[0].name
        self.input_size = tuple(self.sidecar["input_size"])

    def random_input(self, batch: int, seed: int = 0) -> np.ndarray:
        return random_input(self.input_size, batch, seed)

    def timed(self, batch: int, mode: str = "default") -> Timed:
        # Host arrays in and out: on the CPU provider that is the whole request.
        return Timed(functools.partial(self, self.random_input(batch)), "onnxruntime")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: images})[0]

    def close(self) -> None:
        self.session = None
