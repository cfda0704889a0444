"""Students and intermediate teachers: one interface, weights files, offline behaviour, MACs.

Random weights only (pretrained=False); weights files are written by the tests themselves.
"""

from __future__ import annotations

import time
import urllib.error
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dait_edge.errors import UserError
from dait_edge.models import (
    DEFAULT_TEACHER,
    STUDENTS,
    TEACHERS,
    build_model,
    builders,
    count_macs,
    count_params,
    load_state_dict_file,
    weights,
)

# name: (role, feature-map channels, pooled width, source)
EXPECTED = {
    "resnet18": ("student", 512, 512, "timm"),
    "efficientnet_b0": ("student", 1280, 1280, "timm"),
    "mobilenetv2_100": ("student", 1280, 1280, "timm"),
    "shufflenet_v2_x1_0": ("student", 1024, 1024, "torchvision"),
    "regnety_016": ("teacher", 888, 888, "timm"),
    "resnet50": ("teacher", 2048, 2048, "timm"),
    "resnet34": ("teacher", 512, 512, "timm"),
    "vgg13": ("teacher", 512, 4096, "timm"),  # timm's vgg pre_logits is a ConvMlp to 4096
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registries_hold_the_papers_models():
    assert list(STUDENTS) == ["resnet18", "efficientnet_b0", "mobilenetv2_100", "shufflenet_v2_x1_0"]
    assert list(TEACHERS) == ["regnety_016", "resnet50", "resnet34", "efficientnet_b0", "vgg13"]
    assert DEFAULT_TEACHER == "regnety_016"
    for registry in (STUDENTS, TEACHERS):
        for name in registry:
            assert "GMACs" in registry.describe(name) and "params" in registry.describe(name), name


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_entry_builds_with_one_interface(name):
    role, channels, width, source = EXPECTED[name]
    model = build_model(name, 5, pretrained=False, role=role).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model.forward_all(x)
        feature_map = model.forward_features(x)
        pooled = model.pool(feature_map)
        logits = model.classify(pooled)
        upstream = model.model(x)

    assert (model.name, model.source, model.num_classes) == (name, source, 5)
    assert (model.feature_channels, model.num_features) == (channels, width)
    assert out["logits"].shape == (2, 5)
    assert out["feature_map"].ndim == 4 and out["feature_map"].shape[:2] == (2, channels)
    assert out["pooled"].shape == (2, width)
    torch.testing.assert_close(out["feature_map"], feature_map)
    torch.testing.assert_close(out["pooled"], pooled)
    torch.testing.assert_close(out["logits"], logits)
    # the split into map -> pool -> classify reproduces the upstream model's own forward
    torch.testing.assert_close(model(x), upstream)
    assert model.data_config.input_size == [3, 224, 224]
    assert len(model.data_config.mean) == len(model.data_config.std) == 3
    assert model.data_config.interpolation in ("bilinear", "bicubic") and 0 < model.data_config.crop_pct <= 1
    assert model.weights_from == "random"


def test_default_teacher_map_is_888_by_7x7_at_224px():
    teacher = build_model(DEFAULT_TEACHER, 3, pretrained=False, role="teacher").eval()
    with torch.no_grad():
        out = teacher.forward_all(torch.randn(1, 3, 224, 224))
    assert out["feature_map"].shape == (1, 888, 7, 7)
    assert out["pooled"].shape == (1, 888)


# --- aliases and names ----------------------------------------------------------------------


def test_aliases_resolve():
    assert STUDENTS.resolve("effb0") == "efficientnet_b0"
    assert STUDENTS.resolve("mobilenetv2") == "mobilenetv2_100"
    assert STUDENTS.resolve("shufflenetv2") == "shufflenet_v2_x1_0"
    assert STUDENTS.resolve("resnet18") == "resnet18"
    assert TEACHERS.resolve("effb0") == "efficientnet_b0"
    model = build_model("shufflenetv2", 3, pretrained=False)
    assert (model.name, model.source) == ("shufflenet_v2_x1_0", "torchvision")
    assert build_model("mobilenetv2", 3, pretrained=False).name == "mobilenetv2_100"


def test_any_timm_name_and_either_registry_work():
    model = build_model("resnet10t", 3, pretrained=False).eval()  # not registered, but a timm model
    assert model.source == "timm" and model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    # a student name is accepted as a teacher too
    assert build_model("shufflenet_v2_x1_0", 3, pretrained=False, role="teacher").source == "torchvision"


def test_unknown_names_give_close_matches_and_the_list_command():
    with pytest.raises(UserError, match=r"resnet18.*dait-edge list students"):
        build_model("resnt18", 3, pretrained=False)
    with pytest.raises(UserError, match=r"regnety_016.*dait-edge list teachers"):
        build_model("regnety_16", 3, pretrained=False, role="teacher")
    with pytest.raises(UserError) as err:
        build_model("qqqqqqqqq", 3, pretrained=False)
    assert "Did you mean" not in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError):
        build_model("resnet18", 3, pretrained=False, role="coach")


