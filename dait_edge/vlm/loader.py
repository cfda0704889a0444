"""Load a frozen OpenCLIP teacher by the names and sources `open_clip` itself accepts.

`--vlm` is an OpenCLIP model name (`convnext_xxlarge`) or a path to a model-config JSON
(registered with `open_clip.add_model_config`, then used by its file stem).
`--vlm-pretrained` is a pretrained tag, a local checkpoint file, `hf-hub:ORG/REPO`,
`local-dir:PATH` (these two carry their own config, so they replace the model name),
or `none` for random weights.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from dait_edge.errors import UserError
from dait_edge.records.config import DEFAULT_VLM, DEFAULT_VLM_PRETRAINED

SCHEMAS = ("hf-hub:", "local-dir:")
BUILTIN_CONFIG_DIR = Path(__file__).parent / "configs"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VLMSource:
    """What to pass to `open_clip.create_model_and_transforms`, and what identifies the weights."""

    model_name: str  # an OpenCLIP name, or an `hf-hub:` / `local-dir:` identifier
    pretrained: str | None  # tag or file path; None with a schema or with random weights
    model_config: dict | None  # the architecture, when known before loading (cache keys)
    weights_id: dict  # identifies the weights: tag, file (path/size/mtime), schema, or random

    @property
    def random_weights(self) -> bool:
        return self.weights_id.get("kind") == "random"


def _file_identity(path: Path) -> dict:
    stat = path.stat()
    return {"kind": "file", "path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _register_config_file(path: Path) -> tuple[str, dict]:
    import open_clip

    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(
            f"cannot read OpenCLIP model config {path}: {err}; pass a valid JSON file.", setting="vlm"
        ) from None
    missing = [key for key in ("embed_dim", "vision_cfg", "text_cfg") if key not in config]
    if missing:
        raise UserError(
            f"OpenCLIP model config {path} lacks {', '.join(missing)}; it needs embed_dim, vision_cfg and"
            " text_cfg like the files in open_clip/model_configs/.",
            setting="vlm",
        )
    open_clip.add_model_config(path)
    return path.stem, config


def resolve_vlm_source(vlm: str = DEFAULT_VLM, pretrained: str | None = DEFAULT_VLM_PRETRAINED) -> VLMSource:
    """Validate `--vlm` / `--vlm-pretrained` without loading any weights."""
    import open_clip

    pretrained = (pretrained or "none").strip()
    for schema_source in (pretrained, vlm):
        if schema_source.startswith(SCHEMAS):
            return _schema_source(schema_source)

    if vlm.endswith(".json") or os.sep in vlm:
        path = Path(vlm).expanduser()
        if not path.is_file():
            raise UserError(
                f"OpenCLIP model config {path} does not exist; pass an OpenCLIP model name or a JSON file.",
                setting="vlm",
            )
        model_name, model_config = _register_config_file(path)
    else:
        model_name = vlm.replace("/", "-")
        model_config = open_clip.get_model_config(model_name)
        if model_config is None:
            import difflib

            close = difflib.get_close_matches(model_name, open_clip.list_models(), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise UserError(
                f"unknown OpenCLIP model {vlm!r}.{hint} Run `dait-edge list vlms`, or pass a model-config JSON.",
                setting="vlm",
            )

    if pretrained.lower() == "none":
        return VLMSource(model_name, None, model_config, {"kind": "random"})
    path = Path(pretrained).expanduser()
    if path.is_file():
        return VLMSource(model_name, str(path), model_config, _file_identity(path))
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained in tags:
        return VLMSource(model_name, pretrained, model_config, {"kind": "tag", "tag": pretrained})
    looks_like_path = os.sep in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))
    if looks_like_path:
        raise UserError(
            f"VLM checkpoint {pretrained} does not exist; pass an existing file.", setting="vlm_pretrained"
        )
    known = ", ".join(tags) if tags else "none (this architecture has no published weights)"
    raise UserError(
        f"{pretrained!r} is not a pretrained tag of {model_name} (known tags: {known}); pass a tag, a checkpoint"
        " file, hf-hub:ORG/REPO, local-dir:PATH, or none.",
        setting="vlm_pretrained",
    )


def _schema_source(identifier: str) -> VLMSource:
    if identifier.startswith("local-dir:"):
        folder = Path(identifier[len("local-dir:") :]).expanduser()
        config_file = folder / "open_clip_config.json"
        if not config_file.is_file():
            raise UserError(
                f"{folder} has no open_clip_config.json; a local-dir: VLM needs that file and its weights"
                " (open_clip_model.safetensors) in one folder."
            )
        try:
            config = json.loads(config_file.read_text()).get("model_cfg")
        except json.JSONDecodeError as err:
            raise UserError(f"cannot parse {config_file}: {err}; fix or re-export the folder.") from None
        weights = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pth", ".pt"))
        ident = {"kind": "local-dir", "config": config, "files": [_file_identity(p) for p in weights]}
        return VLMSource(f"local-dir:{folder.resolve()}", None, config, ident)
    return VLMSource(identifier, None, None, {"kind": "hf-hub", "repo": identifier[len("hf-hub:") :]})


class _QuietOpenClipLogs:
    """open_clip logs an ERROR before raising on a failed download; we raise our own one-liner."""

    def __enter__(self):
        self._logger = logging.getLogger()
        self._level = self._logger.level
        self._logger.setLevel(logging.CRITICAL)

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)


@contextlib.contextmanager
def _seeded_if(random_weights: bool):
    """Random weights drawn from a fixed seed: the same "random" VLM in every process, so its cached image
    embeddings stay valid for the next run (speed benchmarks use them)."""
    if not random_weights:
        yield
        return
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(0)  # the CPU generator only: CUDA's is not forked, so not touched
        yield


def create_vlm(source: VLMSource, device: str = "cpu"):
    """Build the open_clip model and tokenizer for `source`. Returns (model, tokenizer, preprocess_cfg)."""
    import open_clip

    if source.random_weights:
        warnings.warn(
            f"VLM {source.model_name} has RANDOM weights (pretrained: none): its predictions are noise."
            " Use this only to measure speed or to test the pipeline.",
            stacklevel=2,
        )
    try:
        with _QuietOpenClipLogs(), _seeded_if(source.random_weights):
            model, _, _ = open_clip.create_model_and_transforms(
                source.model_name, pretrained=source.pretrained, device=device
            )
    except RuntimeError as err:
        text = str(err)
        if "download" in text.lower() or source.weights_id.get("kind") == "hf-hub":
            raise UserError(
                f"cannot fetch the weights of {source.model_name} ({source.pretrained or 'hub'}) - offline? Pass a"
                " local checkpoint file (or local-dir:PATH), or fetch it beforehand on a networked machine with"
                " tools/prefetch_weights.py.",
                setting="vlm_pretrained",
            ) from None
        if "state_dict" in text:
            raise UserError(
                f"VLM checkpoint {source.pretrained} does not fit the {source.model_name} architecture; name the"
                " OpenCLIP model or config JSON it was trained with.",
                setting="vlm",
            ) from None
        raise UserError(f"cannot build VLM {source.model_name}: {text.splitlines()[0]}") from None
    except Exception as err:  # noqa: BLE001 - torch.load / safetensors raise many types on a corrupt file
        raise UserError(
            f"cannot read VLM weights {source.pretrained or source.model_name}: {type(err).__name__}:"
            f" {str(err).splitlines()[0] if str(err) else ''}. Pass an OpenCLIP checkpoint (.pt or .safetensors)."
        ) from None
    tokenizer = open_clip.get_tokenizer(source.model_name)
    preprocess_cfg = open_clip.get_model_preprocess_cfg(model)
    return model, tokenizer, preprocess_cfg
