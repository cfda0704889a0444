"""tools/bench_int8.py on a tiny fixture run: its table's ratios and verdict follow from its own figures."""

from __future__ import annotations

import json

TOOL = "bench_int8.py"


def test_bench_int8_prints_figures_that_match_its_json(tmp_path, tiny_cub, fake_run, run_tool):
    runs = tmp_path / "runs"
    fake_run(runs, "test_efficientnet", tiny_cub)
    out = tmp_path / "int8.json"
    args = [
        "--runs",
        str(runs),
        "--calib-samples",
        "4",
        "--parity-samples",
        "9",
        "--iterations",
        "5",
        "--rounds",
        "2",
    ]
    done = run_tool(TOOL, *args, "--threads", "1", "--json", out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "met for every student:" in done.stdout and "test_efficientnet |" in done.stdout
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert row["val_images"] == 8 and row["checked"] is False  # 12 training images, 4 calibrate: too few
    for name in ("plain", "aware"):
        entry = row[name]
        assert entry["speedup_vs_fp32"] == round(row["fp32"]["p50_ms"] / entry["p50_ms"], 3)
        assert entry["test_drop"] == round(row["fp32"]["test_top1"] - entry["test_top1"], 3)
        low, high = entry["p50_saving_ms_95"]
        assert low <= high and entry["faster"] == (low > 0)
        if entry["faster"]:  # a resolved saving is a saving
            assert entry["p50_ms"] < row["fp32"]["p50_ms"]
    expected = any(row[n]["test_drop"] <= 1.0 and row[n]["faster"] for n in ("plain", "aware"))
    assert row["target_met"] == expected


def test_bench_int8_refuses_a_folder_without_runs(tmp_path, run_tool):
    done = run_tool(TOOL, "--runs", tmp_path, timeout=120)
    assert done.returncode == 2 and "holds no finished run" in done.stderr
