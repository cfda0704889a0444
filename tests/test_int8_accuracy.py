"""int8 that keeps its accuracy, on a deliberately fragile model: one layer's output range is dominated by a
planted outlier channel, so per-tensor int8 erases the channels that carry the classes. Accuracy-aware
export returns that layer to float and meets the budget; a robust model keeps everything quantised; the
per-layer table ranks the planted layer first; the search is reproducible."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image
from torch import nn

from dait_edge.cli import cli
from dait_edge.data import load_dataset
from dait_edge.export.images import ImageBatch
from dait_edge.export.int8_search import build_int8, top1
from dait_edge.export.onnx_export import export_onnx
from dait_edge.export.parity import ort_logits
from dait_edge.export.quantize import prepare_for_quantization
from dait_edge.models.builders import ClassifierWithFeatures
from dait_edge.records import DataConfig, ExportSummary, Sidecar

CLASSES = 4
U8S8 = {
    "format": "QOperator",
    "activation_type": "QUInt8",
    "weight_type": "QInt8",
    "per_channel": True,
    "activation_symmetric": False,
    "weight_symmetric": True,
    "reduce_range": False,
}
PLANTED = "/Relu_1"
ROOT = (
    Path(__file__).resolve().parents[1]
)  # conv2's activation: the ONNX node the planted outlier channel comes out of


class FragileCore(nn.Module):
    """Seven convolutions and a linear head; `plant()` makes conv2's output range 0..5000 in one channel
    that nothing reads, leaving float predictions unchanged."""

    def __init__(self, num_classes: int = CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.rest = nn.ModuleList(
            [nn.Conv2d(8, 16 if i == 4 else 8, 3, padding=1, stride=2 if i == 0 else 1) for i in range(5)]
        )
        self.fc = nn.Linear(16 * 4, num_classes)

    def features(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        for conv in self.rest:
            x = F.relu(conv(x))
        return x

    @staticmethod
    def pool(feature_map):  # 2 x 2 cells: the quadrants stay apart
        return F.adaptive_avg_pool2d(feature_map, 2).flatten(1)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)))

    @torch.no_grad()
    def plant(self, value: float = 5000.0):
        self.conv2.weight[7].zero_()
        self.conv2.bias[7] = value
        self.rest[0].weight[:, 7].zero_()


def _data(n: int, seed: int):
    """Class c = which quadrant is brighter: spatial features, learnt in a few hundred steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    x = torch.randn(n, 3, 16, 16, generator=g) * 0.5
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        x[i, :, r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8] += 0.6
    return x, y


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = FragileCore()
    x, y = _data(512, 1)
    optimiser = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(200):
        i = torch.randint(0, 512, (64,))
        loss = F.cross_entropy(model(x[i]), y[i])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def graphs(trained, tmp_path_factory):
    """(robust prepared graph, fragile prepared graph, validation images, calibration images)."""
    import copy

    folder = tmp_path_factory.mktemp("fragile")
    fragile = copy.deepcopy(trained)
    fragile.plant()
    out = {}
    for name, model in (("robust", trained), ("fragile", fragile)):
        export_onnx(model, folder / f"{name}.onnx", (3, 16, 16))
        out[name] = (
            folder / f"{name}.onnx",
            prepare_for_quantization(folder / f"{name}.onnx", folder / f"{name}-p.onnx"),
        )
    x, y = _data(300, 2)
    validation = ImageBatch(x.numpy(), y.numpy(), "validation")
    calibration = _data(64, 3)[0].numpy()
    return out, validation, calibration, folder


def _search(graphs, name, tmp, quantize=U8S8, **kw):
    out, validation, calibration, _ = graphs
    fp32_path, prepared = out[name]
    fp32 = top1(fp32_path, validation)
    options = {
        "validation": validation,
        "fp32_val_logits": ort_logits(fp32_path, validation.images),
        "num_classes": CLASSES,
        "budget": 1.0,
        "method": "minmax",
        "log": lambda m: None,
    } | kw
    record, layers = build_int8(prepared, tmp, calibration, quantize, **options)
    return record, layers, fp32