# --- local weights files --------------------------------------------------------------------


def _save(state_dict: dict, path, fmt: str) -> None:
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
    else:  # a training-script checkpoint: nested under 'state_dict', DDP-prefixed keys
        torch.save({"state_dict": {f"module.{k}": v for k, v in state_dict.items()}, "epoch": 3}, path)


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
@pytest.mark.parametrize("name", ["resnet18", "shufflenet_v2_x1_0"])
def test_weights_file_loads_backbone_and_drops_a_head_of_other_size(tmp_path, name, fmt):
    saved = build_model(name, 10, pretrained=False).model.state_dict()
    path = tmp_path / f"weights.{fmt}"
    _save(saved, path, fmt)

    model = build_model(name, 4, weights=path)
    loaded = model.model.state_dict()
    backbone = [k for k in saved if not k.startswith("fc.")]
    assert len(backbone) > 10
    for key in backbone:
        assert torch.equal(loaded[key], saved[key]), key
    assert loaded["fc.weight"].shape[0] == 4  # fresh head for the new class count
    assert model.weights_from == str(path)


@pytest.mark.parametrize("name", ["resnet18", "shufflenet_v2_x1_0"])
def test_weights_file_of_a_saved_wrapper_keeps_a_head_of_the_same_size(tmp_path, name):
    # What stage 2 does with the stage-1 teacher: same classes, so the trained head must survive.
    source = build_model(name, 7, pretrained=False)
    path = tmp_path / "teacher.pt"
    torch.save(source.state_dict(), path)  # keys prefixed 'model.'
    model = build_model(name, 7, weights=path, role="teacher")
    for key, value in source.model.state_dict().items():
        assert torch.equal(model.model.state_dict()[key], value), key


def test_load_state_dict_file_unwraps_model_key(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"model": {"a.weight": torch.ones(2)}, "optimizer": {}}, path)
    assert list(load_state_dict_file(path)) == ["a.weight"]


def test_missing_weights_file_names_the_path(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(UserError, match="does not exist") as err:
        build_model("resnet18", 3, weights=path)
    assert str(path) in str(err.value) and err.value.settings == ("student_weights",)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".bin"])
def test_garbage_weights_file_names_the_path(tmp_path, suffix):
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(UserError, match="cannot read weights file|is damaged or truncated") as err:
        build_model("regnety_016", 3, weights=path, role="teacher")
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert err.value.settings == ("teacher_weights",)  # the library names the setting, never a flag


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "shufflenet.safetensors"
    _save(build_model("shufflenet_v2_x1_0", 3, pretrained=False).model.state_dict(), path, "safetensors")
    with pytest.raises(UserError, match=r"does not fit resnet18.*missing") as err:
        build_model("resnet18", 3, weights=path)
    assert str(path) in str(err.value)
    # a close relative: resnet34's file has every resnet18 tensor, plus blocks resnet18 lacks
    path34 = tmp_path / "resnet34.pt"
    torch.save(build_model("resnet34", 3, pretrained=False).model.state_dict(), path34)
    with pytest.raises(UserError, match="unexpected"):
        build_model("resnet18", 3, weights=path34)


# --- pretrained=True without a network ------------------------------------------------------


def _refuse(*args, **kwargs):
    raise ConnectionError("[Errno 101] Network is unreachable")


