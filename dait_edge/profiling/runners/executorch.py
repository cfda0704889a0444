"""ExecuTorch runner: `.pte` programs through `executorch.runtime` with the XNNPACK backend linked in.

This is PyTorch's on-device runtime (Android, iOS, Linux boards); its Python runtime runs the same
program, kernels and XNNPACK delegate on the machine at hand, so x86 and ARM64 Linux measure here and a
phone measures with ExecuTorch's own benchmark binary (README, "Profiling on a phone or board").
A `.pte` has the static batch of 1 it was lowered with: a larger batch runs image by image, and the row
says so. The profile's `threads` sets XNNPACK's thread pool (0: ExecuTorch's default, one per core).
"""

from __future__ import annotations

import functools

import numpy as np

from dait_edge.errors import UserError
from dait_edge.export.on_device import PteProgram, require_executorch
from dait_edge.profiling.runner import Runner, random_input, register_runner
from dait_edge.profiling.target import Profile
from dait_edge.profiling.timing import Timed
from dait_edge.records import Sidecar


@register_runner(
    "executorch", "ExecuTorch: .pte programs (XNNPACK backend) on the CPU, as phones and boards run them"
)
class ExecutorchRunner(Runner):
    suffixes = (".pte",)

    @classmethod
    def require(cls, profile: Profile) -> dict[str, str]:
        return require_executorch(f"profile {profile.name}")

    def activate_impl(self) -> None:
        self.sidecar = Sidecar.verified_for(self.artifact)
        self.program = PteProgram(self.artifact, self.profile.threads)
        self.providers = ["XnnpackBackend"]
        self.input_size = tuple(self.sidecar.input_size)
        if tuple(self.program.input_shape[1:]) != self.input_size:
            raise UserError(
                f"{self.artifact} takes inputs of shape {list(self.program.input_shape)}, but its sidecar says"
                f" [1, {', '.join(map(str, self.input_size))}]: the sidecar belongs to another file; export it"
                " again."
            )
        delegation = self.sidecar.delegation or {}
        if delegation.get("undelegated_ops"):
            self.note = f"ops outside XNNPACK (portable kernels): {', '.join(delegation['undelegated_ops'])}"

    def infer(self, images: np.ndarray) -> np.ndarray:
        return self.program.logits(images)

    def timed(self, batch: int, mode: str = "default") -> Timed:
        images = random_input(self.input_size, batch)
        if batch == 1:
            return Timed(functools.partial(self.program.run, images), "executorch")
        return Timed(
            functools.partial(self.program.logits, images),
            "executorch",
            note=f"a static batch of 1: {batch} requests one after another",
        )

    def deactivate_impl(self) -> None:
        self.program = None
