"""ONNX Runtime runner: one session per artifact, the profile's providers and threads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dait_edge.errors import UserError


class OrtRunner:
    backend = "onnxruntime"

    def __init__(self, artifact: Path, sidecar: dict, providers: tuple[str, ...], threads: int):
        import onnxruntime as ort

        available = ort.get_available_providers()
        chosen = [p for p in providers if p in available] or ["CPUExecutionProvider"]
        if providers and providers[0] not in available:
            # Say it in the row: a TensorRT profile measured on the CPU provider is a different figure.
            self.note = f"{providers[0]} not available here; measured with {chosen[0]}"
        else:
            self.note = ""
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(artifact), options, providers=chosen)
        except Exception as err:  # noqa: BLE001 - ORT raises its own exception types on a bad file
            raise UserError(
                f"ONNX Runtime cannot load {artifact}: {str(err).splitlines()[0]}; re-export it."
            ) from None
        self.providers = self.session.get_providers()
        self.input_name = sidecar.get("input_name") or self.session.get_inputs()[0].name
        self.input_size = tuple(sidecar["input_size"])

    def random_input(self, batch: int, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).standard_normal((batch, *self.input_size), dtype=np.float32)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: images})[0]
