"""A run directory around an untrained student: what export and profile read, without distilling.

For benchmarks (timings need real architectures, not trained weights) and tests. The files are the
ones `run_distill` writes, through the same records, so every reader treats it as a run; its method
says "untrained" so no report mistakes it for a distilled model.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from dait_edge.records import Checkpoints, DataConfig, DistillConfig, RunLayout, RunManifest, RunSummary
from dait_edge.records.recipe import SHARED_RECIPE

UNTRAINED = "untrained"


def write_untrained_run(
    run: str | Path,
    student: str,
    *,
    dataset: str,
    data_root: str | Path,
    classes: list[str],
    train_images: int = 0,
    img_size: int = 224,
    seed: int = 0,
    method: str = UNTRAINED,
    fill_zero_scales: bool = False,
    **summary_fields,
) -> Path:
    """Seeded random student weights (as last and best), a run summary and a manifest in `run`.

    `fill_zero_scales`: set to 1 every normalisation scale the upstream initialisation left at zero (timm's
    `zero_init_last` zeroes each residual block's last BatchNorm). A converter that folds constants
    (litert-torch) removes such a branch entirely, so a benchmark of those weights would time a smaller
    network than any trained student is (ResNet-18 as LiteRT fp32: 1.8 ms at 224 px with the branches folded
    away, against 17 ms for the same file in ExecuTorch)."""
    import torch

    from dait_edge.distill.manifest import git_commit, hardware, package_versions
    from dait_edge.engine.checkpoint import save_weights
    from dait_edge.methods.base import training_recipe
    from dait_edge.models import build_model
    from dait_edge.utils.io import sha256_file

    run = Path(run)
    layout = RunLayout(run)
    torch.manual_seed(seed)
    model = build_model(student, len(classes), pretrained=False)
    if fill_zero_scales:
        with torch.no_grad():
            for module in model.modules():
                weight = getattr(module, "weight", None)
                if isinstance(module, torch.nn.modules.batchnorm._NormBase) and weight is not None:
                    if not weight.any():
                        weight.fill_(1.0)
    last, best = layout.student_last, layout.student_best
    save_weights(last, model)
    save_weights(best, model)
    summary = RunSummary(
        run_dir=str(run),
        dataset=dataset,
        method=method,
        student=model.name,
        teacher="none",
        num_classes=len(classes),
        classes=list(classes),
        train_images=train_images,
        student_sha256=sha256_file(last),
        checkpoints=Checkpoints(student=layout.relative(last), student_best=layout.relative(best)),
        completed=True,
        img_size=img_size,
        # the pipeline a run of these settings chooses (the defaults), in the student's normalisation
        data_config=DataConfig(
            input_size=[3, img_size, img_size],
            mean=list(model.data_config.mean),
            std=list(model.data_config.std),
            interpolation=DistillConfig.interpolation,
            crop_pct=DistillConfig.crop_pct,
            source="run",
        ),
    )
    recipe = training_recipe(summary_fields.pop("recipe", None) or SHARED_RECIPE, method)
    dataclasses.replace(summary, recipe=recipe.name, **summary_fields).write(run)
    config = DistillConfig(
        dataset=dataset,
        data_root=str(data_root),
        student=student,
        method=method,
        img_size=img_size,
        seed=seed,
    )
    config.apply_recipe(recipe)
    RunManifest(
        config=config,
        seed=seed,
        versions=package_versions(),
        git_commit=git_commit(),
        hardware=hardware(torch.device("cpu"), 1),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    ).write(run)
    return run
