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
from dait_edge.profiling.runner import Runner, random_input, register_runner
from dait_edge.profiling.target import Profile
from dait_edge.profiling.timing import Timed
from dait_edge.records import Sidecar

INSTALL = "pip install 'dait-edge[executorch]' (the executorch package: its runtime and XNNPACK backend)"


def require_executorch(what: str) -> dict[str, str]:
    """ExecuTorch's version, or a one-line error naming what to install."""
    try:
        from executorch.version import __version__
    except ImportError:
        raise UserError(f"{what} needs ExecuTorch: {INSTALL}.") from None
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
            raise UserError(f"this ExecuTorch build has no XNNPACK backend; reinstall it: {INSTALL}.")
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
