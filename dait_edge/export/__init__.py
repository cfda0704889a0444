"""Export: the trained student -> ONNX fp32 / fp16 / int8 and TensorRT engines, each verified and
described by a sidecar JSON. `export_run` is the entry point; heavy imports live inside functions.
"""

from __future__ import annotations

from typing import Any

__all__ = ["export_run", "resolve_run", "latest_run"]


def __getattr__(name: str) -> Any:
    # resolved on first use, so that `import dait_edge.export.predict` on a device needs no torch
    if name == "export_run":
        from dait_edge.export.api import export_run

        return export_run
    if name in ("resolve_run", "latest_run"):
        from dait_edge.export import source

        return getattr(source, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
