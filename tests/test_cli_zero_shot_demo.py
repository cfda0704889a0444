"""`dait-edge zero-shot` on a CUB-layout tree, and the offline demo end to end."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dait_edge.cli import cli
from tests.fixtures import make_cub
from tests.vlm_helpers import write_tiny_checkpoint, write_tiny_config


@pytest.fixture()
def cub_and_vlm(tmp_path):
    fixture = make_cub(tmp_path / "cub", classes=3, train_per_class=2, test_per_class=2)
    config = write_tiny_config(tmp_path)
    write_tiny_checkpoint(config, tmp_path / "vlm.safetensors", seed=7)
    return fixture, config, tmp_path / "vlm.safetensors"


def test_zero_shot_json_on_cub_layout(tmp_path, cub_and_vlm):
    fixture, config, weights = cub_and_vlm
    args = [
        "zero-shot",
        "--dataset",
        "cub",
        "--data-root",
        str(fixture.root),
        "--vlm",
        str(config),
        "--vlm-pretrained",
        str(weights),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--json",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == fixture.test == 6
    assert report["num_classes"] == 3
    assert 0.0 <= report["top1"] <= report["top5"] <= 100.0
    assert report["templates"] == ["a photo of {}, a type of bird."]
    assert report["vlm_weights"]["kind"] == "file"
    # second run reads the text embeddings from the cache and gives the same figures
    again = json.loads(CliRunner().invoke(cli, args).stdout)
    assert again["top1"] == report["top1"]
    assert len(list((tmp_path / "cache" / "text_embeddings").iterdir())) == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"--dataset": "cubb"}, "unknown dataset 'cubb'"),
        ({"--data-root": "/nowhere"}, "does not exist"),
        ({"--vlm-pretrained": "/nowhere/w.safetensors"}, "does not exist"),
        ({"--vlm": "not_a_clip_model"}, "unknown OpenCLIP model"),
    ],
)
def test_zero_shot_bad_input_is_one_line_exit_2(cub_and_vlm, overrides, message):
    fixture, config, weights = cub_and_vlm
    options = {
        "--dataset": "cub",
        "--data-root": str(fixture.root),
        "--vlm": str(config),
        "--vlm-pretrained": str(weights),
    }
    options.update(overrides)
    args = ["zero-shot", *[item for pair in options.items() for item in pair]]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_help_lists_the_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("list", "data", "zero-shot", "demo"):
        assert name in result.output


def test_demo_runs_offline_and_its_vlm_beats_chance(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "demo"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["inspect"]["num_classes"] == 6 and report["inspect"]["bad_images"] == []
    zero_shot = report["zero_shot"]
    assert zero_shot["vlm_weights"]["kind"] == "file"  # loaded back through the local-file path
    assert zero_shot["top1"] > 3 * zero_shot["chance_top1"]
    assert (tmp_path / "demo" / "vlm" / "demo_clip.safetensors").is_file()
    distill = report["distill"]
    assert distill["completed"] and distill["student"] == "resnet18" and distill["method"] == "dait_f"
    assert 0.0 <= distill["student_top1"] <= 100.0 and 0.0 <= distill["teacher_top1"] <= 100.0
    run_dir = tmp_path / "demo" / "runs" / "resnet18-dait_f"
    assert (run_dir / distill["checkpoints"]["student"]).is_file()
    assert json.loads((run_dir / "summary.json").read_text())["student_sha256"] == distill["student_sha256"]
    exported = report["export"]
    formats = {artifact["format"] for artifact in exported["artifacts"]}
    assert formats == {"onnx-fp32", "onnx-fp16", "onnx-int8-u8s8", "onnx-int8-s8s8"}
    for artifact in exported["artifacts"]:
        assert (run_dir / "export" / artifact["path"].split("/")[-1]).is_file()
        sidecar = json.loads((run_dir / "export" / artifact["sidecar"].split("/")[-1]).read_text())
        assert sidecar["classes"] == report["distill"]["classes"]
        if artifact["precision"] in ("fp32", "fp16"):
            assert artifact["parity"]["passed"]
