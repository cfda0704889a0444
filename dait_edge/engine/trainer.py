"""One training loop for every method and both stages.

AdamW with step decay, the alpha schedule, evaluation each epoch, `best` / `last` weights,
metrics as JSON lines, a progress bar with the loss terms, mixed precision on CUDA (bf16 where
supported), channels_last on CUDA, DDP when launched by torchrun, and resumable checkpoints that
hold the optimiser, scheduler, RNG and epoch.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from dait_edge.engine.checkpoint import (
    TrainingState,
    load_training_state,
    rng_state,
    save_training_state,
    save_weights,
    set_rng_state,
)
from dait_edge.engine.distributed import DistInfo, all_reduce_sum, barrier, broadcast_buffers
from dait_edge.engine.evaluate import evaluate
from dait_edge.errors import UserError
from dait_edge.losses.schedule import alpha_at, default_alpha_rate
from dait_edge.methods.base import Distiller
from dait_edge.records import EpochMetrics, append_metrics, read_metrics, write_metrics


@dataclass
class StagePlan:
    """The recipe of one training stage."""

    stage: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    lr_step: int
    lr_gamma: float
    alpha_rate: float | None
    alpha_bias: float
    seed: int
    workers: int = 0
    eval_batch_size: int = 64

    @property
    def rate(self) -> float:
        return self.alpha_rate if self.alpha_rate is not None else default_alpha_rate(self.epochs)


@dataclass
class FitResult:
    """What one stage's training ended with: the last epoch's metrics, the best top-1, the time."""

    last: EpochMetrics | None  # None when no epoch has finished
    best_top1: float
    best_epoch: int
    seconds: float


@dataclass
class StageFiles:
    """Where one stage writes: resume state, the trained model's last and best weights."""

    state: Path
    last_weights: Path
    best_weights: Path


def autocast_dtype_for(device: torch.device) -> torch.dtype | None:
    if device.type != "cuda":
        return None  # CPU training stays in fp32: bf16 autocast there is slower on most CPUs
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _rewrite_metrics(metrics_path: Path, stage: int, start_epoch: int) -> None:
    """On resume, drop this stage's lines from epochs that will run again."""
    if not metrics_path.is_file():
        return
    kept = [m for m in read_metrics(metrics_path) if not (m.stage == stage and m.epoch >= start_epoch)]
    write_metrics(metrics_path, kept)


