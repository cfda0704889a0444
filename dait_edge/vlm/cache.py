"""The VLM embedding cache: the frozen VLM runs once over K views of every training image, then never again.

Layout of one cache, `CACHE/vlm_embeddings/KEY/`:

    cache.json      records.VLMCacheInfo: what it holds, how it was made, whether it is complete (and
                    then the SHA-256 of embeddings.f16)
    verified.json   when embeddings.f16 was last hashed and found as cache.json says (size, inode, mtime)
    embeddings.f16  images x views x dim fp16, L2-normalised, row-major (a memory-mapped array)
    done.u8         one byte per chunk of `chunk` consecutive (image, view) rows: 1 = on disk

The key covers everything that changes the content: the training files (path, label, size, mtime), the
view spec, seed, K, the VLM (name, config content, weights identity; its preprocessing follows from
them and the open_clip version), the dtype it runs in, and the versions of the libraries that change
pixels. It holds image embeddings, not logits, so every VLM-taught method, template set, temperature and
labelled fraction shares one cache.

A build writes a chunk's rows, and marks chunks done only after their rows have reached the disk, so a
killed build resumes at the first chunk not marked; chunks always hold the same rows, so a resumed build
ends with the same bytes as an uninterrupted one. Under torchrun each rank builds every world_size-th
chunk.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dait_edge.data.views import ViewSpec, view_pixels, view_seed
from dait_edge.errors import UserError
from dait_edge.records import VLMCacheInfo
from dait_edge.utils.faults import fault_point
from dait_edge.utils.io import sha256_file, sha256_json
from dait_edge.utils.signals import stop_requested

SUBDIR = "vlm_embeddings"
EMBEDDINGS_FILE = "embeddings.f16"
DONE_FILE = "done.u8"
VERIFIED_FILE = "verified.json"  # when embeddings.f16 last hashed to cache.json's content_sha256
CHUNK = 32  # rows per build batch and per done byte
FORMAT_VERSION = 1
VERIFY_COSINE = 0.999  # a re-encoded view must match its cached row at least this closely
UNNORMALISED = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # (mean, std) of raw view pixels in [0, 1]
SYNC_EVERY_S = 2.0  # how often the build makes written rows durable and marks their chunks done


class CacheError(UserError):
    """A cache that cannot be used as it is (truncated, of another key, not matching the live VLM)."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where VLM embedding caches live: CACHE_DIR/vlm_embeddings, by default under $DAIT_EDGE_CACHE."""
    from dait_edge.vlm.text_embeddings import default_cache_dir

    return Path(cache_dir or default_cache_dir()) / SUBDIR


