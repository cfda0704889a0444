"""ExecuTorch (`.pte`) and LiteRT (`.tflite`) files, lowered from the PyTorch student for phones and boards.

fp32: `torch.export` -> the backend (ExecuTorch: `to_edge_transform_and_lower` with the XNNPACK
partitioner; LiteRT: `litert_torch.convert`). int8: PT2E post-training quantisation with the backend's own
quantiser (XNNPACKQuantizer / litert-torch's PT2EQuantizer: int8 activations per tensor, int8 weights per
channel), calibrated on the run's training images, then lowered the same way.

int8 keeps its accuracy as the ONNX files do (`int8_search`'s judge and fallback steps): candidates are
scored on the validation images against the fp32 student, and while the drop exceeds the budget the
Conv/Linear modules int8 hurts most stay float (the quantiser's `set_module_name(name, None)`). Candidates
are judged on the quantised PyTorch graph (lowering each would cost seconds per step); the file kept is then
lowered and judged again by its own runtime, and that is what the record states.

Each file's delegation is checked: an op the delegate did not take runs on slow portable/builtin kernels,
so the sidecar names such ops and the export warns (or refuses, `require_full_delegation = true`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dait_edge.errors import UserError
from dait_edge.export.recipes import Recipe

RANKING_IMAGES = 16  # calibration images the module ranking runs on


@dataclass
class Lowered:
    """What lowering reported: the delegation summary (sidecar `delegation`), and the file's I/O types."""

    delegation: dict[str, Any]
    io: dict[str, Any] | None = None


@dataclass
class MobileBuilt:
    lowered: Lowered
    int8: Any = None  # build.Int8Built for int8 files, else None
    quantizer: dict[str, Any] = field(default_factory=dict)  # the quantiser's settings, for the sidecar
    plain_test_logits: np.ndarray | None = None  # all modules quantised, where modules went back to float


class Backend:
    """One on-device runtime: how to lower to its file, its int8 quantiser, how to run the file."""

    kind = ""
    suffix = ""
    runtime = ""  # the runner that profiles the file (profiling/runners/)
    fold_quantize = True  # convert_pt2e's folding of quantised weights (litert-torch wants them unfolded)

    def require(self) -> None:
        raise NotImplementedError

    def quantizer(self, per_channel: bool):
        raise NotImplementedError

    def write(self, module, example, dst: Path, quantizer=None) -> Lowered:
        raise NotImplementedError

    def load(self, path: Path):
        """The file in its runtime: an object with `run(image)` and `logits(images)` (float in, float out)."""
        raise NotImplementedError


class ExecuTorchBackend(Backend):
    kind, suffix, runtime = "executorch", ".pte", "executorch"

    def require(self) -> None:
        from dait_edge.profiling.runners.executorch import require_executorch

        require_executorch("export to executorch-fp32 / executorch-int8")

    def quantizer(self, per_channel: bool):
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

        return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))

    def write(self, module, example, dst: Path, quantizer=None) -> Lowered:
        import torch
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.devtools.backend_debug import get_delegation_info
        from executorch.exir import to_edge_transform_and_lower

        exported = torch.export.export(module, (example,))
        edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        info = get_delegation_info(edge.exported_program().graph_module)
        table = info.get_operator_delegation_dataframe()
        undelegated: dict[str, int] = {}
        for _, row in table.iterrows():
            name, count = str(row["op_type"]), int(row["occurrences_in_non_delegated_graphs"])
            # getitem reads the delegate's outputs; Total is the table's sum row
            if count and name not in ("getitem", "Total"):
                undelegated[name] = count
        dst.write_bytes(edge.to_executorch().buffer)
        return Lowered(
            {
                "backend": "XnnpackBackend",
                "partitions": int(info.num_delegated_subgraphs),
                "ops": int(info.num_delegated_nodes + sum(undelegated.values())),
                "delegated_ops": int(info.num_delegated_nodes),
                "undelegated_ops": undelegated,
            }
        )

    def load(self, path: Path):
        from dait_edge.profiling.runners.executorch import PteProgram

        return PteProgram(path)


class LiteRTBackend(Backend):
    kind, suffix, runtime = "litert", ".tflite", "litert"
    fold_quantize = False

    def require(self) -> None:
        from dait_edge.profiling.runners.litert import require_litert

        require_litert("export to litert-fp32 / litert-int8")
        try:
            import litert_torch  # noqa: F401
        except ImportError:
            raise UserError(
                "export to litert-fp32 / litert-int8 needs litert-torch (PyTorch -> .tflite, no TensorFlow):"
                " pip install 'dait-edge[litert-export]'."
            ) from None

    def quantizer(self, per_channel: bool):
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

        config = get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=False)
        return PT2EQuantizer().set_global(config)

    def write(self, module, example, dst: Path, quantizer=None) -> Lowered:
        os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # its progress tree would bury the log
        import litert_torch
        from litert_torch.quantize.quant_config import QuantConfig

        options = {"quant_config": QuantConfig(pt2e_quantizer=quantizer)} if quantizer is not None else {}
        litert_torch.convert(module, (example,), **options).export(str(dst))
        from dait_edge.profiling.runners.litert import delegation

        model = self.load(dst)
        return Lowered(delegation(model.interpreter), model.io())

    def load(self, path: Path):
        from dait_edge.profiling.runners.litert import TfliteModel

        return TfliteModel(path)