def test_accuracy_aware_int8_meets_the_budget_plain_int8_misses(graphs, tmp_path):
    record, layers, fp32 = _search(graphs, "fragile", tmp_path / "a.onnx")
    assert fp32 >= 95.0  # the float model is accurate, planted outlier or not
    assert record.checked and fp32 - record.plain_val_top1 > 10  # plain int8 loses many points
    assert record.budget_met and record.drop <= 1.0
    assert 0 < len(record.nodes_in_float) <= record.max_fallback_nodes  # fewer than the cap in float
    assert record.val_top1 == top1(tmp_path / "a.onnx", graphs[1])  # what the record says, measured again
    assert [s.nodes for s in record.steps] == sorted(s.nodes for s in record.steps)
    assert layers[0].node == PLANTED and layers[0].in_float  # the table ranks the planted layer first
    assert layers[0].channel_sqnr_db < 20 < layers[0].sqnr_db  # whole-tensor SQNR would hide it


def test_the_record_states_agreement_with_fp32_as_measured(graphs, tmp_path):
    record, _, _ = _search(graphs, "fragile", tmp_path / "a.onnx")
    out, validation, _, _ = graphs
    fp32 = ort_logits(out["fragile"][0], validation.images).argmax(1)
    kept = ort_logits(tmp_path / "a.onnx", validation.images)
    assert record.val_agreement == pytest.approx(100 * float((kept.argmax(1) == fp32).mean()), abs=1e-3)
    assert record.plain_val_agreement < record.val_agreement  # plain int8 flipped what the fallback restored
    assert record.steps[-1].val_agreement == record.val_agreement
    assert record.diagnosis is None  # the budget was met: nothing to explain


def _judge(fp32_logits, labels, fp32_top1, budget=1.0):
    from dait_edge.export.int8_search import _Judge

    images = np.zeros((len(labels), 1), np.float32)
    return _Judge(
        ImageBatch(images, np.asarray(labels), "validation"),
        np.asarray(fp32_logits, float),
        fp32_top1,
        budget,
    )


def test_within_the_budget_agreement_with_fp32_beats_a_higher_top1():
    from dait_edge.export.int8_search import Candidate

    judge = _judge(np.eye(4), [0, 1, 2, 3], 50.0)
    logits = np.zeros((4, 4))
    lucky = Candidate(Path("a"), [], top1=51.0, agreement=80.0, logits=logits)  # more right, more flips
    faithful = Candidate(Path("b"), [], top1=49.5, agreement=95.0, logits=logits)  # within the 1-point budget
    over = Candidate(
        Path("c"), [], top1=48.0, agreement=99.0, logits=logits
    )  # agrees most, but 2 points down
    fewer = Candidate(Path("d"), ["n1"], top1=49.5, agreement=95.0, logits=logits)
    assert max([lucky, over, faithful], key=judge.key) is faithful
    assert max([fewer, faithful], key=judge.key) is faithful  # equal otherwise: fewer nodes in float
    worse = Candidate(Path("e"), [], top1=40.0, agreement=50.0, logits=logits)
    assert max([worse, over], key=judge.key) is over  # neither within: the more faithful


def test_sensitivity_and_diagnosis_are_measured_on_planted_logits():
    from dait_edge.export.int8_search import Candidate, diagnose
    from dait_edge.records import Int8Accuracy

    fp32 = [[3.0, 1.0, 0.0], [0.0, 0.5, 0.0], [1.0, 0.0, 5.0]]  # top-two margins 2, 0.5, 4: median 2
    judge = _judge(fp32, [0, 1, 2], 100.0)
    noisy = np.asarray(fp32) + np.array([[3.0, 0, 0], [0, 0, 0], [0, 0, -3.0]])  # rms sqrt(18 / 9) = 1.414
    margin, error = judge.sensitivity(Candidate(Path("x"), [], 100.0, 100.0, noisy))
    assert (margin, error) == (2.0, round(2**0.5, 4))
    record = Int8Accuracy(
        budget=1.0,
        checked=True,
        calibration="minmax",
        val_agreement=80.0,
        quantised_nodes=50,
        max_fallback_nodes=10,
    )
    record.fp32_margin_median, record.logit_error_rms = 0.5, 4.0
    assert "flip decisions throughout the model" in diagnose(record) and "20%" in diagnose(record)
    assert "10 of 50 nodes" in diagnose(record)
    record.fp32_margin_median, record.logit_error_rms = 4.0, 0.5
    assert "layers the cap did not reach" in diagnose(record)


