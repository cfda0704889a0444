"""`dait-edge profile`: target profiles, timing statistics, rows on real exported artifacts, no torch needed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from dait_edge.cli import cli
from dait_edge.errors import UserError
from dait_edge.export.api import export_run
from dait_edge.profiling.profiles import available_profiles, load_profile
from dait_edge.profiling.timing import measure, summarise
from tests.cli_helpers import assert_user_error
from tests.fixtures import make_cub
from tests.test_export import NUM_CLASSES, make_run

ROW_KEYS = {
    "artifact",
    "backend",
    "precision",
    "batch",
    "latency_ms",
    "throughput_ips",
    "peak_mem_mb",
    "size_mb",
    "params",
    "macs",
    "top1",
}


def test_shipped_profiles_parse():
    names = set(available_profiles())
    assert {
        "x86-ort-cpu-fp32",
        "x86-ort-cpu-int8",
        "arm-ort-cpu-int8",
        "cuda-torch",
        "cuda-ort-trt",
        "jetson-orin-trt-fp16",
    } <= names
    for name in names:
        profile = load_profile(name)
        assert (
            profile.name == name
            and profile.device
            and profile.runtime in ("onnxruntime", "tensorrt", "torch")
        )
        assert profile.batch_sizes and profile.iterations >= 1


def test_bad_profiles(tmp_path):
    with pytest.raises(UserError, match="unknown profile 'x86'"):
        load_profile("x86")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nruntime = "openvino"\n')
    with pytest.raises(UserError, match="runtime 'openvino'"):
        load_profile(str(bad))


def test_summary_statistics_are_ordered_and_exact():
    stats = summarise([float(v) for v in range(1, 101)])
    assert stats["mean"] == pytest.approx(50.5) and stats["p50"] == pytest.approx(50.5)
    assert stats["p90"] == pytest.approx(90.1) and stats["p99"] == pytest.approx(99.01)
    assert stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"]


def test_measure_warms_up_then_times_each_call():
    calls = []
    stats = measure(lambda: calls.append(1), warmup=3, iterations=7)
    assert len(calls) == 10 and stats["samples"] == 7


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("profile")
    cub = make_cub(base / "CUB", classes=NUM_CLASSES, train_per_class=3, test_per_class=3)
    run = make_run(base, "mobilenetv2_100", cub)
    summary = json.loads((run / "summary.json").read_text())
    summary.update({"params": 123, "macs": 456})
    (run / "summary.json").write_text(json.dumps(summary))
    export_run(run, formats="onnx,onnx-int8-u8s8", calib_samples=8, measure_speed=False, log=lambda m: None)
    return run, cub


def test_rows_have_every_field_and_are_saved_in_the_run(exported):
    run, cub = exported
    args = [
        "profile",
        str(run / "export"),
        "--profile",
        "x86-ort-cpu-int8",
        "--batch-sizes",
        "1,2",
        "--dataset",
        "cub",
        "--data-root",
        str(cub.root),
        "--json",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = report["rows"]
    assert {(r["format"], r["batch"]) for r in rows} == {
        (f, b) for f in ("onnx-fp32", "onnx-int8-u8s8") for b in (1, 2)
    }
    for row in rows:
        assert ROW_KEYS <= set(row)
        lat = row["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] and lat["samples"] == 50
        assert row["throughput_ips"] == pytest.approx(1e3 * row["batch"] / lat["mean"])
        assert row["params"] == 123 and row["macs"] == 456 and row["peak_mem_mb"] > 10
        assert row["size_mb"] == pytest.approx(
            (run / "export" / row["artifact"].split("/")[-1]).stat().st_size / 1e6
        )
        sidecar = json.loads(
            (run / "export" / row["artifact"].split("/")[-1]).with_suffix(".json").read_text()
        )
        # top-1 from the sidecar's preprocessing matches the export's own parity measurement
        assert row["top1"] == pytest.approx(sidecar["parity"]["top1_artifact"], abs=1e-3)
    assert report["measured"]["warmup"] == 10 and report["measured"]["hardware"]["cpu_count"] >= 1
    saved = json.loads((run / "profile" / "x86-ort-cpu-int8.json").read_text())
    assert len(saved["rows"]) == 4


def test_profile_bad_input(exported, tmp_path):
    run, _ = exported
    runner = CliRunner()
    assert_user_error(
        runner.invoke(cli, ["profile", str(run / "export"), "--profile", "nope"]), "unknown profile"
    )
    assert_user_error(
        runner.invoke(cli, ["profile", str(run / "export"), "--profile", "cuda-torch"]), "torch runner"
    )
    assert_user_error(runner.invoke(cli, ["profile", str(tmp_path / "missing")]), "does not exist")
    assert_user_error(runner.invoke(cli, ["profile", str(tmp_path)]), "no artifacts")


def test_profiling_needs_no_torch(exported):
    """On the device there may be no PyTorch: block its import and profile anyway."""
    run, _ = exported
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
        "from dait_edge.cli import main\n"
        f"main(['profile', {str(run / 'export')!r}, '--profile', 'x86-ort-cpu-fp32', '--batch-sizes', '1', '--json'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert [row["format"] for row in rows] == ["onnx-fp32"]
