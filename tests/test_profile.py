"""`dait-edge profile`: target profiles, timing statistics, rows on real exported artifacts, no torch needed.

Also the PyTorch runner (eager, compiled) on a tiny run, and the parts of the TensorRT runner a CPU
machine can check: engine discovery and the one-line errors when TensorRT, cuda-python or a GPU is missing.
"""

from __future__ import annotations

import ctypes
import dataclasses
import enum
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dait_edge.cli import cli
from dait_edge.data import load_dataset
from dait_edge.errors import UserError
from dait_edge.profiling.api import find_artifacts, profile_artifacts
from dait_edge.profiling.profiles import PROFILES_DIR, available_profiles, load_profile
from dait_edge.profiling.runner import random_input, runner_for
from dait_edge.profiling.timing import measure, summarise
from dait_edge.records import ProfileResult, Sidecar


def test_shipped_profiles_parse():
    names = set(available_profiles())
    assert {
        "x86-ort-cpu-fp32",
        "x86-ort-cpu-int8",
        "arm-ort-cpu-int8",
        "x86-torch-cpu",
        "cuda-torch",
        "cuda-trt",
        "cuda-ort-trt",
        "jetson-orin-trt-fp16",
        "x86-executorch-xnnpack",
        "x86-litert-cpu",
        "arm64-executorch-xnnpack",
        "arm64-litert-cpu",
    } <= names
    for name in names:
        profile = load_profile(name)
        assert (
            profile.name == name
            and profile.device
            and profile.runtime in ("onnxruntime", "tensorrt", "torch", "executorch", "litert")
        )
        assert profile.batch_sizes and profile.iterations >= 1


def test_bad_profiles(tmp_path):
    with pytest.raises(UserError, match="unknown profile 'x86'"):
        load_profile("x86")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nruntime = "openvino"\n')
    with pytest.raises(
        UserError,
        match="runtime must be one of executorch, litert, onnxruntime, tensorrt, torch, not 'openvino'",
    ):
        load_profile(str(bad))
    # Wrong types are named with what they must be, not found later as a TypeError mid-measurement.
    for line, message in [
        ("batch_sizes = 8", r"batch_sizes must be a list of integers of at least 1, e.g. \[1, 8\], not 8"),
        ("batch_sizes = [0, 1]", "batch_sizes must be a list of integers"),
        ('iterations = "50"', "iterations must be an integer of at least 1, not '50'"),
        ('formats = "onnx-fp32"', "formats must be a list of strings"),
        ('latency_budget_ms = "10"', "latency_budget_ms must be a positive number of milliseconds"),
        ("threads = -1", "threads must be an integer, 0 for the runtime's default"),
    ]:
        bad.write_text(f'name = "bad"\nruntime = "onnxruntime"\n{line}\n')
        with pytest.raises(UserError, match=message):
            load_profile(str(bad))


def test_summary_statistics_are_ordered_and_exact():
    stats = summarise([float(v) for v in range(1, 101)])
    assert stats.mean == pytest.approx(50.5) and stats.p50 == pytest.approx(50.5)
    assert stats.p90 == pytest.approx(90.1) and stats.p99 == pytest.approx(99.01)
    assert stats.min <= stats.p50 <= stats.p90 <= stats.p99


def test_measure_warms_up_then_times_each_call():
    calls = []
    stats = measure(lambda: calls.append(1), warmup=3, iterations=7)
    assert len(calls) == 10 and stats.samples == 7


@pytest.fixture(scope="module")
def exported(tmp_path_factory, exported_run, tiny_cub):
    """A copy of the shared exported run (these tests write profile/ into it)."""
    run = tmp_path_factory.mktemp("profile") / "run"
    shutil.copytree(exported_run, run)
    return run, tiny_cub


