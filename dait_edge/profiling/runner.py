"""The runner contract: how a runtime loads an artifact, runs it and is measured (Polygraphy's BaseRunner).

Each runtime is one module in `dait_edge/profiling/runners/` whose class subclasses `Runner` and
registers itself with `@register_runner`; that module is the whole of adding a runtime (profiles name
it in `runtime = "..."`, `dait-edge list runtimes` shows it). Runner modules import their runtime
(onnxruntime, tensorrt, torch) inside methods only, so finding the runners imports none of them.

Lifecycle, in the manner of Polygraphy:

    with RunnerClass(artifact, profile) as runner:   # activate(): load the artifact, start sessions
        logits = runner.infer(images)                # top-1 on the test split
        timed = runner.timed(batch, mode)            # one request, ready for timing.measure
        runner.device_memory_mb()                    # where the runtime knows it (GPU), else None
    # deactivate(): sessions, device buffers and graphs are freed

What a runner reports per row: its `Timed` requests (which `measure` turns into latency samples and
percentiles), `backend` names, `providers`, a `note` on fallbacks, and device memory.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import ClassVar

import numpy as np

from dait_edge.errors import UserError
from dait_edge.profiling.target import Profile
from dait_edge.profiling.timing import Timed
from dait_edge.records import RunLayout, RunSummary, Sidecar
from dait_edge.records.layout import run_summary_of
from dait_edge.registry import Registry

RUNNERS: Registry[type[Runner]] = Registry("runtime")


def register_runner(runtime: str, description: str = ""):
    """Class decorator: `runtime` is the name profiles use (`runtime = "onnxruntime"`)."""

    def decorator(cls: type[Runner]) -> type[Runner]:
        cls.runtime = runtime
        return RUNNERS.register(runtime, description)(cls)

    return decorator


_discovered = False


def runners() -> Registry[type[Runner]]:
    """The registry, after importing every module of `dait_edge.profiling.runners` (they register)."""
    global _discovered
    if not _discovered:
        from dait_edge.profiling import runners as package

        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{module.name}")
        _discovered = True
    return RUNNERS


def runner_for(runtime: str) -> type[Runner]:
    return runners().get(runtime)


def random_input(input_size, batch: int, seed: int = 0) -> np.ndarray:
    """Seeded standard-normal images: what normalised inputs look like to the network."""
    return np.random.default_rng(seed).standard_normal((batch, *input_size), dtype=np.float32)


class Runner:
    """Base class of every runtime's runner."""

    runtime: ClassVar[str] = ""  # set by @register_runner
    suffixes: ClassVar[tuple[str, ...]] = ()  # the artifact files it measures
    profile_keys: ClassVar[tuple[str, ...]] = ()  # the keys of its own that a profile may set (Profile.extra)
    measures: ClassVar[str] = "artifacts"  # what it measures, in error messages
    made_by: ClassVar[str] = "`dait-edge export`"  # the command that makes them
    reference: ClassVar[bool] = False  # True: it runs the PyTorch model export parity compares against

    # ------------------------------------------------------------------ before any artifact

    @classmethod
    def require(cls, profile: Profile) -> dict[str, str]:
        """Versions (and "gpu") for the hardware line; a one-line UserError when the runtime, its
        libraries or the device the profile needs are missing. Called before any artifact is read."""
        return {}

    @classmethod
    def find(cls, folder: Path, profile: Profile) -> list[Path]:
        """What this runner measures under `folder`: files with its suffixes that have a sidecar (a file
        without one is a build in progress, or was not written by export) in a format the profile targets."""
        found = []
        for suffix in cls.suffixes:
            for candidate in sorted(folder.rglob(f"*{suffix}")):
                sidecar = Sidecar.read_if_present(Sidecar.path_for(candidate))
                if sidecar is not None and (not profile.formats or sidecar.format in profile.formats):
                    found.append(candidate)
        return found

    @classmethod
    def in_run(cls, run_dir: Path) -> Path:
        """Where a distill run keeps what this runner measures: the artifacts `dait-edge export` wrote."""
        return RunLayout(run_dir).export

    @classmethod
    def accept(cls, path: Path, profile: Profile) -> Path:
        """A file named on the command line, or a one-line error saying what this runner measures."""
        if path.suffix not in cls.suffixes:
            raise UserError(
                f"{path} is not a {' or '.join(cls.suffixes)} file, which profile {profile.name}"
                f" ({profile.runtime}) measures; pass those artifacts, the folder that holds them, or pick a"
                " profile for this file."
            )
        return path

    # ------------------------------------------------------------------ lifecycle

    def __init__(self, artifact: Path, profile: Profile):
        self.artifact = Path(artifact)
        self.profile = profile
        self.is_active = False
        self.sidecar: Sidecar | None = None  # preprocessing, format, precision, parity
        self.providers: list[str] = []
        self.note = ""  # a fallback the rows must mention (another provider, an ignored setting)
        self.modes: tuple[str, ...] = ("default",)  # the ways it runs the artifact: a row per mode and batch

    def activate(self) -> Runner:
        if self.is_active:
            raise RuntimeError(f"{type(self).__name__} for {self.artifact} is already active")
        try:
            self.activate_impl()
        except BaseException:
            self.deactivate_impl()  # no session or device memory left behind by a half-loaded runner
            raise
        self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self.is_active = False
            self.deactivate_impl()

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def activate_impl(self) -> None:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ while active

    def infer(self, images: np.ndarray) -> np.ndarray:
        """Logits (N, classes) of float32 images (N, C, H, W) preprocessed as the sidecar says."""
        raise NotImplementedError

    def timed(self, batch: int, mode: str) -> Timed:
        """One request of `batch` images in `mode`, ready for `timing.measure` (or a Timed with `skip`)."""
        raise NotImplementedError

    def device_memory_mb(self) -> float | None:
        return None

    def label(self, backend: str) -> str:
        """How tables name a row: the format, plus the backend where it is not the runtime's plain one."""
        assert self.sidecar is not None
        return self.sidecar.format if backend == self.runtime else f"{self.sidecar.format} ({backend})"

    def run_of(self) -> tuple[Path | None, RunSummary | None]:
        """The distill run the artifact came from (its rows are saved there), if it lives inside one."""
        return run_summary_of(self.artifact)
