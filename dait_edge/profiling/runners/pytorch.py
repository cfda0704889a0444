"""PyTorch runner: the distilled student itself, eager or torch.compile'd, on the CPU or a CUDA GPU.

The baseline every exported artifact is judged against. torch is imported here only, so a light
install (numpy, onnxruntime, click, pillow) can still profile ONNX artifacts.

Profile keys (besides the common ones): providers = ["cpu"] or ["cuda"], modes = ["eager",
"compiled"], cuda_graphs = true (CUDA only: also replay the eager model from a captured CUDA graph,
and compile with mode="reduce-overhead", which uses CUDA graphs), precision = "fp32" | "fp16" |
"bf16" (half precisions on CUDA only), channels_last = true.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dait_edge.errors import UserError
from dait_edge.profiling.runner import Runner, random_input, register_runner
from dait_edge.profiling.target import Profile
from dait_edge.profiling.timing import Timed
from dait_edge.records import RunSummary
from dait_edge.records.layout import run_summary_of

MODES = ("eager", "compiled")
PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
GRAPH_WARMUP = 3  # eager calls on a side stream before capture: cuDNN / cuBLAS pick their kernels


@dataclass(frozen=True)
class TorchSettings:
    device: str  # "cpu", "cuda", "cuda:1"
    modes: tuple[str, ...]
    cuda_graphs: bool
    precision: str
    channels_last: bool

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")


def settings_of(profile: Profile) -> TorchSettings:
    extra = profile.extra
    where = f"profile {profile.name} ({profile.source or 'no file'})"
    device = (profile.providers or ("cpu",))[0].lower()
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(
            f'{where}: providers must be ["cpu"] or ["cuda"] for the torch runtime, not {device!r}.'
        )
    modes = extra.get("modes", ["eager"])
    if isinstance(modes, str) or not modes or any(m not in MODES for m in modes):
        raise UserError(f"{where}: modes must be a list drawn from {', '.join(MODES)}, not {modes!r}.")
    precision = extra.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise UserError(f"{where}: precision must be one of {', '.join(PRECISIONS)}, not {precision!r}.")
    if precision != "fp32" and device == "cpu":
        raise UserError(
            f'{where}: precision {precision} is measured on CUDA only; use precision = "fp32" on the CPU.'
        )
    return TorchSettings(
        device,
        tuple(dict.fromkeys(modes)),
        bool(extra.get("cuda_graphs", False)),
        precision,
        bool(extra.get("channels_last", False)),
    )


def _require(profile: Profile) -> dict[str, str]:
    """Versions (and the GPU) for the hardware line; a one-line error when torch or the GPU is missing."""
    try:
        import torch
    except ImportError:
        raise UserError(
            f"profile {profile.name} measures the PyTorch student and needs torch: pip install 'dait-edge[full]'"
            " (ONNX artifacts need only an onnxruntime profile such as x86-ort-cpu-fp32)."
        ) from None
    settings = settings_of(profile)
    versions = {"torch": torch.__version__}
    if settings.on_cuda:
        if not torch.cuda.is_available():
            raise UserError(
                f"profile {profile.name} needs a CUDA GPU; none found here — use x86-torch-cpu on this machine,"
                " or run it where torch.cuda.is_available() is true."
            )
        versions |= {"gpu": torch.cuda.get_device_name(settings.device), "cuda": str(torch.version.cuda)}
    return versions


@register_runner("torch", "PyTorch: the distilled student's checkpoint itself, eager or torch.compile'd")
class TorchRunner(Runner):
    """One run's student; `modes` are the rows it gives per batch size (eager, eager-cudagraph, compiled).
    It measures runs: a run directory or the student .safetensors inside one."""

    suffixes = (".safetensors",)
    profile_keys = ("modes", "precision", "cuda_graphs", "channels_last")
    measures = "distill runs (summary.json with a student)"
    made_by = "`dait-edge distill`"
    reference = True

    @classmethod
    def require(cls, profile: Profile) -> dict[str, str]:
        return _require(profile)

    @classmethod
    def in_run(cls, run_dir: Path) -> Path:
        return Path(run_dir)  # the run itself: its student checkpoint

    @classmethod
    def find(cls, folder: Path, profile: Profile) -> list[Path]:
        """A run; else the runs below (a runs/ folder); else the run above (RUN/export, RUN/stage2)."""
        if RunSummary.read_if_present(folder) is not None:
            return [folder]
        below = []
        for path in sorted(folder.rglob(RunSummary.FILE)):
            summary = RunSummary.read_if_present(path)
            if summary is not None and summary.has_student:
                below.append(path.parent)
        if below:
            return below
        owner, _ = run_summary_of(folder / RunSummary.FILE)  # the parents of a path inside `folder`
        return [owner] if owner else []

    @classmethod
    def accept(cls, path: Path, profile: Profile) -> Path:
        if path.suffix != ".safetensors":
            raise UserError(
                f"{path} is not a student checkpoint; profile {profile.name} measures PyTorch: pass a run"
                " directory (holding summary.json) or its student .safetensors file."
            )
        return path

    def activate_impl(self) -> None:
        import torch

        from dait_edge.export.source import load_student, resolve_run

        self.torch = torch
        self._compiled = None
        self._graphs: list = []  # keep captured graphs (and their memory pools) alive until deactivated
        self._threads_before = torch.get_num_threads()
        self.settings = s = settings_of(self.profile)
        _require(self.profile)
        info = resolve_run(self.artifact)
        self.artifact = info.checkpoint  # size_mb is the checkpoint's; rows are saved in its run
        self.device = torch.device(s.device)
        if s.on_cuda and self.device.index is not None:
            # torch.compile's CUDA graphs and the caching allocator follow the current device
            torch.cuda.set_device(self.device)
        self.dtype = getattr(torch, PRECISIONS[s.precision])
        self.memory_format = torch.channels_last if s.channels_last else torch.contiguous_format
        model = load_student(info).to(self.device, self.dtype)
        self.model = model.to(memory_format=self.memory_format).eval()
        # What preprocess() needs (as in a sidecar), so top-1 comes from the same pixels as the ONNX rows'.
        self.sidecar = info.sidecar(format="checkpoint", runtime="torch", precision=s.precision)
        self.input_size = tuple(info.data_config.input_size)
        self.providers = [str(self.device)]
        self.note = (
            "cuda_graphs applies on CUDA only; ignored on the CPU" if s.cuda_graphs and not s.on_cuda else ""
        )
        self.modes = tuple(
            variant
            for mode in s.modes
            for variant in (
                (mode, "eager-cudagraph") if mode == "eager" and s.cuda_graphs and s.on_cuda else (mode,)
            )
        )
        if self.profile.threads:
            torch.set_num_threads(self.profile.threads)  # process-wide: deactivate() restores it

    # ------------------------------------------------------------------ inputs and calls

    def _tensor(self, images: np.ndarray):
        x = self.torch.from_numpy(np.ascontiguousarray(images)).to(self.device, self.dtype)
        return x.contiguous(memory_format=self.memory_format)

    def _sync(self):
        """Waits for this runner's GPU (cuda:N), not the current device."""
        if not self.settings.on_cuda:
            return None
        return functools.partial(self.torch.cuda.synchronize, self.device)

    def infer(self, images: np.ndarray) -> np.ndarray:
        """Logits of the eager model (top-1 on the test split); every mode computes the same function."""
        with self.torch.inference_mode():
            return self.model(self._tensor(images)).float().cpu().numpy()

    def timed(self, batch: int, mode: str) -> Timed:
        # The input lives on the device already: a request is the forward pass (plus the GPU sync).
        if self.settings.on_cuda:
            self.torch.cuda.reset_peak_memory_stats(self.device)  # device memory per row, not per process
        x = self._tensor(random_input(self.input_size, batch))
        if mode == "eager":
            return Timed(self._in_inference_mode(self.model, x), "torch-eager", self._sync())
        if mode == "eager-cudagraph":
            return self._cuda_graph(x)
        return self._compiled_call(x, batch)

    def _in_inference_mode(self, fn, x):
        torch = self.torch

        def run_once():
            with torch.inference_mode():
                return fn(x)

        return run_once

    def _cuda_graph(self, x) -> Timed:
        torch = self.torch
        try:
            # on the runner's GPU: streams, capture and sync would otherwise go to the current device (GPU 0)
            with torch.cuda.device(self.device), torch.inference_mode():
                side = torch.cuda.Stream(self.device)
                side.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
                    for _ in range(GRAPH_WARMUP):
                        self.model(x)
                torch.cuda.current_stream(self.device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    self.model(x)  # x stays the graph's static input; replay reads it in place
            torch.cuda.synchronize(self.device)
        except RuntimeError as err:
            reason = (str(err).splitlines() or ["?"])[0][:160]
            return Timed(None, "torch-eager-cudagraph", skip=f"CUDA graph capture failed ({reason})")
        self._graphs.append((graph, x))
        return Timed(graph.replay, "torch-eager-cudagraph", self._sync(), "one CUDA graph replay per request")

    def _compiled_call(self, x, batch: int) -> Timed:
        torch = self.torch
        s = self.settings
        if self._compiled is None:
            # Static shapes: each batch size gets its own specialised graph, as a deployment would.
            mode = "reduce-overhead" if s.on_cuda and s.cuda_graphs else None
            self._compiled = torch.compile(self.model, mode=mode, dynamic=False)
        run_once = self._in_inference_mode(self._compiled, x)
        started = time.perf_counter()
        try:
            run_once()  # compiles for this shape
            if s.on_cuda:
                torch.cuda.synchronize(self.device)
        except Exception as err:  # noqa: BLE001 - dynamo / inductor raise many types; the user needs one line
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise UserError(
                f"torch.compile failed for {self.sidecar.student} ({type(err).__name__}: {reason}); remove"
                f' "compiled" from modes in {self.profile.source or "the profile"} or check the C++ compiler.'
            ) from None
        compile_s = time.perf_counter() - started
        how = "reduce-overhead (CUDA graphs)" if s.on_cuda and s.cuda_graphs else "default mode"
        return Timed(
            run_once,
            "torch-compiled",
            self._sync(),
            f"torch.compile {how}; batch {batch} compiled in {compile_s:.1f} s",
        )

    def device_memory_mb(self) -> float | None:
        if not self.settings.on_cuda:
            return None
        return self.torch.cuda.max_memory_allocated(self.device) / 1e6

    def deactivate_impl(self) -> None:
        if not hasattr(self, "torch"):  # failed before torch loaded
            return
        self._graphs.clear()
        if self._compiled is not None:
            # The next student starts from an empty dynamo cache (its cache-size limit is per code object).
            self.torch._dynamo.reset()
            self._compiled = None
        self.model = None
        self.torch.set_num_threads(self._threads_before)
        if getattr(self, "settings", None) and self.settings.on_cuda:
            self.torch.cuda.empty_cache()