def test_pretrained_offline_timm_raises_user_error(monkeypatch):
    import timm.models._builder as timm_builder

    monkeypatch.setattr(builders, "hub_reachable", lambda url: True)  # take the download path
    monkeypatch.setattr(timm_builder, "load_state_dict_from_hf", _refuse)
    monkeypatch.setattr(timm_builder, "load_state_dict_from_url", _refuse)
    with pytest.raises(UserError, match=r"resnet18.*local weights file.*without pretrained") as err:
        build_model("resnet18", 3)
    assert err.value.settings == ("student_weights", "pretrained")
    with pytest.raises(UserError, match=r"regnety_016.*local weights file.*without pretrained") as err:
        build_model("regnety_016", 3, role="teacher")
    assert err.value.settings == ("teacher_weights", "pretrained")


def test_pretrained_offline_torchvision_raises_user_error(monkeypatch):
    import torchvision.models._api as tv_api

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(builders, "hub_reachable", lambda url: True)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", refuse)
    with pytest.raises(UserError, match=r"shufflenet_v2_x1_0.*local weights file.*without pretrained") as err:
        build_model("shufflenet_v2_x1_0", 3)
    assert err.value.settings == ("student_weights", "pretrained")


def test_unreachable_hub_fails_fast_from_an_empty_cache(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants
    import torchvision.models._api as tv_api

    monkeypatch.setattr(builders, "hub_reachable", lambda url: False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", lambda *a, **k: pytest.fail("tried to download"))
    offline_before = hf_constants.HF_HUB_OFFLINE
    start = time.monotonic()
    with pytest.raises(UserError, match="without pretrained weights"):
        build_model("resnet18", 3)
    with pytest.raises(UserError, match="without pretrained weights"):
        build_model("shufflenet_v2_x1_0", 3)
    assert time.monotonic() - start < 10  # no retries against an absent network
    assert hf_constants.HF_HUB_OFFLINE == offline_before  # offline mode was only borrowed


def test_hub_probe(monkeypatch):
    import socket

    monkeypatch.setattr(weights.urllib.request, "getproxies", dict)
    weights._host_reachable.cache_clear()
    with socket.socket() as server:  # a port that answers, and one that no longer does
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert weights.hub_reachable(f"http://127.0.0.1:{port}/x")
    weights._host_reachable.cache_clear()
    assert not weights.hub_reachable(f"http://127.0.0.1:{port}/x")
    monkeypatch.setattr(weights.urllib.request, "getproxies", lambda: {"https": "http://proxy:3128"})
    assert weights.hub_reachable("https://unreachable.invalid/")  # behind a proxy: let the library try
    weights._host_reachable.cache_clear()


# --- complexity -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, gmacs",  # environment.md's table (224 px, conv/matmul MACs)
    [("resnet18", 1.81), ("efficientnet_b0", 0.39), ("mobilenetv2_100", 0.30), ("shufflenet_v2_x1_0", 0.14)],
)
def test_macs_match_the_published_counts(name, gmacs):
    model = build_model(name, 1000, pretrained=False)
    assert model.training
    macs = count_macs(model, (3, 224, 224))
    assert abs(macs / 1e9 - gmacs) / gmacs < 0.05, macs
    assert model.training  # restored after counting in eval mode


def test_param_counts():
    assert count_params(build_model("resnet18", 1000, pretrained=False)) == 11_689_512
    model = build_model("resnet18", 10, pretrained=False)
    for p in model.model.fc.parameters():
        p.requires_grad_(False)
    assert count_params(model, trainable_only=True) == count_params(model) - (512 * 10 + 10)


def test_builders_registry_and_factory_import_in_one_direction():
    """builders know no registry, the zoo (the registry's entries) knows no factory: no import cycle."""
    import ast

    from dait_edge.models import zoo

    def imported(module) -> set[str]:
        tree = ast.parse(Path(module.__file__).read_text())
        return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}

    assert not {"dait_edge.models.zoo", "dait_edge.models.factory"} & imported(builders)
    assert "dait_edge.models.factory" not in imported(zoo)
    assert "dait_edge.models.builders" in imported(zoo)
