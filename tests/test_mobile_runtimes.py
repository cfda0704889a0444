"""ExecuTorch (.pte) and LiteRT (.tflite) artifacts: exported, checked, profiled, chosen, served, refused.

The files come from the shared `exported_run` (conftest exports executorch-fp32 and litert-int8 there when the
extras are installed); each test that writes copies it first. executorch-int8 is built here on a synthetic
model that needs its fallback, litert-fp32 by the bench tool's test.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from dait_edge.cli import cli
from dait_edge.errors import UserError
from dait_edge.records import ExportSummary, Sidecar
from tests.conftest import MOBILE_EXTRAS, needs_mobile

executorch_only = needs_mobile("executorch")
litert_only = needs_mobile("litert")
FILES = {
    name: f"student-{name}.{'pte' if kind == 'executorch' else 'tflite'}"
    for kind, names in MOBILE_EXTRAS.items()
    for name in names
}
KIND_MARKS = {"executorch": executorch_only, "litert": litert_only}
EACH_FORMAT = [
    pytest.param(name, marks=KIND_MARKS[kind]) for kind, names in MOBILE_EXTRAS.items() for name in names
]


def _tool(script: str):
    """A script of tools/ as a module (its main(argv) is what the command line runs)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / script
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _test_images(cub):
    from dait_edge.data import load_dataset

    return load_dataset("cub", str(cub.root)).split("test")


@pytest.mark.parametrize("name", EACH_FORMAT)
def test_each_on_device_file_matches_pytorch_and_says_how_it_was_delegated(name, exported_run):
    entry = ExportSummary.read(exported_run / "export").by_format(name)
    sidecar = Sidecar.verified_for(entry.path)
    kind, precision = name.split("-")
    assert entry.path.endswith(FILES[name]) and sidecar.runtime == kind and sidecar.precision == precision
    assert sidecar.dynamic_batch is False and sidecar.opset is None  # a static batch of 1, no ONNX opset
    delegation = sidecar.delegation
    assert delegation["partitions"] >= 1 and 0 < delegation["delegated_ops"] <= delegation["ops"]
    assert delegation["undelegated_ops"] == {}  # test_efficientnet lowers whole onto XNNPACK in both runtimes
    parity = entry.parity
    assert parity.samples == 9 and parity.data == "test split"
    if precision == "fp32":
        assert parity.passed and parity.agreement == 100.0 and parity.max_abs_diff < 1e-4
        return
    # int8: the same record as ONNX int8; 4 validation images cannot judge the budget, and it says so
    accuracy = entry.accuracy
    assert accuracy.checked is False and "4 validation images" in accuracy.reason
    assert 0 < parity.max_abs_diff < 0.5 and accuracy.quantised_nodes > 10
    quantization = sidecar.quantization
    assert quantization["calibration"]["samples"] == 8 and quantization["per_channel"] is True
    if kind == "litert":  # litert-torch's int8 file takes and returns int8: the scales are in the sidecar
        assert quantization["io"]["input"]["dtype"] == "int8" and quantization["io"]["input"]["scale"] > 0
    table = (exported_run / "export" / FILES[name]).with_suffix(".layers.csv").read_text().splitlines()
    assert table[0].startswith("rank,node,op") and len(table) == accuracy.quantised_nodes + 1
    assert all(row.split(",")[2] in ("Conv2d", "Linear") for row in table[1:])


