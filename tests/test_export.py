"""`dait-edge export`: ONNX fp32 / fp16 / int8 with parity, sidecars, the CLI, and TensorRT's CPU-testable parts.

Students have random weights at 32 px on a tiny CUB tree, so accuracies mean nothing; what is
checked is that every artifact computes what PyTorch computes, says how to feed it, and that bad
input or a failed check leaves no finished-looking file behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dait_edge.cli import cli
from dait_edge.data import load_dataset
from dait_edge.data.images import ImageListDataset, load_rgb
from dait_edge.data.transforms import eval_transform_for
from dait_edge.errors import UserError
from dait_edge.export import tensorrt as T
from dait_edge.export.api import export_run
from dait_edge.export.quantize import graph_stats
from dait_edge.export.recipes import expand_formats, load_recipe, parse_recipe, plan_recipes
from dait_edge.export.source import latest_run, resolve_run
from dait_edge.models import build_model
from dait_edge.records import ExportSummary, RunSummary, Sidecar

REPO = Path(__file__).resolve().parents[1]
IMG = 32


# ------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def cub(tiny_cub):
    return tiny_cub


def no_temp_files(folder: Path) -> bool:
    return not any(p.name.endswith(".tmp") for p in folder.rglob("*"))


def torch_reference(run: Path, cub) -> tuple[torch.Tensor, list[Path]]:
    """PyTorch logits on the test split through the package's own eval transform."""
    info = resolve_run(run)
    model = build_model(info.student, cub.num_classes, pretrained=False, weights=info.checkpoint).eval()
    spec = load_dataset("cub", str(cub.root))
    data = ImageListDataset(spec.split("test"), eval_transform_for(info.data_config))
    with torch.no_grad():
        logits = model(torch.stack([data[i][0] for i in range(len(data))]))
    return logits, [Path(p) for p, _ in spec.split("test")]


# ------------------------------------------------------------------------------ exports per student

STUDENTS = {
    # student -> formats: timm's tiny test models for the two graph families int8 treats differently (plain
    # convolutions; depthwise + squeeze-excite), and torchvision's ShuffleNet-V2 (another library's graph).
    # The registered students go through every format in the demo test.
    "test_resnet": "onnx,onnx-fp16,onnx-int8",
    "test_efficientnet": "onnx,onnx-fp16,onnx-int8",
    "shufflenet_v2_x1_0": "onnx,onnx-fp16",
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory, cub, fake_run):
    """One export per student (module scope: the int8 and predict tests reuse them)."""
    base = tmp_path_factory.mktemp("exports")
    done = {}
    for student, formats in STUDENTS.items():
        run = fake_run(base, student, cub)
        # speed only where there is int8 to compare, to keep the file fast
        done[student] = (
            run,
            export_run(run, formats=formats, measure_speed="int8" in formats, log=lambda m: None),
        )
    return done


@pytest.mark.parametrize("student", list(STUDENTS))
def test_fp32_fp16_export_parity_and_sidecars(exports, student):
    run, summary = exports[student]
    out = run / "export"
    run_summary = RunSummary.read(run)
    by_format = {a.format: a for a in summary.artifacts}
    assert {"onnx-fp32", "onnx-fp16"} <= set(by_format)
    for name, precision in (("onnx-fp32", "fp32"), ("onnx-fp16", "fp16")):
        artifact = out / f"student-{name}.onnx"
        sidecar = Sidecar.read_for(artifact)
        assert json.loads(artifact.with_suffix(".json").read_text())["sidecar_version"] == 1
        assert sidecar.precision == precision and sidecar.format == name
        assert sidecar.input_size == [3, IMG, IMG] and sidecar.classes == run_summary.classes
        assert sidecar.input_name == "input" and sidecar.output_name == "logits"
        assert sidecar.runtime == "onnxruntime" and sidecar.dynamic_batch is True
        assert sidecar.source_checkpoint.path.endswith("student_last.safetensors")
        assert len(sidecar.source_checkpoint.sha256) == 64 and len(sidecar.config_hash) == 64
        assert sidecar.recipe.endswith(f"{name}.toml") and sidecar.opset == 18
        # the reference for a measured top-1 travels with the file (a device gets export/ only)
        assert sidecar.student_top1 == run_summary.student_top1
        parity = sidecar.parity
        assert parity.passed and parity.data == "test split" and parity.samples == 9
        assert parity.agreement >= (99.9 if precision == "fp32" else 99.0)
        assert parity.max_abs_diff < (1e-3 if precision == "fp32" else 5e-2)
        assert by_format[name].size_mb > 0 and by_format[name].parity == parity
    # fp16 halves the weights; batch stays dynamic and inputs stay float32 (keep_io_types)
    assert by_format["onnx-fp16"].size_mb < 0.6 * by_format["onnx-fp32"].size_mb
    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "student-onnx-fp16.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": np.zeros((5, 3, IMG, IMG), np.float32)})[0]
    assert logits.shape == (5, run_summary.num_classes) and logits.dtype == np.float32
    assert ExportSummary.read(out) == summary
    assert no_temp_files(out)


