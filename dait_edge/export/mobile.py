"""ExecuTorch (`.pte`) and LiteRT (`.tflite`) files, lowered from the PyTorch student for phones and boards.

fp32: `torch.export` -> the backend (ExecuTorch: `to_edge_transform_and_lower` with the XNNPACK
partitioner; LiteRT: `litert_torch.convert`). int8: PT2E post-training quantisation with the backend's own
quantiser (XNNPACKQuantizer / litert-torch's PT2EQuantizer: int8 activations per tensor, int8 weights per
channel), calibrated on the run's training images, then lowered the same way.

int8 keeps its accuracy as the ONNX files do, with the same judge (mobile_int8.py).

Each file's delegation is checked: an op the delegate did not take runs on slow portable/builtin kernels,
so the sidecar names such ops and the export warns (or refuses, `require_full_delegation = true`).
"""

from __future__ import annotations

import os
from pathlib import Path

from dait_edge.errors import UserError
from dait_edge.export.lowering import Backend, Lowered, MobileBuilt, check_delegation
from dait_edge.export.recipes import Recipe


class ExecuTorchBackend(Backend):
    kind, suffix, runtime = "executorch", ".pte", "executorch"

    def require(self) -> None:
        from dait_edge.export.on_device import require_executorch

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
        from dait_edge.export.on_device import PteProgram

        return PteProgram(path)


class LiteRTBackend(Backend):
    kind, suffix, runtime = "litert", ".tflite", "litert"
    fold_quantize = False

    def require(self) -> None:
        from dait_edge.export.on_device import require_litert

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
        from dait_edge.export.on_device import delegation

        model = self.load(dst)
        return Lowered(delegation(model.interpreter), model.io())

    def load(self, path: Path):
        from dait_edge.export.on_device import TfliteModel

        return TfliteModel(path)


BACKENDS: dict[str, Backend] = {b.kind: b for b in (ExecuTorchBackend(), LiteRTBackend())}


def backend_for(recipe: Recipe) -> Backend:
    return BACKENDS[recipe.kind]


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
    from dait_edge.export.mobile_int8 import build_int8

    return build_int8(recipe, backend, model, example, dst, calibration, judge, log)


def export_file(job, recipe: Recipe) -> None:
    """One ExecuTorch .pte or LiteRT .tflite of an export in progress (`job`: api._Export), lowered from its student,
    checked by its own runtime against PyTorch, int8 judged on the validation images like the ONNX files; the
    file is renamed into place after the checks and gets its sidecar last."""
    from dait_edge.export import artifacts, parity
    from dait_edge.export.parity import top1_of
    from dait_edge.utils.io import temp_path_beside

    backend = backend_for(recipe)
    final = artifacts.artifact_path(job.out_dir, recipe.name, backend.suffix)
    artifacts.remove_artifact(final)
    tmp = temp_path_beside(final)
    job.temps.append(tmp)
    input_size = job.info.data_config.input_size
    job.log(f"{recipe.name}: lowering the student ({recipe.lowering.get('backend', recipe.kind)})")
    built = build_mobile(recipe, job.model, tmp, input_size, job.calibration, job.judge, job.log)
    program = backend.load(tmp)
    test_logits = program.logits(job.test.images)  # parity and the int8 side-by-side read the same run
    check = job.check_parity(recipe, job.reference, test_logits)
    if job.measure_speed:
        job.latencies[recipe.name] = parity.latency_ms(tmp, input_size, run=program.run)
    os.replace(tmp, final)
    job.temps.remove(tmp)
    accuracy = built.int8
    if accuracy is not None:
        job.judge.finish(accuracy, final, test_logits, recipe.name, None)
        record = accuracy.record
        record.latency_ms = job.latencies.get(recipe.name)
        if built.plain_test_logits is not None:  # modules went back to float: plain int8's own test top-1
            record.plain_test_top1 = top1_of(built.plain_test_logits, job.test.labels)
            record.plain_latency_ms = None  # plain int8 was judged as a graph, never lowered
    sidecar = artifacts.sidecar(
        recipe,
        job.info,
        check,
        backend.runtime,
        opset=None,
        dynamic_batch=False,
        delegation=built.lowered.delegation,
    )
    if accuracy is not None:
        sidecar.quantization = {
            **built.quantizer,
            "calibration": {
                "samples": int(len(job.calibration.images)),
                "data": job.calibration.source,
            },
            "io": built.lowered.io,
            "accuracy": accuracy.record.to_dict(),
        }
    sidecar.write_for(final)
    entry = artifacts.entry(recipe, final, check)
    entry.accuracy = accuracy.record if accuracy is not None else None
    job.artifacts.append(entry)
    job.warn_parity(recipe, check)
