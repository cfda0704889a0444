"""ONNX Runtime runner: one session per artifact, the profile's providers and threads.

On the CUDA and TensorRT providers a timed request keeps its input and output in device memory through
IO binding (otherwise every run would also time a host-to-device copy of the images). Profile keys
(besides the common ones): `cuda_graphs = true` adds a mode that replays each request from a CUDA graph
(the CUDA provider's `enable_cuda_graph`, the TensorRT provider's `trt_cuda_graph_enable`; one session
per batch size, because a captured graph has fixed shapes and addresses), and
`[provider_options.NAME]` tables pass options to a provider as they are (e.g. `trt_fp16_enable`,
`trt_engine_cache_enable`).
"""

from __future__ import annotations

import functools

import numpy as np

from dait_edge.errors import UserError
from dait_edge.profiling.runner import Runner, random_input, register_runner
from dait_edge.profiling.target import Profile
from dait_edge.profiling.timing import Timed
from dait_edge.records import Sidecar

DEVICE_OF = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}
GRAPH_OPTIONS = {
    "CUDAExecutionProvider": {"enable_cuda_graph": "1"},
    "TensorrtExecutionProvider": {"trt_cuda_graph_enable": "1"},
}
NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def cuda_graphs_of(profile: Profile) -> bool:
    value = profile.extra.get("cuda_graphs", False)
    if not isinstance(value, bool):
        raise UserError(f"profile {profile.name}: cuda_graphs must be true or false, not {value!r}.")
    return value


def _gpu_name() -> str | None:
    """GPU 0's name from nvidia-smi (no torch or cuda-python on a light install); None where it fails."""
    import subprocess

    try:
        found = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "--id=0"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    name = found.stdout.strip().splitlines()[0] if found.returncode == 0 and found.stdout.strip() else ""
    return name or None


def provider_options_of(profile: Profile) -> dict[str, dict[str, str]]:
    """The profile's `[provider_options.NAME]` tables, values as the strings ORT expects."""
    tables = profile.extra.get("provider_options", {})
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise UserError(
            f"profile {profile.name}: provider_options must be tables such as"
            ' [provider_options.TensorrtExecutionProvider] trt_fp16_enable = "True".'
        )
    return {name: {k: str(v) for k, v in table.items()} for name, table in tables.items()}


def with_options(
    providers: list[str], options: dict[str, dict[str, str]], cuda_graph: bool = False
) -> list[tuple[str, dict[str, str]]]:
    """(provider, options) pairs for InferenceSession; `cuda_graph` switches it on for the first provider only
    (ORT requires every node of a captured graph on that provider, and checks TensorRT's switch first)."""
    return [
        (name, {**options.get(name, {}), **(GRAPH_OPTIONS.get(name, {}) if cuda_graph and i == 0 else {})})
        for i, name in enumerate(providers)
    ]


class BoundRequest:
    """One request whose input and output live on `device` (IO binding): calling it is one timed run."""

    def __init__(self, session, images: np.ndarray, device: str, device_id: int = 0):
        import onnxruntime as ort

        self.session = session
        source, target = session.get_inputs()[0], session.get_outputs()[0]
        images = images.astype(NUMPY_TYPES.get(source.type, np.float32))
        # on the GPU the session runs on (the provider's device_id), not always GPU 0
        self.input = ort.OrtValue.ortvalue_from_numpy(images, device, device_id)
        # A preallocated output: a replayed CUDA graph writes to the address it was captured with.
        shape = (images.shape[0], *target.shape[1:])
        self.output = ort.OrtValue.ortvalue_from_shape_and_type(
            shape, NUMPY_TYPES.get(target.type, np.float32), device, device_id
        )
        self.binding = session.io_binding()
        self.binding.bind_ortvalue_input(source.name, self.input)
        self.binding.bind_ortvalue_output(target.name, self.output)

    def __call__(self) -> None:
        self.session.run_with_iobinding(self.binding)

    def sync(self) -> None:
        self.binding.synchronize_outputs()

    def logits(self) -> np.ndarray:
        return self.output.numpy()


