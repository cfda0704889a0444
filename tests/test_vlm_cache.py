"""The VLM embedding cache: built once, equal to the live VLM, resumable, keyed, checked; and the runs on it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dait_edge.cli import cli
from dait_edge.data import load_dataset
from dait_edge.data.images import ImageListDataset
from dait_edge.data.views import ViewSpec, view_pixels, view_seed
from dait_edge.distill import run_distill
from dait_edge.records import RunSummary, VLMCacheInfo, read_metrics
from dait_edge.vlm import load_vlm
from dait_edge.vlm.cache import CacheError, EmbeddingCache, list_caches

SIZE = 40  # views are 40 px; the tiny VLM resizes them to its own 32 px


@pytest.fixture(scope="module")
def data(layouts, tmp_path_factory):
    return layouts.cub(
        tmp_path_factory.mktemp("cache_cub") / "CUB", classes=3, train_per_class=3, test_per_class=1
    )


@pytest.fixture(scope="module")
def vlm(tiny_vlm):
    return load_vlm(str(tiny_vlm.config), str(tiny_vlm.weights))


@pytest.fixture(scope="module")
def images(data):
    return ImageListDataset(load_dataset("cub", data.root).split("train"))


def _info(key="k" * 64, views=3, images=9, chunk=4, **kw):
    values = dict(
        key=key,
        images=images,
        views=views,
        dim=16,
        chunk=chunk,
        seed=5,
        view_spec=ViewSpec(SIZE).to_dict(),
        vlm="tiny",
        vlm_pretrained="w",
        vlm_weights={"kind": "file"},
        compute_dtype="float32",
        dataset="cub",
        data_root="/x",
        created="2026-11-29T00:00:00+0000",
    )
    return VLMCacheInfo(**{**values, **kw})


def _built(root, vlm, images, **kw) -> EmbeddingCache:
    cache = EmbeddingCache.create(root, _info(**kw))
    cache.build(vlm, images, device=torch.device("cpu"), progress=False)
    cache.finish(1.0)
    return cache


def test_a_cached_embedding_is_the_live_vlm_on_the_regenerated_view(tmp_path, vlm, images):
    cache = _built(tmp_path, vlm, images)
    assert cache.complete and VLMCacheInfo.read(cache.folder) == cache.info  # the record round-trips
    stored = cache.reader()
    for index, view in [(0, 0), (4, 2), (8, 1)]:
        pixels = view_pixels(images[index][0], ViewSpec(SIZE), view_seed(5, index, view))[None]
        live = vlm.encode_images(pixels, (0.0,) * 3, (1.0,) * 3)[0]
        cached = stored(index, view)["vlm_image"]
        assert cached.dtype == torch.float16
        torch.testing.assert_close(cached.float(), live, atol=2e-3, rtol=0)  # fp16 storage
    assert cache.verify(vlm, images, device=torch.device("cpu")) > 0.999


def test_a_killed_build_resumes_and_ends_with_the_same_bytes(tmp_path, vlm, images):
    whole = _built(tmp_path / "whole", vlm, images)
    cache = EmbeddingCache.create(tmp_path / "killed", _info())
    cache.build(vlm, images, device=torch.device("cpu"), progress=False, stop_after_chunks=2)
    assert cache.done().tolist() == [1, 1, 0, 0, 0, 0, 0] and not cache.complete
    seconds = cache.build(vlm, images, device=torch.device("cpu"), progress=False)
    assert seconds > 0 and cache.complete
    assert cache.embeddings_path.read_bytes() == whole.embeddings_path.read_bytes()
    assert cache.build(vlm, images, device=torch.device("cpu"), progress=False) == 0.0  # nothing left


def test_ranks_build_disjoint_shares_that_make_the_whole(tmp_path, vlm, images):
    whole = _built(tmp_path / "whole", vlm, images)
    shared = EmbeddingCache.create(tmp_path / "shared", _info())
    for rank in (1, 0):
        shared.build(vlm, images, device=torch.device("cpu"), rank=rank, world_size=2, progress=False)
        assert shared.done().tolist()[rank::2] == [1] * len(shared.done()[rank::2])
    assert shared.embeddings_path.read_bytes() == whole.embeddings_path.read_bytes()


def test_a_truncated_or_mismatched_cache_is_refused(tmp_path, vlm, images):
    cache = _built(tmp_path, vlm, images)
    assert EmbeddingCache.open(tmp_path, cache.info.key) is not None
    with open(cache.embeddings_path, "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(CacheError, match=r"damaged: embeddings.f16 is 100 bytes, not 864 bytes"):
        EmbeddingCache.open(tmp_path, cache.info.key)

    other = _built(tmp_path / "other", vlm, images)
    rows = np.memmap(other.embeddings_path, dtype=np.float16, mode="r+", shape=other.shape)
    rows[0, 0] = -rows[0, 0]  # a row that no longer matches the VLM
    rows.flush()
    with pytest.raises(CacheError, match=r"does not match the live VLM \(image 0 view 0: cosine -1.0000"):
        other.verify(vlm, images, device=torch.device("cpu"))


def test_a_full_disk_is_caught_before_the_build(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**6, 10**6, 10))
    with pytest.raises(CacheError, match=r"needs 864 B and .* has 10 B free"):
        EmbeddingCache.create(tmp_path, _info())
    assert not list(tmp_path.rglob("*.f16"))


# ------------------------------------------------------------------------------ runs on the cache


@pytest.fixture(scope="module")
def runs(data, tiny_vlm, tmp_path_factory, tiny_config):
    """The same stage-1 run taught live (--vlm-views 0) and from the cache (auto), then a second student
    on the complete cache."""
    base = tmp_path_factory.mktemp("cache_runs")

    def config(name, **overrides):
        options = dict(
            stages="1",
            stage1_epochs=2,
            stage2_epochs=1,
            alpha_rate=0.25,
            img_size=SIZE,
            batch_size=3,
            out=base / name,
            teacher_cache=base / f"teachers_{name}",
        )
        return tiny_config(data.root, tiny_vlm.config, tiny_vlm.weights, base, **(options | overrides))

    live = run_distill(config("live", vlm_views="0"))
    cached = run_distill(config("cached"))
    return base, config, live, cached


def test_a_cached_run_reaches_the_live_runs_losses(runs):
    base, _, live, cached = runs
    assert (live.vlm_views, cached.vlm_views) == (0, 2)  # auto: K = the stage-1 epochs
    assert live.cache_seconds == 0.0 and cached.cache_seconds > 0
    live_lines, cached_lines = (
        read_metrics(base / "live/metrics.jsonl"),
        read_metrics(base / "cached/metrics.jsonl"),
    )
    assert len(live_lines) == len(cached_lines) == 2
    for a, b in zip(live_lines, cached_lines, strict=True):
        assert a.losses.keys() == b.losses.keys() >= {"loss_sia", "loss_ira"}
        for term in a.losses:
            assert b.losses[term] == pytest.approx(a.losses[term], rel=2e-3, abs=1e-4), term
    assert cached.stage1_seconds < cached.stage1_seconds + cached.cache_seconds  # the build is not stage 1


def test_a_second_run_on_a_complete_cache_never_loads_the_vlm(runs, monkeypatch):
    base, config, _, cached = runs

    def refuse(*args, **kwargs):
        raise AssertionError("the VLM was loaded although its embeddings are all cached")

    monkeypatch.setattr("dait_edge.vlm.load_vlm", refuse)
    again = run_distill(config("again", sia_weight=0.25))  # another stage-1 recipe, the same cache
    assert again.cache_seconds == 0.0 and again.vlm_views == 2
    assert len(list_caches(base / "cache" / "vlm_embeddings")) == 1


def test_a_key_change_builds_a_new_cache(runs):
    base, config, _, _ = runs
    changed = run_distill(config("seed1", seed=1))  # other views: another cache
    assert changed.cache_seconds > 0
    assert len(list_caches(base / "cache" / "vlm_embeddings")) == 2


def test_a_killed_cache_build_resumes_in_the_next_run(runs, monkeypatch):
    monkeypatch.setattr("dait_edge.vlm.cache.CHUNK", 4)  # 18 rows: 5 chunks
    base, config, _, _ = runs
    fresh = dataclasses.replace(config("killed_build", img_size=SIZE + 8), cache_dir=str(base / "cache_kill"))
    partial = run_distill(fresh, stop_after_epoch={"cache": 1})
    assert partial.completed is False
    (cache,) = list_caches(base / "cache_kill" / "vlm_embeddings")
    assert cache.done().sum() == 1 and not cache.info.complete
    resumed = run_distill(dataclasses.replace(fresh, out=str(base / "killed_build2")))
    assert resumed.completed is True and resumed.cache_seconds > 0
    (cache,) = list_caches(base / "cache_kill" / "vlm_embeddings")
    assert cache.info.complete and cache.done().all()


def test_cache_command_lists_verifies_and_clears(runs, assert_user_error):
    base, _, _, _ = runs
    root = base / "cache"
    runner = CliRunner()
    listed = runner.invoke(cli, ["cache", "list", "--cache-dir", str(root), "--json"])
    assert listed.exit_code == 0, listed.output
    entries = json.loads(listed.stdout)
    assert len(entries) == 2 and all(e["complete"] for e in entries)
    key = entries[0]["key"]
    verified = runner.invoke(cli, ["cache", "verify", key[:12], "--cache-dir", str(root)])
    assert verified.exit_code == 0, verified.output
    assert "ok" in verified.output and "cosine" in verified.output
    assert_user_error(
        runner.invoke(cli, ["cache", "verify", "nosuchkey", "--cache-dir", str(root)]), "no cache"
    )
    cleared = runner.invoke(cli, ["cache", "clear", key[:12], "--cache-dir", str(root)])
    assert cleared.exit_code == 0, cleared.output
    assert [c.info.key for c in list_caches(root / "vlm_embeddings")] == [entries[1]["key"]]


def test_bad_vlm_views_is_one_line(assert_user_error, data, tmp_path):
    result = CliRunner().invoke(
        cli,
        [
            "distill",
            "--dataset",
            "cub",
            "--data-root",
            str(data.root),
            "--vlm-views",
            "many",
            "--out",
            str(tmp_path),
        ],
    )
    assert_user_error(result, "vlm_views must be auto, 0", "--vlm-views")


def test_summary_records_the_cache(runs):
    base, _, _, cached = runs
    assert RunSummary.read(base / "cached").vlm_views == 2
