"""TensorRT runner: serialised engines (.engine / .plan) through the TensorRT Python API, without torch.

Device buffers, copies and the stream come from cuda-python (`cuda.bindings.runtime`, or the older
`cuda.cudart`). With `cuda_graphs = true` in the profile, the engine's enqueue (execute_async_v3) is
captured once per batch size into a CUDA graph and each request is one graph launch, which removes
most of the per-kernel launch cost at batch 1; where capture fails (layers that synchronise, such as
loops) the row measures plain enqueue and says so. During timing the input stays in device memory
and the clock stops when the stream is synchronised. Written against TensorRT 10.x / 11.x (named I/O
tensors, set_input_shape, set_tensor_address, execute_async_v3).
"""

from __future__ import annotations

import numpy as np

from dait_edge.errors import UserError
from dait_edge.profiling.runner import Runner, random_input, register_runner
from dait_edge.profiling.target import Profile
from dait_edge.profiling.timing import Timed
from dait_edge.records import Sidecar

INSTALL = (
    "pip install tensorrt cuda-python (on a Jetson, TensorRT comes with JetPack; add pip install cuda-python)"
)


def import_cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python, e.g. the wheels beside JetPack 5 / 6
    return cudart


def _failed(cudart, err) -> bool:
    return err != cudart.cudaError_t.cudaSuccess


def _check(cudart, result, what: str):
    """cuda-python calls return (error, *values): one line on an error, else the value(s)."""
    err, *values = result
    if _failed(cudart, err):
        cudart.cudaGetLastError()  # clear it, so the message is about this call and not the next
        raise UserError(
            f"CUDA error in {what}: {getattr(err, 'name', err)}; check the GPU and driver (nvidia-smi)."
        )
    return values[0] if len(values) == 1 else values


def gpu_name(cudart) -> str | None:
    """Device 0's name, or None without a GPU or a driver (cudaGetDeviceCount then fails)."""
    err, count = cudart.cudaGetDeviceCount()
    if _failed(cudart, err) or not count:
        return None
    err, props = cudart.cudaGetDeviceProperties(0)
    if _failed(cudart, err):
        return None
    name = props.name
    return (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).strip("\x00 ")


def _require(profile: Profile) -> dict[str, str]:
    try:
        import tensorrt as trt
    except ImportError:
        raise UserError(
            f"profile {profile.name} runs TensorRT engines and needs the tensorrt package: {INSTALL}."
        ) from None
    except Exception as err:  # noqa: BLE001 - a broken install fails while loading its CUDA libraries
        detail = (str(err).splitlines() or [""])[0][:120]
        raise UserError(
            f"TensorRT failed to load ({type(err).__name__}: {detail}); reinstall it: {INSTALL}."
        ) from None
    try:
        cudart = import_cudart()
    except ImportError:
        raise UserError(
            f"profile {profile.name} needs cuda-python for device buffers and the stream: {INSTALL}."
        ) from None
    gpu = gpu_name(cudart)
    if gpu is None:
        raise UserError(
            f"profile {profile.name} needs a CUDA GPU; none found here (no device or no driver) — run it on the"
            " GPU the engines were built on, with TensorRT installed there."
        )
    return {"tensorrt": trt.__version__, "gpu": gpu}