@pytest.mark.parametrize("student", ["test_resnet", "test_efficientnet"])
def test_int8_variants_differ_as_designed(exports, student):
    run, summary = exports[student]
    out = run / "export"
    u8 = graph_stats(out / "student-onnx-int8-u8s8.onnx")
    s8 = graph_stats(out / "student-onnx-int8-s8s8.onnx")
    # u8s8: QOperator -> fused QLinearConv, no float Conv left; activations' zero points are uint8
    assert u8["QLinearConv"] > 0 and u8["Conv"] == 0
    assert "uint8" in u8["zero_point_dtypes"]
    # s8s8: explicit Q/DQ around float Convs (what TensorRT fuses), int8 only, all zero points 0
    assert s8["QLinearConv"] == 0 and s8["Conv"] > 0
    assert s8["QuantizeLinear"] > 0 and s8["DequantizeLinear"] > s8["QuantizeLinear"]  # weights: DQ only
    assert set(s8["zero_point_dtypes"]) - {"int32"} == {"int8"}  # int32: the biases' DequantizeLinear
    assert s8["nonzero_zero_points"] == 0
    for variant in ("u8s8", "s8s8"):
        sidecar = Sidecar.read_for(out / f"student-onnx-int8-{variant}.onnx")
        assert sidecar.precision == "int8" and sidecar.variant == variant
        assert sidecar.parity.threshold == 97.0
        assert sidecar.quantization["calibration"] == {"samples": 12, "data": "train split"}
    # a one-line, measured speed note per converted artifact
    notes = summary.performance
    assert len(notes) == 3 and all("than fp32 on this CPU" in n or "as fast as fp32" in n for n in notes)


