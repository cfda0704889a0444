"""The frozen teachers a stage learns from: DAIT's intermediate teacher (loaded from a run or a given file,
stored into the teacher cache) and KD's / RKD's task teacher (`--kd-teacher RUN or FILE`).

Each function takes plain values (paths, names, the class count), not the run's context."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dait_edge.distill.teacher_cache import store_teacher
from dait_edge.errors import UserError
from dait_edge.models import build_model
from dait_edge.records import RunSummary
from dait_edge.utils.lock import exclusive


@dataclass(frozen=True)
class TaskTeacherSource:
    """Where KD's task teacher comes from: its weights, the model they hold, and its head ("linear", "dual"
    for a DHO student, "projected" for a RISE one: models.heads)."""

    path: Path
    model: str
    head: str


def task_teacher_source(kd_teacher: str) -> TaskTeacherSource:
    """--kd-teacher RUN or FILE: the weights of a model fine-tuned on the task, the model's name and its
    head from the run's summary, else from the file's metadata; checked before any work."""
    from dait_edge.models.weights import weights_metadata

    path = Path(kd_teacher)
    if path.is_dir():
        if not RunSummary.path_in(path).is_file():
            raise UserError(
                f"KD teacher {path} is a folder without a summary.json; pass a finished run or its"
                " student_last.safetensors.",
                setting="kd_teacher",
            )
        summary = RunSummary.read(path)
        found = summary.checkpoint("student", path) if summary.has_student else None
        if found is None or not found.is_file():
            raise UserError(
                f"run {path} holds no trained student to teach with; finish it first.", setting="kd_teacher"
            )
        return TaskTeacherSource(found, summary.student, summary.student_head)
    if not path.is_file():
        raise UserError(
            f"KD teacher {path} does not exist; pass vlm, a run directory or a student checkpoint"
            " (e.g. from `dait-edge distill --method none --student resnet152`).",
            setting="kd_teacher",
        )
    metadata = weights_metadata(path)
    if not metadata.get("model"):
        raise UserError(
            f"KD teacher {path} does not say which model it holds; pass the run directory it came from.",
            setting="kd_teacher",
        )
    from dait_edge.models.heads import head_of_state
    from dait_edge.models.weights import load_state_dict_file

    return TaskTeacherSource(path, metadata["model"], head_of_state(load_state_dict_file(path, role="teacher")))


def load_teacher(path: Path, name: str, num_classes: int, dataset: str, setting: str = "teacher_checkpoint"):
    """A frozen teacher `name` from `path` (the intermediate teacher, or KD's task teacher); its classifier
    must have this dataset's `num_classes`. `setting` is the option the file came from."""
    from dait_edge.models.weights import load_state_dict_file

    try:
        teacher = build_model(name, num_classes, pretrained=False, weights=path, role="teacher")
    except UserError as err:
        err.settings = (setting,)  # the file came from this option, not --teacher-weights
        raise
    own = teacher.model.state_dict()
    for key, tensor in load_state_dict_file(path, role="teacher").items():
        # the loader keeps a classifier only when its class count fits: any other shape is the head
        if key in own and tuple(own[key].shape) != tuple(tensor.shape):
            raise UserError(
                f"teacher checkpoint {path} classifies {tensor.shape[0]} classes but {dataset} has"
                f" {num_classes}; pass a teacher trained on this dataset.",
                setting=setting,
            )
    return teacher


def load_task_teacher(source: TaskTeacherSource, num_classes: int, dataset: str):
    """KD's / RKD's teacher fine-tuned on the task (`--kd-teacher`). A DHO student teaches with its combined
    prediction (log p: valid logits), a RISE student with its text-space classifier; both with their pooled
    features."""
    from dait_edge.models.heads import LINEAR_HEAD, head_classes, load_student
    from dait_edge.models.weights import load_state_dict_file

    if source.head == LINEAR_HEAD:
        return load_teacher(source.path, source.model, num_classes, dataset, setting="kd_teacher")
    classes = head_classes(source.head, load_state_dict_file(source.path, role="teacher"))
    if classes is not None and classes != num_classes:
        raise UserError(
            f"teacher checkpoint {source.path} classifies {classes} classes but {dataset} has"
            f" {num_classes}; pass a teacher trained on this dataset.",
            setting="kd_teacher",
        )
    return load_student(source.head, source.model, num_classes, source.path, setting="kd_teacher")


def store_teacher_locked(cache_dir: Path, key: str, stage_dir: Path) -> None:
    """Copy a finished intermediate teacher into the teacher cache, one writer per entry."""
    with exclusive(cache_dir / key, "teacher cache entry", wait=True):
        store_teacher(cache_dir, key, stage_dir)
