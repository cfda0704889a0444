"""The device install: `pip install dait-edge[litert]` (the LiteRT interpreter, no other extra) has no PyTorch and
still profiles ONNX and LiteRT artifacts.

A real venv is built from a copy of this checkout (the wheel path users take on a Jetson or a
Raspberry Pi), with the package registry as the only source, as `make test` installs everything.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dait_edge.errors import UserError
from dait_edge.records import ProfileResult, Sidecar
from tests.conftest import needs_mobile

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("dait_edge", "profiles", "export", "pyproject.toml", "README.md")


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("light")
    source = base / "src"
    source.mkdir()
    for name in SHIPPED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, source / name)
    venv = base / "venv"
    python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", f"{source}[litert]"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return venv


@pytest.fixture(scope="module")
def exported(tmp_path_factory, exported_run, tiny_cub):
    """A copy of the shared exported run (profiling writes profile/ into it)."""
    run = tmp_path_factory.mktemp("light_run") / "run"
    shutil.copytree(exported_run, run)
    return run, tiny_cub


def light(venv: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / "dait-edge"), *args], capture_output=True, text=True, timeout=300, cwd=venv
    )


def test_light_install_has_no_torch(light_venv):
    probe = subprocess.run(
        [str(light_venv / "bin" / "python"), "-c", "import torch"], capture_output=True, text=True
    )
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    listed = light(light_venv, "list", "profiles")
    # the profiles travel in the wheel (share/dait-edge/profiles), not only in a checkout
    assert listed.returncode == 0 and "x86-ort-cpu-int8" in listed.stdout, listed.stderr


def test_light_install_profiles_onnx_artifacts_with_top1(light_venv, exported):
    run, cub = exported
    result = light(
        light_venv,
        "profile",
        str(run / "export"),
        "--profile",
        "x86-ort-cpu-int8",
        "--batch-sizes",
        "1",
        "--dataset",
        "cub",
        "--data-root",
        str(cub.root),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    rows = ProfileResult.from_dict(json.loads(result.stdout), "profile --json").rows
    assert {r.format for r in rows} == {"onnx-fp32", "onnx-int8-u8s8"}
    for row in rows:
        sidecar = Sidecar.read_for(row.artifact)
        # the same top-1 the export measured in the full install, through the sidecar's preprocessing
        assert row.top1 == pytest.approx(sidecar.parity.top1_artifact, abs=1e-3)
        assert row.latency_ms.p50 > 0


def test_light_install_says_how_to_get_the_full_toolchain(light_venv, tmp_path):
    for command in ("distill", "sweep"):  # help still shows, and says where the method list lives
        shown = light(light_venv, command, "--help")
        text = "".join(shown.stdout.split())  # help wraps lines, also at hyphens
        assert shown.returncode == 0 and "needtorch:pipinstall'dait-edge[full]'" in text, shown.stderr
    result = light(light_venv, "distill", "--dataset", "cub", "--data-root", str(tmp_path))
    assert result.returncode == UserError.exit_code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "needs torch" in lines[0] and "pip install 'dait-edge[full]'" in lines[0]


@needs_mobile("litert")
def test_light_install_profiles_litert_files_with_top1_and_no_torch(light_venv, exported):
    run, cub = exported
    data = ["--dataset", "cub", "--data-root", str(cub.root), "--json"]
    result = light(light_venv, "profile", str(run / "export"), "--profile", "arm64-litert-cpu", *data)
    assert result.returncode == 0, result.stderr
    rows = ProfileResult.from_dict(json.loads(result.stdout), "profile --json").rows
    assert {r.format for r in rows} == {
        "litert-int8"
    }  # the int8 file: its int8 input quantised without torch
    for row in rows:  # what export measured with the full install, through the sidecar's preprocessing
        assert row.top1 == pytest.approx(Sidecar.read_for(row.artifact).parity.top1_artifact, abs=1e-3)
    probe = subprocess.run(
        [
            str(light_venv / "bin" / "python"),
            "-c",
            "import ai_edge_litert, sys; print('torch' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "False", probe.stderr
