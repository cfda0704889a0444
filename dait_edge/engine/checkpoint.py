"""Training checkpoints (resume state) and student weights, always written atomically."""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dait_edge.utils.io import atomic_path


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """This process's generators. On CUDA only the training device's generator: a checkpoint that held
    every visible GPU's could not be resumed where fewer GPUs are visible."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if isinstance(cuda, torch.Tensor) and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(cuda, device)
    # a list under "cuda" (every GPU's state, older checkpoints) is not applied: devices may differ now


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def stage_seed(seed: int, stage: int, rank: int) -> int:
    """The seed a stage starts from: its models' initial weights depend on (seed, stage, rank) alone, not on
    what ran before it in the process (a teacher trained here, read from the cache or given)."""
    import hashlib

    digest = hashlib.blake2b(f"stage/{seed}/{stage}/{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


@dataclass
class TrainingState:
    """STAGE/state.pt: everything an interrupted stage needs to continue exactly where it stopped."""

    method: dict[str, torch.Tensor]  # the trainable state (student, adapters), not the frozen teachers
    optimiser: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any]  # empty when no fp16 GradScaler ran (CPU, bf16)
    rng: list[dict[str, Any]]  # one entry per rank (older checkpoints: one dict, rank 0's)
    epoch: int  # the last epoch whose outputs are all on disk
    best_top1: float  # the best epoch's validation top-1 (-1: none yet, or no validation images)
    best_epoch: int
    elapsed: float
    best_test_top1: float = -1.0  # the test top-1 of that epoch (reported, never chosen by)


def save_training_state(path: Path, state: TrainingState) -> None:
    data = dataclasses.asdict(state)
    data["rng"] = [_plain_rng(rng) for rng in (state.rng if isinstance(state.rng, list) else [state.rng])]
    with atomic_path(path) as tmp:
        torch.save(data, tmp)


def load_training_state(path: Path) -> TrainingState:
    """The state in `path`, read as data only (weights_only): a damaged file or one that would run code is a
    one-line error, never used."""
    from dait_edge.utils.safe_load import load_data_only

    data = load_data_only(
        path,
        what="training state",
        fix="it cannot be resumed from; start the run again in a new folder (or delete this file to restart"
        " the stage).",
        setting="resume",
    )
    rng = data["rng"] if isinstance(data["rng"], list) else [data["rng"]]
    return TrainingState(**{**data, "rng": [_numpy_rng(r) for r in rng]})


def _plain_rng(state: dict[str, Any]) -> dict[str, Any]:
    """RNG states in types a data-only load accepts: numpy's key array as a tensor."""
    name, keys, pos, has_gauss, cached = state["numpy"]
    return {
        **state,
        "numpy": (name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached),
    }


def _numpy_rng(state: dict[str, Any]) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    return {**state, "numpy": (name, keys.astype(np.uint32), pos, has_gauss, cached)}


def save_weights(path: Path, module: nn.Module, metadata: dict[str, str] | None = None) -> None:
    """A deployable weights file (safetensors) of `module` alone: no adapters, no optimiser.

    Its bytes depend only on the weights and `metadata`, so equal weights give an equal sha256.
    """
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        tmp.write_bytes(_sorted_metadata(save(state, metadata=metadata)))


def _sorted_metadata(blob: bytes) -> bytes:
    """safetensors writes `__metadata__` in hash-map order, which changes from call to call: sort it."""
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + size])
    if "__metadata__" not in header:
        return blob
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the header is padded with spaces to a multiple of 8 bytes
    return len(text).to_bytes(8, "little") + text + blob[8 + size :]
