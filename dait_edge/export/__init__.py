"""Export: the trained student -> ONNX fp32 / fp16 / int8 and TensorRT engines, each verified and
described by a sidecar JSON. `export_run` is the entry point; heavy imports live inside functions.
"""

from __future__ import annotations

from typing import Any

__all__ = ["export_run", "resolve_run", "latest_run"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from dait_edge.export import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