def fit(
    method: Distiller,
    train_views,
    test_set,
    plan: StagePlan,
    files: StageFiles,
    *,
    device: torch.device,
    metrics_path: Path,
    dist_info: DistInfo = DistInfo(),
    resume: bool = False,
    progress: bool = True,
    weights_metadata: dict[str, str] | None = None,
    stop_after_epoch: int | None = None,
) -> FitResult:
    """Train `method` for `plan.epochs`; returns the last epoch's metrics, the best top-1 and the time.

    `stop_after_epoch` ends the call after that (0-based) epoch as if the process were killed
    there; the tests use it to check that `resume` continues exactly.
    """
    from tqdm import tqdm

    method.to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        method.to(memory_format=torch.channels_last)
    amp_dtype = autocast_dtype_for(device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    trainable = [p for p in method.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=plan.lr, weight_decay=plan.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=plan.lr_step, gamma=plan.lr_gamma)

    start_epoch, best_top1, best_epoch, elapsed = 0, -1.0, -1, 0.0
    if resume and files.state.is_file():
        state = load_training_state(files.state)
        missing, unexpected = method.load_state_dict(state.method, strict=False)
        expected_missing = set(method.state_dict()) - set(method.trainable_state_dict())
        if unexpected or set(missing) - expected_missing:
            raise UserError(
                f"{files.state} does not match this run's models (method or student changed?); start a new run"
                " in another run directory, or start this one over without resuming.",
                setting=("out", "resume"),
            )
        optimiser.load_state_dict(state.optimiser)
        scheduler.load_state_dict(state.scheduler)
        scaler.load_state_dict(state.scaler)
        set_rng_state(state.rng)
        start_epoch, best_top1, best_epoch = state.epoch + 1, state.best_top1, state.best_epoch
        elapsed = state.elapsed
    if dist_info.is_main:
        _rewrite_metrics(metrics_path, plan.stage, start_epoch)

    model = method
    if dist_info.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        model = DistributedDataParallel(method, device_ids=device_ids)

    if plan.batch_size % dist_info.world_size:
        raise UserError(
            f"batch size {plan.batch_size} must be divisible by the number of processes ({dist_info.world_size}).",
            setting="batch_size",
        )
    per_rank_batch = plan.batch_size // dist_info.world_size
    sampler = DistributedSampler(
        train_views, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=True, seed=plan.seed
    )
    # Drop a ragged last batch only when there is more than one batch: BatchNorm cannot train on one image.
    loader = DataLoader(
        train_views,
        batch_size=per_rank_batch,
        sampler=sampler,
        num_workers=plan.workers,
        drop_last=len(sampler) > per_rank_batch,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    if len(loader) == 0:
        raise UserError(
            "the training split is empty; check the data root and the labelled fraction.", setting="data_root"
        )

    last_metrics: EpochMetrics | None = None
    for epoch in range(start_epoch, plan.epochs):
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        train_views.set_epoch(epoch)
        alpha = alpha_at(epoch, plan.rate, plan.alpha_bias)
        method.train()
        sums: dict[str, float] = defaultdict(float)
        seen = 0
        bar = tqdm(
            loader,
            desc=f"stage {plan.stage} epoch {epoch + 1}/{plan.epochs}",
            disable=not (progress and dist_info.is_main),
            unit="batch",
            leave=False,
        )
        for images, labels, _ in bar:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out = model(images, labels, alpha)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(out["loss"]).backward()
            scaler.step(optimiser)
            scaler.update()
            batch = labels.numel()
            seen += batch
            for key, value in out.items():
                if key.startswith("loss"):
                    sums[key] += value.detach().float().item() * batch
            bar.set_postfix(
                {k.removeprefix("loss_") or "loss": f"{v / seen:.3f}" for k, v in sums.items()}
                | {"alpha": f"{alpha:.3f}"}
            )
        bar.close()
        scheduler.step()

        keys = sorted(sums)
        totals = all_reduce_sum([sums[k] for k in keys] + [float(seen)], dist_info, device)
        train_losses = {k: totals[i] / max(totals[-1], 1.0) for i, k in enumerate(keys)}
        broadcast_buffers(method.student, dist_info)  # every rank scores the model rank 0 saves
        scores = evaluate(
            method.student,
            test_set,
            device=device,
            batch_size=plan.eval_batch_size,
            workers=plan.workers,
            dist_info=dist_info,
            autocast_dtype=amp_dtype,
            channels_last=channels_last,
        )
        elapsed += time.perf_counter() - started
        improved = scores["top1"] > best_top1
        if improved:
            best_top1, best_epoch = scores["top1"], epoch
        last_metrics = EpochMetrics(
            stage=plan.stage,
            epoch=epoch,
            alpha=alpha,
            lr=optimiser.param_groups[0]["lr"],
            losses=train_losses,
            top1=scores["top1"],
            top5=scores["top5"],
            seconds=round(elapsed, 3),
        )
        if dist_info.is_main:
            metadata = {**(weights_metadata or {}), "epoch": str(epoch), "top1": f"{scores['top1']:.4f}"}
            save_weights(files.last_weights, method.student, metadata)
            if improved:
                save_weights(files.best_weights, method.student, metadata)
            append_metrics(metrics_path, last_metrics)
            # written last: its epoch is the last one whose outputs are all on disk
            save_training_state(
                files.state,
                TrainingState(
                    method={k: v.detach().cpu() for k, v in method.trainable_state_dict().items()},
                    optimiser=optimiser.state_dict(),
                    scheduler=scheduler.state_dict(),
                    scaler=scaler.state_dict(),
                    rng=rng_state(),
                    epoch=epoch,
                    best_top1=best_top1,
                    best_epoch=best_epoch,
                    elapsed=elapsed,
                ),
            )
            if progress:
                terms = "  ".join(f"{k} {v:.4f}" for k, v in train_losses.items())
                tqdm.write(
                    f"stage {plan.stage} epoch {epoch + 1}/{plan.epochs}  alpha {alpha:.3f}  {terms}"
                    f"  top1 {scores['top1']:.2f}  top5 {scores['top5']:.2f}"
                )
        barrier(dist_info)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break

    if last_metrics is None and files.state.is_file():  # resumed a stage that had already finished
        last_metrics = next((m for m in reversed(read_metrics(metrics_path)) if m.stage == plan.stage), None)
    return FitResult(last_metrics, best_top1, best_epoch, round(elapsed, 3))
