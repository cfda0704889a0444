"""`--device auto|cpu|cuda` -> a torch.device, with a clear error when CUDA is asked for and absent."""

from __future__ import annotations

from dait_edge.errors import UserError


def resolve_device(name: str = "auto"):
    import torch

    name = name.lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            f"device {name} was asked for but no CUDA GPU is visible; use cpu or auto.", setting="device"
        )
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N.", setting="device")
    return torch.device(name)
