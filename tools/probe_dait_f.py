"""Why a DAIT-F student does or does not learn: the stage-2 run of dait-edge, instrumented epoch by epoch.

Runs `dait-edge distill --method dait_f` (stage 2 only, from a given trained intermediate teacher) through
the real pipeline and, at every epoch's end, prints what issue 23 asks about:

  ce / sra        the epoch's mean loss terms (as the run logs them)
  g_ce / g_sra    gradient norms of alpha * CE and of (1 - alpha) * feature term, over the epoch's steps,
                  at the student's backbone (every parameter but the classifier) and at its classifier
  R2              what the adapter's output explains of the teacher map (1 - SSE / SST, SST around the
                  teacher map's per-channel means) on the test images
  probe_s         top-1 of a linear probe (logistic regression) on the student's pooled features, fitted on
                  the training images (centre crop) and scored on the test split
  dead            share of the student map's channels that are zero on every probe image
  test            the run's own test top-1 that epoch

Before the first epoch it prints the teacher map's scale (per-channel mean and std, mean square) and the
student map's, and linear probes of the teacher map pooled and per position (where the class information
sits).

    python tools/probe_dait_f.py --teacher-checkpoint T.safetensors --data-root runs/demo/data \\
        --student shufflenet_v2_x1_0 --seeds 0 1 2 -- --lr 0.01 --lr-step 4 --stage2-epochs 12 \\
        --alpha-rate 0.0833 --val-fraction 0 --img-size 64

Everything after `--` goes to `dait-edge distill` as given. Random weights give real dynamics but are
not a claim about any pretrained model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher-checkpoint", required=True, help="A trained intermediate teacher.")
    parser.add_argument("--teacher", default="regnety_016", help="The model the checkpoint holds.")
    parser.add_argument("--data-root", required=True, help="An ImageFolder tree (train/, test/).")
    parser.add_argument("--student", default="shufflenet_v2_x1_0")
    parser.add_argument("--method", default="dait_f", help="dait_f (probed in full) or another method.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--json", type=Path, help="Also write every epoch's figures to this JSON file.")
    args, rest = parser.parse_known_args(argv)
    if rest and rest[0] == "--":
        rest = rest[1:]
    args.distill_args = rest
    return args


# ------------------------------------------------------------------------------------------- measurements


def linear_probe(train_x, train_y, test_x, test_y, num_classes: int, steps: int = 200) -> float:
    """Top-1 (%) of a multinomial logistic regression fitted on standardised `train_x` (L-BFGS, small L2)."""
    import torch

    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    xs, xt = (train_x - mean) / std, (test_x - mean) / std
    layer = torch.nn.Linear(xs.shape[1], num_classes)
    optimiser = torch.optim.LBFGS(layer.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(xs), train_y) + 1e-3 * layer.weight.square().sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        return float((layer(xt).argmax(1) == test_y).float().mean() * 100)


def map_scale(maps) -> dict[str, float]:
    """Per-channel statistics of (N, C, H, W) maps over images and positions."""
    per_channel = maps.transpose(0, 1).flatten(1)
    means, stds = per_channel.mean(1), per_channel.std(1)
    return {
        "channel_mean_avg": float(means.mean()),
        "channel_mean_max": float(means.max()),
        "channel_std_avg": float(stds.mean()),
        "channel_std_max": float(stds.max()),
        "mean_square": float(maps.square().mean()),
        "variance_share": float(stds.square().mean() / maps.square().mean().clamp_min(1e-12)),
        "zero_share": float((maps == 0).float().mean()),
    }


def r_squared(predicted, target) -> float:
    centred = target - target.mean((0, 2, 3), keepdim=True)
    return float(1 - (predicted - target).square().sum() / centred.square().sum().clamp_min(1e-12))


class Probe:
    """Holds the probe images and the run's method; measures at each epoch's end."""

    def __init__(self, method, run, num_classes: int):
        import torch

        self.method, self.num_classes = method, num_classes
        student = method.student
        indices, _ = run.training_indices(run.method_cls)
        self.train_set = run.eval_set(student, [run.all_train[i] for i in indices])
        self.test_set = run.eval_set(student, run.spec.split("test"))
        self.grads: dict[str, list[float]] = {}
        self.rows: list[dict] = []
        head = set(id(p) for p in student.classifier().parameters())
        self.head_params = [p for p in student.parameters() if id(p) in head]
        self.backbone_params = [p for p in student.parameters() if id(p) not in head and p.requires_grad]
        with torch.no_grad():
            self.teacher_train = self._teacher_maps(self.train_set)
            self.teacher_test = self._teacher_maps(self.test_set)

    def _batches(self, dataset):
        import torch

        loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=False)
        for images, labels, _ in loader:
            yield images, labels

    def _teacher_maps(self, dataset):
        import torch

        method = getattr(self.method, "teacher", None)
        if method is None:
            return None
        teacher_input = self.method.teacher_input
        return torch.cat([method.forward_features(teacher_input(x)) for x, _ in self._batches(dataset)])

    def _labels(self, dataset):
        import torch

        return torch.cat([y for _, y in self._batches(dataset)])

    def _student(self, dataset):
        import torch

        was = self.method.student.training
        self.method.student.eval()
        maps, pooled = [], []
        with torch.no_grad():
            for x, _ in self._batches(dataset):
                out = self.method.student.forward_all(x)
                maps.append(out["feature_map"])
                pooled.append(out["pooled"])
        self.method.student.train(was)
        return torch.cat(maps), torch.cat(pooled)

    def before(self) -> dict:
        ytr, yte = self._labels(self.train_set), self._labels(self.test_set)
        self.ytr, self.yte = ytr, yte
        maps, _ = self._student(self.test_set)
        found = {"student_map": map_scale(maps)}
        if self.teacher_test is not None:
            tr, te = self.teacher_train, self.teacher_test
            found["teacher_map"] = map_scale(te)
            found["teacher_map_shape"] = list(te.shape[1:])
            found["probe_teacher_pooled"] = linear_probe(
                tr.mean((2, 3)), ytr, te.mean((2, 3)), yte, self.num_classes
            )
            found["probe_teacher_positions"] = linear_probe(
                tr.flatten(1), ytr, te.flatten(1), yte, self.num_classes
            )
        return found

    def record_step(self, loss_terms: dict, alpha: float) -> None:
        """Gradient norms of each weighted term at the backbone and the classifier (one extra backward each)."""
        import torch

        weighted = {"ce": alpha * loss_terms["loss_ce"]}
        for key in ("loss_sra", "loss_kd"):
            if key in loss_terms:
                weighted["distil"] = (1 - alpha) * loss_terms[key]
        for name, term in weighted.items():
            for part, params in (("backbone", self.backbone_params), ("head", self.head_params)):
                grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
                norm = torch.sqrt(
                    sum((g.float().square().sum() for g in grads if g is not None), torch.zeros(()))
                )
                self.grads.setdefault(f"g_{name}_{part}", []).append(float(norm))

    def end_epoch(self, epoch: int, metrics) -> dict:
        import torch

        maps_tr, pooled_tr = self._student(self.train_set)
        maps_te, pooled_te = self._student(self.test_set)
        row = {"epoch": epoch, "alpha": round(metrics.alpha, 3), "lr": metrics.lr, "test": metrics.top1}
        row |= {k: round(v, 4) for k, v in metrics.losses.items()}
        row |= {k: sum(v) / len(v) for k, v in self.grads.items()}
        self.grads = {}
        row["probe_s"] = linear_probe(pooled_tr, self.ytr, pooled_te, self.yte, self.num_classes)
        row["dead"] = float(((maps_te.flatten(2).amax((0, 2))) <= 0).float().mean())
        adapter = getattr(self.method, "adapter", None)
        if adapter is not None and self.teacher_test is not None:
            from dait_edge.losses.alignment import sra_pair

            with torch.no_grad():
                adapted = adapter(maps_te)
                if adapted.shape[-2:] != self.teacher_test.shape[-2:]:
                    adapted = torch.nn.functional.interpolate(
                        adapted, size=self.teacher_test.shape[-2:], mode="bilinear"
                    )
                # as the run's SRA compares them (pearson: both standardised, so R2 is about correlation)
                adapted, target = sra_pair(adapted, self.teacher_test, self.method.sra_form)
            row["R2"] = r_squared(adapted, target)
        row["student_std"] = map_scale(maps_te)["channel_std_avg"]
        self.rows.append(row)
        return row


# ------------------------------------------------------------------------------------------- the run


def run_seed(args, seed: int, folder: Path) -> dict:
    from click.testing import CliRunner

    import dait_edge.distill.context as context_module
    import dait_edge.engine.trainer as trainer
    from dait_edge.cli.app import cli

    probe_holder: dict = {}
    original_fit = context_module.RunContext.fit
    original_end = trainer._StageTraining.end_epoch

    def fit(self, method, datasets, plan, files, metadata, stop_after):
        probe = Probe(method, self, self.spec.num_classes)
        probe_holder["probe"] = probe
        probe_holder["before"] = probe.before()
        print(json.dumps({"seed": seed, "before": probe_holder["before"]}), file=sys.__stdout__, flush=True)
        original_forward = method.forward

        def forward(batch, step):
            out = original_forward(batch, step)
            if method.training and "loss_ce" in out:
                probe.record_step(out, step.alpha)
            return out

        method.forward = forward
        return original_fit(self, method, datasets, plan, files, metadata, stop_after)

    def end_epoch(self, epoch, alpha, lr, losses, started):
        metrics = original_end(self, epoch, alpha, lr, losses, started)
        row = probe_holder["probe"].end_epoch(epoch, metrics)
        print(
            json.dumps(
                {"seed": seed, **{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}}
            ),
            file=sys.__stdout__,
            flush=True,
        )
        return metrics

    context_module.RunContext.fit, trainer._StageTraining.end_epoch = fit, end_epoch
    try:
        command = [
            "distill",
            "--dataset",
            "imagefolder",
            "--data-root",
            args.data_root,
            "--student",
            args.student,
            "--method",
            args.method,
            "--teacher",
            args.teacher,
            "--teacher-checkpoint",
            args.teacher_checkpoint,
            "--stages",
            "2",
            "--no-pretrained",
            "--seed",
            str(seed),
            "--out",
            str(folder / f"run-{seed}"),
            "--device",
            "cpu",
            *args.distill_args,
        ]
        result = CliRunner().invoke(cli, command, catch_exceptions=False)
        if result.exit_code:
            raise SystemExit(result.output)
    finally:
        context_module.RunContext.fit, trainer._StageTraining.end_epoch = original_fit, original_end
    return {"seed": seed, "before": probe_holder["before"], "epochs": probe_holder["probe"].rows}


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_seed(args, seed, Path(tmp)) for seed in args.seeds]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
