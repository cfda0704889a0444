"""The figures a run reports are the deployed artifact's: one preprocessing from training view to device,
learning-rate schedules that fit the run, and choices (best epoch, DHO's (a, b), int8's fallback, the
report's best artifact) made on validation images, never on the test split."""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dait_edge.config import DistillConfig
from dait_edge.data import load_dataset
from dait_edge.distill import run_distill
from dait_edge.engine.schedule import LRSchedule
from dait_edge.export.api import export_run
from dait_edge.export.predict import predict_logits
from dait_edge.profiling.api import profile_artifacts
from dait_edge.profiling.profiles import load_profile
from dait_edge.records import ExportSummary, Sidecar, read_metrics
from dait_edge.report.best import VALIDATION, choose_best, judged_rows
from tests.conftest import make_row as make_profile_row
from tests.conftest import make_textures

# ------------------------------------------------------------------------------------------ schedules


def test_step_decay_is_the_papers_at_100_epochs_and_scales_with_the_run():
    config = DistillConfig()
    assert config.lr_step is None
    assert [config.lr_step_for(e) for e in (100, 12, 10, 3, 1)] == [30, 4, 3, 1, 1]
    assert dataclasses.replace(config, lr_step=7).lr_step_for(100) == 7

    # per step, the step decay is the epoch-wise StepLR(30, 0.5) of VL2Lite's code at every step
    per_epoch = 3
    schedule = LRSchedule("step", epochs=100, steps_per_epoch=per_epoch, step_epochs=30, gamma=0.5)
    reference = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    step_lr = torch.optim.lr_scheduler.StepLR(reference, step_size=30, gamma=0.5)
    for epoch in range(100):
        for k in range(per_epoch):
            assert schedule.factor(epoch * per_epoch + k) == pytest.approx(reference.param_groups[0]["lr"])
        reference.step()
        step_lr.step()

    # a 12-epoch run now decays: halved after epochs 4 and 8
    short = LRSchedule("step", epochs=12, steps_per_epoch=1, step_epochs=config.lr_step_for(12))
    assert [short.factor(e) for e in range(12)] == [1.0] * 4 + [0.5] * 4 + [0.25] * 4


def test_cosine_warms_up_linearly_then_decays_to_near_zero():
    schedule = LRSchedule("cosine", epochs=10, steps_per_epoch=4, warmup_epochs=2)
    factors = [schedule.factor(s) for s in range(40)]
    assert factors[:8] == pytest.approx([(s + 1) / 8 for s in range(8)])
    assert factors[8] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(factors[8:], factors[9:], strict=False))
    assert factors[-1] < 0.01
    # the same curve whether it is read in one pass or resumed half-way (a pure function of the step)
    fresh = LRSchedule("cosine", epochs=10, steps_per_epoch=4, warmup_epochs=2)
    assert [fresh.factor(s) for s in range(20, 40)] == factors[20:]
    # warm-up also ahead of step decay, whose period counts from the first epoch
    stepped = LRSchedule("step", epochs=6, steps_per_epoch=2, step_epochs=2, warmup_epochs=1)
    assert [stepped.factor(s) for s in range(12)] == pytest.approx(
        [0.5, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]
    )


def test_linear_schedule_is_dhos_warm_up_then_linear_decay():
    """transformers' get_linear_schedule_with_warmup (what DHO's code steps every batch) after the warm-up;
    the warm-up itself starts one step in, at 1 / warm-up steps, as every schedule here does."""
    total, warmup = 40, 4
    schedule = LRSchedule("linear", epochs=10, steps_per_epoch=4, warmup_epochs=1)
    factors = [schedule.factor(s) for s in range(total)]
    assert factors[:warmup] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    assert factors[warmup:] == pytest.approx([(total - s) / (total - warmup) for s in range(warmup, total)])


def test_recipes_optimisers_are_the_ones_their_code_builds():
    from dait_edge.engine.schedule import make_optimiser

    params = [torch.zeros(2, requires_grad=True)]
    adamw = make_optimiser("adamw", params, 1e-3, 0.01)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["weight_decay"] == 0.01
    for kind, nesterov in (("sgd", False), ("sgd-nesterov", True)):
        sgd = make_optimiser(kind, params, 1e-3, 5e-4)
        assert isinstance(sgd, torch.optim.SGD)
        assert (sgd.defaults["momentum"], sgd.defaults["nesterov"], sgd.defaults["weight_decay"]) == (
            0.9,
            nesterov,
            5e-4,
        )