def test_the_classifier_that_makes_the_logits_stays_in_float(graphs, tmp_path):
    import onnx

    from dait_edge.export.quantize import float_only_nodes, quantize_int8

    out, _, calibration, _ = graphs
    prepared = out["robust"][1]
    graph = onnx.load(str(prepared)).graph
    producer = {o: n for n in graph.node for o in n.output}[graph.output[0].name]
    assert producer.op_type == "Gemm" and float_only_nodes(prepared) == [producer.name]
    quantised = onnx.load(str(quantize_int8(prepared, tmp_path / "q.onnx", calibration, U8S8, prepared)))
    made = {o: n for n in quantised.graph.node for o in n.output}
    last = made[quantised.graph.output[0].name]
    assert last.op_type == "Gemm" and made[last.input[0]].op_type == "DequantizeLinear"  # float logits
    assert any(n.op_type == "QLinearConv" for n in quantised.graph.node)  # the rest is int8


def test_a_robust_model_keeps_every_layer_quantised(graphs, tmp_path):
    record, layers, fp32 = _search(graphs, "robust", tmp_path / "r.onnx")
    assert record.budget_met and record.nodes_in_float == [] and record.steps == []
    assert record.val_top1 == record.plain_val_top1 and not any(row.in_float for row in layers)


def test_the_search_is_reproducible_and_the_cap_holds(graphs, tmp_path):
    first, _, _ = _search(graphs, "fragile", tmp_path / "1.onnx")
    again, _, _ = _search(graphs, "fragile", tmp_path / "2.onnx")
    assert first.nodes_in_float == again.nodes_in_float and first.steps == again.steps
    assert (tmp_path / "1.onnx").read_bytes() == (tmp_path / "2.onnx").read_bytes()
    capped, _, _ = _search(graphs, "fragile", tmp_path / "3.onnx", max_fallback=0)
    assert capped.nodes_in_float == [] and capped.budget_met is False  # the best found is plain int8
    assert capped.diagnosis and capped.logit_error_rms > 0  # and the record says why
    cuts = {**U8S8, "search_percentiles": [99.9, 99.999]}
    searched, _, _ = _search(graphs, "fragile", tmp_path / "4.onnx", cuts, method="search")
    tried = {"minmax", "entropy", "percentile 99.9", "percentile 99.999"}
    assert set(searched.calibration_tried) == set(searched.calibration_agreement) == tried
    # the rule, recomputed from the record: within the budget, then agreement, then top-1; ties to the first
    fp32 = searched.fp32_val_top1

    def rank(name):
        top = searched.calibration_tried[name]
        return (round(fp32 - top, 3) <= 1.0, searched.calibration_agreement[name], top)

    best = max(searched.calibration_tried, key=rank)
    assert best.startswith(searched.calibration)
    assert searched.percentile == (float(best.split()[1]) if " " in best else None)


def test_the_calibrated_ranges_are_computed_once_and_reused(graphs, tmp_path):
    from dait_edge.export.quantize import _ranges_cache, quantize_int8

    if not _ranges_cache(tmp_path / "probe.json"):
        pytest.skip("this ONNX Runtime has no calibration cache")
    out, _, calibration, _ = graphs
    prepared = out["fragile"][1]
    ranges = tmp_path / "ranges.json"
    first = quantize_int8(prepared, tmp_path / "a.onnx", calibration, U8S8, prepared, ranges=ranges)
    assert ranges.is_file()
    # brighter images with the same file: the cached ranges, not these images, set the scales
    cached = quantize_int8(prepared, tmp_path / "b.onnx", calibration * 3, U8S8, prepared, ranges=ranges)
    fresh = quantize_int8(prepared, tmp_path / "c.onnx", calibration * 3, U8S8, prepared)
    assert first.read_bytes() == cached.read_bytes() != fresh.read_bytes()


