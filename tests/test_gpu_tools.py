"""The GPU tools run their CPU paths here: gpu_check's dry run, and bench_stage1 on a tiny VLM."""

from __future__ import annotations

import json


def test_gpu_check_dry_run_lists_every_check_and_what_it_needs(run_tool):
    proc = run_tool("gpu_check.py", "--dry-run", timeout=240)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["dry_run"] is True
    assert summary["checks"] == ["stages-live", "cache-build", "ddp-nccl", "torch-runner", "bench-stage1"]
    for name, line in zip(summary["checks"], lines[:-1], strict=True):
        assert line.startswith(name) and "needs torch" in line and "CUDA GPU" in line
    unknown = run_tool("gpu_check.py", "--only", "nope", timeout=240)
    assert unknown.returncode == 2 and "unknown checks nope" in unknown.stderr


def test_bench_stage1_prints_ratios_of_its_own_figures(tiny_vlm, tmp_path, run_tool):
    out = tmp_path / "bench.json"
    proc = run_tool(
        "bench_stage1.py", "--vlm", str(tiny_vlm.config), "--vlm-size", "32", "--img-size", "32",
        "--teacher", "test_resnet", "--images", "12", "--epochs", "2", "--batch-size", "4", "--json", str(out), timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    seconds, ratios = figures["seconds"], figures["ratios"]
    assert set(seconds) == {"live", "cached", "floor"} and all(len(v) == 2 for v in seconds.values())
    mean = {way: sum(v) / 2 for way, v in seconds.items()}
    assert abs(ratios["cached_epoch_to_floor"] - mean["cached"] / mean["floor"]) < 1e-6
    total = figures["build_seconds"] + sum(seconds["cached"])
    assert abs(ratios["stage1_cached_with_build_to_live"] - total / sum(seconds["live"])) < 1e-6
    assert f"cached epoch / floor epoch:               {ratios['cached_epoch_to_floor']:.2f}" in proc.stdout
    assert "lowest cosine of re-encoded views 0.99" in proc.stdout or "views 1.0000" in proc.stdout
