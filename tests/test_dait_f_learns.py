"""DAIT-F's student learns to classify while its feature term is on (issue 23), and runs say which form of
the feature term trained them."""

from __future__ import annotations

import json
import math

import pytest

from dait_edge.records import RunManifest, read_metrics
from tests.conftest import make_imagefolder

CLASSES = 4


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    """A label-trained teacher, then ShuffleNet-V2 taught by DAIT-F from it with the default feature term
    while alpha stays at most 0.375 (the feature term weighs at least 0.625 in every epoch)."""
    from dait_edge.config import DistillConfig
    from dait_edge.distill.run import run_distill

    root = tmp_path_factory.mktemp("dait_f_learns")
    data = make_imagefolder(root / "data", classes=CLASSES, train_per_class=8, test_per_class=2)
    common = dict(
        dataset="imagefolder",
        data_root=str(data.root),
        pretrained=False,
        device="cpu",
        progress=False,
        img_size=32,
        batch_size=8,
        workers=0,
        val_fraction=0.0,
        lr=0.01,
        lr_schedule="cosine",
        teacher_cache=str(root / "teachers"),
        cache_dir=str(root / "cache"),
    )
    run_distill(
        DistillConfig(**common, student="test_resnet", method="none", stage2_epochs=3, out=str(root / "t"))
    )
    student_dir = root / "student"
    run_distill(
        DistillConfig(
            **common,
            student="shufflenet_v2_x1_0",
            method="dait_f",
            teacher="test_resnet",
            stages="2",
            teacher_checkpoint=str(root / "t" / "stage2" / "student_last.safetensors"),
            stage2_epochs=4,
            alpha_rate=0.125,
            out=str(student_dir),
        )
    )
    return student_dir


def _teacher_of(student_dir):
    return student_dir.parent / "t" / "stage2" / "student_last.safetensors"


def test_dait_f_cross_entropy_falls_below_chance_while_the_feature_term_is_on(taught):
    epochs = [m for m in read_metrics(taught / "metrics.jsonl") if m.stage == 2]
    assert [m.alpha for m in epochs] == [0.0, 0.125, 0.25, 0.375]
    assert all("loss_sra" in m.losses for m in epochs)  # the feature term was on in every epoch
    # uniform predictions score ln(classes); the paper's form held the demo's students there (README)
    assert epochs[-1].losses["loss_ce"] < 0.75 * math.log(CLASSES)
    assert epochs[-1].losses["loss_ce"] < epochs[0].losses["loss_ce"]


def test_the_manifest_records_the_feature_term_and_older_runs_read_as_the_paper_form(taught, tmp_path):
    assert RunManifest.read(taught).config.sra_form == "pearson"
    assert RunManifest.read(taught).config.kd_weights == "constant"
    data = json.loads(RunManifest.path_in(taught).read_text())
    data["schema_version"] = 1  # a run made before --sra-form and --kd-weights existed
    del data["config"]["sra_form"], data["config"]["kd_weights"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    old = RunManifest.read(tmp_path).config
    assert (old.sra_form, old.kd_weights) == ("paper", "alpha")
    data["schema_version"] = 2  # after --sra-form, before --kd-weights
    data["config"]["sra_form"] = "pearson"
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    old = RunManifest.read(tmp_path).config
    assert (old.sra_form, old.kd_weights) == ("pearson", "alpha")


def test_the_probe_tool_measures_each_term_where_it_acts(taught, tmp_path, run_tool):
    """tools/probe_dait_f.py: the gradient of each loss term at the backbone and the classifier, R^2, probes."""
    out = tmp_path / "probe.json"
    result = run_tool(
        "probe_dait_f.py",
        *("--teacher-checkpoint", _teacher_of(taught), "--teacher", "test_resnet"),
        *("--data-root", taught.parent / "data", "--json", out, "--"),
        *("--img-size", "32", "--batch-size", "8", "--stage2-epochs", "2", "--alpha-rate", "0.5"),
        *("--val-fraction", "0", "--workers", "0", "--sra-form", "paper"),
    )
    assert result.returncode == 0, result.stderr
    (seed,) = json.loads(out.read_text())
    assert seed["before"]["teacher_map_shape"][0] > 0
    assert 0 <= seed["before"]["probe_teacher_pooled"] <= 100
    first, second = seed["epochs"]
    assert (first["alpha"], second["alpha"]) == (0.0, 0.5)
    assert first["g_ce_backbone"] == first["g_ce_head"] == 0.0  # alpha 0: CE weighs nothing
    assert second["g_ce_head"] > 0 and first["g_distil_backbone"] > 0
    assert first["g_distil_head"] == second["g_distil_head"] == 0.0  # SRA never reaches the classifier
    assert all(
        row["R2"] <= 1.0 and 0 <= row["dead"] <= 1 and 0 <= row["probe_s"] <= 100 for row in seed["epochs"]
    )
    # each epoch printed as one JSON line, as the log of a longer run is read
    assert len([line for line in result.stdout.splitlines() if line.startswith('{"seed": 0, "epoch"')]) == 2
