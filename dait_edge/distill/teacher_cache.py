"""Stage-1 teachers are expensive: one trained teacher serves every student of the same settings.

The key hashes everything the teacher depends on: the training images and labels, the VLM
(architecture and weights identity), the prompt templates, the teacher architecture and its
initial weights, and the stage-1 recipe.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from dait_edge.config import DistillConfig
from dait_edge.data.base import Sample
from dait_edge.records import TeacherInfo
from dait_edge.utils.io import atomic_path, sha256_file, sha256_json

TEACHER_FILE = "teacher.safetensors"


def stage1_key(
    config: DistillConfig,
    train_samples: list[Sample],
    classes: list[str],
    vlm_weights_id: dict,
    templates: list[str],
) -> str:
    teacher_weights = config.teacher_weights
    return sha256_json(
        {
            "samples": sha256_json([(str(path), label) for path, label in train_samples]),
            "classes": classes,
            "vlm": config.vlm,
            "vlm_weights": vlm_weights_id,
            "templates": templates,
            "teacher": config.teacher,
            "teacher_init": sha256_file(teacher_weights)
            if teacher_weights
            else ("imagenet" if config.pretrained else "random"),
            "recipe": {
                name: getattr(config, name)
                for name in (
                    "stage1_epochs",
                    "img_size",
                    "batch_size",
                    "lr",
                    "weight_decay",
                    "lr_step",
                    "lr_gamma",
                    "alpha_rate",
                    "alpha_bias",
                    "temperature",
                    "labelled_fraction",
                    "seed",
                )
            },
        }
    )


def cached_teacher(cache_dir: Path, key: str) -> Path | None:
    folder = cache_dir / key
    if (folder / TEACHER_FILE).is_file() and TeacherInfo.path_in(folder).is_file():
        return folder
    return None


def store_teacher(cache_dir: Path, key: str, run_stage_dir: Path) -> None:
    """Copy a finished teacher (weights, then its info file last) into the cache."""
    folder = cache_dir / key
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / TEACHER_FILE) as tmp:
        shutil.copyfile(run_stage_dir / TEACHER_FILE, tmp)
    TeacherInfo.read(run_stage_dir).write(folder)


def restore_teacher(cached: Path, run_stage_dir: Path) -> TeacherInfo:
    """Put a cached teacher into this run's stage-1 folder; returns its info."""
    run_stage_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(run_stage_dir / TEACHER_FILE) as tmp:
        shutil.copyfile(cached / TEACHER_FILE, tmp)
    info = dataclasses.replace(TeacherInfo.read(cached), reused_from=str(cached))
    info.write(run_stage_dir)
    return info
