"""The distillation config from a TOML file and flags: defaults < config file < flags.

The config itself is a record (`records.config.DistillConfig`, saved in each run's manifest); this module
reads config files and merges them with the flags given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dait_edge.errors import UserError
from dait_edge.records import check_fields
from dait_edge.records.config import FIELDS, MIN_IMG_SIZE, DistillConfig, default_workers
from dait_edge.utils.io import read_toml

__all__ = ["MIN_IMG_SIZE", "DistillConfig", "build_config", "default_workers", "load_toml"]


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a config file; keys are option names with - or _ (`stage1-epochs` or `stage1_epochs`).

    A `[distill]` table is read if present, else the top level. `epochs` (as the --epochs flag)
    sets both stages' epochs unless the file gives `stage1_epochs` / `stage2_epochs` itself.
    """
    path = Path(path)
    data = read_toml(path, "config file", "pass an existing, valid TOML config file.", setting="config_file")
    data = data.get("distill", data)
    values = {key.replace("-", "_"): value for key, value in data.items()}
    if "epochs" in values:
        epochs = values.pop("epochs")
        values.setdefault("stage1_epochs", epochs)
        values.setdefault("stage2_epochs", epochs)
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        raise UserError(
            f"config file {path} has unknown option(s) {', '.join(unknown)}; see `dait-edge distill --help`."
        )
    for name in ("stages", "vlm_views"):  # `stages = 2` means "2", `vlm_views = 50` means "50"
        if isinstance(values.get(name), int) and not isinstance(values[name], bool):
            values[name] = str(values[name])
    # Each value has its setting's type (the run's manifest is read back with the same checks).
    check_fields(DistillConfig, values, f"config file {path}", "fix the value in the config file")
    return values


def build_config(file_values: dict[str, Any], flag_values: dict[str, Any]) -> DistillConfig:
    """defaults < config file < flags given on the command line; values checked (names are resolved by
    the command that runs it)."""
    merged = {**file_values, **flag_values}
    config = DistillConfig(**merged)
    config.validate()
    return config
