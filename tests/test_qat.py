"""Quantisation-aware int8 (`dait-edge export --qat`): norms folded without changing the function, int8 fake
quantisers with the classifier in float, and, end to end on a tiny trained run, a signed Q/DQ file checked
against its own fake-quantised model, judged on validation images, described by its sidecar."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from dait_edge.cli import cli
from dait_edge.export.qat import fake_quantised, float_layers, fold_batchnorm, quantiser_count
from dait_edge.models import build_model
from dait_edge.records import ExportSummary, Sidecar

pytest.importorskip("modelopt.torch.quantization", reason="QAT needs nvidia-modelopt (the full install)")


@pytest.mark.parametrize("name", ["test_efficientnet", "shufflenet_v2_x1_0"])
def test_folding_the_norms_leaves_the_students_function_unchanged(name):
    torch.manual_seed(0)
    student = build_model(name, 3, pretrained=False).eval()
    for module in student.modules():  # statistics other than the initial ones, as a trained student has
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = student(images)
        folded = fold_batchnorm(student)
        after = student(images)
    assert folded > 5 and not any(type(m) is nn.BatchNorm2d for m in student.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_a_model_whose_module_order_misleads_the_folding_is_quantised_unfolded():
    """A norm declared after a conv it does not follow: folding would change the function, so the model
    is quantised as it is."""

    class Misleading(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_a = nn.Conv2d(3, 4, 3, padding=1)
            self.conv_b = nn.Conv2d(4, 4, 1)
            self.bn = nn.BatchNorm2d(4)  # normalises conv_a's output, not conv_b's
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            x = self.conv_b(torch.relu(self.bn(self.conv_a(x))))
            return self.fc(x.mean((2, 3)))

    torch.manual_seed(1)
    model = Misleading().eval()
    model.bn.running_mean.uniform_(-1, 1)
    calibration = np.random.default_rng(0).standard_normal((4, 3, 8, 8), dtype=np.float32)
    quantised = fake_quantised(model, calibration)
    assert isinstance(quantised.bn, nn.BatchNorm2d)  # not folded into conv_b
    assert isinstance(model.bn, nn.BatchNorm2d)  # the student itself is never changed


def test_fake_quantisers_leave_the_classifier_in_float():
    torch.manual_seed(0)
    student = build_model("test_efficientnet", 3, pretrained=False).eval()
    calibration = np.random.default_rng(0).standard_normal((4, 3, 32, 32), dtype=np.float32)
    quantised = fake_quantised(student, calibration)
    enabled, total = quantiser_count(quantised)
    assert 0 < enabled < total
    classifier = dict(quantised.named_modules())[float_layers(quantised)[0]]
    assert not classifier.weight_quantizer.is_enabled and not classifier.input_quantizer.is_enabled
    assert float_layers(quantised) == ["model.classifier"]
    with pytest.raises(Exception, match="calibration images"):
        fake_quantised(student, calibration[:0])


@pytest.fixture(scope="module")
def qat_export(tmp_path_factory, layouts, tiny_vlm, tiny_config):
    """A tiny trained run (labels only, 3 epochs; 54 of its 72 training images held out, enough to check an
    int8 budget on), exported with post-training and QAT int8."""
    from dait_edge.distill import run_distill

    base = tmp_path_factory.mktemp("qat")
    cub = layouts.cub(base / "cub", classes=3, train_per_class=24, test_per_class=3)
    config = tiny_config(
        cub.root, tiny_vlm.config, tiny_vlm.weights, base, method="none", stage2_epochs=3, val_fraction=0.75
    )
    summary = run_distill(config)
    result = CliRunner().invoke(
        cli,
        [
            "export",
            summary.run_dir,
            "--qat",
            "--qat-epochs",
            "2",
            "--calib-samples",
            "6",
            "--parity-samples",
            "9",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    return summary, ExportSummary.from_dict(json.loads(result.stdout))


def test_qat_exports_signed_qdq_int8_checked_against_its_fake_quantised_model(qat_export):
    summary, exported = qat_export
    qat = exported.by_format("onnx-int8-qat")
    graph = onnx.load(qat.path).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") > 5 and ops.count("DequantizeLinear") >= ops.count("QuantizeLinear")
    sidecar = Sidecar.read(Sidecar.path_for(qat.path))
    stats = sidecar.quantization["graph"]
    # signed int8 with zero point 0 throughout: what TensorRT's explicit quantisation reads
    assert set(stats["zero_point_dtypes"]) == {"int8"} and stats["nonzero_zero_points"] == 0
    # per-channel weights: a DequantizeLinear with an axis and one scale per output channel
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    constants = {
        n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t)
        for n in graph.node
        if n.op_type == "Constant"
    }
    scales = [
        (inits | constants).get(n.input[1])
        for n in graph.node
        if n.op_type == "DequantizeLinear" and any(a.name == "axis" for a in n.attribute)
    ]
    assert any(s is not None and s.size > 1 for s in scales)
    assert qat.parity.samples == 9 and qat.parity.agreement >= 50.0  # against its own fake-quantised model
    details = sidecar.quantization["qat"]
    assert details["epochs"] == 2 and len(details["losses"]) == 2 and details["teacher"] == "student"
    assert details["float_layers"] == ["model.classifier"] and details["train_images"] > 0
    assert all(np.isfinite(epoch["loss"]) for epoch in details["losses"])
    accuracy = qat.accuracy
    assert accuracy.val_images == summary.val_images == 54 and accuracy.calibration == "minmax"
    assert accuracy.checked and accuracy.reason is None
    assert accuracy.drop == pytest.approx(accuracy.fp32_val_top1 - accuracy.val_top1, abs=1e-3)
    assert accuracy.budget_met == (accuracy.drop <= accuracy.budget + 1e-9)
    assert accuracy.plain_val_top1 is not None  # the calibrated model before its fine-tuning


def test_qat_files_get_the_per_layer_error_table(qat_export):
    """Each activation the Q/DQ file quantises, measured against the fine-tuned float weights: its own
    error (its grid on the float activation) and the error accumulated through the quantised model."""
    import csv

    from dait_edge.export.layer_error import qat_layer_errors

    _, exported = qat_export
    qat = exported.by_format("onnx-int8-qat")
    with open(qat.accuracy.layers_csv) as table:
        rows = list(csv.DictReader(table))
    graph = onnx.load(qat.path).graph
    quantised_inputs = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    assert len(rows) >= 5 and {r["tensor"] for r in rows} <= quantised_inputs
    own = [float(r["channel_sqnr_db"]) for r in rows]
    assert own == sorted(own) and all(r["in_float"] == "0" for r in rows)  # worst first; none falls back
    accumulated = [float(r["xmodel_sqnr_db"]) for r in rows if r["xmodel_sqnr_db"]]
    assert len(accumulated) == len(rows) and all(np.isfinite(v) for v in accumulated)
    # the Q/DQ graph as its own reference: each dequantised activation is then exactly the grid applied to
    # the activation it quantised, so both measures agree: the grids and the Q -> DQ pairs are read right
    images = np.random.default_rng(0).standard_normal((4, *exported.input_size), dtype=np.float32)
    itself = qat_layer_errors(qat.path, qat.path, images)
    assert len(itself) >= 5
    assert all(r.xmodel_sqnr_db == pytest.approx(r.sqnr_db, abs=0.05) for r in itself)


def test_qat_never_trains_on_the_images_it_is_judged_on(qat_export):
    from dait_edge.export.images import int8_images, qat_images
    from dait_edge.export.source import resolve_run

    summary, _ = qat_export
    info = resolve_run(summary.run_dir)
    _, validation = int8_images(info, 6, 500)
    training = qat_images(info, 6, 500)
    judged = {image.tobytes() for image in validation.images}
    assert training.labels is not None and len(training.images) == summary.labelled_images
    assert not judged & {image.tobytes() for image in training.images}


def test_qat_weights_also_get_onnx_runtimes_qoperator_int8_judged_against_fp32(qat_export):
    """QOperator kernels can be faster than a Q/DQ graph on a CPU: the fine-tuned weights go through ONNX
    Runtime's u8s8 quantiser too, judged against the fp32 artifact like the QAT file itself."""
    _, exported = qat_export
    by_format = {a.format: a for a in exported.artifacts}
    assert {"onnx-fp32", "onnx-int8-qat", "onnx-int8-qat-u8s8"} <= set(by_format)
    converted = by_format["onnx-int8-qat-u8s8"]
    ops = {n.op_type for n in onnx.load(converted.path).graph.node}
    assert "QLinearConv" in ops
    qat, conv = by_format["onnx-int8-qat"].accuracy, converted.accuracy
    assert qat.checked and conv.checked
    assert conv.fp32_val_top1 == qat.fp32_val_top1  # both against onnx-fp32
    assert Sidecar.read(Sidecar.path_for(converted.path)).variant == "qat-u8s8"
    # export's text output puts them side by side with fp32: validation, test top-1 and latency
    from dait_edge.cli.export_cmd import _describe

    text = _describe(exported)
    side = text[text.index("int8 side by side") :].splitlines()[2:]
    assert [line.split()[0] for line in side] == ["onnx-fp32", "onnx-int8-qat", "onnx-int8-qat-u8s8"]
    for line, artifact in zip(side[1:], (by_format["onnx-int8-qat"], converted), strict=True):
        fields = line.split()
        assert float(fields[1]) == pytest.approx(artifact.accuracy.val_top1, abs=0.01)
        assert float(fields[2]) == pytest.approx(artifact.parity.top1_artifact, abs=0.01)
        assert float(fields[3]) == pytest.approx(artifact.latency_ms_batch1, abs=0.01)


