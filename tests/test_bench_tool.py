"""tools/bench_inference.py runs end to end (tiny: one student, 32 px, few requests) and its ratios add up.

Its figures are not checked here (timed tests are noise on shared machines); the README has them.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import mobile_extra

TOOL = "bench_inference.py"


def test_bench_prints_ratios_that_match_its_own_figures(tmp_path, run_tool):
    out = tmp_path / "bench.json"
    # timm's tiny test model: the tool takes any name distill takes; the four students are its default
    args = ["--students", "test_efficientnet", "--img-size", "32", "--iterations", "6", "--rounds", "2"]
    # one on-device runtime (LiteRT: the cheaper to lower) stands for both; `--mobile all` is the default
    mobile = ["--mobile", "litert"] if mobile_extra("litert") else ["--mobile", "none"]
    done = run_tool(TOOL, *args, "--threads", "1", *mobile, "--json", out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CPU target met for every student:" in done.stdout
    result = json.loads(out.read_text())["cpu"]["test_efficientnet"]
    p50 = result["p50_ms"]
    formats = {"eager", "onnx-fp32", "onnx-fp16", "onnx-int8-u8s8", "onnx-int8-s8s8"}
    if mobile_extra("litert"):
        formats |= {"litert-fp32", "litert-int8"}
        assert "LiteRT fp32" in done.stdout and "LiteRT int8" in done.stdout and "ET fp32" not in done.stdout
    assert set(p50) == formats
    assert all(ms > 0 for ms in p50.values())
    assert result["chosen"] in p50 and result["chosen"] != "eager"
    assert result["chosen_to_eager"] == pytest.approx(p50[result["chosen"]] / p50["eager"])
    assert result["chosen_to_fp32"] == pytest.approx(p50[result["chosen"]] / p50["onnx-fp32"])
    assert result["target_met"] == (result["chosen_to_eager"] <= 0.35 and result["chosen_to_fp32"] <= 1.0)
    for stats in result["latency_ms"].values():
        assert stats["p50"] <= stats["p90"] <= stats["p99"] and stats["samples"] >= 6


def test_bench_rejects_an_unknown_student(run_tool):
    done = run_tool(TOOL, "--students", "vit_huge", timeout=120)
    assert done.returncode == 2 and "unknown student 'vit_huge'" in done.stderr


def test_bench_weights_have_no_zero_scale_a_converter_could_fold_away(tmp_path, tiny_cub):
    """timm zero-initialises each residual block's last BatchNorm; litert-torch then folds the branch away and
    a benchmark would time a smaller network (ResNet-18 LiteRT fp32: 1.8 ms with, 18.7 ms without, at 224 px).
    The bench's runs fill those scales."""
    import torch
    from safetensors.torch import load_file

    from dait_edge.distill.untrained import write_untrained_run
    from dait_edge.records import RunLayout

    def zero_scales(fill: bool) -> int:
        run = write_untrained_run(
            tmp_path / f"run-{fill}",
            "test_resnet",
            dataset="cub",
            data_root=tiny_cub.root,
            classes=tiny_cub.classes,
            img_size=32,
            fill_zero_scales=fill,
        )
        weights = load_file(RunLayout(run).student_last)
        scales = [k for k in weights if k.endswith(".running_var")]
        return sum(not torch.any(weights[k.replace("running_var", "weight")]) for k in scales)

    assert zero_scales(False) > 0 and zero_scales(True) == 0
