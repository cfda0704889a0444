"""The baselines end to end on a tiny CUB tree and a tiny OpenCLIP model: DHO's calibrated prediction in
the exported ONNX graph, DHO's exact resume, KD and RKD from a task checkpoint, single-stage runs, bad
input, and `dait-edge compare` on fixture runs with two seeds. (Every registered method trains through
`run_distill` in tests/test_contracts.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from dait_edge.cli import cli
from dait_edge.config import DistillConfig
from dait_edge.data import load_dataset
from dait_edge.distill import run_distill
from dait_edge.export.api import export_run
from dait_edge.export.predict import predict_logits, preprocess
from dait_edge.losses import dho_combine
from dait_edge.models.dual_head import COMBINE_SCOPE, DualHeadClassifier
from dait_edge.records import Comparison, RunSummary, Sidecar, read_metrics

CLASSES = 3


@pytest.fixture(scope="module")
def env(tmp_path_factory, layouts, tiny_vlm, tiny_config, tiny_args):
    base = tmp_path_factory.mktemp("baselines")
    cub = layouts.cub(base / "cub", classes=CLASSES, train_per_class=6, test_per_class=2)
    return SimpleNamespace(base=base, cub=cub, vlm=tiny_vlm, tiny_config=tiny_config, tiny_args=tiny_args)


def config(env, out: Path, **overrides) -> DistillConfig:
    options = {"method": "dho", "stage1_epochs": 1, "stage2_epochs": 2, "out": out} | overrides
    return env.tiny_config(env.cub.root, env.vlm.config, env.vlm.weights, env.base, **options)


def cli_args(env, out: Path, **options) -> list[str]:
    return env.tiny_args(env.cub.root, env.vlm.config, env.vlm.weights, env.base, out=out, **options)


# ------------------------------------------------------------------------------------------ DHO


@pytest.fixture(scope="module")
def dho_run(env):
    """DHO at 50% labelled with a quarter of the labelled images held out: 3 labelled per class (9), 2 of
    them (round(0.25 * 9), one each from two classes) for choosing (a, b), 9 unlabelled."""
    summary = run_distill(config(env, env.base / "dho", labelled_fraction=0.5, val_fraction=0.25))
    return Path(summary.run_dir), summary


def test_dho_run_records_its_split_and_its_chosen_combination(dho_run):
    run, summary = dho_run
    assert (summary.labelled_images, summary.val_images, summary.unlabelled_images) == (7, 2, 9)
    assert summary.train_images == 16 and summary.student_head == "dual"
    assert not (run / "stage1").exists()  # a single-stage method
    assert set(summary.calibration) == {"dho_a", "dho_b"}
    weights = load_file(str(run / "stage2" / "student_last.safetensors"))
    assert weights["combine.a"].item() == pytest.approx(summary.calibration["dho_a"])
    assert weights["combine.b"].item() == pytest.approx(summary.calibration["dho_b"])
    terms = {k for m in read_metrics(run) for k in m.losses}
    assert terms == {"loss", "loss_ce", "loss_kd_labelled", "loss_kd_unlabelled"}
    assert all(np.isfinite(v) for m in read_metrics(run) for v in m.losses.values())


def test_dho_searches_a_b_on_validation_at_every_epoch_and_keeps_the_best_epoch_with_its_pair(env, dho_run):
    """As DHO's code: (a, b) searched on the validation images with each epoch's weights, the epoch then
    judged by the validation top-1 of that pair; the best and the last weights each hold their own."""
    from dait_edge.data.images import ImageListDataset
    from dait_edge.data.splits import labelled_split
    from dait_edge.data.transforms import eval_transform_for
    from dait_edge.losses import choose_combination
    from dait_edge.records import RunManifest

    run, summary = dho_run
    config = RunManifest.read(run).config
    spec = load_dataset("cub", env.cub.root)
    train = spec.split("train")
    held = labelled_split(train, config.labelled_fraction, config.val_fraction, config.seed)[1]
    data = ImageListDataset(
        [train[i] for i in held], eval_transform_for(summary.data_config), spec.crop_bottom
    )
    images = torch.stack([data[i][0] for i in range(len(data))])
    labels = torch.tensor([data[i][1] for i in range(len(data))])
    metrics = {m.epoch: m for m in read_metrics(run) if m.stage == 2}
    for name, epoch in (("student_best", summary.student_best_epoch), ("student_last", max(metrics))):
        model = DualHeadClassifier.from_file(summary.student, CLASSES, run / "stage2" / f"{name}.safetensors")
        with torch.no_grad():
            z_ce, z_kd = model.eval().heads(model.pool(model.forward_features(images)))
        a, b, top1 = choose_combination(z_ce, z_kd, labels)
        assert (model.combine.a.item(), model.combine.b.item()) == (pytest.approx(a), pytest.approx(b)), name
        assert metrics[epoch].val_top1 == pytest.approx(top1)
    assert summary.student_val_top1_best == max(m.val_top1 for m in metrics.values())


def test_dhos_exported_model_outputs_its_combined_prediction(env, dho_run, tmp_path):
    run, summary = dho_run
    out = tmp_path / "export"
    exported = export_run(
        run, formats="onnx,onnx-int8-u8s8", out=out, calib_samples=6, measure_speed=False, log=lambda m: None
    )
    fp32 = exported.by_format("onnx-fp32")
    assert fp32.parity.passed and fp32.parity.agreement == 100.0
    # what the artifact outputs is log p of DHO's rule with the (a, b) chosen on the validation split
    model = DualHeadClassifier.from_file(
        summary.student, CLASSES, run / "stage2" / "student_last.safetensors"
    )
    model.eval()
    images = [path for path, _ in load_dataset("cub", env.cub.root).split("test")]
    logits = predict_logits(fp32.path, images)
    sidecar = Sidecar.read(Sidecar.path_for(Path(fp32.path)))
    pixels = torch.from_numpy(np.stack([preprocess(Image.open(p).convert("RGB"), sidecar) for p in images]))
    with torch.no_grad():
        z_ce, z_kd = model.heads(model.pool(model.forward_features(pixels)))
        expected = dho_combine(z_ce, z_kd, summary.calibration["dho_a"], summary.calibration["dho_b"])
    np.testing.assert_allclose(logits, expected.numpy(), atol=1e-4)
    np.testing.assert_allclose(np.exp(logits).sum(axis=1), 1.0, atol=1e-4)  # log-probabilities
    # int8 leaves the combination in float: its nodes are there, and no quantised tensor feeds them
    int8 = exported.by_format("onnx-int8-u8s8")
    graph = onnx.load(int8.path).graph
    combine = [n for n in graph.node if n.name.startswith(COMBINE_SCOPE)]
    assert combine and not any("Quant" in n.op_type or n.op_type.startswith("QLinear") for n in combine)
    producers = {out: n for n in graph.node for out in n.output}
    for node in combine:
        for name in node.input:
            if name in producers:
                assert producers[name].op_type != "QuantizeLinear", node.name


def test_dho_resumes_to_the_same_weights(env):
    whole = run_distill(config(env, env.base / "dho-whole", labelled_fraction=0.5))
    partial_config = config(env, env.base / "dho-killed", labelled_fraction=0.5)
    run_distill(partial_config, stop_after_epoch={2: 0})
    resumed = run_distill(config(env, env.base / "dho-killed", labelled_fraction=0.5), resume=True)
    assert resumed.student_sha256 == whole.student_sha256
    assert [m.losses for m in read_metrics(env.base / "dho-killed")] == [
        m.losses for m in read_metrics(env.base / "dho-whole")
    ]


# ------------------------------------------------------------------------------------------ RISE


def test_rise_trains_with_its_own_recipe_and_exports_its_text_space_head(env):
    """`--recipe own` fills what was not given from RISE's released recipe (the batch given wins), the
    manifest and summary say so, and the exported graph is the projected, text-initialised classifier."""
    from dait_edge.models.heads import load_student
    from dait_edge.records import RunManifest

    run = env.base / "rise"
    result = CliRunner().invoke(cli, cli_args(env, run, method="rise", recipe="own", epochs=5))
    assert result.exit_code == 0, result.output
    summary = RunSummary.from_dict(json.loads(result.stdout))
    assert (summary.recipe, summary.student_head) == ("rise", "projected")
    config = RunManifest.read(run).config
    assert (config.recipe, config.optimizer, config.lr, config.weight_decay, config.train_crop) == (
        "rise",
        "sgd",
        1e-3,
        5e-4,
        "rrc:0.8",
    )
    assert (config.lr_schedule, config.lr_step, config.lr_gamma, config.batch_size) == ("step", 4, 0.1, 4)
    metrics = read_metrics(run)
    assert [m.lr for m in metrics] == pytest.approx([1e-3] * 4 + [1e-4])  # x0.1 after 80% of the epochs
    assert {k for m in metrics for k in m.losses} == {"loss", "loss_ce", "loss_kd", "loss_ad", "loss_rd"}
    exported = export_run(run, formats="onnx", calib_samples=4, measure_speed=False, log=lambda m: None)
    fp32 = exported.artifacts[0]
    assert fp32.parity.passed and fp32.parity.agreement == 100.0
    student = load_student("projected", summary.student, CLASSES, run / "stage2" / "student_last.safetensors")
    assert student.embed_dim == student.fc.in_features and student.fc.out_features == CLASSES
    # as KD's task teacher, the file alone says which head it holds (RISE's files of before were linear)
    from dait_edge.distill.teachers import task_teacher_source
    from dait_edge.models import build_model
    from dait_edge.models.heads import head_of_state

    assert task_teacher_source(str(run / "stage2" / "student_last.safetensors")).head == "projected"
    assert head_of_state(build_model(summary.student, CLASSES, pretrained=False).state_dict()) == "linear"
    result = CliRunner().invoke(cli, cli_args(env, env.base / "kd-rise", method="kd", kd_teacher=run))
    assert result.exit_code == 0, result.output


def test_borlan_aligns_its_unlabelled_images_to_the_pseudo_labels_of_each_epoch(env):
    summary = run_distill(config(env, env.base / "borlan", method="borlan", labelled_fraction=0.5))
    assert summary.completed and summary.unlabelled_images > 0 and summary.recipe == "shared"
    metrics = read_metrics(env.base / "borlan")
    assert len(metrics) == 2 and all(m.losses["loss_align_unlabelled"] > 0 for m in metrics)


# ------------------------------------------------------------------------------------------ KD / RKD


@pytest.fixture(scope="module")
def task_teacher(env):
    """`--method none` with another model: a checkpoint fine-tuned on the task ("T: R-152")."""
    result = CliRunner().invoke(cli, cli_args(env, env.base / "r152", method="none", student="test_resnet"))
    assert result.exit_code == 0, result.output
    return env.base / "r152"


def test_kd_and_rkd_learn_from_a_task_checkpoint(env, task_teacher):
    runner = CliRunner()
    result = runner.invoke(cli, cli_args(env, env.base / "kd-r", method="kd", kd_teacher=task_teacher))
    assert result.exit_code == 0, result.output
    assert "single-stage method: no stage 1" in result.stderr
    summary = RunSummary.from_dict(json.loads(result.stdout))
    assert summary.kd_teacher == "test_resnet" and summary.taught_by == "test_resnet (task checkpoint)"
    assert summary.teacher_top1 is not None and summary.vlm_views == 0  # no VLM taught this run
    assert not (env.base / "kd-r" / "stage1").exists()
    weights = task_teacher / "stage2" / "student_last.safetensors"
    result = runner.invoke(cli, cli_args(env, env.base / "rkd-r", method="rkd", kd_teacher=weights))
    assert result.exit_code == 0, result.output
    summary = RunSummary.from_dict(json.loads(result.stdout))
    assert summary.kd_teacher == "test_resnet"
    assert {"loss_ce", "loss_rkd"} <= {k for m in read_metrics(env.base / "rkd-r") for k in m.losses}


def test_a_dho_run_teaches_kd_with_its_combined_prediction(env, dho_run):
    run, _ = dho_run
    result = CliRunner().invoke(cli, cli_args(env, env.base / "kd-dho", method="kd", kd_teacher=run))
    assert result.exit_code == 0, result.output
    summary = RunSummary.from_dict(json.loads(result.stdout))
    assert summary.kd_teacher == "test_efficientnet" and summary.teacher_top1 is not None


def test_kd_teacher_and_stage_errors(env, assert_user_error, layouts, fake_run, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(cli, cli_args(env, tmp_path / "a", method="kd", kd_teacher=tmp_path / "nope.st"))
    assert_user_error(missing, "KD teacher", "does not exist", "--kd-teacher")
    other = layouts.cub(tmp_path / "cub2", classes=2, train_per_class=2, test_per_class=1)
    wrong = fake_run(tmp_path, "test_resnet", other, method="none")
    result = runner.invoke(cli, cli_args(env, tmp_path / "b", method="kd", kd_teacher=wrong))
    assert_user_error(result, "classifies 2 classes", "has 3", "--kd-teacher")
    stage1_only = runner.invoke(cli, cli_args(env, tmp_path / "c", method="kd", stages="1"))
    assert_user_error(stage1_only, "trains no intermediate teacher")
    for name in ("a", "b", "c"):  # caught before the run folder is made
        assert not (tmp_path / name).exists()


# ------------------------------------------------------------------------------------------ compare


@pytest.fixture(scope="module")
def compared_runs(tmp_path_factory, tiny_cub, fake_run):
    """Fixture runs: 3 methods x 2 students x 2 seeds at full labels, and one 30%-labelled method."""
    base = tmp_path_factory.mktemp("compare")
    top1 = {("none", 0): 50.0, ("none", 1): 54.0, ("kd", 0): 60.0, ("kd", 1): 62.0, ("dait_f", 0): 70.0}
    for (method, seed), value in top1.items():
        for student, bonus in (("test_efficientnet", 0.0), ("test_resnet", 5.0)):
            kd = {"kd_teacher": "vlm"} if method == "kd" else {}
            fake_run(
                base / f"{method}-{seed}",
                student,
                tiny_cub,
                seed=seed,
                method=method,
                student_top1=value + bonus,
                stage2_seconds=10.0,
                **kd,
            )
    fake_run(base / "dho-30", "test_resnet", tiny_cub, method="dho", student_top1=40.0, labelled_fraction=0.3)
    unfinished = fake_run(base / "broken", "test_resnet", tiny_cub, method="rkd", student_top1=None)
    return base, unfinished


def test_compare_renders_the_method_table(compared_runs):
    base, unfinished = compared_runs
    result = CliRunner().invoke(cli, ["compare", str(base), "--out", str(base / "out"), "--json"])
    assert result.exit_code == 0, result.output
    comparison = Comparison.from_dict(json.loads(result.stdout))
    assert f"skipped {unfinished.resolve()}" in result.stderr
    assert comparison.runs == 11
    full, partial = comparison.tables
    assert (full.labelled_fraction, partial.labelled_fraction) == (1.0, 0.3)
    assert full.students == ["test_efficientnet", "test_resnet"]
    rows = {row.label: row for row in full.rows}
    assert list(rows) == ["none", "kd (T: VLM)", "dait_f"]  # baselines first, DAIT last
    cell = rows["none"].cells["test_resnet"]
    assert (cell.mean, cell.std, cell.runs, cell.seeds) == (57.0, pytest.approx(2.8284, abs=1e-4), 2, [0, 1])
    assert rows["dait_f"].cells["test_efficientnet"].std is None  # one seed
    assert [r.label for r in full.rows if r.cells["test_resnet"].best] == ["dait_f"]
    assert partial.rows[0].label == "dho" and partial.students == ["test_resnet"]
    markdown = (base / "out" / "compare.md").read_text()
    assert "| none | - | 10 | 52.00 ± 2.83 (n=2) | 57.00 ± 2.83 (n=2) |" in markdown
    assert "**75.00**" in markdown and "## cub, 30% labelled" in markdown
    lines = (base / "out" / "compare.csv").read_text().splitlines()
    assert lines[0].startswith("dataset,labelled_fraction,method") and len(lines) == 1 + 6 + 1
    assert (base / "out" / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Comparison.read(base / "out") == comparison


def test_compare_warns_when_a_table_mixes_recipes_and_splits_no_unlabelled_runs(tiny_cub, fake_run, tmp_path):
    import dataclasses

    from dait_edge.records import RunManifest
    from dait_edge.report.compare import build_comparison, find_runs

    fake_run(tmp_path / "a", "test_resnet", tiny_cub, method="none", student_top1=50.0)
    fake_run(tmp_path / "b", "test_resnet", tiny_cub, method="kd", student_top1=60.0, img_size=64)
    for name, unlabelled in (("c", True), ("d", False)):
        run = fake_run(
            tmp_path / name, "test_resnet", tiny_cub, method="dho", student_top1=40.0, labelled_fraction=0.3
        )
        manifest = RunManifest.read(run)
        config = dataclasses.replace(manifest.config, labelled_fraction=0.3, train_unlabelled=unlabelled)
        dataclasses.replace(manifest, config=config).write(run)
    comparison = build_comparison(find_runs([tmp_path])[0], [str(tmp_path)])
    assert [(t.labelled_fraction, t.unlabelled) for t in comparison.tables] == [
        (1.0, True),
        (0.3, True),
        (0.3, False),
    ]
    assert comparison.warnings == [
        "cub, all labelled: its runs differ in img_size; compare runs of one recipe (as a sweep makes them)"
    ]
    from dait_edge.report.compare import markdown

    text = markdown(comparison)
    # the paper's Table 3 (the subset alone) and the semi-supervised runs: separate tables, each saying which
    assert "## cub, 30% labelled\n\nTrained on the 30% labelled images, and on the other 70% without" in text
    assert (
        "## cub, 30% labelled (the rest not trained on)\n\nTrained on the 30% labelled images alone" in text
    )
    assert "Table 3 setting, `--no-unlabelled`" in text


def test_compare_gives_a_method_trained_with_another_recipe_its_own_row_and_says_so(
    tiny_cub, fake_run, tmp_path
):
    """A run with its method's own recipe is not averaged with shared-recipe runs of that method; the table
    says which rows used which recipe and warns that the protocol differs."""
    from dait_edge.report.compare import build_comparison, find_runs, markdown

    for seed in (0, 1):
        fake_run(
            tmp_path / f"none-{seed}", "test_resnet", tiny_cub, method="none", student_top1=50.0, seed=seed
        )
    fake_run(tmp_path / "dho-shared", "test_resnet", tiny_cub, method="dho", student_top1=60.0)
    fake_run(tmp_path / "dho-own", "test_resnet", tiny_cub, method="dho", student_top1=70.0, recipe="dho")
    comparison = build_comparison(find_runs([tmp_path])[0], [str(tmp_path)])
    (table,) = comparison.tables
    assert [(row.label, row.recipe) for row in table.rows] == [
        ("none", "shared"),
        ("dho", "shared"),
        ("dho [dho recipe]", "dho"),
    ]
    assert table.rows[2].cells["test_resnet"].mean == 70.0 and table.rows[1].cells["test_resnet"].runs == 1
    (warning,) = comparison.warnings
    assert "differ in" in warning and all(k in warning for k in ("lr", "lr_schedule", "recipe", "train_crop"))
    text = markdown(comparison)
    assert "The rows trained with different recipes (dho [dho recipe]: dho; the others shared)" in text
    same = build_comparison(find_runs([tmp_path / "none-0", tmp_path / "none-1"])[0], ["x"])
    assert same.warnings == [] and "Every row trained with the shared recipe" in markdown(same)


def test_compare_judges_sra_form_only_among_dait_f_runs(tiny_cub, fake_run, tmp_path):
    """A `none` run ignores --sra-form, so it never makes a table mixed; two DAIT-F forms do, and a run made
    before the setting existed counts as the paper's form."""
    import dataclasses
    import json

    from dait_edge.records import RunManifest
    from dait_edge.report.compare import build_comparison, find_runs

    def run(name, method, form):
        folder = fake_run(tmp_path / name, "test_resnet", tiny_cub, method=method, student_top1=50.0)
        manifest = RunManifest.read(folder)
        dataclasses.replace(manifest, config=dataclasses.replace(manifest.config, sra_form=form)).write(
            folder
        )
        return folder

    run("none", "none", "paper")
    run("dait_f", "dait_f", "pearson")
    assert build_comparison(find_runs([tmp_path])[0], [str(tmp_path)]).warnings == []
    old = run("dait_f_old", "dait_f", "pearson")
    data = json.loads(RunManifest.path_in(old).read_text())
    del data["config"]["sra_form"]
    RunManifest.path_in(old).write_text(json.dumps(data | {"schema_version": 1}))
    warnings = build_comparison(find_runs([tmp_path])[0], [str(tmp_path)]).warnings
    assert (
        "cub, all labelled: its runs differ in sra_form; compare runs of one recipe (as a sweep makes them)"
        in (warnings)
    )


