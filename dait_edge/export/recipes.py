"""Export recipes: one TOML file per format in the top-level `export/` folder.

A recipe says how to make one artifact (opset, exporter, precision options, quantiser settings,
parity threshold, TensorRT batch range). Formats are named (`onnx-fp16`) or given as a path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dait_edge.errors import UserError
from dait_edge.utils.io import read_toml
from dait_edge.utils.shipped import shipped_dir

RECIPES_DIR = shipped_dir("export")
# Short names for recipe files: `onnx` is the fp32 graph, `onnx-int8` both int8 variants, `executorch` and
# `litert` the fp32 and int8 files of each on-device runtime.
ALIASES = {
    "onnx": ("onnx-fp32",),
    "onnx-int8": ("onnx-int8-u8s8", "onnx-int8-s8s8"),
    "executorch": ("executorch-fp32", "executorch-int8"),
    "litert": ("litert-fp32", "litert-int8"),
}
_PRECISIONS = ("fp32", "fp16", "int8")
# What each kind of recipe makes: ONNX graphs, TensorRT engines (from an ONNX graph), and the on-device
# runtimes' files lowered from the PyTorch student itself (export/mobile.py).
KINDS = ("onnx", "trt", "executorch", "litert")
MOBILE_KINDS = ("executorch", "litert")


def format_names() -> list[str]:
    """Every named format: the recipe files in export/ (a new TOML there is a new format), then the aliases."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml")) + list(ALIASES)


@dataclass
class Recipe:
    name: str  # the format name used in file names and the summary, e.g. "onnx-int8-s8s8"
    kind: str  # one of KINDS
    precision: str
    variant: str | None = None
    source: str | None = None  # the format this one is converted from (None: from PyTorch)
    opset: int = 18
    exporter: str = "torchscript"
    dynamic_batch: bool = True
    fp16: dict[str, Any] = field(default_factory=dict)
    quantize: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    trt: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] = field(default_factory=dict)  # int8: max_top1_drop, calibration
    qat: dict[str, Any] = field(default_factory=dict)  # int8 from QAT (export/qat.py QATSettings); empty: PTQ
    # executorch / litert: how the student is lowered (export/mobile.py: backend, partitioner checks)
    lowering: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    description: str = ""

    @property
    def threshold(self) -> float:
        return float(self.parity.get("threshold", {"fp32": 99.9, "fp16": 99.0}.get(self.precision, 97.0)))

    @property
    def mobile(self) -> bool:
        """An on-device runtime's file (ExecuTorch .pte, LiteRT .tflite), lowered from PyTorch."""
        return self.kind in MOBILE_KINDS

    @property
    def parity_fatal(self) -> bool:
        return bool(self.parity.get("fatal", self.precision != "int8"))

    @property
    def batch_range(self) -> tuple[int, int, int]:
        lo, opt, hi = (
            int(self.trt.get(k, d)) for k, d in (("min_batch", 1), ("opt_batch", 1), ("max_batch", 1))
        )
        if not 1 <= lo <= opt <= hi:
            raise UserError(
                f"recipe {self.name}: TensorRT batch range must satisfy 1 <= min_batch <= opt_batch <= max_batch,"
                f" got {lo}/{opt}/{hi}; fix [trt] in {self.path}."
            )
        return lo, opt, hi


def parse_recipe(data: dict[str, Any], path: str | None = None) -> Recipe:
    """A recipe from a TOML table; unknown or missing keys are one-line UserErrors."""
    where = path or "recipe"
    try:
        _, kind, precision = data["name"], data["kind"], data["precision"]
    except KeyError as err:
        raise UserError(
            f"{where} has no {err.args[0]!r} key; every recipe needs name, kind and precision."
        ) from err
    if kind not in KINDS:
        raise UserError(f"{where}: kind must be one of {', '.join(KINDS)}, not {kind!r}.")
    if kind in MOBILE_KINDS and (data.get("source") or precision == "fp16"):
        raise UserError(
            f"{where}: a {kind} recipe is lowered from the PyTorch student (no source), in fp32 or int8."
        )
    if precision not in _PRECISIONS:
        raise UserError(f"{where}: precision must be one of {', '.join(_PRECISIONS)}, not {precision!r}.")
    known = set(Recipe.__dataclass_fields__) - {"path"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"{where}: unknown keys {', '.join(unknown)}; allowed: {', '.join(sorted(known))}.")
    if kind == "trt" and not data.get("source"):
        raise UserError(f"{where}: a TensorRT recipe needs source = the ONNX format it is built from.")
    if data.get("exporter", "torchscript") not in ("torchscript", "dynamo"):
        raise UserError(f"{where}: exporter must be 'torchscript' or 'dynamo'.")
    recipe = Recipe(**data, path=path)
    if kind == "trt":
        recipe.batch_range  # noqa: B018  (validates early)
    return recipe


def load_recipe(name_or_path: str) -> Recipe:
    """A named format (`onnx-fp16`) from export/, or a path to a TOML recipe."""
    name = ALIASES[name_or_path][0] if len(ALIASES.get(name_or_path, ())) == 1 else name_or_path
    if name_or_path.endswith(".toml"):
        path = Path(name_or_path)
    elif (RECIPES_DIR / f"{name}.toml").is_file():
        path = RECIPES_DIR / f"{name}.toml"
    else:
        raise UserError(
            f"unknown export format {name_or_path!r}; use {', '.join(format_names())} or a path to a .toml recipe.",
            setting="formats",
        )
    if not path.is_file():
        raise UserError(
            f"export recipe {path} does not exist; pass one of {', '.join(format_names())} or a .toml file.",
            setting="formats",
        )
    data = read_toml(path, "export recipe", "fix the recipe or pass another.")
    return parse_recipe(data, str(path))


def expand_formats(
    formats: str | list[str] | None = None,
    *,
    fp16: bool = False,
    int8: bool = False,
    trt: bool = False,
    qat: bool = False,
) -> list[str]:
    """The requested format names, aliases expanded, in request order, without duplicates."""
    names: list[str] = []
    if isinstance(formats, str):
        formats = [f for f in formats.replace(" ", "").split(",") if f]
    names += list(formats or ["onnx"])  # the flags add to the default
    if fp16:
        names += ["onnx", "onnx-fp16"]
    if int8:
        names += ["onnx", "onnx-int8"]
    if trt:
        names += ["trt-fp16"]
    if qat:
        names += ["onnx", "onnx-int8-qat", "onnx-int8-qat-u8s8"] + (["trt-int8-qat"] if trt else [])
    out: list[str] = []
    for name in names:
        for n in ALIASES.get(name, (name,)):
            if n not in out:
                out.append(n)
    return out


def plan_recipes(requested: list[str]) -> tuple[list[Recipe], set[str]]:
    """Recipes to build, sources before what is converted from them, and the names the user asked for.

    A source not asked for (fp32 under `--formats onnx-fp16`, fp16 under `--trt`) is built as well:
    the TensorRT engine is only as good as the ONNX graph it came from, which keeps it inspectable.
    """
    recipes: dict[str, Recipe] = {}

    def add(name: str) -> None:
        if name in recipes:
            return
        recipe = load_recipe(name)
        if recipe.source:
            add(recipe.source)
        recipes[recipe.name] = recipe

    for name in requested:
        add(name)
    # ONNX first (sources before conversions), then engines, then the on-device runtimes' files
    ordered = sorted(
        recipes.values(), key=lambda r: (r.kind != "onnx", r.kind in MOBILE_KINDS, r.source is not None)
    )
    wanted = {load_recipe(n).name for n in requested}
    return ordered, wanted
