"""A tiny OpenCLIP architecture and checkpoints written by the tests themselves."""

from __future__ import annotations

import json
from pathlib import Path

TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def write_tiny_config(folder: Path, name: str = "tiny_test_clip", **overrides) -> Path:
    config = json.loads(json.dumps(TINY_CLIP_CONFIG))
    config.update(overrides)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(config))
    return path


def build_tiny_model(config_path: Path, seed: int = 0):
    import open_clip
    import torch

    open_clip.add_model_config(config_path)
    torch.manual_seed(seed)
    model, _, _ = open_clip.create_model_and_transforms(config_path.stem, pretrained=None)
    return model


def write_tiny_checkpoint(config_path: Path, out: Path, seed: int = 0) -> dict:
    """Save a seeded tiny model as .safetensors or .pt (by suffix); returns its state dict."""
    import torch
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in build_tiny_model(config_path, seed).state_dict().items()}
    if out.suffix == ".safetensors":
        save_file(state, str(out))
    else:
        torch.save({"state_dict": state}, out)
    return state
