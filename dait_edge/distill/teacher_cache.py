"""Stage-1 teachers are expensive: one trained teacher serves every student of the same settings.

The key is derived, not listed by hand: every config setting enters it except those that only concern
stage 2 or where outputs go (`STAGE2_ONLY`), so a new setting is part of the key by default. It also
covers the training images and labels, the VLM (its config's content, the weights used), the prompt
templates, the teacher's initial weights, the stage-1 method's options and the code of its loss.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import sys
from pathlib import Path

from dait_edge.data.base import Sample
from dait_edge.records import DistillConfig, TeacherInfo
from dait_edge.records.layout import TEACHER_FILE
from dait_edge.utils.io import atomic_path, sha256_file, sha256_json

KEY_VERSION = 3  # bump when the key's recipe changes

# Settings that cannot change the stage-1 teacher (the student side, where files go, how fast data loads),
# or that enter the key in another form.
STAGE2_ONLY = frozenset(
    {
        "student",
        "student_weights",
        "method",
        "kd_teacher",
        "sra_form",  # DAIT-F's feature term: stage 2 only
        "kd_weights",  # KD's weights: stage 2 only
        "rise_weights",  # RISE's weights and temperature: stage 2 only
        "rise_temperature",
        "recipe",  # a name: the values it filled in (lr, optimizer, ...) are in the key
        "stage2_epochs",
        "stages",
        "extra",
        "out",
        "device",
        "workers",
        "progress",
        "teacher_checkpoint",
        "teacher_cache",
        "cache_dir",
        "vlm_views",  # enters as the views the stage saw (`views`): auto and K = epochs give the same
    }
)


# Settings added after KEY_VERSION 3, at the value every earlier teacher was trained with.
SETTINGS_ADDED_LATER = {"optimizer": "adamw", "train_crop": "resize"}


def loss_code_version(method_cls) -> str:
    """A digest of the source files of the stage-1 method and the loss functions: editing them (a fix to a
    loss) makes earlier teachers stale."""
    import inspect

    from dait_edge import losses

    files = [Path(inspect.getfile(method_cls))] + sorted(Path(losses.__file__).parent.glob("*.py"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def stage1_key(
    config: DistillConfig,
    train_samples: list[Sample],
    classes: list[str],
    vlm_source,
    templates: list[str],
    *,
    method_cls,
    method_options: dict,
    views: int,
) -> str:
    """The teacher-cache key of a stage-1 run (`vlm_source` a `vlm.VLMSource`)."""
    settings = {k: v for k, v in config.to_dict().items() if k not in STAGE2_ONLY}
    for name, value in SETTINGS_ADDED_LATER.items():  # teachers trained before they existed keep their key
        if settings.get(name) == value:
            del settings[name]
    # as they act on stage 1: the same teacher whether the step decay was given or defaulted to it
    settings["lr_step"] = config.lr_step_for(config.stage1_epochs)
    teacher_weights = config.teacher_weights
    return sha256_json(
        {
            "key_version": KEY_VERSION,
            "settings": settings,
            "samples": sha256_json([(str(path), label) for path, label in train_samples]),
            "classes": classes,
            "templates": templates,
            "vlm": {
                "name": vlm_source.model_name,
                "config": vlm_source.model_config,  # a --vlm JSON file's content, not its path
                "weights": vlm_source.weights_id,
            },
            "teacher_init": sha256_file(teacher_weights)
            if teacher_weights
            else ("imagenet" if config.pretrained else "random"),
            "method_options": method_options,
            "loss_code": loss_code_version(method_cls),
            "views": views,
        }
    )


def cached_teacher(cache_dir: Path, key: str) -> Path | None:
    """The cache folder of `key`'s teacher; None where there is none, or where its weights differ from the
    hash it was stored with (then it is trained again and stored anew)."""
    folder = cache_dir / key
    if not ((folder / TEACHER_FILE).is_file() and TeacherInfo.path_in(folder).is_file()):
        return None
    expected = TeacherInfo.read(folder).weights_sha256
    if expected is not None and sha256_file(folder / TEACHER_FILE) != expected:
        print(
            f"teacher cache {folder} is damaged (its weights differ from the hash they were stored with);"
            " training the teacher again",
            file=sys.stderr,
        )
        return None
    return folder


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