@executorch_only
@litert_only
def test_profile_report_and_an_independent_evaluation_agree(tmp_path, exported_run, tiny_cub, capsys):
    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    data = ["--dataset", "cub", "--data-root", str(tiny_cub.root)]
    rows = []
    for profile in ("x86-executorch-xnnpack", "x86-litert-cpu", "x86-ort-cpu-fp32"):
        result = CliRunner().invoke(
            cli, ["profile", str(run / "export"), "--profile", profile, "--json", *data]
        )
        assert result.exit_code == 0, result.output
        rows += json.loads(result.output[result.output.index("{") :])["rows"]
    mobile = {row["format"]: row for row in rows if row["format"] in FILES}
    assert set(mobile) == set(FILES)
    for name, row in mobile.items():
        assert row["backend"] == name.split("-")[0] and row["batch"] == 1 and row["latency_ms"]["p50"] > 0
    # the saved top-1 is what each file does in its runtime's own API, fed from its sidecar alone
    figures = tmp_path / "verified.json"
    args = [str(run), "--dataset", "cub", "--data-root", str(tiny_cub.root), "--json", str(figures)]
    assert _tool("verify_on_device.py").main(args) == 0  # in this process: the runtimes are imported already
    out = capsys.readouterr().out
    assert out.count("reproduces the saved") == len(FILES), out
    verified = json.loads(figures.read_text())
    for name, row in mobile.items():
        figure = verified[str(run / "export" / FILES[name])]
        assert figure["top1"] == pytest.approx(row["top1"]) and figure["saved"] == {
            row["profile"]: row["top1"]
        }
    result = CliRunner().invoke(cli, ["report", str(run), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    places = {entry["profile"]: entry for entry in report["best"]}
    assert {"x86-executorch-xnnpack", "x86-litert-cpu", "x86-ort-cpu-fp32", "all runtimes"} <= set(places)
    across = places["all runtimes"]
    compared = {candidate["format"] for candidate in across["candidates"]}
    assert compared == {*FILES, "onnx-fp32"}  # every runtime's artifacts in one choice
    assert across["chosen_format"] in compared and "test_efficientnet on all runtimes" in result.output


@pytest.mark.parametrize("name", EACH_FORMAT)
def test_predict_serves_the_file_and_refuses_it_once_changed(name, tmp_path, exported_run, tiny_cub):
    from dait_edge.export.parity import torch_logits
    from dait_edge.export.predict import predict, predict_logits, preprocess
    from dait_edge.export.source import load_student, resolve_run

    artifact = tmp_path / FILES[name]
    shutil.copy(exported_run / "export" / FILES[name], artifact)
    shutil.copy(Sidecar.path_for(exported_run / "export" / FILES[name]), Sidecar.path_for(artifact))
    paths = [path for path, _ in _test_images(tiny_cub)][:3]
    logits = predict_logits(artifact, paths)
    from PIL import Image

    sidecar = Sidecar.read_for(artifact)
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(preprocess(image, sidecar))
    student = load_student(resolve_run(exported_run))
    tolerance = 1e-4 if name.endswith("fp32") else 0.5  # int8: the parity bound export checked
    np.testing.assert_allclose(logits, torch_logits(student, np.stack(images)), atol=tolerance)
    assert [label for label, _ in predict(artifact, paths)] == [sidecar.classes[i] for i in logits.argmax(1)]
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    with pytest.raises(UserError, match="does not match its sidecar"):
        predict(artifact, paths)


def test_a_missing_runtime_is_one_line_naming_the_extra(monkeypatch, tmp_path, exported_run):
    from dait_edge.export.on_device import require_executorch, require_litert

    for module in (
        "executorch",
        "executorch.version",
        "ai_edge_litert",
        "ai_edge_litert.interpreter",
        "litert_torch",
    ):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(UserError, match=r"pip install 'dait-edge\[executorch\]'"):
        require_executorch("profile x")
    with pytest.raises(UserError, match=r"pip install 'dait-edge\[litert\]'.*no torch"):
        require_litert("profile x")
    export = exported_run / "export"
    result = CliRunner().invoke(cli, ["profile", str(export), "--profile", "x86-litert-cpu"])
    assert result.exit_code == 2 and "Traceback" not in result.output and "dait-edge[litert]" in result.output
    run = tmp_path / "run"
    shutil.copytree(exported_run, run, ignore=shutil.ignore_patterns("export"))
    result = CliRunner().invoke(cli, ["export", str(run), "--formats", "executorch-fp32"])
    assert result.exit_code == 2 and "dait-edge[executorch]" in result.output.strip().splitlines()[-1]
    assert not list((run / "export").glob("*.pte"))  # nothing half-written


@executorch_only
def test_int8_over_its_budget_keeps_the_worst_module_float(tmp_path):
    """A model whose first convolution sees an input outlier (in a channel it ignores): per-tensor int8 of that
    input loses the rest of its range, predictions flip, and the fallback returns exactly that module to float
    (ranked worst by its own error) to get within the budget; the record is the lowered file's, judged by
    ExecuTorch."""
    import torch

    from dait_edge.export.build import Int8Judge
    from dait_edge.export.images import ImageBatch
    from dait_edge.export.mobile import build_mobile
    from dait_edge.export.recipes import load_recipe

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 5),
    ).eval()
    with torch.no_grad():
        model[0].weight[:, 0] = 0  # input channel 0 (the outlier's) changes nothing in float
    rng = np.random.default_rng(0)

    def batch(count):
        images = rng.standard_normal((count, 3, 12, 12)).astype(np.float32)
        images[:, 0, 0, 0] = 1000.0  # one outlier pixel per image: per-tensor int8 loses the rest
        with torch.no_grad():
            labels = model(torch.from_numpy(images)).argmax(1).numpy()  # fp32 is right on every image
        return ImageBatch(images, labels, "synthetic")

    validation, test, calibration = batch(60), batch(9), batch(16)
    lines = []
    judge = Int8Judge(
        validation=validation,
        num_classes=5,
        budget=5.0,  # 3 of 60 images
        method=None,
        max_fallback=2,
        test=test,
        measure_speed=False,
        input_size=[3, 12, 12],
        log=lines.append,
    )
    recipe = load_recipe("executorch-int8")
    built = build_mobile(recipe, model, tmp_path / "m.pte", [3, 12, 12], calibration, judge, lines.append)
    record, layers = built.int8.record, built.int8.layers
    assert layers[0].node == "0" and layers[0].in_float and layers[0].channel_sqnr_db < 10  # ranked worst
    assert record.fp32_val_top1 == 100.0 and record.plain_val_top1 < 95.0  # plain int8 over the budget
    assert [step.nodes for step in record.steps] == [1] and record.nodes_in_float == ["0"]
    assert record.budget_met and record.quantised_nodes == 3 and record.max_fallback_nodes == 2
    from dait_edge.export.on_device import PteProgram

    kept = PteProgram(tmp_path / "m.pte").logits(validation.images)  # the record is the file's
    assert record.val_top1 == pytest.approx(100.0 * (kept.argmax(1) == validation.labels).mean(), abs=1e-3)
    assert record.drop <= 5.0 and built.plain_test_logits.shape == (9, 5)
    assert any("1 node(s) in float" in line for line in lines)


