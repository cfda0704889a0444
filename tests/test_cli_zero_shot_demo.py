"""`dait-edge zero-shot` on a CUB-layout tree, and the offline demo end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dait_edge.cli import cli
from dait_edge.records import Comparison, ExportSummary, ProfileResult, Report, Sidecar
from dait_edge.sweep import all_students


@pytest.fixture()
def cub_and_vlm(tmp_path, layouts, tiny_vlm):
    fixture = layouts.cub(tmp_path / "cub", classes=3, train_per_class=2, test_per_class=2)
    return fixture, tiny_vlm.config, tiny_vlm.weights


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


def test_demo_runs_offline_at_a_small_scale_and_reports(tmp_path):
    """The whole chain as `make demo` runs it, at 4 images per class and one epoch: it proves the chain
    (every step, every registered student), not the method."""
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--images-per-class", "4", "--epochs", "1", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["inspect"]["num_classes"] == 6 and report["inspect"]["bad_images"] == []
    assert report["inspect"]["train"] == report["inspect"]["test"] == 24
    zero_shot = report["zero_shot"]
    assert zero_shot["vlm_weights"]["kind"] == "file"  # loaded back through the local-file path
    assert zero_shot["images"] == 24 and 0.0 <= zero_shot["top1"] <= 100.0
    assert (out / "vlm" / "demo_clip.safetensors").is_file()

    students = report["students"]
    assert list(students) == all_students()  # the sweep's `all`: every registered student
    # one stage-1 teacher, trained for the first student and reused by the others
    assert [s["teacher_reused"] for s in students.values()] == [False] + [True] * (len(students) - 1)
    for student, summary in students.items():
        run_dir = out / "runs" / f"{student}-dait_f"
        assert summary["completed"] and summary["student"] == student and summary["method"] == "dait_f"
        assert 0.0 <= summary["student_top1"] <= 100.0
        assert (run_dir / summary["checkpoints"]["student"]).is_file()
        exported = ExportSummary.read(run_dir / "export")
        # no QAT at this size (4 validation images cannot judge its budget); `make demo`'s 60 can
        assert "no QAT int8 at this size: too few validation images" in result.stderr
        assert exported.formats() == {"onnx-fp32", "onnx-fp16", "onnx-int8-u8s8"}
        for artifact in exported.artifacts:
            sidecar = Sidecar.read_for(artifact.path)
            assert sidecar.classes == summary["classes"]
            if artifact.precision in ("fp32", "fp16"):
                assert artifact.parity.passed
        for profile, formats in (
            ("x86-ort-cpu-fp32", {"onnx-fp32"}),
            ("x86-ort-cpu-int8", {"onnx-fp32", "onnx-int8-u8s8"}),
        ):
            rows = ProfileResult.read(run_dir / "profile" / f"{profile}.json").rows
            assert {r.format for r in rows} == formats
            assert all(r.top1 is not None and r.latency_ms.p50 > 0 and r.batch == 1 for r in rows)

    files = report["report"]["files"]
    for name in ("report.md", "report.csv", "report.json", "pareto.png", "report.html"):
        assert (out / "report" / name).is_file(), name
    assert {Path(f).name for f in files.values()} >= {"report.md", "pareto.png"}
    assert (out / "report" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report" / "report.md").read_text()
    assert all(f"| {student} |" in markdown for student in students)
    assert "## Best artifact per student" in markdown
    best = Report.read(out / "report").best
    assert {(e.student, e.profile) for e in best} == {
        (s, p) for s in students for p in ("x86-ort-cpu-fp32", "x86-ort-cpu-int8")
    }
    # fp32 is the only candidate on the fp32 profile, and it is what the chosen artifact is judged against
    assert all(e.chosen_format == "onnx-fp32" for e in best if e.profile == "x86-ort-cpu-fp32")

    # the method comparison on one student, with the note that synthetic data proves the chain only
    comparison = Comparison.read(out / "compare")
    assert "not which method is better" in comparison.note
    rows = {(t.labelled_fraction, r.label) for t in comparison.tables for r in t.rows}
    assert rows == {
        (1.0, "none"),
        (1.0, "dait_f"),
        (0.3, "none"),
        (0.3, "dho"),
        (0.3, "dait_f"),
    }
    # every row over the demo's seed and the next, so the table states a spread, not one seed's luck
    cells = [c for t in comparison.tables for r in t.rows for c in r.cells.values()]
    assert all(c.seeds == [0, 1] and c.runs == 2 and c.std is not None for c in cells)
    assert comparison.warnings == []  # one recipe across every run, seeds aside
    assert all(t.students == ["shufflenet_v2_x1_0"] for t in comparison.tables)
    assert "| dho | VLM dait_demo_clip |" in result.stderr  # the table is printed