@register_runner("onnxruntime", "ONNX Runtime: .onnx artifacts on the CPU, CUDA or TensorRT providers")
class OrtRunner(Runner):
    """One session per artifact, with the profile's providers and threads."""

    suffixes = (".onnx",)
    profile_keys = ("cuda_graphs", "provider_options")

    @classmethod
    def require(cls, profile: Profile) -> dict[str, str]:
        """Versions for the hardware line; a one-line error when ONNX Runtime is missing."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError(
                f"profile {profile.name} needs ONNX Runtime: pip install onnxruntime (onnxruntime-gpu on a CUDA"
                " machine)."
            ) from None
        provider_options_of(profile)  # malformed keys are reported before any artifact is read
        cuda_graphs_of(profile)
        versions = {"onnxruntime": ort.__version__}
        gpu_providers = [
            p for p in profile.providers if p in DEVICE_OF and p in ort.get_available_providers()
        ]
        if gpu_providers and (gpu := _gpu_name()):
            versions["gpu"] = gpu  # names the machine: two hosts with one CPU model may hold different GPUs
        return versions

    def activate_impl(self) -> None:
        import onnxruntime as ort

        profile = self.profile
        self.sidecar = Sidecar.verified_for(self.artifact)
        providers = profile.providers
        available = ort.get_available_providers()
        self.chosen = [p for p in providers if p in available] or ["CPUExecutionProvider"]
        self.options = ort.SessionOptions()
        if profile.threads:
            self.options.intra_op_num_threads = profile.threads
        self.provider_options = provider_options_of(profile)
        self.graphs: dict[int, tuple[object, BoundRequest]] = {}  # batch -> (session, captured request)
        self.session = self._session()
        self.providers = self.session.get_providers()
        if providers and self.providers[0] != providers[0]:
            # Say it in the row: a TensorRT profile measured on the CPU provider is a different figure. An
            # installed provider can also fail to start (no GPU, missing CUDA libraries): ORT falls back.
            why = "not available here" if providers[0] not in available else "failed to start"
            self.note = f"{providers[0]} {why}; measured with {self.providers[0]}"
        self.device = DEVICE_OF.get(self.providers[0], "cpu")
        self.modes = ("default", "cudagraph") if cuda_graphs_of(profile) else ("default",)
        self.input_name = self.sidecar.input_name or self.session.get_inputs()[0].name
        self.input_size = tuple(self.sidecar.input_size)
        shape = self.session.get_inputs()[0].shape  # [batch, C, H, W]; names for dynamic dimensions
        if len(shape) != 1 + len(self.input_size) or any(
            isinstance(got, int) and got != want for got, want in zip(shape[1:], self.input_size, strict=True)
        ):
            raise UserError(
                f"{self.artifact} takes inputs of shape {shape}, but its sidecar says [batch, "
                f"{', '.join(map(str, self.input_size))}]: the sidecar belongs to another file; export it again."
            )

    def _session(self, cuda_graph: bool = False, providers: list[str] | None = None):
        import onnxruntime as ort

        providers = with_options(providers or self.chosen, self.provider_options, cuda_graph)
        try:
            return ort.InferenceSession(str(self.artifact), self.options, providers=providers)
        except Exception as err:  # noqa: BLE001 - ORT raises its own exception types on a bad file
            if cuda_graph:  # a refusal (nodes off the GPU provider) is the caller's skip, not a bad file
                raise
            raise UserError(
                f"ONNX Runtime cannot load {self.artifact}: {str(err).splitlines()[0]}; re-export it."
            ) from None

    def random_input(self, batch: int, seed: int = 0) -> np.ndarray:
        return random_input(self.input_size, batch, seed)

    @property
    def device_id(self) -> int:
        """The GPU of the first provider (its `device_id` option in the profile; 0 by default)."""
        options = self.provider_options.get(self.providers[0], {}) if self.providers else {}
        return int(options.get("device_id", 0))

    def timed(self, batch: int, mode: str = "default") -> Timed:
        if mode == "cudagraph":
            return self._timed_graph(batch)
        if self.device == "cpu":
            # Host arrays in and out: on the CPU provider that is the whole request.
            return Timed(functools.partial(self.infer, self.random_input(batch)), "onnxruntime")
        request = BoundRequest(self.session, self.random_input(batch), self.device, self.device_id)
        return Timed(request, "onnxruntime", sync=request.sync)

    def _timed_graph(self, batch: int) -> Timed:
        backend = "onnxruntime-cudagraph"
        if self.device == "cpu":
            return Timed(
                None, backend, skip="CUDA graphs need the CUDA or TensorRT provider, not available here"
            )
        if batch not in self.graphs:
            try:
                # Only the provider that runs the default rows (the fallback chain stays without a graph).
                session = self._session(cuda_graph=True, providers=self.providers)
                if session.get_providers()[0] != self.providers[0]:
                    raise RuntimeError(f"{self.providers[0]} did not start with CUDA graphs enabled")
                request = BoundRequest(session, self.random_input(batch), self.device, self.device_id)
                request()  # the first run captures the graph
            except Exception as err:  # noqa: BLE001 - ORT raises its own types, at creation or first run
                message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                return Timed(None, backend, skip=f"CUDA graph not possible: {message}")
            self.graphs[batch] = (session, request)
        request = self.graphs[batch][1]
        return Timed(request, backend, sync=request.sync, note="each request replays a captured CUDA graph")

    def infer(self, images: np.ndarray) -> np.ndarray:
        dtype = NUMPY_TYPES.get(self.session.get_inputs()[0].type, np.float32)
        return self.session.run(None, {self.input_name: images.astype(dtype, copy=False)})[0]

    def deactivate_impl(self) -> None:
        self.session = None
        getattr(self, "graphs", {}).clear()