LITERT_LOG = """STARTING!
Num threads: [4]
Graph: [/data/local/tmp/student-litert-int8.tflite]
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=9 first=87112 curr=51629 min=51629 max=87112 avg=58147.4 std=11478 p5=51629 median=51962 p95=87112
Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=2990 curr=2913 min=2727 max=3189 avg=2950.34 std=109 p5=2750 median=2901 p95=3100
Inference timings in us: Init: 17187, First inference: 3512, Warmup (avg): 3512.39, Inference (avg): 2950.34
Memory footprint delta from the start of the tool (MB): init=4.21094 overall=46.0859
"""
EXECUTORCH_LOG = """I 00:00:00.001 executorch:executor_runner.cpp:84] Model file student-executorch-fp32.pte is loaded.
I 00:00:00.250 executorch:executor_runner.cpp:203] Model executed successfully 50 time(s) in 612.5 ms.
"""


@executorch_only
@litert_only
def test_a_phones_benchmark_log_becomes_a_row_the_report_reads(tmp_path, exported_run):
    run = tmp_path / "run"
    shutil.copytree(exported_run, run, ignore=shutil.ignore_patterns("profile"))
    export = run / "export"
    (tmp_path / "litert.txt").write_text(LITERT_LOG)
    (tmp_path / "et.txt").write_text(EXECUTORCH_LOG)
    cases = [
        ("student-litert-int8.tflite", "arm64-litert-cpu", "litert.txt", 2.901, 3.189),  # median, max
        ("student-executorch-fp32.pte", "arm64-executorch-xnnpack", "et.txt", 12.25, 12.25),  # mean only
    ]
    for name, profile, log, p50, p99 in cases:
        args = ["profile", str(export / name), "--profile", profile, "--from-log", str(tmp_path / log)]
        result = CliRunner().invoke(cli, [*args, "--device-name", "Pixel 8", "--json"])
        assert result.exit_code == 0, result.output
        row = json.loads(result.output[result.output.index("{") :])["rows"][0]
        assert row["latency_ms"]["p50"] == pytest.approx(p50) and row["latency_ms"]["p99"] == pytest.approx(
            p99
        )
        assert row["batch"] == 1 and row["top1"] is None and "log" in row["note"]
        assert (run / "profile" / f"{profile}.json").is_file()  # saved in the run, as profile does
    litert = json.loads((run / "profile" / "arm64-litert-cpu.json").read_text())
    assert litert["measured"]["threads"] == 4 and litert["rows"][0]["peak_mem_mb"] == pytest.approx(46.0859)
    result = CliRunner().invoke(cli, ["report", str(run), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0 and "test_efficientnet on arm64-litert-cpu" in result.output
    # a log about another file, or one without a timed run, is refused in one line
    (tmp_path / "other.txt").write_text(LITERT_LOG.replace("litert-int8.tflite", "litert-fp32.tflite"))
    wrong = [("student-litert-int8.tflite", "other.txt", "measured student-litert-fp32.tflite")]
    wrong += [("student-litert-int8.tflite", "et.txt", "no litert benchmark result")]
    for name, log, message in wrong:
        args = [
            "profile",
            str(export / name),
            "--profile",
            "arm64-litert-cpu",
            "--from-log",
            str(tmp_path / log),
        ]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_undelegated_ops_are_named_and_refused_where_the_recipe_requires_full_delegation(tmp_path):
    """Checked on the records alone: a file with an op outside XNNPACK warns by default and is refused under
    `require_full_delegation = true`; an on-device recipe converted from another format is refused."""
    import dataclasses

    from dait_edge.export.lowering import Lowered, check_delegation
    from dait_edge.export.recipes import load_recipe, parse_recipe

    lowered = Lowered({"backend": "XNNPACK", "partitions": 2, "undelegated_ops": {"PADV2": 1}})
    recipe = load_recipe("litert-int8")
    said = []
    assert "PADV2 x1" in check_delegation(recipe, lowered, said.append) and said
    assert check_delegation(recipe, Lowered({"undelegated_ops": {}}), said.append) is None
    strict = dataclasses.replace(recipe, lowering={**recipe.lowering, "require_full_delegation": True})
    with pytest.raises(
        UserError, match=r"ops not delegated to XNNPACK \(PADV2 x1\).*require_full_delegation"
    ):
        check_delegation(strict, lowered, said.append)
    with pytest.raises(UserError, match="lowered from the PyTorch student"):
        parse_recipe(
            {"name": "x", "kind": "executorch", "precision": "int8", "source": "onnx-fp32"}, "x.toml"
        )
