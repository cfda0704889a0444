"""Where the shipped TOML folders (profiles/, export/) are: the checkout, or a wheel's data files."""

from __future__ import annotations

import sys
from pathlib import Path


def shipped_dir(name: str) -> Path:
    """`name` at the top of a checkout (editable install), else where a wheel put it (share/dait-edge/)."""
    checkout = Path(__file__).resolve().parents[2] / name
    if checkout.is_dir():
        return checkout
    # pyproject's [tool.setuptools.data-files] installs the folders under the environment's prefix
    installed = Path(sys.prefix) / "share" / "dait-edge" / name
    return installed if installed.is_dir() else checkout
