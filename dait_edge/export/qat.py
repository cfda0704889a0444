"""Quantisation-aware training (QAT) of a run's student, distilled from its own fp32 weights, exported as one
signed int8 Q/DQ ONNX file (zero-point 0, per-channel weights): what TensorRT's explicit quantisation reads
and ONNX Runtime runs on the CPU.

NVIDIA Model Optimizer (`modelopt.torch.quantization`, its int8 fake quantisation runs on the CPU in plain
PyTorch) inserts the quantisers: INT8_DEFAULT_CFG (per-channel weights, per-tensor activations, max
calibration), with every Linear layer (the classifier heads: the students have no other) in float, as the
post-training int8 keeps its classifier. The quantisers are calibrated on training images, then the student
is fine-tuned for a few epochs: CE on the labels + tau^2 KL to the fp32 student's logits (constant weights
1 and 1, the run's temperature), AdamW at a small rate, BatchNorm statistics frozen (eval mode: a few small
batches would move them), a random horizontal flip per image. The exporter is the TorchScript one, through
Model Optimizer's QuantizeLinear / DequantizeLinear symbolics.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dait_edge.errors import QATDiverged, UserError
from dait_edge.losses import kd_loss, labelled_ce

QAT_TEACHERS = ("student", "teacher")  # the run's fp32 student, or its stage-1 intermediate teacher
QAT_OPSET = 17  # per-channel QuantizeLinear / DequantizeLinear need 13; the recipes' 17 or 18 both work


@dataclass
class QATSettings:
    """How one QAT run fine-tunes (the recipe's [qat] table, overridden by --qat-epochs / --qat-lr)."""

    epochs: int = 5
    lr: float = 1e-4
    batch_size: int = 32
    temperature: float = 2.0  # the run's --temperature
    teacher: str = "student"  # the fp32 student the run trained
    seed: int = 0

    def check(self, where: str) -> None:
        if self.epochs < 0:
            raise UserError(
                f"{where}: QAT epochs must be 0 or more (got {self.epochs}).", setting="qat_epochs"
            )
        if self.lr <= 0 or self.batch_size < 1 or self.temperature <= 0:
            raise UserError(
                f"{where}: QAT needs a positive rate, batch size and temperature (got lr {self.lr}, batch"
                f" {self.batch_size}, temperature {self.temperature}).",
                setting="qat_lr",
            )
        if self.teacher not in QAT_TEACHERS:
            raise UserError(
                f"{where}: QAT teacher {self.teacher!r} is not one of {', '.join(QAT_TEACHERS)} (the run's fp32"
                " student, or its intermediate teacher).",
                setting="qat_teacher",
            )


def run_teacher(info, student: nn.Module) -> nn.Module:
    """The run's intermediate teacher (stage 1) as QAT's teacher, fed the student's images in its own
    normalisation; a run without one is a one-line error."""
    from dait_edge.methods.base import MethodContext
    from dait_edge.methods.teacher_input import TeacherInput
    from dait_edge.models import build_model

    summary = info.summary
    path = summary.checkpoint("teacher", info.run_dir) if summary.checkpoints.teacher else None
    if path is None or not path.is_file():
        raise UserError(
            f"run {info.run_dir} has no intermediate teacher to teach QAT ({summary.method} trains none);"
            " use --qat-teacher student.",
            setting="qat_teacher",
        )
    teacher = build_model(
        summary.teacher, summary.num_classes, pretrained=False, weights=path, role="teacher"
    )
    config = student.data_config
    context = MethodContext(summary.num_classes, config.mean, config.std)
    return nn.Sequential(TeacherInput(context, teacher), teacher).eval()


def require_modelopt():
    """Model Optimizer's quantisation module, or a one-line error saying how to install it."""
    try:
        import modelopt.torch.quantization as mtq
    except ImportError as err:
        raise UserError(
            f"QAT needs NVIDIA Model Optimizer ({err}); install the full dait-edge (pip install"
            " 'dait-edge[full]', which brings nvidia-modelopt)."
        ) from None
    return mtq


def float_layers(model: nn.Module) -> list[str]:
    """The Linear layers (the classifier heads), kept in float like post-training int8's classifier."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def _batches(images: np.ndarray, size: int):
    for start in range(0, len(images), size):
        yield torch.from_numpy(np.ascontiguousarray(images[start : start + size]))


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm2d into the Conv2d just before it in module order (timm's and torchvision's
    students declare each conv before its norm) with as many channels, in place, with torch's
    `fuse_conv_bn_weights`; the norm becomes its activation (timm's BatchNormAct2d) or an identity. QAT
    keeps the statistics frozen, so this is the same function, and the exported graph has no
    BatchNormalization between a quantised weight and its conv. Returns how many were folded."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    folded, conv = 0, None
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Conv2d):
            conv = module
            continue
        if not isinstance(module, nn.BatchNorm2d) or conv is None or module.running_var is None:
            continue
        if conv.out_channels != module.num_features:
            conv = None
            continue
        weight, bias = fuse_conv_bn_weights(
            conv.weight,
            conv.bias,
            module.running_mean,
            module.running_var,
            module.eps,
            module.weight,
            module.bias,
        )
        conv.weight, conv.bias = weight, bias
        act = getattr(module, "act", None)  # timm's BatchNormAct2d: norm, dropout, activation
        replacement = nn.Sequential(module.drop, act) if act is not None else nn.Identity()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, replacement)
        folded, conv = folded + 1, None
    return folded


def _folded(student: nn.Module, sample: torch.Tensor) -> tuple[nn.Module, int]:
    """A copy of `student` with its norms folded, when that leaves its logits unchanged on `sample`; else an
    unfolded copy (a model whose module order does not follow its data flow)."""
    model = copy.deepcopy(student).eval()
    folded = copy.deepcopy(model)
    count = fold_batchnorm(folded)
    with torch.no_grad():
        same = torch.allclose(model(sample), folded(sample), rtol=1e-3, atol=1e-4)
    return (folded, count) if same and count else (model, 0)


def fake_quantised(student: nn.Module, calibration: np.ndarray, batch_size: int = 32) -> nn.Module:
    """A copy of `student`, its norms folded, with int8 fake quantisers calibrated (max) on `calibration`
    (N, C, H, W)."""
    mtq = require_modelopt()
    if len(calibration) == 0:
        raise UserError("QAT needs calibration images and got none; calibrate on at least one image.")
    model, _ = _folded(student, next(_batches(calibration, batch_size)))
    config = copy.deepcopy(mtq.INT8_DEFAULT_CFG)
    config["quant_cfg"] += [{"quantizer_name": f"{name}.*", "enable": False} for name in float_layers(model)]

    def calibrate(m: nn.Module) -> None:
        with torch.no_grad():
            for batch in _batches(calibration, batch_size):
                m(batch)

    # its "Inserted N quantizers" goes to stdout, where `--json` prints the summary
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
        mtq.quantize(model, config, forward_loop=calibrate)
    return model.eval()


def quantiser_count(model: nn.Module) -> tuple[int, int]:
    """(enabled, all) fake quantisers in `model`."""
    from modelopt.torch.quantization.nn import TensorQuantizer

    quantisers = [m for m in model.modules() if isinstance(m, TensorQuantizer)]
    return sum(bool(q.is_enabled) for q in quantisers), len(quantisers)


def state_key(settings: QATSettings, student_sha256: str, *arrays: np.ndarray) -> str:
    """What a QAT's outcome depends on: its settings, the student's weights, and the calibration and
    fine-tuning images (their bytes). A saved state with another key is stale and never resumed."""
    import hashlib

    from dait_edge.utils.io import sha256_json

    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    fields = ("epochs", "lr", "batch_size", "temperature", "teacher", "seed")
    return sha256_json(
        {
            "settings": {k: getattr(settings, k) for k in fields},
            "student": student_sha256,
            "images": digest.hexdigest(),
        }
    )


@dataclass
class QATResume:
    """Where a QAT saves its state after each epoch (atomically), and the key that state must carry to be
    resumed: a killed or stopped export continues from its last finished epoch."""

    path: Path
    key: str
    log: Callable[[str], None] = print

    def load(self) -> dict | None:
        """The saved state when it is this QAT's, else None (a stale or damaged one is set aside)."""
        from dait_edge.utils.safe_load import load_data_only

        if not self.path.is_file():
            return None
        try:
            state = load_data_only(self.path, what="QAT state", fix="it is started again")
        except UserError as err:
            self.log(f"QAT: not resuming ({err})")
            return None
        if not isinstance(state, dict) or state.get("key") != self.key:
            self.log(f"QAT: {self.path.name} is from other settings, images or weights; starting afresh")
            return None
        return state

    def fits(self, state: dict, model: nn.Module) -> bool:
        """Do the saved weights fit `model` tensor by tensor (another Model Optimizer version may lay its
        quantisers out otherwise)? Said and started afresh when not: load_state_dict would fail half-way."""
        saved, own = state.get("model") or {}, model.state_dict()
        same = saved.keys() == own.keys() and all(saved[k].shape == own[k].shape for k in own)
        if not same:
            self.log(f"QAT: {self.path.name} does not fit this model's quantisers; starting afresh")
        return same

    def save(self, state: dict) -> None:
        from dait_edge.utils.io import atomic_path

        with atomic_path(self.path) as tmp:
            torch.save({**state, "key": self.key}, tmp)


def fine_tune(
    model: nn.Module,
    teacher: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    settings: QATSettings,
    progress: bool = True,
    resume: QATResume | None = None,
) -> list[dict]:
    """QAT: `settings.epochs` passes over (images, labels), CE + tau^2 KL to `teacher`'s logits, AdamW on
    the student's weights (the quantisers' ranges stay as calibrated), BatchNorm frozen. Returns each
    epoch's mean losses; a NaN or infinite loss stops it naming the epoch. With `resume`, each finished
    epoch's weights, optimiser and shuffling state are saved, and a saved state is continued from: the
    epochs after it are the ones an uninterrupted QAT would have run."""
    from tqdm import tqdm

    from dait_edge.utils.faults import fault_point
    from dait_edge.utils.signals import check_stop

    if settings.epochs == 0 or len(images) == 0:
        return []
    teacher = teacher.eval()
    params = [p for name, p in model.named_parameters() if p.requires_grad and "quantizer" not in name]
    optimiser = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(settings.seed)
    pixels, targets = torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels).long()
    tau, history = settings.temperature, []
    saved = resume.load() if resume is not None else None
    if saved is not None and resume.fits(saved, model):
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        generator.set_state(saved["generator"])
        history = list(saved["history"])
        resume.log(f"QAT: resuming after epoch {len(history)}/{settings.epochs} ({resume.path.name})")
    model.eval()  # BatchNorm statistics and dropout frozen; the fake quantisers act alike in both modes
    for epoch in range(len(history), settings.epochs):
        order = torch.randperm(len(pixels), generator=generator)
        sums, seen = {"loss": 0.0, "loss_ce": 0.0, "loss_kd": 0.0}, 0
        steps = range(0, len(order), settings.batch_size)
        bar = tqdm(steps, desc=f"QAT epoch {epoch + 1}/{settings.epochs}", disable=not progress, leave=False)
        for start in bar:
            index = order[start : start + settings.batch_size]
            batch, target = pixels[index], targets[index]
            flip = torch.rand(len(index), generator=generator) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
            with torch.no_grad():
                taught = teacher(batch)
            logits = model(batch)
            loss_ce = labelled_ce(logits, target)  # -1: an image the run trained without its label (KD only)
            loss_kd = kd_loss(logits, taught, tau=tau)
            loss = loss_ce + loss_kd
            if fault_point("qat-step") == "nan":  # the reliability tests' planted divergence
                loss = loss * float("nan")
            if not torch.isfinite(loss):
                raise QATDiverged(
                    f"QAT epoch {epoch + 1}: the loss became NaN or infinite; lower --qat-lr.",
                    setting="qat_lr",
                )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            for key, value in (("loss", loss), ("loss_ce", loss_ce), ("loss_kd", loss_kd)):
                sums[key] += value.item() * len(index)
            seen += len(index)
        bar.close()
        history.append({k: round(v / max(seen, 1), 6) for k, v in sums.items()})
        if resume is not None:
            state = {"model": model.state_dict(), "optimiser": optimiser.state_dict()}
            resume.save({**state, "generator": generator.get_state(), "history": history})
            fault_point("qat-epoch-end")
            check_stop(
                f"QAT stopped after epoch {epoch + 1}/{settings.epochs}",
                f"its state is in {resume.path}; run the same export again to continue",
            )
    return history


def export_qdq(
    model: nn.Module, path, input_size, dynamic_batch: bool = True, opset: int = QAT_OPSET
) -> None:
    """The fake-quantised model as Q/DQ ONNX (signed int8, zero-point 0) at `path`, through the export every
    student takes (TorchScript exporter, onnx.checker); Q/DQ per channel needs opset 13 or newer."""
    from dait_edge.export.onnx_export import export_onnx

    export_onnx(model, path, input_size, opset=max(opset, 13), dynamic_batch=dynamic_batch)


def export_float(
    model: nn.Module, path, input_size, dynamic_batch: bool = True, opset: int = QAT_OPSET
) -> None:
    """The fine-tuned weights as a float graph (its quantisers off), for ONNX Runtime's QOperator quantiser:
    on CPUs where u8s8 QOperator kernels run faster than a Q/DQ graph."""
    mtq = require_modelopt()
    plain = copy.deepcopy(model)
    mtq.disable_quantizer(plain, "*")
    export_qdq(plain, path, input_size, dynamic_batch, opset)