def test_predict_from_sidecar_alone_matches_pytorch(exports, cub, tmp_path, layouts):
    run, _ = exports["test_resnet"]
    artifact = run / "export" / "student-onnx-fp32.onnx"
    reference, paths = torch_reference(run, cub)
    # images of other shapes exercise the resize rule (portrait, landscape, smaller than the crop)
    for i, size in enumerate([(70, 50), (41, 90), (20, 16)]):
        paths.append(layouts.write_jpeg(tmp_path / f"extra{i}.jpg", (40 * i, 200, 90), size, seed=i))
    transform = eval_transform_for(resolve_run(run).data_config)
    model = build_model(
        "test_resnet", cub.num_classes, pretrained=False, weights=resolve_run(run).checkpoint
    ).eval()
    with torch.no_grad():
        extra = model(torch.stack([transform(load_rgb(p)) for p in paths[-3:]]))
    reference = torch.cat([reference, extra]).numpy()

    # in a fresh interpreter where torch cannot be imported: the sidecar + ORT + numpy + PIL are enough
    code = (
        "import sys, json; sys.modules['torch'] = None\n"
        "from dait_edge.export.predict import predict, predict_logits\n"
        f"paths = {[str(p) for p in paths]!r}\n"
        f"print(json.dumps({{'logits': predict_logits({str(artifact)!r}, paths).tolist(),"
        f" 'pred': predict({str(artifact)!r}, paths)}}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    got = json.loads(done.stdout)
    logits = np.array(got["logits"])
    assert np.abs(logits - reference).max() < 1e-3
    assert (logits.argmax(1) == reference.argmax(1)).all()
    classes = Sidecar.read_for(artifact).classes
    assert [c for c, _ in got["pred"]] == [classes[i] for i in reference.argmax(1)]
    assert all(0 < p <= 1 for _, p in got["pred"])


# ------------------------------------------------------------------------------ CLI on a real run


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, cub, tiny_vlm):
    """A real (tiny) `run_distill` run dir: CUB fixture, tiny OpenCLIP, 32 px, 1 + 1 epochs."""
    from dait_edge.config import DistillConfig
    from dait_edge.distill import run_distill

    base = tmp_path_factory.mktemp("distill")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAIT_EDGE_CACHE", str(base / "cache"))
        config = DistillConfig(
            dataset="cub",
            data_root=str(cub.root),
            vlm=str(tiny_vlm.config),
            vlm_pretrained=str(tiny_vlm.weights),
            student="test_efficientnet",
            method="dait_l",
            teacher="test_resnet",
            stage1_epochs=1,
            stage2_epochs=1,
            img_size=IMG,
            batch_size=4,
            workers=0,
            device="cpu",
            pretrained=False,
            progress=False,
            out=str(base / "runs" / "real"),
            teacher_cache=str(base / "teachers"),
            cache_dir=str(base / "cache"),
        )
        summary = run_distill(config)
    return Path(summary.run_dir)


