"""`dait-edge cache list|verify|clear`: the VLM embedding caches that `distill --vlm-views` builds."""

from __future__ import annotations

import json
import shutil

import click

from dait_edge.cli.base import UserErrorGroup
from dait_edge.cli.options import cache_dir_option, device_option, json_option
from dait_edge.errors import UserError


@click.group(name="cache", cls=UserErrorGroup)
def command() -> None:
    """The VLM embedding caches (`distill --vlm-views`): the frozen VLM's embeddings of K views of every
    training image, built once and shared by every later student and VLM-taught method."""


def _select(cache_dir, keys: tuple[str, ...]):
    from dait_edge.vlm.cache import cache_root, list_caches

    root = cache_root(cache_dir)
    caches = list_caches(root)
    if not keys:
        return root, caches
    chosen = []
    for key in keys:
        matches = [c for c in caches if c.info.key.startswith(key)]
        if len(matches) != 1:
            found = "no cache" if not matches else f"{len(matches)} caches"
            raise UserError(
                f"{found} under {root} has a key starting with {key!r}; run `dait-edge cache list` for the keys."
            )
        chosen.append(matches[0])
    return root, chosen


def _entry(cache) -> dict:
    from dait_edge.vlm.cache import CacheError

    info = cache.info
    try:
        cache.check()
        done = cache.done()
        state = "complete" if done.all() else f"{100 * done.mean():.0f}% built"
    except CacheError:
        done, state = None, "damaged"
    return {
        "key": info.key,
        "folder": str(cache.folder),
        "dataset": info.dataset,
        "data_root": info.data_root,
        "images": info.images,
        "views": info.views,
        "dim": info.dim,
        "bytes": info.nbytes,
        "vlm": info.vlm,
        "state": state,
        "complete": done is not None and bool(done.all()),
        "build_seconds": info.build_seconds,
        "created": info.created,
    }


@command.command(name="list")
@cache_dir_option
@json_option
def list_command(cache_dir, as_json) -> None:
    """Every cache: key, data, K, size, state."""
    from dait_edge.vlm.cache import describe_size

    root, caches = _select(cache_dir, ())
    entries = [_entry(c) for c in caches]
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    if not entries:
        click.echo(f"no VLM embedding caches under {root}")
        return
    for cache, entry in zip(caches, entries, strict=True):
        click.echo(
            f"{entry['key'][:12]}  {entry['dataset']} ({entry['data_root']})  {describe_size(cache.info)}"
            f"  {entry['vlm']}  {entry['state']}  built in {entry['build_seconds']:.0f} s"
        )


@command.command(name="verify")
@click.argument("keys", nargs=-1)
@cache_dir_option
@device_option
def verify_command(keys, cache_dir, device) -> None:
    """Check caches (all, or those whose keys start with KEYS): array sizes, the content against the hash
    it was built with, the key against the training files and libraries as they are now, and a few views
    re-encoded by the live VLM (cosine >= 0.999). Exit code 1 when one fails."""
    failed = 0
    _, caches = _select(cache_dir, keys)
    for cache in caches:
        try:
            cosine = _verify(cache, device)
        except UserError as err:
            failed += 1
            click.echo(f"{cache.info.key[:12]}  FAILED: {err}")
            continue
        click.echo(f"{cache.info.key[:12]}  ok: {_entry(cache)['state']}, lowest cosine {cosine:.5f}")
    if failed:
        raise SystemExit(1)


def _verify(cache, device: str) -> float:
    import warnings

    import torch

    from dait_edge.data import load_dataset
    from dait_edge.data.images import ImageListDataset
    from dait_edge.data.views import ViewSpec
    from dait_edge.utils.device import resolve_device
    from dait_edge.vlm import load_vlm, resolve_vlm_source
    from dait_edge.vlm.cache import cache_key

    info = cache.info
    cache.check(full=True)  # sizes, and the content hashed again whatever an earlier check remembered
    spec = load_dataset(info.dataset, info.data_root)
    samples = spec.split("train")
    source = resolve_vlm_source(info.vlm, info.vlm_pretrained)
    view_spec = ViewSpec(**info.view_spec)
    key = cache_key(samples, view_spec, info.seed, info.views, source, info.compute_dtype, spec.crop_bottom)
    if key != info.key:
        raise UserError(
            "stale: the training files, the VLM weights or the pixel libraries changed since it was built;"
            f" clear it with `dait-edge cache clear {info.key[:12]}`."
        )
    torch_device = resolve_device(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vlm = load_vlm(info.vlm, info.vlm_pretrained, device=torch_device)
    vlm.model.visual.to(dtype=getattr(torch, info.compute_dtype))  # the dtype the build ran in
    return cache.verify(vlm, ImageListDataset(samples, crop_bottom=spec.crop_bottom), device=torch_device)


@command.command(name="clear")
@click.argument("keys", nargs=-1)
@click.option("--all", "clear_all", is_flag=True, help="Delete every cache.")
@cache_dir_option
def clear_command(keys, clear_all, cache_dir) -> None:
    """Delete the caches whose keys start with KEYS (or --all)."""
    if not keys and not clear_all:
        raise UserError(
            "name the caches to delete (key prefixes from `dait-edge cache list`), or pass --all."
        )
    _, caches = _select(cache_dir, () if clear_all else keys)
    freed = 0
    from dait_edge.utils.lock import exclusive

    for cache in caches:
        with exclusive(cache.folder, "VLM embedding cache"):  # never under a build that is writing it
            shutil.rmtree(cache.folder)
        freed += cache.info.nbytes
        click.echo(f"deleted {cache.folder}")
    click.echo(f"freed {freed / 1e9:.2f} GB")
