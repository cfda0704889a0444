"""One training loop for every method and both stages.

The recipe's optimiser (AdamW or SGD) with a per-step learning-rate schedule (warm-up, then step decay, a
cosine or a linear decay: engine/schedule.py),
the alpha schedule, evaluation each epoch (validation images, when the run holds some, and the test split;
a method's inference settings fitted on the validation images first),
`last` weights and `best` weights (best on validation: never chosen by the test split), metrics as JSON lines, a progress bar with the loss terms, mixed precision on CUDA (bf16 where the GPU has it
natively, else fp16 with a GradScaler), channels_last on CUDA, DDP when launched by torchrun, and
resumable checkpoints that hold the optimiser, scheduler, every rank's RNG and the epoch.

Read `fit` top to bottom: `_StageTraining` sets up (optimiser, resume, DDP, loaders), `train_epoch` runs
the steps, `end_epoch` evaluates and writes the epoch's files.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from dait_edge.engine.checkpoint import (
    TrainingState,
    load_training_state,
    rng_state,
    save_training_state,
    save_weights,
    set_rng_state,
)
from dait_edge.engine.distributed import (
    DistInfo,
    all_gather_object,
    all_reduce_sum,
    broadcast_buffers,
    check_stop_together,
    on_main,
    wrap_ddp,
)
from dait_edge.engine.evaluate import eval_loader, evaluate
from dait_edge.engine.loaders import keyed_loader, make_loader, train_loader
from dait_edge.engine.plan import FitResult, StageFiles, StagePlan
from dait_edge.engine.precision import autocast_dtype_for, configure_cuda
from dait_edge.engine.schedule import LRSchedule, make_optimiser
from dait_edge.errors import UserError
from dait_edge.losses.schedule import alpha_at
from dait_edge.methods.base import Distiller
from dait_edge.methods.batch import Step
from dait_edge.records import EpochMetrics, append_metrics, read_metrics, write_metrics
from dait_edge.utils.faults import fault_point
from dait_edge.utils.signals import check_stop, stop_requested


class TrainingDiverged(UserError):
    """A loss term (or the VLM embedding it is built from) became NaN or infinite."""


def _rewrite_metrics(metrics_path: Path, stage: int, start_epoch: int) -> None:
    """On resume, drop this stage's lines from epochs that will run again."""
    if not metrics_path.is_file():
        return
    kept = [m for m in read_metrics(metrics_path) if not (m.stage == stage and m.epoch >= start_epoch)]
    write_metrics(metrics_path, kept)