def test_bad_schedule_settings_are_user_errors():
    from dait_edge.errors import UserError

    for bad in (
        {"lr_schedule": "exponential"},
        {"optimizer": "adam"},
        {"train_crop": "rrc:1.5"},
        {"warmup_epochs": -1},
        {"lr_step": 0},
        {"interpolation": "lanczos"},
        {"crop_pct": 1.5},
    ):
        config = DistillConfig(dataset="cub", data_root="/data", **bad)
        with pytest.raises(UserError, match=next(iter(bad))):
            config.validate()


# -------------------------------------------------------------------- one preprocessing, view to device


@pytest.fixture(scope="module")
def textures(tmp_path_factory):
    """6 orientations of fine stripes under noise, 80 px, 24 training and 20 test images per class."""
    return make_textures(tmp_path_factory.mktemp("textures") / "data")


def test_resize_matters_on_the_texture_set(textures):
    """The premise: bilinear and bicubic cut these images visibly differently (else the test below would
    pass with any preprocessing)."""
    from dait_edge.data.transforms import eval_transform

    spec = load_dataset("imagefolder", textures.root)
    path, _ = spec.split("test")[0]
    from PIL import Image

    with Image.open(path) as image:
        cuts = {
            mode: eval_transform(64, (0, 0, 0), (1, 1, 1), 0.875, mode)(image.convert("RGB"))
            for mode in ("bilinear", "bicubic")
        }
    assert (cuts["bilinear"] - cuts["bicubic"]).abs().mean() > 0.02
    assert cuts["bicubic"].std() > cuts["bilinear"].std()  # bicubic keeps more of the stripes' contrast


@pytest.fixture(scope="module")
def texture_run(tmp_path_factory, textures):
    """EfficientNet-B0 from scratch, 10 epochs, labels alone, 64 px, exported to ONNX fp32."""
    base = tmp_path_factory.mktemp("texture-run")
    config = DistillConfig(
        dataset="imagefolder",
        data_root=str(textures.root),
        student="efficientnet_b0",
        method="none",
        stage2_epochs=10,
        img_size=64,
        batch_size=16,
        lr=3e-3,
        lr_schedule="cosine",
        warmup_epochs=1,
        pretrained=False,
        workers=0,
        device="cpu",
        progress=False,
        out=str(base / "run"),
        teacher_cache=str(base / "teachers"),
    )
    summary = run_distill(config)
    export_run(summary.run_dir, formats="onnx", calib_samples=8, measure_speed=False, log=lambda m: None)
    return Path(summary.run_dir), summary


def test_reported_top1_is_what_the_exported_artifact_does_from_its_sidecar(texture_run, textures):
    run_dir, summary = texture_run
    assert summary.data_config.source == "run"
    assert (summary.data_config.interpolation, summary.data_config.crop_pct) == ("bicubic", 0.875)
    chance = 100.0 / textures.num_classes
    assert summary.student_top1 > 2 * chance, "the student must learn for the agreement to mean anything"

    artifact = next((run_dir / "export").glob("*fp32*.onnx"))
    sidecar = Sidecar.read_for(artifact)
    assert (sidecar.interpolation, sidecar.crop_pct, sidecar.preprocessing) == ("bicubic", 0.875, "run")
    test = load_dataset("imagefolder", textures.root).split("test")
    # ONNX Runtime on the file, each image preprocessed only as its sidecar says (no torch, no model code)
    logits = predict_logits(artifact, [path for path, _ in test])
    labels = np.array([label for _, label in test])
    onnx_top1 = 100.0 * float((logits.argmax(1) == labels).mean())
    one_image = 100.0 / len(test)
    assert abs(onnx_top1 - summary.student_top1) <= one_image + 1e-9

    # PyTorch on the saved weights, evaluated as the run evaluates: the same figure
    from dait_edge.data.images import ImageListDataset
    from dait_edge.data.transforms import eval_transform_for
    from dait_edge.engine.evaluate import evaluate
    from dait_edge.models import build_model

    student = build_model(
        "efficientnet_b0",
        textures.num_classes,
        pretrained=False,
        weights=run_dir / "stage2" / "student_last.safetensors",
    )
    data = ImageListDataset(test, eval_transform_for(summary.data_config))
    torch_top1 = evaluate(student, data, device=torch.device("cpu"))["top1"]
    assert abs(torch_top1 - summary.student_top1) <= one_image + 1e-9