def test_compare_bad_input(assert_user_error, tmp_path):
    runner = CliRunner()
    assert_user_error(runner.invoke(cli, ["compare", str(tmp_path / "nope")]), "does not exist")
    (tmp_path / "empty").mkdir()
    assert_user_error(runner.invoke(cli, ["compare", str(tmp_path / "empty")]), "holds no run")
    assert not (tmp_path / "empty" / "compare").exists()


def test_report_links_the_comparison_when_profiled_runs_used_several_methods(compared_runs, tmp_path):
    from dait_edge.report.api import _compare_methods

    base, _ = compared_runs
    rows = [SimpleNamespace(run_dir=str(p.parent)) for p in sorted(base.glob("*-0/*/summary.json"))]
    assert _compare_methods(rows, tmp_path / "compare", log=lambda m: None)
    assert (tmp_path / "compare" / "compare.md").is_file()
    same_method = [row for row in rows if "none-0" in row.run_dir]
    assert not _compare_methods(same_method, tmp_path / "other", log=lambda m: None)


def test_int8_judges_on_the_runs_validation_split_apart_from_calibration(dho_run):
    from dait_edge.export.images import RUN_VALIDATION, int8_images
    from dait_edge.export.source import resolve_run

    run, summary = dho_run
    calibration, validation = int8_images(resolve_run(run), calib_samples=100, val_samples=500)
    assert validation.source == RUN_VALIDATION and len(validation.images) == summary.val_images == 2
    assert (
        len(calibration.images) == summary.train_images + summary.val_images - 2
    )  # every other training image
    flat = {image.tobytes() for image in calibration.images}
    assert not any(image.tobytes() in flat for image in validation.images)  # never calibrated on
