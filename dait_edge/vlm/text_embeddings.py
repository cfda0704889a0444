"""The class-text embedding matrix T (C x E), cached on disk by everything it depends on.

t_c = norm(mean_k norm(E_T(template_k(class_c))))  — templates are ensembled (method.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from dait_edge.utils.io import atomic_path, sha256_json
from dait_edge.vlm.prompts import render_prompts
from dait_edge.vlm.teacher import VLMTeacher


def _content_hash(tensors: dict[str, torch.Tensor]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _write_cached(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Atomically, with the hash of its content in its metadata (checked by `_read_cached`)."""
    from safetensors.torch import save_file

    tensors = {k: v.cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={**(metadata or {}), "content_sha256": _content_hash(tensors)})


def _read_cached(path: Path) -> dict[str, torch.Tensor] | None:
    """The tensors of a cache file, or None where there is none or it is damaged (unreadable, truncated, or
    its content differs from its hash): then it is rebuilt, never used."""
    import warnings

    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            expected = (f.metadata() or {}).get("content_sha256")
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    except Exception as err:  # noqa: BLE001 - a damaged file raises many types; all mean "rebuild"
        reason = f"unreadable: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    else:
        if expected is None or _content_hash(tensors) == expected:
            return tensors
        reason = "its content differs from the hash it was written with"
    warnings.warn(f"text embedding cache {path} is damaged ({reason}); it is built again.", stacklevel=3)
    return None


def default_cache_dir() -> Path:
    return Path(os.environ.get("DAIT_EDGE_CACHE", Path.home() / ".cache" / "dait_edge"))


def text_cache_key(source, classnames: Sequence[str], templates: Sequence[str]) -> str:
    """The key of T for a `VLMSource`: known before the VLM is loaded, so a run whose image embeddings are
    all cached need not load the VLM at all."""
    import open_clip

    return sha256_json(
        {
            "model": source.model_name,
            "model_config": source.model_config,
            "weights": source.weights_id,
            "classnames": list(classnames),
            "templates": list(templates),
            "open_clip": open_clip.__version__,
            "formula": "norm(mean_k(norm(E_T)))",
        }
    )


def build_text_classifier(
    vlm: VLMTeacher, classnames: Sequence[str], templates: Sequence[str]
) -> torch.Tensor:
    """Compute T without any cache."""
    rows = []
    for name in classnames:
        per_template = vlm.encode_texts(render_prompts(name, templates))  # (K, E), each normalised
        rows.append(F.normalize(per_template.mean(dim=0), dim=-1, eps=1e-10))
    return torch.stack(rows)


def _cache_path(source, classnames, templates, cache_dir, formula: str | None = None) -> Path:
    """Where T (or, with `formula`, another quantity derived from the same prompts) is cached."""
    key = text_cache_key(source, classnames, templates)
    if formula is not None:
        key = sha256_json({"text": key, "formula": formula})
    return Path(cache_dir or default_cache_dir()) / "text_embeddings" / f"{key}.safetensors"


def cached_text_classifier(
    source, classnames: Sequence[str], templates: Sequence[str], cache_dir: str | os.PathLike | None = None
) -> torch.Tensor | None:
    """T from the cache without loading the VLM (on the CPU); None when it is not cached."""
    if source.random_weights:
        return None
    stored = _read_cached(_cache_path(source, classnames, templates, cache_dir))
    return stored["text_embeddings"] if stored is not None else None


def text_classifier(
    vlm: VLMTeacher,
    classnames: Sequence[str],
    templates: Sequence[str],
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """T (C x E) on the VLM's device; read from / written to the cache unless the weights are random."""
    if not templates:
        raise ValueError("at least one prompt template is needed")
    # Random weights differ per process: caching their embeddings would serve stale noise.
    cacheable = use_cache and not vlm.source.random_weights
    path = None
    if cacheable:
        path = _cache_path(vlm.source, classnames, templates, cache_dir)
        stored = _read_cached(path)
        if stored is not None:
            return stored["text_embeddings"].to(vlm.mean.device)
    embeddings = build_text_classifier(vlm, classnames, templates)
    if path is not None:
        _write_cached(
            path,
            {"text_embeddings": embeddings},
            {"model": vlm.source.model_name, "num_classes": str(len(classnames))},
        )
    return embeddings


def text_gaussian(
    source,
    classnames: Sequence[str],
    templates: Sequence[str],
    vlm: VLMTeacher | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BorLan's per-class Gaussian over prompt templates: (mean, var), each (C x E), of the normalised
    template embeddings norm(E_T(template_k(class_c))) over k (the diagonal of the sample covariance, as BorLan's np.cov).

    Cached beside T under its own key; `vlm` is loaded by the caller only when the cache lacks it (None
    then raises LookupError)."""
    path = _cache_path(source, classnames, templates, cache_dir, formula="gaussian(norm(E_T))")
    stored = None if source.random_weights else _read_cached(path)
    if stored is not None:
        return stored["mean"], stored["var"]
    if vlm is None:
        raise LookupError("the class-text Gaussian is not cached")
    means, variances = [], []
    for name in classnames:
        per_template = vlm.encode_texts(render_prompts(name, templates)).float()  # (K, E), normalised
        means.append(per_template.mean(dim=0))
        variances.append(per_template.var(dim=0, unbiased=per_template.shape[0] > 1))  # as np.cov
    mean, var = torch.stack(means), torch.stack(variances)
    if not source.random_weights:
        _write_cached(path, {"mean": mean, "var": var})
    return mean, var