def test_rows_have_every_field_and_are_saved_in_the_run(exported):
    run, cub = exported
    args = [
        "profile",
        str(run / "export"),
        "--profile",
        "x86-ort-cpu-int8",
        "--batch-sizes",
        "1,2",
        "--dataset",
        "cub",
        "--data-root",
        str(cub.root),
        "--json",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert {e["student"] for e in printed["best"]} == {"test_efficientnet"}  # --json adds the choice
    report = ProfileResult.from_dict(printed, "profile --json")
    rows = report.rows
    assert {(r.format, r.batch) for r in rows} == {
        (f, b) for f in ("onnx-fp32", "onnx-int8-u8s8") for b in (1, 2)
    }
    for row in rows:
        lat = row.latency_ms
        assert 0 < lat.min <= lat.p50 <= lat.p90 <= lat.p99 and lat.samples == 50
        assert row.throughput_ips == pytest.approx(1e3 * row.batch / lat.mean)
        assert row.params == 123 and row.macs == 456 and row.peak_mem_mb > 10
        assert row.size_mb == pytest.approx(Path(row.artifact).stat().st_size / 1e6)
        sidecar = Sidecar.read_for(row.artifact)
        # top-1 from the sidecar's preprocessing matches the export's own parity measurement
        assert row.top1 == pytest.approx(sidecar.parity.top1_artifact, abs=1e-3)
        # the model is the trained weights, so two runs with one config stay apart
        assert row.model == sidecar.source_checkpoint.sha256 and row.student == "test_efficientnet"
        assert row.label == row.format and row.reference is False  # one way of running each file
        assert row.top1_data == f"cub test split of {cub.root.resolve()}, {row.top1_data.split(', ')[-1]}"
        assert row.top1_data.endswith(f"{len(load_dataset('cub', str(cub.root)).split('test'))} images")
    hardware = report.measured.hardware
    assert report.measured.warmup == 10 and hardware.cpu_count >= 1 and hardware.versions["onnxruntime"]
    assert "torch" not in hardware.versions and {r.profile for r in rows} == {"x86-ort-cpu-int8"}
    saved = ProfileResult.read(run / "profile" / "x86-ort-cpu-int8.json")
    assert len(saved.rows) == 4 and saved.measured == report.measured


def test_profile_bad_input(assert_user_error, exported, tmp_path):
    run, _ = exported
    runner = CliRunner()
    assert_user_error(
        runner.invoke(cli, ["profile", str(run / "export"), "--profile", "nope"]), "unknown profile"
    )
    assert_user_error(runner.invoke(cli, ["profile", str(tmp_path / "missing")]), "does not exist")
    assert_user_error(runner.invoke(cli, ["profile", str(tmp_path)]), "no artifacts")


def test_a_refused_cuda_graph_is_a_skip_not_an_abort(exported, tmp_path):
    """ORT refuses a graph at session creation when nodes fall off the GPU provider: that row is skipped with
    ORT's reason and the artifact's other rows stand."""
    from dait_edge.profiling.runners.ort import OrtRunner

    run, _ = exported
    profile = dataclasses.replace(load_profile("x86-ort-cpu-fp32"), extra={"cuda_graphs": True})
    runner = OrtRunner(run / "export" / "student-onnx-fp32.onnx", profile).activate()
    assert runner.modes == ("default", "cudagraph")
    runner.device = "cuda"  # as on a GPU machine

    def refuse(**_):
        raise Exception(
            "This session cannot use the graph capture feature as requested by the user as all the graph nodes have not been assigned to TensorrtExecutionProvider"
        )  # noqa: E501

    runner._session = refuse
    timed = runner.timed(1, "cudagraph")
    assert timed.run_once is None and timed.skip.startswith(
        "CUDA graph not possible: This session cannot use"
    )
    runner.deactivate()
    with pytest.raises(UserError, match="cuda_graphs must be true or false, not 'false'"):
        OrtRunner.require(dataclasses.replace(profile, extra={"cuda_graphs": "false"}))


def test_saved_rows_are_merged_by_artifact_and_batch(exported, tmp_path):
    """Profiling one file, or another batch size, keeps the run's other rows (the fp32 top-1 among them);
    rows measured another way are replaced, not mixed."""
    run, cub = exported
    saved = run / "profile" / "x86-ort-cpu-int8.json"
    saved.unlink(missing_ok=True)
    fp32, int8 = run / "export" / "student-onnx-fp32.onnx", run / "export" / "student-onnx-int8-u8s8.onnx"
    profile = dataclasses.replace(load_profile("x86-ort-cpu-int8"), iterations=5)
    quiet = {"log": lambda m: None}
    profile_artifacts([fp32], profile, batch_sizes=[1], dataset="cub", data_root=str(cub.root), **quiet)
    profile_artifacts([int8], profile, batch_sizes=[2], **quiet)
    profile_artifacts([fp32], profile, batch_sizes=[1], dataset="cub", data_root=str(cub.root), **quiet)
    rows = ProfileResult.read(saved).rows
    assert sorted((Path(r.artifact).name, r.batch) for r in rows) == [
        ("student-onnx-fp32.onnx", 1),
        ("student-onnx-int8-u8s8.onnx", 2),
    ]
    assert next(r for r in rows if r.format == "onnx-fp32").top1 is not None

    # Rows of a file since removed, or of another model (the run re-distilled), are dropped on the next save.
    result = ProfileResult.read(saved)
    stale = [
        dataclasses.replace(rows[0], artifact=str(run / "export" / "gone.onnx")),
        dataclasses.replace(rows[1], batch=8, model="old"),
    ]
    dataclasses.replace(result, rows=rows + stale).write(saved)
    profile_artifacts([int8], profile, batch_sizes=[2], **quiet)
    assert len(ProfileResult.read(saved).rows) == 2

    said = []
    other_way = dataclasses.replace(profile, iterations=6)
    profile_artifacts([int8], other_way, batch_sizes=[1], log=said.append)
    rows = ProfileResult.read(saved).rows
    assert [(r.format, r.batch) for r in rows] == [("onnx-int8-u8s8", 1)]
    assert any("replacing rows measured another way" in line for line in said)


def test_rows_survive_a_run_folder_that_cannot_be_written(exported, tmp_path):
    run = tmp_path / "read-only-run"
    shutil.copytree(exported[0], run)
    shutil.rmtree(run / "profile", ignore_errors=True)
    (run / "profile").write_text("a file where the folder would go")
    said = []
    profile = dataclasses.replace(load_profile("x86-ort-cpu-fp32"), iterations=3)
    result = profile_artifacts([run / "export"], profile, batch_sizes=[1], log=said.append)
    assert [r.format for r in result.rows] == ["onnx-fp32"]
    assert any(line.startswith("warning: rows not saved in the run (cannot write") for line in said)


def test_top1_needs_the_classes_the_model_was_trained_on(exported, tmp_path, layouts, assert_user_error):
    run, cub = exported
    other = layouts.cub(
        tmp_path / "CUB-more", classes=cub.num_classes + 1, train_per_class=1, test_per_class=1
    )
    args = ["profile", str(run / "export"), "--profile", "x86-ort-cpu-fp32", "--batch-sizes", "1"]
    result = CliRunner().invoke(cli, [*args, "--dataset", "cub", "--data-root", str(other.root)])
    assert_user_error(
        result,
        "are not those",
        "was trained on",
        "pass the dataset and root the run was trained on",
        "--data-root",
    )


def test_peak_memory_restarts_per_artifact():
    from dait_edge.profiling.memory import peak_rss_mb, reset_peak

    if not reset_peak():
        pytest.skip("this OS cannot reset the peak resident size (/proc/self/clear_refs)")
    block = np.ones(300_000_000 // 8)  # 300 MB, touched
    high = peak_rss_mb()
    del block
    assert reset_peak()
    assert peak_rss_mb() < high - 200


def test_profiling_needs_no_torch(exported):
    """On the device there may be no PyTorch (nor TensorRT): block their imports and profile anyway."""
    run, _ = exported
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
        "sys.modules['tensorrt'] = None; sys.modules['cuda'] = None\n"
        "from dait_edge.cli import main\n"
        f"main(['profile', {str(run / 'export')!r}, '--profile', 'x86-ort-cpu-fp32', '--batch-sizes', '1', '--json'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert [row["format"] for row in rows] == ["onnx-fp32"]


def test_io_bound_request_stays_bound_to_its_buffers(exported):
    """The device path (IO binding) on the CPU: same logits as a plain run, and a new input written in place
    is what the next run sees: what a replayed CUDA graph relies on."""
    from dait_edge.profiling.runners.ort import BoundRequest, OrtRunner

    run, _ = exported
    with OrtRunner(run / "export" / "student-onnx-fp32.onnx", load_profile("x86-ort-cpu-fp32")) as runner:
        first, second = runner.random_input(2, seed=1), runner.random_input(2, seed=2)
        request = BoundRequest(runner.session, first, "cpu")
        request()
        np.testing.assert_allclose(request.logits(), runner.infer(first), rtol=1e-5, atol=1e-6)
        request.input.update_inplace(second)
        request()
        np.testing.assert_allclose(request.logits(), runner.infer(second), rtol=1e-5, atol=1e-6)
        assert not np.allclose(runner.infer(first), runner.infer(second))


def test_ort_cuda_graph_options_and_the_cpu_fallback(exported, tmp_path):
    from dait_edge.profiling.runners.ort import with_options

    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    options = {"TensorrtExecutionProvider": {"trt_fp16_enable": "True"}}
    # Only the first provider captures (ORT wants every node of the graph on it).
    assert with_options(gpu, options, cuda_graph=True) == [
        ("TensorrtExecutionProvider", {"trt_fp16_enable": "True", "trt_cuda_graph_enable": "1"}),
        ("CUDAExecutionProvider", {}),
        ("CPUExecutionProvider", {}),
    ]
    assert with_options(gpu[1:], {}, cuda_graph=True)[0] == (
        "CUDAExecutionProvider",
        {"enable_cuda_graph": "1"},
    )
    assert with_options(gpu, options)[1] == ("CUDAExecutionProvider", {})

    # The shipped cuda-ort-trt profile asks for CUDA graphs; on this CPU machine the default mode falls
    # back to the CPU provider and says so, and the graph mode is skipped with the reason.
    profile = load_profile("cuda-ort-trt")
    assert profile.extra["cuda_graphs"] is True
    report = profile_artifacts(
        [exported[0] / "export"],
        dataclasses.replace(profile, iterations=5),
        batch_sizes=[1, 2],
        save=False,
        log=lambda m: None,
    )
    assert [(r.backend, r.batch) for r in report.rows] == [("onnxruntime", 1), ("onnxruntime", 2)]
    assert all("measured with CPUExecutionProvider" in r.note for r in report.rows)
    assert len(report.skipped) == 2 and all("CUDA graphs need" in s for s in report.skipped)

    bad = tmp_path / "bad-options.toml"
    bad.write_text('name = "bad"\nruntime = "onnxruntime"\nprovider_options = { trt_fp16_enable = "True" }\n')
    with pytest.raises(UserError, match=r"provider_options must be tables"):
        profile_artifacts([exported[0] / "export"], load_profile(str(bad)), save=False, log=lambda m: None)


# ------------------------------------------------------------------------------ the PyTorch runner


def torch_profile(tmp_path: Path, modes: str) -> Path:
    """x86-torch-cpu as shipped, with other modes, one thread (steady on a shared 2-core box) and fewer runs."""
    text = (PROFILES_DIR / "x86-torch-cpu.toml").read_text()
    lines = [line for line in text.splitlines() if not line.startswith(("modes", "threads", "iterations"))]
    path = tmp_path / "x86-torch-cpu.toml"
    path.write_text("\n".join([*lines, f"modes = {modes}", "threads = 1", "iterations = 20", ""]))
    return path


def test_torch_rows_match_the_onnx_top1_and_are_saved(exported, tmp_path):
    run, cub = exported
    args = ["profile", str(run / "export"), "--profile", str(torch_profile(tmp_path, '["eager"]'))]
    result = CliRunner().invoke(
        cli, [*args, "--batch-sizes", "1,2", "--dataset", "cub", "--data-root", str(cub.root), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = ProfileResult.from_dict(json.loads(result.stdout))
    rows = report.rows
    assert [(r.backend, r.batch) for r in rows] == [("torch-eager", 1), ("torch-eager", 2)]
    checkpoint = run / "stage2" / "student_last.safetensors"
    fp32 = Sidecar.read_for(run / "export" / "student-onnx-fp32.onnx").parity
    for row in rows:
        assert row.profile == "x86-torch-cpu" and row.format == "checkpoint"
        assert row.student == "test_efficientnet" and row.precision == "fp32" and row.providers == ["cpu"]
        # the PyTorch model is what parity compares against; one checkpoint runs several ways, each labelled
        assert row.reference is True and row.label == "checkpoint (torch-eager)"
        lat = row.latency_ms
        assert 0 < lat.min <= lat.p50 <= lat.p90 <= lat.p99 and lat.samples == 20
        assert row.size_mb == pytest.approx(checkpoint.stat().st_size / 1e6)
        assert row.params == 123 and row.macs == 456 and Path(row.artifact).name == checkpoint.name
        # the same pixels (the sidecar's preprocessing) through PyTorch and the fp32 ONNX graph: within one image
        assert abs(row.top1 - fp32.top1_artifact) <= 100.0 / fp32.samples + 1e-3
    hardware = report.measured.hardware
    assert hardware.versions["torch"] == torch.__version__ and "onnxruntime" not in hardware.versions
    saved = ProfileResult.read(run / "profile" / "x86-torch-cpu.json")
    assert [r.backend for r in saved.rows] == ["torch-eager", "torch-eager"]


def test_torch_compiled_mode(exported):
    """torch.compile compiles C++ kernels on first use (seconds even for the tiny test model, cold), hence its
    own test at batch 1."""
    run, _ = exported
    profile = load_profile("x86-torch-cpu")
    assert profile.extra["modes"] == ["eager", "compiled"]
    profile = dataclasses.replace(profile, threads=1, warmup=2, iterations=10)
    threads_before = torch.get_num_threads()
    report = profile_artifacts([run], profile, batch_sizes=[1], save=False, log=lambda m: None)
    assert [row.backend for row in report.rows] == ["torch-eager", "torch-compiled"]
    compiled = report.rows[1]
    assert "compiled in" in compiled.note and compiled.latency_ms.samples == 10
    assert torch.get_num_threads() == threads_before  # the runner gives the thread count back

    # the compiled student computes what the eager one does
    with runner_for("torch")(run, profile) as runner:
        compiled_logits = runner.timed(1, "compiled").run_once().float().numpy()  # same seeded input
        eager_logits = runner.infer(random_input(runner.input_size, 1))
        np.testing.assert_allclose(compiled_logits, eager_logits, rtol=1e-3, atol=1e-4)


def test_torch_runner_finds_runs(exported, tmp_path):
    run, _ = exported
    profile = load_profile("x86-torch-cpu")
    checkpoint = run / "stage2" / "student_last.safetensors"
    # a run, a folder of runs, the run's export folder and the checkpoint all mean the same run
    for given in (run, run.parent, run / "export", checkpoint):
        expected = checkpoint if given == checkpoint else run
        assert [Path(p).resolve() for p in find_artifacts([given], profile)] == [expected.resolve()], given
    assert len(find_artifacts([run, run / "export"], profile)) == 1
    with pytest.raises(UserError, match="not a student checkpoint"):
        find_artifacts([run / "export" / "student-onnx-fp32.onnx"], profile)
    with pytest.raises(UserError, match="no distill runs"):
        find_artifacts([tmp_path], profile)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_torch_without_a_gpu_is_one_line(assert_user_error, exported):
    run, _ = exported
    result = CliRunner().invoke(cli, ["profile", str(run), "--profile", "cuda-torch"])
    assert_user_error(result, "profile cuda-torch needs a CUDA GPU; none found here", "x86-torch-cpu")


def test_torch_profile_keys_are_checked(exported, tmp_path):
    run, _ = exported
    base = load_profile("x86-torch-cpu")
    for extra, message in (
        ({"modes": ["jit"]}, "modes must be a list"),
        ({"precision": "int8"}, "precision must be one of"),
        ({"precision": "fp16"}, "CUDA only"),
    ):
        with pytest.raises(UserError, match=message):
            profile_artifacts([run], dataclasses.replace(base, extra={**base.extra, **extra}), save=False)


# ------------------------------------------------------------------------------ TensorRT, without TensorRT


def fake_engines(folder: Path, sidecar) -> dict[str, Path]:
    """Engine files with sidecars as `dait-edge export --trt` names them (the bytes are not an engine)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, fmt in (
        ("student-trt-fp16-trt10.3-nvidia-jetson-orin.engine", "trt-fp16"),
        ("student-trt-int8-trt10.3-nvidia-jetson-orin.engine", "trt-int8"),
        ("other-trt-fp16.plan", "trt-fp16"),
    ):
        path = folder / name
        path.write_bytes(b"not an engine")
        sidecar(format=fmt, runtime="tensorrt", precision=fmt.rsplit("-", 1)[1]).write_for(path)
        made[name] = path
    (folder / "half-written-trt-fp16.engine").write_bytes(b"")  # no sidecar: not finished
    (folder / "student-onnx-fp32.onnx").write_bytes(b"")
    sidecar().write_for(folder / "student-onnx-fp32.onnx")
    return made


def test_engine_discovery(tmp_path, sidecar):
    made = fake_engines(tmp_path / "export", sidecar)
    names = lambda found: sorted(p.name for p in found)  # noqa: E731
    assert names(find_artifacts([tmp_path], load_profile("jetson-orin-trt-fp16"))) == sorted(
        ["student-trt-fp16-trt10.3-nvidia-jetson-orin.engine", "other-trt-fp16.plan"]
    )
    assert names(find_artifacts([tmp_path], load_profile("cuda-trt"))) == sorted(made)
    engine = made["student-trt-int8-trt10.3-nvidia-jetson-orin.engine"]
    assert find_artifacts([engine], load_profile("cuda-trt")) == [engine]
    with pytest.raises(UserError, match="is not a .engine or .plan file"):
        find_artifacts([tmp_path / "export" / "student-onnx-fp32.onnx"], load_profile("cuda-trt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no artifacts for profile jetson-orin-trt-fp16"):
        find_artifacts([tmp_path / "empty"], load_profile("jetson-orin-trt-fp16"))


def test_tensorrt_profile_without_tensorrt_is_one_line(tmp_path, monkeypatch, sidecar, assert_user_error):
    fake_engines(tmp_path / "export", sidecar)
    args = ["profile", str(tmp_path / "export"), "--profile", "jetson-orin-trt-fp16"]
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    assert_user_error(
        CliRunner().invoke(cli, args), "needs the tensorrt package", "pip install tensorrt cuda-python"
    )

    # TensorRT present but no cuda-python
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    assert_user_error(CliRunner().invoke(cli, args), "needs cuda-python", "pip install tensorrt cuda-python")


def test_tensorrt_profile_without_a_gpu_is_one_line(tmp_path, monkeypatch, sidecar, assert_user_error):
    from dait_edge.profiling.runners import trt as trt_runner

    try:
        cudart = trt_runner.import_cudart()
    except ImportError:
        pytest.skip("cuda-python is not installed here")
    if trt_runner.gpu_name(cudart) is not None:
        pytest.skip("this machine has a GPU")
    fake_engines(tmp_path / "export", sidecar)
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    result = CliRunner().invoke(cli, ["profile", str(tmp_path / "export"), "--profile", "cuda-trt"])
    assert_user_error(result, "profile cuda-trt needs a CUDA GPU; none found here")


# ------------------------------------------------------------------------------ the TensorRT runner, on fakes


class FakeCudart:
    """The cuda-python calls the runner makes; "device" memory is host memory, a graph replays its enqueues."""

    class cudaError_t(enum.Enum):  # noqa: N801 - cuda-python's names
        cudaSuccess = 0
        cudaErrorStreamCaptureInvalidated = 901

    class cudaMemcpyKind(enum.Enum):  # noqa: N801
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    class cudaStreamCaptureMode(enum.Enum):  # noqa: N801
        cudaStreamCaptureModeThreadLocal = 1

    def __init__(self, capture_fails: bool = False):
        self.ok = self.cudaError_t.cudaSuccess
        self.capture_fails = capture_fails
        self.capturing: list | None = None
        self.blocks: dict[int, np.ndarray] = {}

    def cudaGetDeviceCount(self):
        return self.ok, 1

    def cudaGetDeviceProperties(self, index):
        return self.ok, types.SimpleNamespace(name=b"Fake GPU\x00\x00")

    def cudaMalloc(self, nbytes):
        block = np.zeros(nbytes, np.uint8)
        self.blocks[block.ctypes.data] = block
        return self.ok, block.ctypes.data

    def cudaFree(self, pointer):
        del self.blocks[pointer]
        return (self.ok,)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        ctypes.memmove(dst, src, nbytes)
        return (self.ok,)

    def cudaStreamCreate(self):
        return self.ok, 7

    def cudaStreamSynchronize(self, stream):
        return (self.ok,)

    def cudaStreamDestroy(self, stream):
        return (self.ok,)

    def cudaGetLastError(self):
        return (self.ok,)

    def cudaStreamBeginCapture(self, stream, mode):
        self.capturing = []
        return (self.ok,)

    def cudaStreamEndCapture(self, stream):
        graph, self.capturing = self.capturing, None
        if self.capture_fails:
            return self.cudaError_t.cudaErrorStreamCaptureInvalidated, None
        return self.ok, graph

    def cudaGraphInstantiate(self, graph, flags):
        return self.ok, list(graph)

    def cudaGraphLaunch(self, graph, stream):
        for step in graph:
            step()
        return (self.ok,)

    def cudaGraphDestroy(self, graph):
        return (self.ok,)

    def cudaGraphExecDestroy(self, graph):
        return (self.ok,)


def fake_tensorrt(cudart: FakeCudart, batch_range=(2, 4)):
    """An engine for (B, 3, 8, 8) -> (B, 3) logits = the per-channel mean, B in batch_range."""
    low, high = batch_range

    class Context:
        def __init__(self):
            self.batch, self.addresses = None, {}

        def set_input_shape(self, name, shape):
            self.batch = shape[0]
            return low <= shape[0] <= high

        def get_tensor_shape(self, name):
            return (self.batch, 3, 8, 8) if name == "input" else (self.batch, 3)

        def set_tensor_address(self, name, pointer):
            self.addresses[name] = pointer

        def execute_async_v3(self, stream):
            batch, source, target = self.batch, self.addresses["input"], self.addresses["logits"]

            def run():
                x = np.ctypeslib.as_array((ctypes.c_float * (batch * 192)).from_address(source))
                logits = x.reshape(batch, 3, 64).mean(axis=2).astype(np.float32)
                ctypes.memmove(target, logits.ctypes.data, logits.nbytes)

            (cudart.capturing.append if cudart.capturing is not None else lambda step: step())(run)
            return True

    class Engine:
        num_io_tensors = 2
        device_memory_size_v2 = 1000

        def get_tensor_name(self, index):
            return ("input", "logits")[index]

        def get_tensor_mode(self, name):
            return "in" if name == "input" else "out"

        def get_tensor_dtype(self, name):
            return "float32"

        def get_tensor_shape(self, name):
            return (-1, 3, 8, 8) if name == "input" else (-1, 3)

        def get_tensor_profile_shape(self, name, index):
            return [(low, 3, 8, 8), (low, 3, 8, 8), (high, 3, 8, 8)]

        def create_execution_context(self):
            return Context()

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine() if data == b"fake engine" else None

    return types.SimpleNamespace(
        __version__="10.3.0",
        Logger=Logger,
        Runtime=Runtime,
        TensorIOMode=types.SimpleNamespace(INPUT="in", OUTPUT="out"),
        nptype=lambda kind: np.float32,
    )


def install_fakes(monkeypatch, cudart: FakeCudart) -> None:
    bindings = types.SimpleNamespace(runtime=cudart)
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(cudart))
    monkeypatch.setitem(sys.modules, "cuda", types.SimpleNamespace(bindings=bindings))
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)


def fake_engine_dir(folder: Path, sidecar, content: bytes = b"fake engine") -> Path:
    engine = folder / "student-trt-fp16-trt10.3-fake-gpu.engine"
    folder.mkdir(parents=True)
    engine.write_bytes(content)
    sidecar(format="trt-fp16", runtime="tensorrt", precision="fp16", input_size=[3, 8, 8]).write_for(engine)
    return engine


@pytest.mark.parametrize("capture_fails", [False, True])
def test_trt_runner_on_fakes(tmp_path, monkeypatch, capture_fails, sidecar):
    """The runner's own logic (buffers, batch range, chunks, CUDA graph and its fallback) on a fake TensorRT."""
    cudart = FakeCudart(capture_fails)
    install_fakes(monkeypatch, cudart)
    engine = fake_engine_dir(tmp_path / "export", sidecar)
    profile = dataclasses.replace(load_profile("cuda-trt"), warmup=1, iterations=3)
    report = profile_artifacts([tmp_path], profile, batch_sizes=[1, 2, 4, 8], save=False, log=lambda m: None)
    rows = report.rows
    assert [row.batch for row in rows] == [2, 4]  # the engine's profile takes 2..4
    assert (
        len(report.skipped) == 2 and "outside the engine's optimisation profile (2..4)" in report.skipped[0]
    )
    backend = "tensorrt" if capture_fails else "tensorrt-cudagraph"
    assert {row.backend for row in rows} == {backend}
    assert rows[0].label == "trt-fp16"  # one way per profile: the format names the row
    assert ("CUDA graph capture failed" in rows[0].note) == capture_fails
    assert rows[0].device_mem_mb == pytest.approx((1000 + 4 * 192 * 4 + 4 * 3 * 4) / 1e6)
    assert report.measured.hardware.gpu == "Fake GPU" and rows[0].precision == "fp16"

    from dait_edge.profiling.runners.trt import TrtRunner

    with TrtRunner(engine, profile) as runner:
        # chunks of 4, then 1 padded to 2
        images = np.random.default_rng(0).standard_normal((5, 3, 8, 8), dtype=np.float32)
        np.testing.assert_allclose(runner.infer(images), images.reshape(5, 3, 64).mean(axis=2), rtol=1e-6)
        assert cudart.blocks
    assert not cudart.blocks  # every device buffer freed when the runner deactivates


def test_trt_runner_rejects_an_engine_from_elsewhere(tmp_path, monkeypatch, sidecar, assert_user_error):
    install_fakes(monkeypatch, FakeCudart())
    engine = fake_engine_dir(tmp_path / "export", sidecar, b"built by another TensorRT")
    result = CliRunner().invoke(cli, ["profile", str(engine), "--profile", "cuda-trt"])
    assert_user_error(result, "cannot load", "rebuild it on this machine")