def test_too_few_validation_images_leave_the_budget_unchecked(graphs, tmp_path):
    out, validation, calibration, _ = graphs
    few = ImageBatch(validation.images[:20], validation.labels[:20], "validation")
    said = []
    record, _, _ = _search(graphs, "fragile", tmp_path / "f.onnx", validation=few, log=said.append)
    assert not record.checked and record.budget_met is None and record.nodes_in_float == []
    assert "20 validation images" in record.reason and said[0].startswith("warning: int8 accuracy")


def test_bad_settings_are_one_line_errors(graphs, tmp_path):
    from dait_edge.errors import UserError

    for kw, message in (
        ({"method": "kl"}, "unknown calibration method"),
        ({"budget": 120.0}, "between 0 and 100"),
    ):
        with pytest.raises(UserError, match=message):
            _search(graphs, "fragile", tmp_path / "x.onnx", **kw)
        assert not (tmp_path / "x.onnx").exists()


def test_a_model_with_nothing_quantisable_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from dait_edge.errors import UserError

    graph = helper.make_graph(
        [helper.make_node("Sqrt", ["input"], ["logits"], name="root")],
        "nothing",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "sqrt.onnx")
    with pytest.raises(UserError, match="nothing int8 can quantise"):
        build_int8(
            tmp_path / "sqrt.onnx",
            tmp_path / "out.onnx",
            np.ones((4, 4), np.float32),
            U8S8,
            validation=None,
            fp32_val_logits=None,
            num_classes=4,
            budget=1.0,
            method="minmax",
        )
    assert not (tmp_path / "out.onnx").exists()


def test_export_bad_int8_settings_are_one_line_errors(fragile_run, tmp_path, assert_user_error):
    runner = CliRunner()
    base = ["export", str(fragile_run), "--formats", "onnx-int8-u8s8", "--out", str(tmp_path / "x")]
    assert_user_error(
        runner.invoke(cli, [*base, "--calibration", "kl"]), "unknown calibration method 'kl'", "--calibration"
    )
    assert_user_error(
        runner.invoke(cli, [*base, "--max-top1-drop", "150"]), "between 0 and 100", "--max-top1-drop"
    )
    assert not list((tmp_path / "x").glob("*.onnx"))


# ------------------------------------------------------------------------------------------ through export


class FragileNet(ClassifierWithFeatures):
    source = "test"

    def forward_features(self, x):
        return self.model.features(x)

    def pool(self, feature_map):
        return self.model.pool(feature_map)

    def classify(self, pooled):
        return self.model.fc(pooled)


def build_fragile(num_classes, *, pretrained=False, weights=None, role="student"):
    from dait_edge.models.weights import load_state_dict_file

    core = FragileCore(num_classes)
    if weights is not None:
        core.load_state_dict(load_state_dict_file(weights))
    return FragileNet(
        core,
        name="fragile_test_net",
        num_classes=num_classes,
        feature_channels=16,
        num_features=64,
        data_config=DataConfig([3, 16, 16]),
        weights_from=str(weights or "random"),
    )