BACKENDS: dict[str, Backend] = {b.kind: b for b in (ExecuTorchBackend(), LiteRTBackend())}


def backend_for(recipe: Recipe) -> Backend:
    return BACKENDS[recipe.kind]


def check_delegation(recipe: Recipe, lowered: Lowered, log) -> str | None:
    """A warning naming the ops the delegate did not take (None: all delegated); an error instead where the
    recipe requires full delegation."""
    ops = lowered.delegation.get("undelegated_ops") or {}
    if not ops:
        return None
    listed = ", ".join(f"{name} x{count}" for name, count in ops.items())
    where = "ExecuTorch's portable kernels" if recipe.kind == "executorch" else "LiteRT's builtin kernels"
    if recipe.lowering.get("require_full_delegation", False):
        raise UserError(
            f"{recipe.name}: ops not delegated to XNNPACK ({listed}) would run on {where}; the recipe requires"
            f" full delegation ({recipe.path}): set require_full_delegation = false to keep such a file."
        )
    message = f"warning: {recipe.name}: ops not delegated to XNNPACK run on {where}: {listed}"
    log(message)
    return message


# ------------------------------------------------------------------ int8


def quantisable_modules(model) -> list[tuple[str, Any]]:
    """The Conv2d and Linear modules: what the quantisers annotate and the fallback can keep in float."""
    import torch

    return [
        (name, module)
        for name, module in model.named_modules()
        if name and isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))
    ]


def module_errors(model, modules, images: np.ndarray) -> list:
    """Each module's own int8 error (`layer_error.LayerError` rows, worst first): its output from int8
    inputs (per tensor, affine, the calibration images' range) and int8 weights (symmetric, per output
    channel), against its float output, on the float model's own activations. A proxy for what the PT2E
    quantiser does to that module alone; it ranks what the fallback returns to float first."""
    import torch
    import torch.nn.functional as F

    from dait_edge.export.layer_error import CAP_DB, LayerError, _sqnr_db

    captured: dict[str, tuple] = {}

    def hook(name):
        def keep(module, inputs, output):
            # copies: an in-place activation after the module (ReLU(inplace=True)) would change them
            captured[name] = (inputs[0].detach().clone(), output.detach().clone())

        return keep

    handles = [module.register_forward_hook(hook(name)) for name, module in modules]
    try:
        with torch.no_grad():
            model.eval()(torch.from_numpy(images))
    finally:
        for handle in handles:
            handle.remove()
    rows = []
    with torch.no_grad():
        for name, module in modules:
            x, y = captured.get(name, (None, None))
            if x is None:
                continue
            lo, hi = float(x.min().clamp(max=0)), float(x.max().clamp(min=0))
            scale = max(hi - lo, 1e-12) / 255.0
            zero = round(-128 - lo / scale)
            xq = (torch.clamp(torch.round(x / scale) + zero, -128, 127) - zero) * scale
            w = module.weight
            w_scale = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True).clamp(min=1e-12) / 127.0
            wq = torch.clamp(torch.round(w / w_scale), -127, 127) * w_scale
            if isinstance(module, torch.nn.Conv2d):
                yq = F.conv2d(
                    xq, wq, module.bias, module.stride, module.padding, module.dilation, module.groups
                )
            else:
                yq = F.linear(xq, wq, module.bias)
            ref, got = y.numpy(), yq.numpy()
            sqnr, rel = _sqnr_db(ref, got)
            per_channel = [min(_sqnr_db(ref[:, c], got[:, c])[0], CAP_DB) for c in range(ref.shape[1])]
            rows.append(
                LayerError(
                    node=name,
                    op=type(module).__name__,
                    tensor=f"{name} (input and weight)",
                    channel_sqnr_db=round(float(np.mean(per_channel)), 3),
                    sqnr_db=round(min(sqnr, CAP_DB), 3),
                    rel_l2=round(rel, 6),
                    xmodel_sqnr_db=None,
                    fallback=[name],
                )
            )
    return sorted(rows, key=lambda row: row.channel_sqnr_db)


def quantise(model, example, images: np.ndarray, backend: Backend, per_channel: bool, exclude=()):
    """The PT2E-quantised graph of `model` (the modules in `exclude` left float), calibrated image by image on
    `images`; the quantiser rides along in `graph.meta` (litert-torch's converter needs the same one)."""
    import torch
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = backend.quantizer(per_channel)
    if exclude:
        _leave_float(quantizer, set(exclude))
    graph = torch.export.export(model.eval(), (example,)).module()
    graph = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for image in images:  # the exported graph has the example's static batch of 1
            graph(torch.from_numpy(image[None]))
    graph = convert_pt2e(graph, fold_quantize=backend.fold_quantize)
    move_exported_model_to_eval(graph)
    graph.training = False  # what litert-torch checks (an exported graph refuses .eval())
    graph.meta["dait_quantizer"] = quantizer
    return graph