class _StageTraining:
    """The state of one stage's training: models, optimiser, loaders and the best score so far."""

    def __init__(
        self,
        method,
        train_views,
        test_set,
        plan,
        files,
        *,
        device,
        metrics_path,
        dist_info,
        progress,
        metadata,
        val_set=None,
    ):
        self.method, self.plan, self.files = method, plan, files
        self.device, self.metrics_path, self.dist, self.progress = device, metrics_path, dist_info, progress
        self.weights_metadata = metadata  # written into every weights file of the stage
        configure_cuda(device)
        self.channels_last = device.type == "cuda"
        method.to(device)
        if self.channels_last:
            method.to(memory_format=torch.channels_last)
        self.amp_dtype = autocast_dtype_for(device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.model = wrap_ddp(method, device, plan.sync_bn) if dist_info.enabled else method
        trainable = [p for p in method.parameters() if p.requires_grad]
        self.optimiser = make_optimiser(plan.optimizer, trainable, plan.lr, plan.weight_decay)
        self.loader = train_loader(method, train_views, plan, dist_info, device)
        self.scheduler = LRSchedule(
            kind=plan.lr_schedule,
            epochs=plan.epochs,
            steps_per_epoch=len(self.loader),
            step_epochs=plan.lr_step,
            gamma=plan.lr_gamma,
            warmup_epochs=plan.warmup_epochs,
        ).scheduler(self.optimiser)
        # best_top1 / best_epoch: the best epoch on validation so far (its validation top-1); best_test its test
        self.start_epoch, self.best_top1, self.best_epoch, self.elapsed = 0, -1.0, -1, 0.0
        self.best_test = -1.0

        def loader(dataset):
            return eval_loader(
                dataset,
                batch_size=plan.eval_batch_size,
                workers=plan.workers,
                dist_info=dist_info,
                device=device,
            )

        self.test_loader = loader(test_set)
        self.val_loader = loader(val_set) if val_set is not None and len(val_set) else None
        # A method with inference settings (DHO's (a, b)) fits them on the validation images at every epoch,
        # before the epoch is scored: the epoch is then chosen by what it predicts with them. Rank 0 reads
        # all validation images and chooses; its settings (buffers) reach every rank before scoring.
        self.calibration_loader = (
            make_loader(val_set, batch_size=plan.eval_batch_size, seed=None, device=device)
            if self.val_loader is not None
            and type(method).calibrate is not Distiller.calibrate
            and dist_info.is_main
            else None
        )

    # ----------------------------------------------------------------------------- set-up

    def resume(self) -> None:
        """Continue from the state file: weights, optimiser, scheduler, scaler, this rank's RNG, epoch."""
        state = load_training_state(self.files.state)
        method = self.method
        missing, unexpected = method.load_state_dict(state.method, strict=False)
        expected_missing = set(method.state_dict()) - set(method.trainable_state_dict())
        if unexpected or set(missing) - expected_missing:
            raise UserError(
                f"{self.files.state} does not match this run's models (method or student changed?); start a new"
                " run in another run directory, or start this one over without resuming.",
                setting=("out", "resume"),
            )
        self.optimiser.load_state_dict(state.optimiser)
        self.scheduler.load_state_dict(state.scheduler)
        if state.scaler and self.scaler.is_enabled():
            # bf16 and CPU training save an empty scaler state; an fp16 scaler starts afresh from it
            self.scaler.load_state_dict(state.scaler)
        rngs = state.rng if isinstance(state.rng, list) else [state.rng]
        if len(rngs) == self.dist.world_size:
            set_rng_state(rngs[self.dist.rank], self.device)
        else:  # another number of processes: the old ranks' generators do not map onto the new ones
            set_rng_state(rngs[0], self.device)
            torch.manual_seed(torch.initial_seed() + self.dist.rank)
        self.start_epoch = state.epoch + 1
        self.best_top1, self.best_epoch, self.elapsed = state.best_top1, state.best_epoch, state.elapsed
        self.best_test = state.best_test_top1

    # ----------------------------------------------------------------------------- one epoch

    def train_epoch(self, epoch: int, alpha: float) -> dict[str, float]:
        """One pass over the training views; returns the mean of each loss term over all ranks.

        Loss terms are summed on the device and read every `log_every` steps (each read waits for the
        device); a NaN or infinite term stops the run naming its epoch, step and term."""
        from tqdm import tqdm

        plan = self.plan
        paired = hasattr(self.loader.batch_sampler, "set_epoch")  # DHO's batches: the batch sampler draws
        (self.loader.batch_sampler if paired else self.loader.sampler).set_epoch(epoch)
        if type(self.method).before_epoch is not Distiller.before_epoch:
            with torch.random.fork_rng(devices=[]):  # the epoch's draws stay those of a run without it
                views = self.loader.dataset
                self.method.before_epoch(views, epoch, lambda keys: keyed_loader(views, keys, plan, self.device))
        self.method.train()
        sums: dict[str, torch.Tensor] = {}
        seen = torch.zeros((), dtype=torch.float64, device=self.device)
        first_bad = torch.full((), -1, dtype=torch.int64, device=self.device)
        bad_terms: torch.Tensor | None = None
        bar = tqdm(
            self.loader,
            desc=f"stage {plan.stage} epoch {epoch + 1}/{plan.epochs}",
            disable=not (self.progress and self.dist.is_main),
            unit="batch",
            leave=False,
        )
        for index, batch in enumerate(bar):
            batch = batch.to(self.device, self.channels_last)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                out = self.model(batch, Step(epoch=epoch, step=index, alpha=alpha))
            self.optimiser.zero_grad(set_to_none=True)
            self.scaler.scale(out["loss"]).backward()
            self.scaler.step(self.optimiser)
            self.scaler.update()
            self.scheduler.step()  # per step: warm-up and cosine move within an epoch

            keys = sorted(k for k in out if k.startswith("loss"))
            terms = torch.stack([out[k].detach().float() for k in keys])
            if fault_point("train-step") == "nan":  # tests: a diverged term, as a too-high lr makes one
                terms[-1] = float("nan")
            size = len(batch)
            for key, value in zip(keys, terms, strict=True):
                sums[key] = sums.get(key, 0.0) + value.double() * size
            seen += size
            finite = torch.isfinite(terms)
            newly_bad = (first_bad < 0) & ~finite.all()
            first_bad = torch.where(newly_bad, torch.full_like(first_bad, index), first_bad)
            bad_terms = ~finite if bad_terms is None else torch.where(newly_bad, ~finite, bad_terms)
            synced = (index + 1) % plan.log_every == 0 or index + 1 == len(self.loader)
            stop_anywhere = False
            if synced:
                stop_anywhere = self._check_finite(epoch, first_bad, bad_terms, keys)
                if bar.disable is False:
                    total = seen.item()
                    bar.set_postfix(
                        {
                            k.removeprefix("loss_") or "loss": f"{v.item() / total:.3f}"
                            for k, v in sums.items()
                        }
                        | {"alpha": f"{alpha:.3f}"}
                    )
            if synced or not self.dist.enabled:  # DDP ranks stop together, where they compare notes
                where = f"stage {plan.stage} stopped in epoch {epoch + 1}, step {index + 1}"
                check_stop(where, self.saved(), elsewhere=stop_anywhere)
        bar.close()
        keys = sorted(sums)
        totals = all_reduce_sum([sums[k].item() for k in keys] + [seen.item()], self.dist, self.device)
        return {k: totals[i] / max(totals[-1], 1.0) for i, k in enumerate(keys)}

    def saved(self) -> str:
        """What a stop now leaves for --resume, in words."""
        if self.files.state.is_file():
            return f"the last completed epoch is saved in {self.files.state.parent}"
        return "no epoch of this stage had completed, so resuming starts it again"

    def _check_finite(self, epoch: int, first_bad: torch.Tensor, bad_terms, keys: list[str]) -> bool:
        """Raise TrainingDiverged if a loss term went NaN or infinite on any rank; returns whether any rank
        was asked to stop by a signal (under DDP both travel in one all-reduce, so every rank acts alike)."""
        stop_anywhere = stop_requested()
        # every rank stops together (one rank raising alone would leave the others waiting)
        if self.dist.enabled:
            import torch.distributed as dist

            stop = torch.full((1,), float(stop_anywhere), dtype=torch.float64, device=self.device)
            flags = torch.cat([first_bad.view(1).double(), bad_terms.double(), stop])
            flags[0] = torch.where(flags[0] < 0, torch.full_like(flags[0], float("inf")), flags[0])
            dist.all_reduce(flags[:1], op=dist.ReduceOp.MIN)
            dist.all_reduce(flags[1:], op=dist.ReduceOp.MAX)
            first_bad = torch.where(torch.isinf(flags[0]), torch.full_like(flags[0], -1.0), flags[0])
            bad_terms, stop_anywhere = flags[1:-1] > 0, bool(flags[-1] > 0)
        step = int(first_bad.item())
        if step < 0:
            return stop_anywhere
        names = [k for k, bad in zip(keys, bad_terms.tolist(), strict=True) if bad] or ["loss"]
        raise TrainingDiverged(
            f"stage {self.plan.stage} epoch {epoch + 1} step {step + 1}: {', '.join(names)} became NaN or"
            " infinite; lower --lr, check the VLM weights and the images, or resume from the last epoch"
            " (its files are intact).",
            setting="lr",
        )

    # ----------------------------------------------------------------------------- end of an epoch

    def end_epoch(self, epoch: int, alpha: float, lr: float, losses: dict[str, float], started: float):
        """Evaluate, then write last / best weights, the metrics line and (last) the resume state."""
        method, plan, files = self.method, self.plan, self.files
        if self.calibration_loader is not None:  # rank 0 (above)
            with torch.random.fork_rng(devices=[]):  # training draws stay those of a run without it
                method.calibrate(self.calibration_loader, self.device)
        broadcast_buffers(method.student, self.dist)  # every rank scores the model rank 0 saves

        def score(loader):
            return evaluate(
                method.student,
                loader,
                device=self.device,
                dist_info=self.dist,
                autocast_dtype=self.amp_dtype,
                channels_last=self.channels_last,
            )

        scores = score(self.test_loader)
        val = score(self.val_loader) if self.val_loader is not None else None
        self.elapsed += time.perf_counter() - started
        # the best epoch is chosen on validation alone (the first of equals); no validation, no best epoch
        improved = val is not None and val["top1"] > self.best_top1
        if improved:
            self.best_top1, self.best_epoch, self.best_test = val["top1"], epoch, scores["top1"]
        metrics = EpochMetrics(
            stage=plan.stage,
            epoch=epoch,
            alpha=alpha,
            lr=lr,
            losses=losses,
            top1=scores["top1"],
            top5=scores["top5"],
            seconds=round(self.elapsed, 3),
            val_top1=None if val is None else val["top1"],
        )
        rngs = all_gather_object(rng_state(self.device), self.dist)  # every rank's, restored per rank

        def write() -> None:
            """Rank 0 writes; its failure (a full disk) reaches every rank through on_main, so none waits."""
            metadata = {**self.weights_metadata, "epoch": str(epoch), "top1": f"{scores['top1']:.4f}"}
            save_weights(files.last_weights, method.student, metadata)
            if improved:
                save_weights(files.best_weights, method.student, metadata)
            append_metrics(self.metrics_path, metrics)
            # written last: its epoch is the last one whose outputs are all on disk
            save_training_state(
                files.state,
                TrainingState(
                    method={k: v.detach().cpu() for k, v in method.trainable_state_dict().items()},
                    optimiser=self.optimiser.state_dict(),
                    scheduler=self.scheduler.state_dict(),
                    scaler=self.scaler.state_dict(),
                    rng=rngs,
                    epoch=epoch,
                    best_top1=self.best_top1,
                    best_epoch=self.best_epoch,
                    elapsed=self.elapsed,
                    best_test_top1=self.best_test,
                ),
            )
            if self.progress:
                from tqdm import tqdm

                terms = "  ".join(f"{k} {v:.4f}" for k, v in losses.items())
                on_val = "" if val is None else f"  val top1 {val['top1']:.2f}"
                tqdm.write(
                    f"stage {plan.stage} epoch {epoch + 1}/{plan.epochs}  lr {lr:.2e}  alpha {alpha:.3f}  {terms}"
                    f"{on_val}  test top1 {scores['top1']:.2f}  top5 {scores['top5']:.2f}"
                )

        on_main(self.dist, write)  # every rank waits for the writes, as a barrier would
        return metrics


def _out_of_memory(plan: StagePlan, epoch: int, saved: str) -> UserError:
    smaller = max(1, plan.batch_size // 2)
    return UserError(
        f"the GPU ran out of memory in stage {plan.stage}, epoch {epoch + 1}, at batch size {plan.batch_size}"
        f" ({saved}); start again in a new run directory with batch size {smaller}, or use a GPU with more"
        " memory.",
        setting="batch_size",
    )


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
    val_set=None,
) -> FitResult:
    """Train `method` for `plan.epochs`; returns the last epoch's metrics, the best top-1 and the time.

    `train_views` yields dict items (`data.views.TrainViews`) and is indexed with (item, epoch) pairs.
    `val_set` (validation images held out of training, or None) chooses the best epoch; `test_set` is
    scored every epoch and reported, never used to choose.
    `stop_after_epoch` ends the call after that (0-based) epoch as if the process were killed there; the
    tests use it to check that `resume` continues exactly.
    """
    training = _StageTraining(
        method,
        train_views,
        test_set,
        plan,
        files,
        device=device,
        metrics_path=metrics_path,
        dist_info=dist_info,
        progress=progress,
        metadata=dict(weights_metadata or {}),
        val_set=val_set,
    )
    if resume and files.state.is_file():
        training.resume()
    if dist_info.is_main:
        _rewrite_metrics(metrics_path, plan.stage, training.start_epoch)

    last: EpochMetrics | None = None
    for epoch in range(training.start_epoch, plan.epochs):
        started = time.perf_counter()
        alpha = alpha_at(epoch, plan.rate, plan.alpha_bias)
        lr = training.optimiser.param_groups[0]["lr"]  # the rate of this epoch's first step
        try:
            losses = training.train_epoch(epoch, alpha)
            last = training.end_epoch(epoch, alpha, lr, losses, started)
        except torch.cuda.OutOfMemoryError:
            raise _out_of_memory(plan, epoch, training.saved()) from None
        fault_point(f"epoch-end:{plan.stage}")
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
        if epoch + 1 < plan.epochs:
            check_stop_together(
                f"stage {plan.stage} stopped after epoch {epoch + 1}", training.saved(), dist_info, device
            )

    if last is None and files.state.is_file():  # resumed a stage that had already finished
        last = next((m for m in reversed(read_metrics(metrics_path)) if m.stage == plan.stage), None)
    if training.best_epoch < 0:
        return FitResult(last, None, None, round(training.elapsed, 3))
    return FitResult(
        last, training.best_test, training.best_epoch, round(training.elapsed, 3), training.best_top1
    )