@pytest.fixture(scope="module")
def fragile_run(trained, tmp_path_factory, layouts, fake_run):
    """A run of the planted model on a CUB tree of quadrant images (the classes it learnt)."""
    import copy

    from dait_edge.engine.checkpoint import save_weights
    from dait_edge.models import STUDENTS

    STUDENTS.register("fragile_test_net", "a fragile test model")(build_fragile)
    base = tmp_path_factory.mktemp("fragile_run")
    cub = layouts.cub(base / "cub", classes=CLASSES, train_per_class=30, test_per_class=10, size=(16, 16))
    x, y = _data(1000, 5)
    spec = load_dataset("cub", cub.root)
    for n, (path, label) in enumerate(spec.split("train") + spec.split("test")):
        # each image becomes a quadrant image of its class (un-normalised as the eval transform expects)
        image = x[(y == label).nonzero()[n % int((y == label).sum())]][0]
        pixels = ((image.permute(1, 2, 0).numpy() * 0.229 + 0.45).clip(0, 1) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, quality=100)
    run = fake_run(base, "fragile_test_net", cub, img_size=16, method="none", student_top1=99.0)
    model = copy.deepcopy(trained)
    model.plant()
    wrapper = build_fragile(CLASSES)
    wrapper.model.load_state_dict(model.state_dict())
    save_weights(run / "stage2" / "student_last.safetensors", wrapper)
    yield run
    STUDENTS.unregister("fragile_test_net")


