"""The OpenCLIP teacher: loading from config files and local weights, errors, text cache, normalisation."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from dait_edge.errors import UserError
from dait_edge.vlm import load_vlm, resolve_vlm_source, text_classifier
from dait_edge.vlm import text_embeddings as text_classifier_module


@pytest.fixture()
def tiny_config(tiny_vlm_files, tmp_path):
    return tiny_vlm_files.config(tmp_path)


def _assert_same_weights(teacher, state):
    loaded = teacher.model.state_dict()
    assert set(state) <= set(loaded)
    for key, value in state.items():
        assert torch.equal(loaded[key].cpu(), value), key


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_loads_local_checkpoint_through_config_path(tiny_vlm_files, tmp_path, tiny_config, suffix):
    state = tiny_vlm_files.checkpoint(tiny_config, tmp_path / f"weights{suffix}", seed=3)
    teacher = load_vlm(str(tiny_config), str(tmp_path / f"weights{suffix}"))
    _assert_same_weights(teacher, state)
    assert teacher.source.weights_id["kind"] == "file"
    assert teacher.embed_dim == tiny_vlm_files.CONFIG["embed_dim"]
    assert teacher.image_size == (32, 32)


def test_loads_local_dir_schema(tiny_vlm_files, tmp_path, tiny_config):
    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(
        json.dumps(
            {"model_cfg": tiny_vlm_files.CONFIG, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.25] * 3}}
        )
    )
    state = tiny_vlm_files.checkpoint(tiny_config, folder / "open_clip_model.safetensors", seed=5)
    teacher = load_vlm("ignored-when-schema", f"local-dir:{folder}")
    _assert_same_weights(teacher, state)
    assert teacher.mean.flatten().tolist() == [0.5] * 3


def test_random_weights_warn_loudly(tiny_config):
    with pytest.warns(UserWarning, match="RANDOM weights"):
        teacher = load_vlm(str(tiny_config), "none")
    assert teacher.source.random_weights


def test_teacher_is_frozen_and_stays_in_eval(tiny_config):
    teacher = load_vlm(str(tiny_config), "none")
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize(
    ("vlm", "pretrained", "message"),
    [
        ("convnext_xxlarg", "none", "Did you mean convnext_xxlarge"),
        ("convnext_xxlarge", "not_a_tag", "known tags: laion2b_s34b_b82k"),
        ("convnext_xxlarge", "/nowhere/weights.bin", "does not exist"),
        ("/nowhere/config.json", "none", "does not exist"),
        ("convnext_xxlarge", "local-dir:/nowhere", "open_clip_config.json"),
    ],
)
def test_bad_sources_are_one_line_user_errors(vlm, pretrained, message):
    with pytest.raises(UserError, match=message) as info:
        resolve_vlm_source(vlm, pretrained)
    assert "\n" not in str(info.value)


def test_malformed_config_and_garbage_weights(tmp_path, tiny_config):
    bad_config = tmp_path / "bad.json"
    bad_config.write_text('{"embed_dim": 8}')
    with pytest.raises(UserError, match="lacks vision_cfg, text_cfg"):
        resolve_vlm_source(str(bad_config), "none")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(UserError, match="cannot read VLM weights") as info:
        load_vlm(str(tiny_config), str(garbage))
    assert "\n" not in str(info.value)


def test_checkpoint_of_another_architecture_is_named(tiny_vlm_files, tmp_path, tiny_config):
    other = tiny_vlm_files.config(tmp_path, "other_clip", embed_dim=24)
    tiny_vlm_files.checkpoint(other, tmp_path / "other.safetensors")
    with pytest.raises(UserError, match="does not fit"):
        load_vlm(str(tiny_config), str(tmp_path / "other.safetensors"))


def test_offline_tag_download_names_both_ways_out(monkeypatch):
    import open_clip.factory

    def offline(*args, **kwargs):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", offline)
    # RN50 is small enough to build in a test; its tag exists, only the download fails.
    with pytest.raises(UserError, match="local checkpoint file .or local-dir:PATH.") as info:
        load_vlm("RN50", "openai")
    assert "offline" in str(info.value) and info.value.settings == ("vlm_pretrained",)


def test_input_normalisation_is_converted_to_the_vlm_own(tiny_config):
    teacher = load_vlm(str(tiny_config), "none")
    imagenet_mean, imagenet_std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pixels = torch.rand(2, 3, 32, 32)
    student_view = (pixels - torch.tensor(imagenet_mean).view(1, 3, 1, 1)) / torch.tensor(imagenet_std).view(
        1, 3, 1, 1
    )
    clip_mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    clip_std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    converted = teacher.to_vlm_input(student_view, imagenet_mean, imagenet_std)
    torch.testing.assert_close(converted, (pixels - clip_mean) / clip_std, rtol=1e-5, atol=1e-5)
    # a different size is resized to the VLM's own; the embedding is L2-normalised
    big = teacher.encode_images(torch.randn(2, 3, 48, 48), imagenet_mean, imagenet_std)
    assert big.shape == (2, 16)
    torch.testing.assert_close(big.norm(dim=1), torch.ones(2))


def _independent_text_matrix(teacher, classnames, templates):
    rows = []
    for name in classnames:
        tokens = teacher.tokenizer([t.format(name) for t in templates])
        with torch.no_grad():
            per_template = F.normalize(teacher.model.encode_text(tokens), dim=-1)
        mean = per_template.mean(0)
        rows.append(mean / mean.norm())
    return torch.stack(rows)


def test_text_classifier_is_cached_and_invalidated(tiny_vlm_files, tmp_path, tiny_config, monkeypatch):
    tiny_vlm_files.checkpoint(tiny_config, tmp_path / "w.safetensors", seed=1)
    teacher = load_vlm(str(tiny_config), str(tmp_path / "w.safetensors"))
    classes, templates = ["red finch", "blue finch", "grey finch"], ["a photo of a {}.", "a {}, a bird."]
    cache = tmp_path / "cache"

    first = text_classifier(teacher, classes, templates, cache_dir=cache)
    torch.testing.assert_close(first, _independent_text_matrix(teacher, classes, templates))
    files = list((cache / "text_embeddings").glob("*.safetensors"))
    assert len(files) == 1

    def must_not_recompute(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(text_classifier_module, "build_text_classifier", must_not_recompute)
    torch.testing.assert_close(text_classifier(teacher, classes, templates, cache_dir=cache), first)

    monkeypatch.undo()
    changed = text_classifier(teacher, classes, ["a {}, seen from afar."], cache_dir=cache)
    assert len(list((cache / "text_embeddings").glob("*.safetensors"))) == 2
    assert not torch.allclose(changed, first)


def test_random_weights_are_never_cached(tmp_path, tiny_config):
    teacher = load_vlm(str(tiny_config), "none")
    text_classifier(teacher, ["a", "b"], ["{}"], cache_dir=tmp_path)
    assert not (tmp_path / "text_embeddings").exists()


def test_template_without_placeholder_is_rejected(tiny_config):
    teacher = load_vlm(str(tiny_config), "none")
    with pytest.raises(UserError, match="exactly one"):
        text_classifier(teacher, ["a"], ["no placeholder"], use_cache=False)