def test_a_run_records_its_schedule_and_the_lr_it_used(texture_run):
    run_dir, summary = texture_run
    lines = [m for m in read_metrics(run_dir) if m.stage == 2]
    lrs = [m.lr for m in lines]
    # the first step of the warm-up epoch, then a cosine that ends near zero
    assert lrs[0] < 3e-3 / 5 and lrs[1] == pytest.approx(3e-3, rel=1e-6)
    assert all(a > b for a, b in zip(lrs[1:], lrs[2:], strict=False)) and lrs[-1] < 3e-3 * 0.05
    # every epoch also scored the validation images (10% held out), and the best epoch is theirs
    assert summary.val_images == round(0.1 * 6 * 24)
    assert all(m.val_top1 is not None for m in lines)
    best = max(range(len(lines)), key=lambda e: (lines[e].val_top1, -e))
    assert summary.student_best_epoch == best
    assert summary.student_top1_best == lines[best].top1
    assert summary.student_val_top1_best == lines[best].val_top1


# -------------------------------------------------------------------- choices never see the test split


def _shuffle_test_labels(root: Path, out: Path) -> Path:
    """A copy of an ImageFolder tree whose every test image moved to the next class's folder."""
    shutil.copytree(root, out)
    classes = sorted(p.name for p in (out / "test").iterdir())
    staging = out / "test-moved"
    for c, name in enumerate(classes):
        target = staging / classes[(c + 1) % len(classes)]
        target.mkdir(parents=True)
        for image in (out / "test" / name).iterdir():
            image.rename(target / f"from-{name}-{image.name}")
    shutil.rmtree(out / "test")
    staging.rename(out / "test")
    return out


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory, tiny_vlm, tiny_config):
    """The same DHO run on a texture set and on its copy with every test label wrong; each exported to int8
    with the accuracy search (60 validation images, enough for the search to judge)."""
    base = tmp_path_factory.mktemp("twins")
    data = make_textures(base / "data", classes=3, train_per_class=60, test_per_class=8, size=36)
    shuffled = _shuffle_test_labels(data.root, base / "shuffled")
    runs = {}
    for name, root in (("true", data.root), ("shuffled", shuffled)):
        config = tiny_config(
            root,
            tiny_vlm.config,
            tiny_vlm.weights,
            base / name,
            dataset="imagefolder",
            method="dho",
            stage2_epochs=3,
            labelled_fraction=0.8,
            val_fraction=0.45,
            lr=3e-3,
            out=base / name / "run",
        )
        summary = run_distill(config)
        export = export_run(
            summary.run_dir,
            formats="onnx,onnx-int8-u8s8",
            calib_samples=16,
            measure_speed=False,
            calibration_method="search",
            max_top1_drop=0.0,
            log=lambda m: None,
        )
        profile = dataclasses.replace(load_profile("x86-ort-cpu-fp32"), warmup=1, iterations=2, threads=1)
        profiled = profile_artifacts(
            [Path(summary.run_dir) / "export"],
            profile,
            dataset="imagefolder",
            data_root=str(root),
            save=False,
            log=lambda m: None,
        )
        runs[name] = SimpleNamespace(
            root=root, summary=summary, export=export, run_dir=Path(summary.run_dir), rows=profiled.rows
        )
    return runs