def _leave_float(quantizer, modules: set[str]) -> None:
    """Make `quantizer` leave the nodes of `modules` (and their submodules) in float: its annotations on them
    are dropped before prepare_pt2e places observers. Neither XNNPACKQuantizer nor litert-torch's quantiser
    takes `set_module_name(name, None)` yet ("not supported yet"), but both annotate nodes the same way."""
    annotate = quantizer.annotate

    def annotate_except(model):
        model = annotate(model)
        for node in model.graph.nodes:
            paths = [str(path) for path, _ in (node.meta.get("nn_module_stack") or {}).values()]
            if any(path == name or path.startswith(name + ".") for path in paths for name in modules):
                node.meta.pop("quantization_annotation", None)
        return model

    quantizer.annotate = annotate_except


def graph_logits(graph, images: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate(
            [graph(torch.from_numpy(images[i : i + 1])).numpy() for i in range(len(images))]
        )


def build_mobile(recipe: Recipe, model, dst: Path, input_size, calibration, judge, log) -> MobileBuilt:
    """Lower `model` into `dst` as `recipe` says; int8 within its budget (`judge`: build.Int8Judge)."""
    import torch

    backend = backend_for(recipe)
    backend.require()
    example = torch.zeros(1, *input_size)
    model = model.eval()
    if recipe.precision != "int8":
        lowered = backend.write(model, example, dst)
        check_delegation(recipe, lowered, log)
        return MobileBuilt(lowered)
    return _build_int8(recipe, backend, model, example, dst, calibration, judge, log)


def _build_int8(recipe, backend: Backend, model, example, dst: Path, calibration, judge, log) -> MobileBuilt:
    import functools
    import math
    import time

    from dait_edge.export.build import Int8Built, accuracy_settings
    from dait_edge.export.int8_search import (
        DEFAULT_FALLBACK_SHARE,
        _fall_back,
        _Judge,
        _usable,
        diagnose,
        judged_accuracy,
    )
    from dait_edge.export.parity import top1_of, torch_logits

    started = time.perf_counter()
    per_channel = bool(recipe.quantize.get("per_channel", True))
    images = calibration.images
    modules = quantisable_modules(model)
    if not modules:
        raise UserError(f"{recipe.name}: the model has no Conv2d or Linear layer to quantise; export fp32.")
    layers = module_errors(model, modules, images[:RANKING_IMAGES])
    budget, _ = accuracy_settings(recipe, judge.budget, "minmax")
    cap = judge.max_fallback
    cap = cap if cap is not None else max(1, math.ceil(DEFAULT_FALLBACK_SHARE * len(modules)))
    graph = functools.partial(quantise, model, example, images, backend, per_channel)
    plain = graph()
    validation = judge.validation
    usable, reason = _usable(validation, judge.num_classes)
    kept, steps, plain_logits, fp32_logits = plain, [], None, None
    if usable:
        fp32_logits = torch_logits(model, validation.images)
        scorer = _Judge(
            validation, fp32_logits, top1_of(fp32_logits, validation.labels), budget, graph_logits
        )
        best = scorer.score(plain, [])
        plain_logits = best.logits
        if not scorer.within(best):
            from dait_edge.records import Int8Accuracy

            trail = Int8Accuracy(budget=budget, checked=True, calibration="minmax")
            best = _fall_back(
                Path("."), lambda _path, exclude: graph(exclude), layers, cap, scorer, best, trail, log
            )
            steps = trail.steps
        kept = best.path
        nodes = best.nodes
    else:
        log(f"warning: {recipe.name} accuracy {reason}; the file is plain int8, budget not checked")
        nodes = []
    lowered = backend.write(kept, example, dst, quantizer=kept.meta.get("dait_quantizer"))
    check_delegation(recipe, lowered, log)
    record = judged_accuracy(
        dst,
        validation,
        fp32_logits,
        plain_logits,
        budget,
        judge.num_classes,
        logits_of=lambda path, batch: backend.load(path).logits(batch),
        quantised_nodes=len(modules),
    )
    record.max_fallback_nodes = cap
    record.nodes_in_float = list(nodes)
    record.steps = steps
    if record.checked and not record.budget_met:
        record.diagnosis = diagnose(record)
    record.seconds = round(time.perf_counter() - started, 2)
    in_float = set(nodes)
    for row in layers:
        row.in_float = row.node in in_float
    plain_test = graph_logits(plain, judge.test.images) if nodes else None
    settings = {
        "quantizer": type(kept.meta.get("dait_quantizer")).__name__,
        "scheme": "int8 activations per tensor (affine), int8 weights symmetric"
        + (" per output channel" if per_channel else " per tensor"),
        "per_channel": per_channel,
        "how": "PT2E post-training: torch.export, prepare_pt2e, calibration, convert_pt2e",
    }
    return MobileBuilt(lowered, Int8Built(record, layers, None), settings, plain_test)