@register_runner("tensorrt", "TensorRT: serialised .engine / .plan files on the GPU they were built for")
class TrtRunner(Runner):
    suffixes = (".engine", ".plan")
    profile_keys = ("cuda_graphs",)

    @classmethod
    def require(cls, profile: Profile) -> dict[str, str]:
        """Versions and the GPU for the hardware line; a one-line error naming what to install."""
        return _require(profile)

    def label(self, backend: str) -> str:
        # One way per profile (graph launch, or plain enqueue where capture fails): the format names it.
        return self.sidecar.format

    def activate_impl(self) -> None:
        import tensorrt as trt

        _require(self.profile)
        self.trt, self.cudart = trt, import_cudart()
        self._graphs: list = []
        self._buffers: dict[str, object] = {}
        self._buffer_bytes = 0
        self.stream = self.context = self.engine = None
        self.sidecar = Sidecar.verified_for(self.artifact)
        self.providers = list(self.profile.providers or ("cuda",))
        self.modes = ("cudagraph",) if self.profile.extra.get("cuda_graphs", False) else ("enqueue",)
        self.input_size = tuple(self.sidecar.input_size)
        artifact = self.artifact
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(artifact.read_bytes())
        if self.engine is None:
            built = self.sidecar.tensorrt.tensorrt if self.sidecar.tensorrt else "?"
            raise UserError(
                f"TensorRT {trt.__version__} cannot load {artifact.name} (built with TensorRT {built} on"
                f" {self.sidecar.gpu or 'an unknown GPU'}): an engine runs only with the TensorRT version"
                " and GPU it was built with; rebuild it on this machine with `dait-edge export RUN --trt`."
            )
        self.context = self.engine.create_execution_context()
        self._find_tensors()
        self.batch_range = self._batch_range()
        self.stream = _check(self.cudart, self.cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._allocate(self.batch_range[1])

    # ------------------------------------------------------------------ engine facts

    def _find_tensors(self) -> None:
        engine, trt = self.engine, self.trt
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not self.outputs:
            raise UserError(
                f"{self.artifact.name} has {len(inputs)} inputs and {len(self.outputs)} outputs; the profiler runs"
                " classifiers with one image input: re-export it with `dait-edge export RUN --trt`."
            )
        self.input_name = inputs[0]
        wanted = self.sidecar.output_name
        self.output_name = wanted if wanted in self.outputs else self.outputs[0]
        self.dtypes = {}
        for name in names:
            kind = engine.get_tensor_dtype(name)
            try:
                self.dtypes[name] = np.dtype(trt.nptype(kind))
            except TypeError:  # bf16 / fp8 / int4 have no numpy type
                raise UserError(
                    f"{self.artifact.name}: tensor {name} is {kind}, which numpy cannot hold; export with fp32"
                    " inputs and outputs (keep_io_types = true in the fp16 recipe)."
                ) from None

    def _batch_range(self) -> tuple[int, int]:
        shape = tuple(self.engine.get_tensor_shape(self.input_name))
        if shape[0] >= 0:  # a static batch
            return int(shape[0]), int(shape[0])
        low, _, high = self.engine.get_tensor_profile_shape(self.input_name, 0)
        return int(low[0]), int(high[0])

    def _set_batch(self, batch: int) -> tuple[int, ...]:
        """Input shape for the next enqueue; returns the output shape it implies."""
        if not self.context.set_input_shape(self.input_name, (batch, *self.input_size)):
            raise UserError(
                f"{self.artifact.name} rejects input shape {(batch, *self.input_size)}; re-export it for this input size."
            )
        return tuple(self.context.get_tensor_shape(self.output_name))

    def _allocate(self, max_batch: int) -> None:
        """Device buffers for the largest batch the engine takes; every smaller batch reuses them."""
        cudart = self.cudart
        self._set_batch(max_batch)
        for name in (self.input_name, *self.outputs):
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise UserError(
                    f"{self.artifact.name}: output {name} has a data-dependent shape {shape}; not a classifier."
                )
            nbytes = int(np.prod(shape)) * self.dtypes[name].itemsize
            pointer = _check(cudart, cudart.cudaMalloc(nbytes), "cudaMalloc")
            self._buffers[name] = pointer
            self._buffer_bytes += nbytes
            self.context.set_tensor_address(name, int(pointer))

    # ------------------------------------------------------------------ running

    def _sync(self) -> None:
        _check(self.cudart, self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(int(self.stream)):
            raise UserError(f"TensorRT could not run {self.artifact.name} (see the TensorRT log above).")

    def _copy(self, destination: int, source: int, nbytes: int, kind) -> None:
        _check(
            self.cudart,
            self.cudart.cudaMemcpyAsync(destination, source, nbytes, kind, self.stream),
            "cudaMemcpyAsync",
        )

    def _upload(self, images: np.ndarray) -> np.ndarray:
        """Copy `images` to the input buffer; returns the host array, which must live until the stream syncs."""
        host = np.ascontiguousarray(images, dtype=self.dtypes[self.input_name])
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._copy(int(self._buffers[self.input_name]), host.ctypes.data, host.nbytes, kind)
        return host

    def infer(self, images: np.ndarray) -> np.ndarray:
        """Logits for any number of images, run in chunks the engine's optimisation profile accepts."""
        low, high = self.batch_range
        outputs = []
        for start in range(0, len(images), high):
            chunk = images[start : start + high]
            padded = (
                np.concatenate([chunk, np.zeros((low - len(chunk), *chunk.shape[1:]), chunk.dtype)])
                if len(chunk) < low
                else chunk
            )
            out_shape = self._set_batch(len(padded))
            host_in = self._upload(padded)
            self._enqueue()
            host_out = np.empty(out_shape, dtype=self.dtypes[self.output_name])
            kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            self._copy(host_out.ctypes.data, int(self._buffers[self.output_name]), host_out.nbytes, kind)
            self._sync()
            del host_in
            outputs.append(host_out[: len(chunk)].astype(np.float32))
        return np.concatenate(outputs)

    def timed(self, batch: int, mode: str) -> Timed:
        low, high = self.batch_range
        if not low <= batch <= high:
            return Timed(
                None,
                "tensorrt",
                skip=f"batch {batch} is outside the engine's optimisation profile ({low}..{high});"
                " change [trt] min_batch / max_batch in the export recipe",
            )
        self._set_batch(batch)
        host = self._upload(random_input(self.input_size, batch))
        # TensorRT applies a new input shape on the next enqueue: run once before capturing or timing.
        self._enqueue()
        self._sync()
        del host
        note = ""
        if mode == "cudagraph":
            graph, failure = self._capture()
            if graph is not None:
                cudart, stream = self.cudart, self.stream

                def launch():
                    _check(cudart, cudart.cudaGraphLaunch(graph, stream), "cudaGraphLaunch")

                return Timed(launch, "tensorrt-cudagraph", self._sync, "one CUDA graph launch per request")
            note = f"CUDA graph capture failed ({failure}); measured plain enqueue"
        return Timed(self._enqueue, "tensorrt", self._sync, note)

    def _capture(self):
        """A CUDA graph of one enqueue at the current shape and addresses, or (None, why not)."""
        cudart = self.cudart
        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        (err,) = cudart.cudaStreamBeginCapture(self.stream, mode)
        if _failed(cudart, err):
            cudart.cudaGetLastError()
            return None, getattr(err, "name", str(err))
        enqueued = False
        try:
            enqueued = self.context.execute_async_v3(int(self.stream))
        finally:
            err, graph = cudart.cudaStreamEndCapture(self.stream)  # always leave capture mode
        if not enqueued or _failed(cudart, err):
            cudart.cudaGetLastError()
            if not _failed(cudart, err) and graph is not None:
                cudart.cudaGraphDestroy(graph)
            return None, "enqueue is not capturable" if not enqueued else getattr(err, "name", str(err))
        err, graph_exec = cudart.cudaGraphInstantiate(graph, 0)
        cudart.cudaGraphDestroy(graph)
        if _failed(cudart, err):
            cudart.cudaGetLastError()
            return None, getattr(err, "name", str(err))
        self._graphs.append(graph_exec)
        return graph_exec, ""

    def device_memory_mb(self) -> float | None:
        """Activations TensorRT reserves for the engine plus the I/O buffers."""
        engine = self.engine
        scratch = getattr(engine, "device_memory_size_v2", None) or getattr(engine, "device_memory_size", 0)
        return (int(scratch) + self._buffer_bytes) / 1e6

    def deactivate_impl(self) -> None:
        cudart = getattr(self, "cudart", None)
        if cudart is None:  # failed before the runtime loaded: nothing to free
            return
        for graph_exec in self._graphs:
            cudart.cudaGraphExecDestroy(graph_exec)
        self._graphs.clear()
        self.context = None  # before its buffers go
        self.engine = None
        for pointer in self._buffers.values():
            cudart.cudaFree(pointer)
        self._buffers.clear()
        if self.stream is not None:
            cudart.cudaStreamDestroy(self.stream)
            self.stream = None
