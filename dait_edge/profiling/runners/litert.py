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
from dait_edge.export.on_device import TfliteModel, delegation, require_litert
from dait_edge.profiling.runner import Runner, random_input, register_runner
from dait_edge.profiling.target import Profile
from dait_edge.profiling.timing import Timed
from dait_edge.records import Sidecar


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