def test_the_qoperator_conversion_is_checked_against_the_weights_it_quantised(qat_export):
    """Its parity reference is the fine-tuned float graph, so it measures the conversion, not QAT's change:
    the recorded logit drift is not the drift from the fp32 student's logits on the same images."""
    from dait_edge.export.images import load_images
    from dait_edge.export.parity import ort_logits
    from dait_edge.export.source import resolve_run

    summary, exported = qat_export
    by_format = {a.format: a for a in exported.artifacts}
    converted = by_format["onnx-int8-qat-u8s8"]
    info = resolve_run(summary.run_dir)
    images = load_images(info.dataset, info.data_root, "test", 9, info.data_config).images
    from_student = np.abs(
        ort_logits(converted.path, images) - ort_logits(by_format["onnx-fp32"].path, images)
    )
    assert converted.parity.samples == 9
    assert abs(converted.parity.max_abs_diff - float(from_student.max())) > 1e-4


def test_bench_int8_adds_the_qat_columns_from_its_own_figures(qat_export, run_tool, tmp_path):
    """`tools/bench_int8.py --qat`: both QAT files timed beside fp32 and post-training int8, each entry's
    ratio and drop following from its own figures."""
    from pathlib import Path

    summary, _ = qat_export
    out = tmp_path / "int8.json"
    args = ["--runs", Path(summary.run_dir).parent, "--calib-samples", "6", "--parity-samples", "9"]
    done = run_tool("bench_int8.py", *args, "--iterations", "5", "--rounds", "1", "--qat", "--json", out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "qat-u8s8 val/test" in done.stdout
    (row,) = json.loads(out.read_text())["rows"]
    for name in ("qat", "qat_u8s8"):
        entry = row[name]
        assert entry["speedup_vs_fp32"] == round(row["fp32"]["p50_ms"] / entry["p50_ms"], 3)
        assert entry["test_drop"] == round(row["fp32"]["test_top1"] - entry["test_top1"], 3)
    # each file evaluated again from its sidecar alone (PIL + ORT) reproduces the exported test top-1
    for name in ("fp32", "plain", "aware", "qat", "qat_u8s8"):
        assert row[name]["sidecar_test_top1"] == pytest.approx(row[name]["test_top1"], abs=1e-3), name
    assert "(as exported)" in done.stdout


def test_qat_auto_runs_only_where_post_training_int8_missed_its_budget(qat_export, tmp_path):
    """--qat-auto: post-training u8s8 is built first and decides; a met budget leaves QAT unbuilt, saying
    why, and a missed one (or any int8 that missed) calls for it."""
    from dait_edge.export.api import qat_unneeded
    from dait_edge.records import ArtifactEntry, Int8Accuracy

    summary, _ = qat_export
    result = CliRunner().invoke(
        cli,
        ["export", summary.run_dir, "--qat-auto", "--max-top1-drop", "100", "--calib-samples", "6"]
        + ["--parity-samples", "9", "--out", str(tmp_path / "auto"), "--json"],
    )
    assert result.exit_code == 0, result.output
    exported = ExportSummary.from_dict(json.loads(result.stdout))
    formats = {a.format for a in exported.artifacts}
    assert "onnx-int8-u8s8" in formats and not formats & {"onnx-int8-qat", "onnx-int8-qat-u8s8"}
    ptq = exported.by_format("onnx-int8-u8s8").accuracy
    assert ptq.checked and ptq.budget_met
    reason = "onnx-int8-qat: not built (--qat-auto): post-training int8 kept the 100-point budget"
    assert any(s.startswith(reason) for s in exported.skipped)
    refused = CliRunner().invoke(cli, ["export", summary.run_dir, "--qat-epochs", "2"])
    assert refused.exit_code == 2 and "given without QAT; add --qat or --qat-auto" in refused.stderr
    both = CliRunner().invoke(cli, ["export", summary.run_dir, "--qat", "--qat-auto"])
    assert both.exit_code == 2 and "pass one" in both.stderr

    def made(met: bool | None, checked: bool = True, variant: str = "u8s8") -> ArtifactEntry:
        accuracy = Int8Accuracy(budget=1.0, checked=checked, calibration="minmax", budget_met=met, drop=0.5)
        return ArtifactEntry("f", "int8", variant, "p", "s", 1.0, None, accuracy=accuracy)

    assert qat_unneeded([made(True)]) and qat_unneeded([made(True), made(False, variant="qat")])
    assert qat_unneeded([made(True), made(False, variant="s8s8")]) is None
    assert qat_unneeded([made(False)]) is None
    assert "could not be checked" in qat_unneeded([made(None, checked=False)])
    assert "no post-training int8" in qat_unneeded([])


def test_qat_can_learn_from_the_runs_intermediate_teacher(
    qat_export, tiny_vlm, tiny_config, assert_user_error
):
    """--qat-teacher teacher: a DAIT run's stage-1 teacher, in its own normalisation, teaches QAT; a run
    that trained none says so in one line."""
    from pathlib import Path

    from dait_edge.distill import run_distill

    summary, _ = qat_export
    runner = CliRunner()
    refused = runner.invoke(cli, ["export", summary.run_dir, "--qat", "--qat-teacher", "teacher"])
    assert_user_error(refused, "has no intermediate teacher", "--qat-teacher")
    from dait_edge.records import RunManifest

    base = Path(summary.run_dir).parent
    dait = run_distill(
        tiny_config(
            RunManifest.read(summary.run_dir).config.data_root,
            tiny_vlm.config,
            tiny_vlm.weights,
            base / "dait",
            method="dait_l",
            stage1_epochs=1,
            stage2_epochs=2,
            val_fraction=0.25,
        )
    )
    args = ["export", dait.run_dir, "--qat", "--qat-teacher", "teacher", "--qat-epochs", "1"]
    result = runner.invoke(cli, [*args, "--calib-samples", "6", "--parity-samples", "9", "--json"])
    assert result.exit_code == 0, result.output
    qat = next(
        a for a in ExportSummary.from_dict(json.loads(result.stdout)).artifacts if a.format == "onnx-int8-qat"
    )
    details = Sidecar.read(Sidecar.path_for(qat.path)).quantization["qat"]
    assert details["teacher"] == "teacher" and len(details["losses"]) == 1
    assert np.isfinite(details["losses"][0]["loss_kd"])


def test_a_qat_killed_after_an_epoch_continues_where_it_stopped(qat_export, tmp_path, monkeypatch):
    """Each finished QAT epoch is saved beside the artifact; the same export run again continues after it,
    and ends with the losses of the uninterrupted QAT. A state from other settings is never resumed."""
    from dait_edge.export import export_run
    from dait_edge.utils import faults

    summary, exported = qat_export
    uninterrupted = Sidecar.read(Sidecar.path_for(exported.by_format("onnx-int8-qat").path))
    out = tmp_path / "export"
    args = dict(formats="onnx-int8-qat", qat=True, qat_epochs=2, calib_samples=6, parity_samples=9, out=out)
    args |= dict(measure_speed=False, progress=False)
    state = out / ".onnx-int8-qat.qat-state.pt"
    faults.reset()
    monkeypatch.setenv(faults.ENV, "enospc@qat-epoch-end#1")  # dies after epoch 1's state is on disk
    with pytest.raises(OSError):
        export_run(summary.run_dir, **args, log=lambda line: None)
    monkeypatch.delenv(faults.ENV)
    assert state.is_file() and not (out / "student-onnx-int8-qat.onnx").exists()

    lines: list[str] = []
    resumed = export_run(summary.run_dir, **args, log=lines.append)
    assert "QAT: resuming after epoch 1/2 (.onnx-int8-qat.qat-state.pt)" in lines
    details = Sidecar.read(Sidecar.path_for(resumed.by_format("onnx-int8-qat").path)).quantization["qat"]
    assert details["losses"] == uninterrupted.quantization["qat"]["losses"]
    assert not state.exists()  # finished: nothing left to resume

    # a state with this QAT's key whose tensors do not fit the model (another Model Optimizer's layout)
    faults.reset()
    monkeypatch.setenv(faults.ENV, "enospc@qat-epoch-end#1")
    with pytest.raises(OSError):
        export_run(summary.run_dir, **args, log=lambda line: None)
    monkeypatch.delenv(faults.ENV)
    saved = torch.load(state, weights_only=True)
    saved["model"].pop(next(iter(saved["model"])))
    torch.save(saved, state)
    lines.clear()
    refitted = export_run(summary.run_dir, **args, log=lines.append)
    assert any("does not fit this model's quantisers; starting afresh" in line for line in lines)
    again = Sidecar.read(Sidecar.path_for(refitted.by_format("onnx-int8-qat").path)).quantization["qat"]
    assert again["losses"] == uninterrupted.quantization["qat"]["losses"] and not state.exists()

    torch.save({"key": "other settings"}, state)
    lines.clear()
    export_run(summary.run_dir, **{**args, "qat_epochs": 1}, log=lines.append)
    assert any("is from other settings" in line for line in lines)
    assert not any("resuming" in line for line in lines) and not state.exists()


class _RecordingTrt:
    """A stand-in for the `tensorrt` module that records what the engine builder asks of it (no GPU here):
    enough of the 10.x / 11.x API for `build_engine`."""

    __version__ = "10.9.0"

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 1

    class MemoryPoolType:
        WORKSPACE = "workspace"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    def __init__(self):
        module = self

        class Config:
            def __init__(self):
                module.config = self
                self.flags, self.pools = [], {}

            def set_memory_pool_limit(self, pool, size):
                self.pools[pool] = size

            def set_flag(self, flag):  # INT8 / FP16: what would make TensorRT choose precisions itself
                self.flags.append(flag)

            def add_optimization_profile(self, profile):
                self.profile = profile

            def create_timing_cache(self, data):
                return data

            def set_timing_cache(self, cache, ignore_mismatch):
                self.cache = cache

            def get_timing_cache(self):
                return type("Cache", (), {"serialize": lambda _self: b"cache"})()

        class Profile:
            def set_shape(self, name, low, opt, high):
                module.shapes = (name, low, opt, high)

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                module.network_flags = flags
                return "network"

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return b"engine"

        class OnnxParser:
            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                module.parsed = path
                return True

        self.Builder, self.OnnxParser = Builder, OnnxParser


def test_tensorrt_reads_the_qat_file_by_explicit_quantisation_never_recalibrating(
    qat_export, tmp_path, monkeypatch
):
    """trt-int8-qat builds from the Q/DQ file as a strongly typed network: no INT8 flag, no calibrator, the
    scales QAT trained; an int8 engine from a graph without Q/DQ (it would be fp32) is refused."""
    import sys

    from dait_edge.errors import UserError
    from dait_edge.export import tensorrt
    from dait_edge.export.recipes import expand_formats, load_recipe, plan_recipes

    recipe = load_recipe("trt-int8-qat")
    assert (recipe.kind, recipe.precision, recipe.source) == ("trt", "int8", "onnx-int8-qat")
    assert "trt-int8-qat" in expand_formats(None, trt=True, qat=True)
    recipes, _ = plan_recipes(["trt-int8-qat"])
    assert [r.name for r in recipes] == ["onnx-fp32", "onnx-int8-qat", "trt-int8-qat"]

    _, exported = qat_export
    fake = _RecordingTrt()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    qdq = exported.by_format("onnx-int8-qat").path
    build = dict(input_name="input", input_size=exported.input_size, batch_range=recipe.batch_range)
    facts = tensorrt.build_engine(qdq, tmp_path / "e.engine", **build, precision="int8")
    assert fake.network_flags == 2 and fake.config.flags == []  # strongly typed, nothing else
    assert not hasattr(fake.config, "int8_calibrator") and fake.parsed == str(qdq)
    count = sum(n.op_type == "QuantizeLinear" for n in onnx.load(qdq).graph.node)
    assert facts.quantization.startswith(f"explicit: {count} QuantizeLinear") and facts.strongly_typed
    assert (tmp_path / "e.engine").read_bytes() == b"engine"
    fp32 = exported.by_format("onnx-fp32").path
    with pytest.raises(UserError, match="has no QuantizeLinear nodes"):
        tensorrt.build_engine(fp32, tmp_path / "f.engine", **build, precision="int8")
    assert tensorrt.build_engine(fp32, tmp_path / "g.engine", **build).quantization is None  # fp16/fp32


def _trt_ready() -> bool:
    from dait_edge.export.tensorrt import trt_availability

    return trt_availability().ok


@pytest.mark.skipif(not _trt_ready(), reason="needs tensorrt and a CUDA GPU (builds a real engine)")
def test_trt_int8_qat_engine_builds_on_gpu(qat_export, tmp_path):  # pragma: no cover - GPU machines only
    from dait_edge.export import export_run

    summary, _ = qat_export
    exported = export_run(
        summary.run_dir,
        formats="trt-int8-qat",
        qat=True,
        qat_epochs=1,
        calib_samples=6,
        parity_samples=8,
        out=tmp_path,
        measure_speed=False,
        progress=False,
    )
    engine = exported.by_format("trt-int8-qat")
    facts = Sidecar.read(Sidecar.path_for(engine.path)).tensorrt
    assert facts.quantization.startswith("explicit:")


def test_the_int8_profile_measures_both_qat_files_and_the_report_says_what_qat_did(qat_export, tmp_path):
    """x86-ort-cpu-int8 measures QAT's Q/DQ file and its u8s8 conversion beside fp32 (and post-training u8s8);
    the report's rule chooses among them, and a QAT candidate's reason says how it was trained and what
    the validation images made of it."""
    import dataclasses

    from dait_edge.profiling.api import profile_artifacts
    from dait_edge.profiling.profiles import load_profile
    from dait_edge.records import Report, RunManifest
    from dait_edge.report import build_report
    from dait_edge.report.tables import int8_layer_sections, loser_reason

    summary, exported = qat_export
    profile = dataclasses.replace(load_profile("x86-ort-cpu-int8"), warmup=1, iterations=3, batch_sizes=[1])
    data_root = RunManifest.read(summary.run_dir).config.data_root
    result = profile_artifacts(
        [exported.out], profile, dataset="cub", data_root=data_root, log=lambda m: None
    )
    assert {r.format for r in result.rows} == {"onnx-fp32", "onnx-int8-qat", "onnx-int8-qat-u8s8"}
    (tmp_path / "result.json").write_text(json.dumps(result.to_dict()))
    build_report([tmp_path / "result.json"], tmp_path / "report", log=lambda m: None)
    report = Report.read(tmp_path / "report")
    (entry,) = report.best
    qat = next(c for c in entry.candidates if c.format == "onnx-int8-qat")
    accuracy = exported.by_format("onnx-int8-qat").accuracy
    said = loser_reason(qat)
    assert said.startswith(qat.reason.rstrip(".")) and "QAT: 2 epoch(s)" in said
    assert f"validation top-1 {accuracy.val_top1}% vs fp32 {accuracy.fp32_val_top1}%" in said
    converted = next(c for c in entry.candidates if c.format == "onnx-int8-qat-u8s8")
    assert "QAT:" not in loser_reason(converted)  # post-training int8 of the fine-tuned weights
    for candidate in entry.candidates:  # whichever this machine's timing chose: the QAT file's section
        candidate.status = "chosen" if candidate is qat else "lost"
    ((title, note, table),) = int8_layer_sections(report)
    assert "onnx-int8-qat" in title and note.startswith("QAT: 2 epoch(s)") and len(table) > 1


def test_a_diverged_qat_is_reported_and_the_rest_of_the_export_is_built(qat_export, tmp_path, monkeypatch):
    """A NaN loss is a training outcome, not bad input: the QAT formats (and what is built from them) are
    listed as not built with the line that says what to change; fp32 is still exported."""
    from dait_edge.export import export_run
    from dait_edge.utils import faults

    summary, _ = qat_export
    faults.reset()
    monkeypatch.setenv(faults.ENV, "nan@qat-step")
    lines: list[str] = []
    exported = export_run(
        summary.run_dir,
        qat=True,
        qat_epochs=1,
        calib_samples=6,
        parity_samples=9,
        out=tmp_path,
        measure_speed=False,
        progress=False,
        log=lines.append,
    )
    assert exported.formats() == {"onnx-fp32"}
    assert exported.skipped == [
        "onnx-int8-qat: not built: QAT epoch 1: the loss became NaN or infinite; lower --qat-lr.",
        "onnx-int8-qat-u8s8: not built: its QAT source diverged (QAT epoch 1: the loss became NaN or infinite;"
        " lower --qat-lr.)",
    ]
    assert lines == exported.skipped and not list(tmp_path.glob("*qat*.onnx"))


def test_qat_settings_tool_scores_each_setting_across_seeds(qat_export, run_tool):
    """tools/qat_settings.py: one row per setting with mean ± std over the seeds; a bad setting is one line."""
    summary, _ = qat_export
    args = ["--settings", "1,1e-4,1", "--settings", "1,1e-4,0", "--seeds", "0,1", "--calib-samples", "6"]
    done = run_tool("qat_settings.py", summary.run_dir, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("1 | ")]
    assert [row[2] for row in rows] == ["1", "0"]
    for row in rows:
        for cell in row[3:7]:
            mean, std = (float(v) for v in cell.split(" ± "))
            assert 0.0 <= mean <= 100.0 and std >= 0.0
    bad = run_tool("qat_settings.py", summary.run_dir, "--settings", "5,fast")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "epochs,lr,ce_weight" in bad.stderr
