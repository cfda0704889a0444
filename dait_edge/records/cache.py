"""cache.json: what a VLM embedding cache holds and how it was made (its key covers all of it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dait_edge.records._base import Record


@dataclass
class VLMCacheInfo(Record):
    """CACHE/vlm_embeddings/KEY/cache.json. The embeddings are `images x views x dim` fp16, L2-normalised,
    in embeddings.f16 (row-major, no header); done.u8 holds one byte per chunk of `chunk` views (1 = the
    chunk's rows are on disk)."""

    FILE = "cache.json"
    KIND = "vlm-embedding-cache"
    WHAT = "VLM embedding cache description"
    FIX = "clear the cache with `dait-edge cache clear KEY` and let the next run rebuild it"

    key: str
    images: int
    views: int
    dim: int
    chunk: int
    seed: int
    view_spec: dict[str, Any]
    vlm: str  # --vlm as given
    vlm_pretrained: str | None  # --vlm-pretrained as given
    vlm_weights: dict[str, Any]  # what identifies the weights (tag, file, random)
    compute_dtype: str  # the dtype the VLM ran in while building
    dataset: str
    data_root: str
    created: str
    storage_dtype: str = "float16"
    complete: bool = False
    build_seconds: float = 0.0  # summed over every run that built part of it
    versions: dict[str, str | None] = field(default_factory=dict)
    # embeddings.f16's SHA-256 once complete: a cache whose rows changed since is refused, never used
    content_sha256: str | None = None

    @property
    def chunks(self) -> int:
        return -(-self.images * self.views // self.chunk)

    @property
    def nbytes(self) -> int:
        return self.images * self.views * self.dim * 2