def test_shuffled_test_labels_change_no_choice(twin_runs):
    true, shuffled = twin_runs["true"], twin_runs["shuffled"]
    a, b = true.summary, shuffled.summary
    assert a.val_images >= 50
    # the premise: every test label differs, so figures on the test split differ where the model is right
    test_a = load_dataset("imagefolder", true.root).split("test")
    test_b = load_dataset("imagefolder", shuffled.root).split("test")
    assert len(test_a) == len(test_b) and {lbl for _, lbl in test_a} == {lbl for _, lbl in test_b}
    assert [m.top1 for m in read_metrics(true.run_dir)] != [m.top1 for m in read_metrics(shuffled.run_dir)]

    # the best epoch, DHO's (a, b) and both weights files
    assert a.student_best_epoch is not None and a.student_best_epoch == b.student_best_epoch
    assert a.calibration and a.calibration == b.calibration
    from safetensors.torch import load_file

    for rel in ("stage2/student_best.safetensors", "stage2/student_last.safetensors"):
        # the same tensors (the files' metadata records each epoch's test top-1, which differs)
        weights_a, weights_b = load_file(true.run_dir / rel), load_file(shuffled.run_dir / rel)
        assert weights_a.keys() == weights_b.keys()
        assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a), rel
    assert [m.val_top1 for m in read_metrics(true.run_dir)] == [
        m.val_top1 for m in read_metrics(shuffled.run_dir)
    ]

    # int8: the calibration kept, the nodes returned to float, the validation figures
    def int8_choice(export: ExportSummary) -> dict:
        accuracy = next(e.accuracy for e in export.artifacts if e.precision == "int8")
        assert accuracy.checked
        return {
            k: getattr(accuracy, k)
            for k in (
                "calibration",
                "percentile",
                "nodes_in_float",
                "val_top1",
                "fp32_val_top1",
                "calibration_tried",
            )
        }

    assert int8_choice(true.export) == int8_choice(shuffled.export)

    # profile scores the run's validation images beside the test split; the report chooses by them
    assert len(true.rows) == len(shuffled.rows) >= 2
    val_images = a.val_images
    for row_a, row_b in zip(true.rows, shuffled.rows, strict=True):
        assert "run validation split" in row_a.val_data and row_a.val_data.endswith(f"{val_images} images")
        assert (row_a.val_top1, row_a.val_correct) == (row_b.val_top1, row_b.val_correct)
    # the twin's rows timed as the first's: only the labels of the test split differ between them
    twin = [
        dataclasses.replace(row_b, latency_ms=row_a.latency_ms)
        for row_a, row_b in zip(true.rows, shuffled.rows, strict=True)
    ]
    assert judged_rows(true.rows)[1] == judged_rows(twin)[1] == VALIDATION
    best_a, best_b = choose_best(true.rows)[0], choose_best(twin)[0]
    assert (best_a.chosen_format, best_a.reference_top1) == (best_b.chosen_format, best_b.reference_top1)


def test_the_report_chooses_on_validation_images_whatever_the_test_split_says():
    """int8 loses 10 test points but keeps its validation top-1: it is chosen, and turning the test figures
    upside down changes nothing; a row set without validation figures is judged on the test split, saying so."""
    common = dict(val_data="imagefolder run validation split of /d, 60 images")
    fp32 = make_profile_row("onnx-fp32", 3.0, 80.0, val_top1=70.0, **common)
    int8 = make_profile_row("onnx-int8-u8s8", 1.0, 70.0, val_top1=70.0, **common)
    best = choose_best([fp32, int8], max_top1_drop=1.0)[0]
    assert best.judged_on == VALIDATION and best.chosen_format == "onnx-int8-u8s8"
    assert best.winner.test_top1 == 70.0 and best.winner.top1 == 70.0
    upside_down = [dataclasses.replace(fp32, top1=10.0), dataclasses.replace(int8, top1=95.0)]
    again = choose_best(upside_down, max_top1_drop=1.0)[0]
    assert (again.chosen_format, again.reference_top1) == (best.chosen_format, best.reference_top1)

    legacy = [dataclasses.replace(r, val_top1=None, val_data=None) for r in (fp32, int8)]
    rows, judged_on = judged_rows(legacy)
    assert judged_on == "test split" and rows == legacy
    old = choose_best(legacy, max_top1_drop=1.0)[0]
    assert old.chosen_format == "onnx-fp32" and "judged on the test split" in old.note


def test_old_records_without_the_preprocessing_say_what_they_assume():
    from dait_edge.records import DataConfig

    old = DataConfig.from_dict(
        {"input_size": [3, 64, 64], "interpolation": "bicubic", "crop_pct": 0.95}, "old"
    )
    assert old.source is None
    assert "upstream config" in old.describe() and "bilinear at 0.875" in old.describe()
    assert "the run's own" in dataclasses.replace(old, source="run").describe()
    assert math.isclose(old.crop_pct, 0.95)