def test_cli_export_real_run(real_run):
    result = CliRunner().invoke(
        cli, ["export", str(real_run), "--fp16", "--int8", "--json", "--calib-samples", "8"]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    summary = ExportSummary.from_dict(json.loads(result.stdout))
    out = real_run / "export"
    assert summary.out == str(out)
    names = {"onnx-fp32", "onnx-fp16", "onnx-int8-u8s8", "onnx-int8-s8s8"}
    assert summary.formats() == names
    for name in names:
        assert (out / f"student-{name}.onnx").is_file() and (out / f"student-{name}.json").is_file()
    sidecar = Sidecar.read_for(out / "student-onnx-fp32.onnx")
    run_summary = RunSummary.read(real_run)
    assert sidecar.student == run_summary.student and sidecar.classes == run_summary.classes
    assert sidecar.source_checkpoint.sha256 == run_summary.student_sha256
    assert sidecar.parity.passed and sidecar.parity.data == "test split"
    assert ExportSummary.read(out) == summary
    assert len(summary.performance) == 3


def test_cli_checkpoint_path_and_latest_run(real_run, tmp_path):
    """A bare checkpoint inside a run works; no path picks the newest runs/*/summary.json."""
    ckpt = real_run / "stage2" / "student_best.safetensors"
    assert resolve_run(ckpt).run_dir == real_run and resolve_run(ckpt).checkpoint == ckpt
    assert resolve_run(real_run, checkpoint="best").checkpoint == ckpt
    runs = tmp_path / "runs"
    for i, name in enumerate(["old", "new"]):
        (runs / name).mkdir(parents=True)
        (runs / name / "summary.json").write_text("{}")
        os.utime(runs / name / "summary.json", (1000 + i, 1000 + i))
    assert latest_run(runs) == runs / "new"


def test_cli_bad_input(tmp_path, monkeypatch, cub, fake_run, assert_user_error):
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    assert_user_error(runner.invoke(cli, ["export"]), "no finished run under runs/")
    run = fake_run(tmp_path, "test_resnet", cub)
    assert_user_error(
        runner.invoke(cli, ["export", str(run), "--formats", "onnx,tflite"]),
        "unknown export format 'tflite'",
        "(use --formats).",  # the CLI names the flag the library's error is about
    )
    assert_user_error(runner.invoke(cli, ["export", str(tmp_path / "nowhere")]), "does not exist")
    (run / "stage2" / "student_best.safetensors").unlink()
    assert_user_error(runner.invoke(cli, ["export", str(run), "--checkpoint", "best"]), "is missing")
    loose = tmp_path / "loose" / "student.safetensors"
    loose.parent.mkdir()
    loose.write_bytes((run / "stage2" / "student_last.safetensors").read_bytes())
    assert_user_error(runner.invoke(cli, ["export", str(loose)]), "no summary.json")
    assert not (run / "export").exists()


def test_fp32_parity_failure_removes_artifact(tmp_path, cub, fake_run, assert_user_error):
    """A recipe given as a path, with an unreachable threshold: exit 2, no artifact, no sidecar, no temp."""
    run = fake_run(tmp_path, "test_efficientnet", cub)
    recipe = tmp_path / "strict.toml"
    recipe.write_text(
        (REPO / "export" / "onnx-fp32.toml").read_text().replace("threshold = 99.9", "threshold = 100.5")
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", str(run), "--formats", str(recipe), "--out", str(out)])
    assert_user_error(result, "onnx-fp32 disagrees with PyTorch", "artifact removed")
    assert not any(p.suffix in (".onnx", ".json") for p in out.iterdir())
    assert no_temp_files(out)


def test_random_inputs_when_data_is_gone(tmp_path, cub, fake_run):
    """The run's own data is not on this machine (exported elsewhere): parity on seeded random inputs. A
    --data-root given explicitly that does not exist is an error instead (the bad-input catalogue)."""
    import dataclasses
    import shutil

    copy = tmp_path / "CUB"
    shutil.copytree(cub.root, copy)
    run = fake_run(tmp_path, "test_efficientnet", dataclasses.replace(cub, root=copy))
    shutil.rmtree(copy)
    summary = export_run(run, parity_samples=4, measure_speed=False, log=lambda m: None)
    parity = summary.artifacts[0].parity
    assert parity.data == "random" and parity.samples == 4 and parity.passed
    assert parity.top1_pytorch is None and "data unreachable" in parity.note


# ------------------------------------------------------------------------------ recipes and formats


def test_format_expansion_and_plan():
    assert expand_formats() == ["onnx-fp32"]
    assert expand_formats(fp16=True) == ["onnx-fp32", "onnx-fp16"]
    assert expand_formats(int8=True) == ["onnx-fp32", "onnx-int8-u8s8", "onnx-int8-s8s8"]
    assert expand_formats("onnx-fp16", trt=True) == ["onnx-fp16", "trt-fp16"]
    recipes, wanted = plan_recipes(["trt-int8"])
    assert [r.name for r in recipes] == ["onnx-fp32", "onnx-int8-s8s8", "trt-int8"]  # sources first
    assert wanted == {"trt-int8"}
    with pytest.raises(UserError, match="unknown export format"):
        load_recipe("onnx-int4")


def test_recipes_hold_the_designed_settings():
    fp32, fp16 = load_recipe("onnx"), load_recipe("onnx-fp16")
    assert (fp32.opset, fp32.exporter, fp32.dynamic_batch, fp32.threshold, fp32.parity_fatal) == (
        18,
        "torchscript",
        True,
        99.9,
        True,
    )
    assert fp16.fp16["keep_io_types"] and "Softmax" in fp16.fp16["op_block_list"] and fp16.threshold == 99.0
    u8, s8 = load_recipe("onnx-int8-u8s8"), load_recipe("onnx-int8-s8s8")
    assert (u8.quantize["activation_type"], u8.quantize["weight_type"]) == ("QUInt8", "QInt8")
    assert s8.quantize["format"] == "QDQ" and s8.quantize["activation_symmetric"] and not s8.parity_fatal
    with pytest.raises(UserError, match="unknown keys"):
        parse_recipe({"name": "x", "kind": "onnx", "precision": "fp32", "opsett": 17})
    with pytest.raises(UserError, match="precision must be"):
        parse_recipe({"name": "x", "kind": "onnx", "precision": "fp8"})


# ------------------------------------------------------------------------------ TensorRT (no GPU needed)


def test_trt_recipes_and_profile_shapes():
    fp16, int8 = load_recipe("trt-fp16"), load_recipe("trt-int8")
    assert (fp16.kind, fp16.source, int8.source) == ("trt", "onnx-fp16", "onnx-int8-s8s8")
    assert fp16.batch_range == (1, 8, 32)
    assert T.profile_shapes([3, 64, 64], fp16.batch_range) == (
        (1, 3, 64, 64),
        (8, 3, 64, 64),
        (32, 3, 64, 64),
    )
    with pytest.raises(UserError, match="min_batch <= opt_batch <= max_batch"):
        parse_recipe(
            {
                "name": "t",
                "kind": "trt",
                "precision": "fp16",
                "source": "onnx-fp16",
                "trt": {"min_batch": 4, "opt_batch": 2, "max_batch": 8},
            }
        )
    with pytest.raises(UserError, match="needs source"):
        parse_recipe({"name": "t", "kind": "trt", "precision": "fp16"})


def test_trt_engine_naming_and_flags():
    assert T.engine_name("student", "trt-fp16", "10.3.0.26", "NVIDIA H100 80GB HBM3") == (
        "student-trt-fp16-trt10.3-nvidia-h100-80gb-hbm3.engine"
    )
    assert (
        T.engine_name("student", "trt-int8", "11.0.0", "Orin (nvgpu)")
        == "student-trt-int8-trt11.0-orin-nvgpu.engine"
    )

    class FakeTrt:  # only what network_flags reads
        class NetworkDefinitionCreationFlag:
            STRONGLY_TYPED = 1

    assert T.network_flags(FakeTrt) == 2


def test_trt_skipped_with_one_line_when_unavailable(tmp_path, cub, monkeypatch, fake_run):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` fails as on a machine without it
    available = T.trt_availability()
    assert not available.ok and "TensorRT is not installed" in available.reason
    run = fake_run(tmp_path, "test_efficientnet", cub)
    lines: list[str] = []
    summary = export_run(run, trt=True, parity_samples=4, measure_speed=False, log=lines.append)
    assert [a.format for a in summary.artifacts] == ["onnx-fp32"]  # the rest of the export happened
    assert summary.skipped == [
        "skipped trt-fp16: TensorRT is not installed; pip install 'dait-edge[tensorrt]' on the CUDA machine."
    ]
    assert lines == summary.skipped
    out = run / "export"
    assert (
        not list(out.glob("*.engine")) and not (out / "student-onnx-fp16.onnx").exists()
    )  # fp16 was only a source
    assert no_temp_files(out)


@pytest.mark.skipif(
    not T.trt_availability().ok, reason="needs tensorrt and a CUDA GPU (builds a real engine)"
)
def test_trt_engine_builds_on_gpu(tmp_path, cub, fake_run):  # pragma: no cover - GPU machines only
    run = fake_run(tmp_path, "test_resnet", cub)
    summary = export_run(run, formats="trt-fp16,trt-int8", parity_samples=8, measure_speed=False)
    engines = list((run / "export").glob("*.engine"))
    assert len(engines) == 2 and all(e.with_suffix(".json").is_file() for e in engines)
    assert summary.formats() == {"trt-fp16", "trt-int8"}


def test_interrupted_export_leaves_nothing_that_looks_finished(tmp_path, cub, monkeypatch, fake_run):
    """Killed while checking fp16: fp32 is complete (artifact + sidecar), fp16 leaves no file at all."""
    from dait_edge.export import parity

    real_compare = parity.compare

    def compare(reference, artifact, batch, threshold):
        if threshold == 99.0:  # the fp16 recipe's
            raise KeyboardInterrupt
        return real_compare(reference, artifact, batch, threshold)

    monkeypatch.setattr(parity, "compare", compare)
    run = fake_run(tmp_path, "test_efficientnet", cub)
    with pytest.raises(KeyboardInterrupt):
        export_run(run, fp16=True, parity_samples=4, measure_speed=False, log=lambda m: None)
    out = run / "export"
    assert sorted(p.name for p in out.iterdir()) == ["student-onnx-fp32.json", "student-onnx-fp32.onnx"]
