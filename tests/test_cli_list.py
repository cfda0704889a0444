"""`dait-edge list`: what can be named, as text (one per line) and as JSON."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from dait_edge.cli import list_cmd
from dait_edge.registry import Registry

STUDENTS = ["resnet18", "efficientnet_b0", "mobilenetv2_100", "shufflenet_v2_x1_0"]


def _run(*args: str):
    result = CliRunner().invoke(list_cmd.command, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_list_students_text_shows_exactly_the_four_students():
    lines = _run("students").stdout.splitlines()
    assert [line.split()[0] for line in lines] == STUDENTS
    assert "effb0" in lines[1] and "mobilenetv2" in lines[2] and "shufflenetv2" in lines[3]
    assert all("GMACs" in line for line in lines)


def test_list_students_json_parses():
    entries = json.loads(_run("students", "--json").stdout)
    assert [e["name"] for e in entries] == STUDENTS
    assert all({"name", "description", "aliases"} <= set(e) for e in entries)
    assert next(e for e in entries if e["name"] == "efficientnet_b0")["aliases"] == ["effb0"]


def test_list_teachers_marks_the_default():
    lines = _run("teachers").stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "regnety_016",
        "resnet50",
        "resnet34",
        "efficientnet_b0",
        "vgg13",
    ]
    assert [line.split()[0] for line in lines if "[default]" in line] == ["regnety_016"]
    entries = json.loads(_run("teachers", "--json").stdout)
    assert [e["name"] for e in entries if e["default"]] == ["regnety_016"]


def test_list_methods_shows_what_exists(monkeypatch):
    try:
        methods = importlib.import_module("dait_edge.methods")
        expected = list(getattr(methods, "METHODS", []))
    except ModuleNotFoundError:
        expected = []
    assert [e["name"] for e in json.loads(_run("methods", "--json").stdout)] == expected

    fake = types.ModuleType("dait_edge.methods")
    fake.METHODS = Registry("method")
    fake.METHODS.register("dait_f", "DAIT-F: feature-map distillation")(object)
    monkeypatch.setitem(sys.modules, "dait_edge.methods", fake)
    assert _run("methods").stdout.split()[:2] == ["dait_f", "DAIT-F:"]


def test_list_datasets_matches_the_registry():
    import dait_edge.data  # noqa: F401  (fills DATASETS)
    from dait_edge.data.base import DATASETS

    entries = json.loads(_run("datasets", "--json").stdout)
    assert [e["name"] for e in entries] == list(DATASETS)


def test_list_vlms_marks_the_default_openclip_weights():
    entries = json.loads(_run("vlms", "--json").stdout)
    assert len(entries) > 50
    defaults = [(e["name"], e["pretrained"]) for e in entries if e["default"]]
    assert defaults == [("convnext_xxlarge", "laion2b_s34b_b82k_augreg_soup")]
    text = _run("vlms").stdout.splitlines()
    assert any("laion2b_s34b_b82k_augreg_soup" in line and "[default]" in line for line in text)


def test_list_profiles_reads_toml_descriptions(monkeypatch, tmp_path):
    monkeypatch.setattr("dait_edge.profiling.profiles.PROFILES_DIR", tmp_path / "absent")
    assert json.loads(_run("profiles", "--json").stdout) == []

    (tmp_path / "x86-ort-cpu-fp32.toml").write_text('description = "x86 CPU, ONNX Runtime, fp32"\n')
    (tmp_path / "broken.toml").write_text("description = \n")
    monkeypatch.setattr("dait_edge.profiling.profiles.PROFILES_DIR", tmp_path)
    entries = {e["name"]: e["description"] for e in json.loads(_run("profiles", "--json").stdout)}
    assert entries["x86-ort-cpu-fp32"] == "x86 CPU, ONNX Runtime, fp32"
    assert entries["broken"].startswith("unreadable")


def test_unknown_kind_is_a_usage_error():
    result = CliRunner().invoke(list_cmd.command, ["gpus"])
    assert result.exit_code == 2 and "students" in result.output


def test_listing_students_imports_no_torch():
    # `dait-edge --help` and `list students` must stay fast: the heavy libraries load lazily.
    code = (
        "import sys; from dait_edge.cli import list_cmd; "
        "list_cmd.command.main(['students'], standalone_mode=False); "
        "heavy = [m for m in ('torch', 'timm', 'open_clip') if m in sys.modules]; "
        "print('HEAVY', heavy)"
    )
    # load list_cmd without the package __init__ (other commands may import torch themselves)
    stub = (
        "import sys, types; pkg = types.ModuleType('dait_edge.cli'); "
        f"pkg.__path__ = [{str(Path(list_cmd.__file__).parent)!r}]; sys.modules['dait_edge.cli'] = pkg; "
    )
    out = subprocess.run(
        [sys.executable, "-c", stub + code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(list_cmd.__file__).parents[2],
    ).stdout
    assert "resnet18" in out
    assert "HEAVY []" in out


@pytest.mark.parametrize("kind", list_cmd.KINDS)
def test_every_kind_lists_without_crashing(kind, monkeypatch, tmp_path):
    monkeypatch.setattr("dait_edge.profiling.profiles.PROFILES_DIR", tmp_path)
    assert isinstance(json.loads(_run(kind, "--json").stdout), list)