def pixel_library_versions() -> dict[str, str | None]:
    """Versions of the libraries whose upgrades can change a view's pixels or the VLM's preprocessing."""
    from importlib import metadata

    versions = {}
    for name in ("torchvision", "pillow", "open_clip_torch", "torch"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def files_identity(samples: Sequence) -> str:
    """The training files as the cache sees them: path, label, size and modification time of each."""
    rows = []
    for path, label in samples:
        stat = os.stat(path)
        rows.append((str(path), label, stat.st_size, stat.st_mtime_ns))
    return sha256_json(rows)


def cache_key(
    samples, spec: ViewSpec, seed: int, views: int, vlm_source, compute_dtype: str, crop_bottom: int = 0
) -> str:
    return sha256_json(
        {
            "format": FORMAT_VERSION,
            "files": files_identity(samples),
            "crop_bottom": crop_bottom,  # rows cut off each image before its views (Aircraft's banner)
            "view_spec": spec.to_dict(),
            "seed": seed,
            "views": views,
            "vlm": {
                "name": vlm_source.model_name,
                "config": vlm_source.model_config,
                "weights": vlm_source.weights_id,
            },
            "compute_dtype": compute_dtype,
            "versions": pixel_library_versions(),
        }
    )


def _human(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1000
    raise AssertionError


class CacheReader:
    """`reader(index, view)` -> {"vlm_image": fp16 tensor (D,)}: the `extra` hook of `TrainViews`.

    Opens the memory map lazily in each process that reads (a DataLoader worker, the main process), so
    pickling it to a worker copies a path, not the array."""

    def __init__(self, path: Path, shape: tuple[int, int, int]):
        self.path, self.shape = Path(path), shape
        self._array = None

    def __getstate__(self):
        return {"path": self.path, "shape": self.shape, "_array": None}

    @property
    def array(self) -> np.memmap:
        if self._array is None:
            self._array = np.memmap(self.path, dtype=np.float16, mode="r", shape=self.shape)
        return self._array

    def __call__(self, index: int, view: int) -> dict:
        import torch

        from dait_edge.vlm.provider import CACHED_IMAGE_KEY

        return {CACHED_IMAGE_KEY: torch.from_numpy(np.array(self.array[index, view]))}


@dataclass
class _Chunks:
    """The build's work list: chunk c holds rows [c * chunk, (c + 1) * chunk) of images x views."""

    images: object  # an ImageListDataset over the whole training split (no transform)
    spec: ViewSpec
    seed: int
    views: int
    chunk: int
    total: int  # images x views

    def rows(self, c: int) -> range:
        return range(c * self.chunk, min((c + 1) * self.chunk, self.total))

    def __getitem__(self, c: int):
        """The chunk's views as (rows, pixels in [0, 1]); each image is decoded once per chunk."""
        import torch

        pixels, decoded = [], {}
        for row in self.rows(c):
            index, view = divmod(row, self.views)
            if index not in decoded:
                decoded = {index: self.images[index][0]}
            pixels.append(view_pixels(decoded[index], self.spec, view_seed(self.seed, index, view)))
        return c, torch.stack(pixels)

    def __len__(self) -> int:
        return math.ceil(self.total / self.chunk)


class EmbeddingCache:
    """One cache folder: its description, its arrays, building and checking them."""

    def __init__(self, folder: Path, info: VLMCacheInfo):
        self.folder, self.info = Path(folder), info

    # ------------------------------------------------------------------ files

    @property
    def embeddings_path(self) -> Path:
        return self.folder / EMBEDDINGS_FILE

    @property
    def done_path(self) -> Path:
        return self.folder / DONE_FILE

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.info.images, self.info.views, self.info.dim)

    def done(self) -> np.ndarray:
        return np.fromfile(self.done_path, dtype=np.uint8)

    @property
    def complete(self) -> bool:
        return bool(self.info.complete) or bool(self.done().all())

    def reader(self) -> CacheReader:
        return CacheReader(self.embeddings_path, self.shape)

    def check(self, full: bool = False) -> None:
        """A CacheError unless both arrays have the sizes cache.json promises (a truncated copy, a full
        disk during an earlier build) and a complete cache's rows still hash to what they were built with
        (`full`: hashed again even where an earlier check is remembered)."""
        for path, size in ((self.embeddings_path, self.info.nbytes), (self.done_path, self.info.chunks)):
            actual = path.stat().st_size if path.is_file() else None
            if actual != size:
                found = "missing" if actual is None else f"{actual} bytes"
                raise CacheError(
                    f"VLM embedding cache {self.folder} is damaged: {path.name} is {found}, not {size} bytes;"
                    f" clear it with `dait-edge cache clear {self.info.key[:12]}` (the next run rebuilds it).",
                    setting="vlm_views",
                )
        expected = self.info.content_sha256
        if self.info.complete and expected and not self._content_matches(expected, full):
            raise CacheError(
                f"VLM embedding cache {self.folder} is damaged: {EMBEDDINGS_FILE} differs from the hash written"
                f" when it was built; clear it with `dait-edge cache clear {self.info.key[:12]}` (the next run"
                " rebuilds it).",
                setting="vlm_views",
            )

    def _content_matches(self, expected: str, full: bool) -> bool:
        """Does embeddings.f16 still hash to `expected`? Hashing a large cache takes seconds, so a match is
        remembered in VERIFIED_FILE with the file's size, inode and modification time, and not hashed again
        while they stay; `full` hashes regardless (`dait-edge cache verify`)."""
        import json

        if not full:
            with contextlib.suppress(OSError, ValueError):
                if json.loads((self.folder / VERIFIED_FILE).read_text()) == self._stamp(expected):
                    return True
        if sha256_file(self.embeddings_path) != expected:
            return False
        self._remember(expected)
        return True

    def _stamp(self, sha256: str) -> dict:
        stat = self.embeddings_path.stat()
        return {"size": stat.st_size, "inode": stat.st_ino, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}

    def _remember(self, sha256: str) -> None:
        """Record that embeddings.f16, as it is now, hashes to `sha256` (VERIFIED_FILE)."""
        from dait_edge.utils.io import write_json_atomic

        with contextlib.suppress(OSError, UserError):  # a read-only cache is still usable
            write_json_atomic(self.folder / VERIFIED_FILE, self._stamp(sha256))

    @classmethod
    def open(cls, root: Path, key: str) -> EmbeddingCache | None:
        """The cache of `key` under `root`, checked; None where there is none."""
        folder = Path(root) / key
        if not VLMCacheInfo.path_in(folder).is_file():
            return None
        info = VLMCacheInfo.read(folder)
        if info.key != key:
            raise CacheError(
                f"{folder} holds the cache of key {info.key[:12]}, not {key[:12]}; clear it with"
                f" `dait-edge cache clear {key[:12]}`.",
                setting="vlm_views",
            )
        cache = cls(folder, info)
        cache.check()
        return cache

    @classmethod
    def create(cls, root: Path, info: VLMCacheInfo) -> EmbeddingCache:
        """Allocate the arrays (all of the disk space, now: a full disk is caught before the build)."""
        folder = Path(root) / info.key
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
        if free < info.nbytes + info.chunks:
            raise CacheError(
                f"the VLM embedding cache needs {_human(info.nbytes)} and {folder} has {_human(free)} free; free"
                " some space, point --cache-dir (or $DAIT_EDGE_CACHE) to a larger disk, or lower --vlm-views.",
                setting="vlm_views",
            )
        cache = cls(folder, info)
        for path, size in ((cache.embeddings_path, info.nbytes), (cache.done_path, info.chunks)):
            # never truncated: a build of the same key under way elsewhere keeps its rows (they are the same)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                _allocate(fd, size)
            finally:
                os.close(fd)
        info.write(folder)  # last: a folder without cache.json is not a cache yet
        return cache

    # ------------------------------------------------------------------ build

    def build(
        self,
        vlm,
        images,
        *,
        device,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 0,
        progress: bool = True,
        stop_after_chunks: int | None = None,
    ) -> float:
        """Encode every chunk this rank owns and that is not done yet; returns the seconds spent.

        `stop_after_chunks` ends the build after that many chunks as if the process were killed (tests).
        """
        import torch
        from tqdm import tqdm

        from dait_edge.engine.loaders import make_loader

        info = self.info
        chunks = _Chunks(
            images, ViewSpec(**info.view_spec), info.seed, info.views, info.chunk, info.images * info.views
        )
        done = self.done()
        todo = [c for c in range(len(chunks)) if c % world_size == rank and not done[c]]
        if not todo:
            return 0.0
        started = time.perf_counter()
        # one pass: no persistent workers; the base seed comes from the (forked) global RNG, as it always did
        loader = make_loader(chunks, batch_size=None, sampler=todo, workers=workers, seed=None, persistent=False)
        bar = tqdm(
            total=sum(len(chunks.rows(c)) for c in todo),
            desc="VLM embedding cache",
            unit="view",
            disable=not progress,
            leave=False,
        )
        with open(self.embeddings_path, "r+b") as emb, open(self.done_path, "r+b") as marks:
            pending: list[int] = []
            last_sync = time.perf_counter()
            for n, (c, pixels) in enumerate(loader):
                with torch.inference_mode():
                    embeddings = vlm.encode_images(pixels.to(device), *UNNORMALISED)
                if not torch.isfinite(embeddings).all():
                    first = chunks.rows(c)[int((~torch.isfinite(embeddings)).any(dim=1).nonzero()[0])]
                    raise CacheError(
                        f"the VLM's embedding of image {first // info.views} view {first % info.views} is NaN"
                        " or infinite; check the VLM weights (and try fp32 with --device cpu on a few images).",
                        setting="vlm_pretrained",
                    )
                rows = embeddings.to(torch.float16).cpu().numpy()
                os.pwrite(emb.fileno(), rows.tobytes(), chunks.rows(c).start * info.dim * 2)
                pending.append(c)
                fault_point("cache-chunk")
                bar.update(len(rows))
                if time.perf_counter() - last_sync >= SYNC_EVERY_S:
                    _mark_done(emb, marks, pending)
                    pending, last_sync = [], time.perf_counter()
                if stop_after_chunks is not None and n + 1 >= stop_after_chunks:
                    break
                if stop_requested():  # the chunks encoded so far are marked below; a rerun goes on from there
                    break
            _mark_done(emb, marks, pending)
        bar.close()
        return time.perf_counter() - started

    def finish(self, seconds: float) -> None:
        """Record a finished build (rank 0, after every rank's share is done)."""
        self.info.build_seconds = round(self.info.build_seconds + seconds, 3)
        self.info.complete = bool(self.done().all())
        self.info.content_sha256 = sha256_file(self.embeddings_path) if self.info.complete else None
        self.info.write(self.folder)
        if self.info.content_sha256:  # just hashed: the next open need not read it all again
            self._remember(self.info.content_sha256)

    # ------------------------------------------------------------------ verify

    def sample_rows(self, count: int = 4) -> list[tuple[int, int]]:
        """A few (image, view) pairs spread over the cache: the first, the last and some between."""
        total = self.info.images * self.info.views
        rows = sorted({round(i * (total - 1) / max(count - 1, 1)) for i in range(count)})
        return [divmod(row, self.info.views) for row in rows]

    def verify(self, vlm, images, *, device, pairs: list[tuple[int, int]] | None = None) -> float:
        """Re-encode a few views with the live VLM; a CacheError unless every cosine with the cached row
        is >= 0.999. Returns the lowest cosine."""
        import torch

        info, spec = self.info, ViewSpec(**self.info.view_spec)
        pairs = pairs or self.sample_rows()
        done = self.done()
        pairs = [(i, k) for i, k in pairs if done[(i * info.views + k) // info.chunk]]
        if not pairs:
            return 1.0
        pixels = torch.stack(
            [view_pixels(images[i][0], spec, view_seed(info.seed, i, k)) for i, k in pairs]
        ).to(device)
        with torch.inference_mode():
            live = vlm.encode_images(pixels, *UNNORMALISED).float().cpu()
        rows = self.reader().array
        cached = torch.from_numpy(np.stack([np.array(rows[i, k]) for i, k in pairs])).float()
        cosines = torch.nn.functional.cosine_similarity(live, cached, dim=1)
        worst = int(cosines.argmin())
        if cosines[worst] < VERIFY_COSINE:
            i, k = pairs[worst]
            raise CacheError(
                f"VLM embedding cache {self.folder} does not match the live VLM (image {i} view {k}: cosine"
                f" {float(cosines[worst]):.4f} < {VERIFY_COSINE}); clear it with"
                f" `dait-edge cache clear {info.key[:12]}` and rebuild.",
                setting="vlm_views",
            )
        return float(cosines.min())


def _mark_done(emb, marks, chunks: list[int]) -> None:
    """Make the chunks' rows durable, then mark them: a done byte never points at rows still in flight."""
    if not chunks:
        return
    os.fsync(emb.fileno())
    for c in chunks:
        os.pwrite(marks.fileno(), b"\x01", c)
    os.fsync(marks.fileno())


def _allocate(fd: int, size: int) -> None:
    """Reserve `size` bytes of disk (zeros): posix_fallocate where the filesystem has it."""
    try:
        os.posix_fallocate(fd, 0, size)
    except (AttributeError, OSError) as err:
        if isinstance(err, OSError) and err.errno == 28:  # ENOSPC
            raise CacheError(
                f"no space left for the VLM embedding cache ({_human(size)}); free some space or lower --vlm-views.",
                setting="vlm_views",
            ) from None
        os.ftruncate(fd, size)  # sparse: filesystems without fallocate (tmpfs on old kernels, macOS)


def list_caches(root: Path) -> list[EmbeddingCache]:
    """Every cache under `root` with a readable cache.json (damaged arrays included: `check` says)."""
    if not Path(root).is_dir():
        return []
    caches = []
    for folder in sorted(Path(root).iterdir()):
        if VLMCacheInfo.path_in(folder).is_file():
            caches.append(EmbeddingCache(folder, VLMCacheInfo.read(folder)))
    return caches


def describe_size(info: VLMCacheInfo) -> str:
    return f"{info.images} images x {info.views} views x {info.dim} dims fp16 = {_human(info.nbytes)}"