def test_export_int8_returns_the_planted_layer_to_float(fragile_run, tmp_path):
    out = tmp_path / "export"
    args = [
        "export",
        str(fragile_run),
        "--formats",
        "onnx-int8-u8s8",
        "--out",
        str(out),
        "--calib-samples",
        "16",
        "--parity-samples",
        "40",
        "--json",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (result.output, result.exception)
    summary = ExportSummary.from_dict(json.loads(result.stdout))
    (int8,) = [a for a in summary.artifacts if a.format == "onnx-int8-u8s8"]
    accuracy = int8.accuracy
    assert (
        accuracy.checked
        and accuracy.val_source == "train split, not calibration"
        and accuracy.val_images == 104
    )
    assert accuracy.fp32_val_top1 - accuracy.plain_val_top1 > 10 and accuracy.budget_met
    assert accuracy.nodes_in_float and PLANTED in accuracy.nodes_in_float
    assert int8.parity.top1_artifact >= int8.parity.top1_pytorch - 5  # the test split agrees
    assert accuracy.plain_test_top1 < int8.parity.top1_artifact  # side by side: plain int8 lost it there too
    sidecar = Sidecar.read_for(int8.path)
    assert sidecar.quantization["accuracy"]["nodes_in_float"] == accuracy.nodes_in_float
    # the recipe's default calibration is the search: minmax, entropy and three percentile cuts
    assert len(accuracy.calibration_tried) == 5 and accuracy.val_agreement is not None
    quantiser = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
    assert sidecar.quantization["calibrate_method"] == quantiser[accuracy.calibration]
    assert accuracy.percentile is None or sidecar.quantization["percentile"] == accuracy.percentile
    rows = list(csv.DictReader(Path(accuracy.layers_csv).open()))
    assert Path(accuracy.layers_csv).name == "student-onnx-int8-u8s8.layers.csv"
    assert rows[0]["node"] == PLANTED and rows[0]["in_float"] == "1"


def test_the_report_shows_the_worst_layers_and_the_drop_interval(fragile_run, tmp_path):
    """Profile fp32 and the accuracy-aware int8 with top-1, then report: the answer table comes first, the
    chosen int8 artifact's worst layers follow with what falling back cost, and each drop has its interval."""
    from dait_edge.export.api import export_run
    from dait_edge.profiling.api import profile_artifacts
    from dait_edge.profiling.profiles import load_profile
    from dait_edge.records import Report
    from dait_edge.report import build_report
    from dait_edge.report.tables import int8_layer_sections

    out = tmp_path / "export"
    export_run(
        fragile_run,
        formats="onnx,onnx-int8-u8s8",
        out=out,
        calib_samples=16,
        parity_samples=40,
        log=lambda m: None,
    )
    profile = dataclasses.replace(load_profile("x86-ort-cpu-int8"), warmup=1, iterations=5, batch_sizes=[1])
    result = profile_artifacts(
        [out], profile, dataset="cub", data_root=str(fragile_run.parent / "cub"), log=lambda m: None
    )
    rows = {row.format: row for row in result.rows}
    assert (
        rows["onnx-int8-u8s8"].correct and rows["onnx-int8-u8s8"].test_images == rows["onnx-fp32"].test_images
    )
    assert len(rows["onnx-fp32"].latency_ms.values) == rows["onnx-fp32"].latency_ms.samples
    report_dir = tmp_path / "report"
    (tmp_path / "result.json").write_text(json.dumps(result.to_dict()))
    build_report([tmp_path / "result.json"], report_dir, log=lambda m: None)
    markdown = (report_dir / "report.md").read_text()
    assert markdown.index("## The answer: what to ship") < markdown.index("## Profile")
    report = Report.read(report_dir)
    int8 = next(c for c in report.best[0].candidates if c.format == "onnx-int8-u8s8")
    assert int8.test_images == 40 and int8.top1_drop_low is not None and int8.top1_drop_high is not None
    # whichever this machine's timing chose, the int8 artifact's section reads its layer table and sidecar
    for candidate in report.best[0].candidates:
        candidate.status = "chosen" if candidate is int8 else "lost"
    ((title, note, table),) = int8_layer_sections(report)
    assert "onnx-int8-u8s8" in title and "returned to float" in note and "plain int8" in note
    assert table[1][1] == PLANTED and table[1][-1] == "yes" and len(table) <= 11
    # an int8 artifact that lost after its export missed the budget: the report adds the export's reading
    from dait_edge.report.tables import loser_reason

    sidecar = Sidecar.path_for(int8.artifact)
    data = json.loads(sidecar.read_text())
    data["quantization"]["accuracy"]["diagnosis"] = "a planted reading"
    sidecar.write_text(json.dumps(data))
    assert loser_reason(int8) == f"{int8.reason}. The export's reading: a planted reading"
    sidecar.unlink()
    assert loser_reason(int8) == int8.reason  # no sidecar on this machine: the reason alone
    assert int8_layer_sections(report)[0][1].startswith("No accuracy search recorded")


def test_exactly_the_budget_is_within_it_and_the_recipe_names_the_default_calibration():
    from dait_edge.export.build import accuracy_settings
    from dait_edge.export.int8_search import _over
    from dait_edge.export.recipes import load_recipe

    assert not _over(64.4, 63.4, 1.0) and _over(64.4, 63.39, 1.0)  # 64.4 - 63.4 is 1.000000000000007
    recipe = load_recipe("onnx-int8-u8s8")
    assert accuracy_settings(recipe, None, None) == (1.0, "search")
    assert recipe.quantize["search_percentiles"] == [99.9, 99.99, 99.999]
    recipe.accuracy = {}
    recipe.quantize = {**recipe.quantize, "calibrate_method": "Entropy"}
    assert accuracy_settings(recipe, 0.5, None) == (0.5, "entropy")  # a custom recipe's own method
    assert accuracy_settings(recipe, None, "search") == (1.0, "search")


def test_the_sensitivity_tool_finds_the_planted_activation(fragile_run, tmp_path, capsys):
    """tools/int8_sensitivity.py (in this process: the fragile student is registered only here): quantised
    alone, the planted activation moves the predictions most; with it in float the rest keeps fp32's
    predictions; the printed table is the JSON's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("int8_sensitivity", ROOT / "tools" / "int8_sensitivity.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "sensitivity.json"
    assert tool.main([str(fragile_run), "--calib-samples", "16", "--keep", "0,1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    first = result["one_at_a_time"][0]
    assert first["node"] == PLANTED and first["agreement"] < 90.0  # alone, it flips many predictions
    assert all(row["agreement"] >= first["agreement"] for row in result["one_at_a_time"])
    none, one = result["all_but_k"]
    assert none["agreement"] == result["activations_only"]["agreement"] < one["agreement"]
    # the fake-quantised graph stands in for the artifact: both lose the planted layer's classes
    assert result["int8"]["agreement"] < 90.0 and result["activations_only"]["agreement"] < 90.0
    assert f"1 | {PLANTED} | " in printed
    assert tool.main([str(tmp_path / "missing")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and len(error.strip().splitlines()) == 1
