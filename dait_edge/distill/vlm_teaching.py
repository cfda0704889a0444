"""What the frozen VLM hands a VLM-taught stage: its source, the live VLM, the class-text embeddings,
BorLan's class Gaussians, and the multi-view embedding cache (opened, or built first).

`VLMTeaching` is given plain values (the config, the dataset's classes and training samples, the view spec,
the device), not the run's context, so it imports nothing of the rest of `distill`.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from pathlib import Path

import torch

from dait_edge.data.base import DatasetSpec
from dait_edge.data.images import ImageListDataset
from dait_edge.data.views import ViewSpec
from dait_edge.engine.distributed import DistInfo, all_gather_object, check_stop_together, on_main
from dait_edge.engine.precision import vlm_dtype_for
from dait_edge.errors import UserError
from dait_edge.records import DistillConfig, RunSummary, VLMCacheInfo
from dait_edge.utils.lock import exclusive


class CacheBuildStopped(Exception):
    """The cache build ended early on purpose (`stop_cache_after`, tests)."""


class VLMTeaching:
    """The VLM side of one run. Resolving `--vlm` / `--vlm-pretrained` happens here, on construction, so
    a wrong name, file or hub tag fails before the run folder exists."""

    def __init__(
        self,
        config: DistillConfig,
        spec: DatasetSpec,
        templates: list[str],
        view_spec: ViewSpec,
        device: torch.device,
        dist: DistInfo,
        *,
        stop_cache_after: int | None = None,
    ):
        from dait_edge.vlm import resolve_vlm_source

        self.config, self.spec, self.templates, self.view_spec = config, spec, templates, view_spec
        self.device, self.dist = device, dist
        self.train = spec.split("train")  # one index space: cached rows are keyed by position in it
        self.stop_cache_after = stop_cache_after  # tests: end the cache build after N chunks, as if killed
        # a config JSON is read and registered with open_clip
        self.source = resolve_vlm_source(config.vlm, config.vlm_pretrained)

    def provider(self, model, summary: RunSummary, views: int, method_cls=None):
        """What teaches a VLM-taught stage: (provider, extra) where `extra` feeds each training item its cached
        embedding. With `views` K > 0 the cache is opened, or built first (its time goes to
        summary.cache_seconds); when it is complete the VLM's image tower is never loaded."""
        # In a forked RNG: loading the VLM (open_clip draws its initial weights) or building the cache
        # (DataLoader seeds) must not move the training RNG, or the adapters would start differently in a
        # live run, a run that builds the cache and one that finds it complete.
        with torch.random.fork_rng(devices=[]):
            if views == 0:
                return self.live_vlm(model, method_cls), None
            from dait_edge.vlm.provider import CachedVLM

            cache, vlm = self.open_or_build_cache(views, summary)
            provider = CachedVLM(self.text_embeddings(vlm))
            self.add_text_priors(provider, method_cls, vlm)
            del vlm  # the 1.2 B-parameter VLM stays off the device during training
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            return provider, cache.reader()

    def add_text_priors(self, provider, method_cls, vlm=None) -> None:
        """What a method reads from the text tower beyond T: BorLan's class Gaussians, RISE's anchors."""
        if getattr(method_cls, "text_gaussian", False):
            provider.set_text_gaussian(*self.class_gaussian(vlm))
        phrases = getattr(method_cls, "anchor_phrases", ())
        if phrases:
            provider.set_text_anchors(self.class_anchors(phrases, vlm))

    def class_anchors(self, phrases, vlm=None) -> torch.Tensor:
        """(C, A, E): the embedding of "a {phrase} of a {class}" for each class and anchor phrase (RISE's
        relational anchors), each prompt's from the text-embedding cache, else from `vlm` or a VLM loaded."""
        from dait_edge.vlm import text_classifier
        from dait_edge.vlm.text_embeddings import cached_text_classifier

        classes, cache_dir = self.spec.classes, self.config.cache_dir
        per_phrase = []
        for phrase in phrases:
            template = [f"a {phrase} of a {{}}"]
            text = cached_text_classifier(self.source, classes, template, cache_dir)
            if text is None:
                vlm = vlm if vlm is not None else self.load_vlm()
                text = text_classifier(vlm, classes, template, cache_dir=cache_dir)
            per_phrase.append(text.float().to(self.device))
        return torch.stack(per_phrase, dim=1)

    def class_gaussian(self, vlm=None) -> tuple[torch.Tensor, torch.Tensor]:
        """BorLan's per-class Gaussian over its 80 templates (`prompts.borlan_templates`): from the
        text-embedding cache, else from `vlm` or a VLM loaded for it."""
        from dait_edge.vlm.prompts import borlan_templates
        from dait_edge.vlm.text_embeddings import text_gaussian

        templates = list(borlan_templates())
        classes, cache_dir = self.spec.classes, self.config.cache_dir
        try:
            mean, var = text_gaussian(self.source, classes, templates, cache_dir=cache_dir)
        except LookupError:
            vlm = vlm if vlm is not None else self.load_vlm()
            mean, var = text_gaussian(self.source, classes, templates, vlm=vlm, cache_dir=cache_dir)
        return mean.to(self.device), var.to(self.device)

    def open_or_build_cache(self, views: int, summary: RunSummary):
        """The complete VLM embedding cache of this run's data, view spec, seed, K and VLM; returns it
        and the VLM when this process loaded it (to build, or to verify), else None."""
        from dait_edge.vlm.cache import EmbeddingCache, cache_key, cache_root

        compute_dtype = str(vlm_dtype_for(self.device)).removeprefix("torch.")
        key = cache_key(
            self.train,
            self.view_spec,
            self.config.seed,
            views,
            self.source,
            compute_dtype,
            self.spec.crop_bottom,
        )
        root = cache_root(self.config.cache_dir)

        def probe():
            """Rank 0 decides, every rank follows: (the cache or None, complete?)."""
            found = EmbeddingCache.open(root, key)
            if found is not None and found.complete:
                if not found.info.complete:  # every chunk done, the process stopped before writing so
                    found.finish(0.0)
                return found, True
            return found, False

        cache, complete = on_main(self.dist, probe)  # a complete cache is only read: no lock
        if complete:
            return cache, None
        # One builder per cache: a second job waits for the first (under torchrun it is refused instead, as
        # the other ranks cannot wait that long in a collective), then finds the chunks it encoded.
        with contextlib.ExitStack() as held:
            lock = exclusive(root / key, "VLM embedding cache", wait=not self.dist.enabled)
            on_main(self.dist, lambda: held.enter_context(lock) and None)
            cache, complete = on_main(self.dist, probe)
            if complete:
                return cache, None
            return self._build_cache(root, key, views, compute_dtype, cache, summary)

    def _build_cache(self, root: Path, key: str, views: int, compute_dtype: str, cache, summary: RunSummary):
        from dait_edge.vlm import cache as vlm_cache
        from dait_edge.vlm.cache import EmbeddingCache, describe_size, pixel_library_versions

        config = self.config
        vlm = self.load_vlm()
        if cache is None:
            info = VLMCacheInfo(
                key=key,
                images=len(self.train),
                views=views,
                dim=vlm.embed_dim,
                chunk=vlm_cache.CHUNK,
                seed=config.seed,
                view_spec=self.view_spec.to_dict(),
                vlm=config.vlm,
                vlm_pretrained=config.vlm_pretrained,
                vlm_weights=self.source.weights_id,
                compute_dtype=compute_dtype,
                dataset=config.dataset,
                data_root=str(Path(config.data_root).resolve()),
                created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                versions=pixel_library_versions(),
            )
            # another job may have created it meanwhile: its arrays are then kept (the rows are deterministic)
            cache = on_main(
                self.dist, lambda: EmbeddingCache.open(root, key) or EmbeddingCache.create(root, info)
            )
        if self.dist.is_main:
            print(f"VLM embedding cache: {describe_size(cache.info)} in {cache.folder}", file=sys.stderr)
        images = ImageListDataset(self.train, crop_bottom=self.spec.crop_bottom)
        failure = None
        try:
            seconds = cache.build(
                vlm,
                images,
                device=self.device,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
                workers=config.workers,
                progress=config.progress and self.dist.is_main,
                stop_after_chunks=self.stop_cache_after,
            )
        except UserError as err:  # every rank learns of it (one rank stopping alone would hang the others)
            seconds, failure = 0.0, err
        shares = all_gather_object((seconds, str(failure) if failure else None), self.dist)
        if failure is not None:
            raise failure
        if any(message for _, message in shares):
            raise UserError(next(message for _, message in shares if message), setting="vlm_views")
        seconds = max(share for share, _ in shares)
        if self.stop_cache_after is not None:
            raise CacheBuildStopped
        on_main(self.dist, lambda: cache.finish(seconds))
        check_stop_together(
            "the VLM embedding cache build stopped",
            f"its finished chunks are kept in {cache.folder} and resuming encodes only the rest",
            self.dist,
            self.device,
        )
        cache.info = VLMCacheInfo.read(cache.folder)
        # a few views re-encoded live must match the cache
        on_main(self.dist, lambda: cache.verify(vlm, images, device=self.device))
        summary.cache_seconds = round(summary.cache_seconds + seconds, 3)
        return cache, vlm

    def load_vlm(self):
        """The frozen VLM on this device, its image tower in the training dtype."""
        from dait_edge.vlm import load_vlm

        with warnings.catch_warnings():
            warnings.simplefilter("always")
            vlm = load_vlm(self.config.vlm, self.config.vlm_pretrained, device=self.device)
        vlm.model.visual.to(dtype=vlm_dtype_for(self.device))  # the pixels are normalised in fp32 first
        return vlm

    def text_embeddings(self, vlm=None):
        """The class-text embeddings: from their cache when there (no VLM needed), else from `vlm` or a VLM
        loaded for them alone."""
        from dait_edge.vlm import text_classifier
        from dait_edge.vlm.text_embeddings import cached_text_classifier

        cache_dir = self.config.cache_dir
        text = cached_text_classifier(self.source, self.spec.classes, self.templates, cache_dir)
        if text is not None:
            return text.to(self.device)
        vlm = vlm if vlm is not None else self.load_vlm()
        return text_classifier(vlm, self.spec.classes, self.templates, cache_dir=cache_dir)

    def live_vlm(self, model, method_cls=None):
        """The live VLM as the provider, for batches normalised like `model`'s, its text tower freed."""
        from dait_edge.vlm.provider import LiveVLM

        vlm = self.load_vlm()
        provider = LiveVLM(vlm, self.text_embeddings(vlm), model.data_config.mean, model.data_config.std)
        self.add_text_priors(provider, method_cls, vlm)
        vlm.free_text_tower()
        return provider
