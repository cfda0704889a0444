"""Loading torch files as data only: a pickle that would run code is refused, never executed."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from dait_edge.errors import UserError


def _numpy_globals() -> list:
    """What numpy arrays pickle through: older training states held numpy RNG arrays (data, not code)."""
    import numpy as np

    reconstruct = getattr(getattr(np, "_core", None), "multiarray", None) or np.core.multiarray
    return [reconstruct._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_data_only(path: str | os.PathLike, *, what: str, fix: str, setting: str | None = None) -> Any:
    """`torch.load(path, weights_only=True)` with one-line errors: a missing, damaged (truncated) file, or a
    pickle that needs code execution, is a UserError naming `what` and `fix`."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist; {fix}", setting=setting)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        culprit = _culprit(str(err))
        raise UserError(
            f"{what} {path} is a pickle that would run code when loaded ({culprit}); refused: dait-edge loads"
            " data only. Save the tensors with safetensors (safetensors.torch.save_file) and pass that file.",
            setting=setting,
        ) from None
    except Exception as err:  # noqa: BLE001 - a damaged zip or pickle raises many types; all mean the same
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0][:120]
        raise UserError(f"{what} {path} is damaged or truncated ({reason}); {fix}", setting=setting) from None


def _culprit(message: str) -> str:
    """The global the unpickler refused, from torch's message ("Unsupported global: GLOBAL os.system")."""
    for line in message.splitlines():
        if "GLOBAL" in line:
            return line[line.index("GLOBAL") :].split(" was not")[0].split(" whose")[0].strip().rstrip(".")
    return "an unsupported global"
