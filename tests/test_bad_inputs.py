"""A catalogue of bad inputs, one row per input: every command refuses each with exit code 2 and one line
that names the problem, without a traceback, and leaves nothing behind that looks finished (so the same
command works once the input is fixed).

Each `Case` builds its command line from the shared fixtures and its own tmp_path (writing whatever bad
file it needs there), names the fragments the error line must hold, and lists glob patterns (relative to
tmp_path) that no file written by the command may match. Nothing here trains: every input is refused
during validation, before any epoch, artifact or report is spent.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from dait_edge.cli import cli

# What a finished command leaves (fnmatch patterns over paths relative to tmp_path; `*` crosses folders).
DISTILL_DONE = ("*manifest.json", "*summary.json")
EXPORT_DONE = ("*.onnx", "out/*.json")
PROFILE_DONE = ("*/profile/*.json",)
REPORT_DONE = ("*report.*", "*pareto.png")
COMPARE_DONE = ("*compare.*",)
SWEEP_DONE = ("*sweep.json", "*summary.json", "*report.*")
NOTHING = ("*",)  # data inspect writes no file at all


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[SimpleNamespace, Path], list]  # (env, tmp_path) -> the command line
    fragments: tuple[str, ...]  # what the error line must hold: the bad value or file, and the fix
    finished: tuple[str, ...]  # patterns no file the command writes may match
    usage: bool = False  # refused by click itself (a range, a choice): its message, on one line


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_cub, tiny_vlm, tiny_args, fake_run, layouts):
    """A finished run (untrained student, exported to ONNX fp32), the tiny CUB tree and the tiny VLM.
    Cases that change the run change a copy (`copy_run`)."""
    from dait_edge.export.api import export_run

    run = fake_run(tmp_path_factory.mktemp("bad_inputs"), "test_efficientnet", tiny_cub)
    export_run(run, formats="onnx", parity_samples=4, measure_speed=False, log=lambda message: None)
    return SimpleNamespace(cub=tiny_cub, vlm=tiny_vlm, tiny_args=tiny_args, run=run, layouts=layouts)


# ------------------------------------------------------------------------------------------- builders


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def junk(path: Path) -> Path:
    """A file of bytes that no reader takes (a safetensors header length far beyond the file)."""
    return write(path, b"\xff" * 64)


def folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def copy_run(env, tmp: Path, change: Callable[[Path], object] | None = None) -> Path:
    run = tmp / "src-run"
    shutil.copytree(env.run, run)
    if change is not None:
        change(run)
    return run


def copy_cub(env, tmp: Path, name: str | None = None, edit: Callable[[str], str] | None = None) -> Path:
    """The tiny CUB tree, with the list file `name` rewritten by `edit`."""
    root = tmp / "CUB"
    shutil.copytree(env.cub.root, root)
    if name is not None:
        write(root / name, edit((root / name).read_text()))
    return root


def cub_without_images(env, tmp: Path) -> Path:
    root = copy_cub(env, tmp)
    shutil.rmtree(root / "images")
    return root


def weights_of(tmp: Path, model: str, classes: int) -> Path:
    """A weights file of `model` with a `classes`-way classifier (random init)."""
    from dait_edge.engine.checkpoint import save_weights
    from dait_edge.models import build_model

    path = tmp / "weights" / f"{model}-{classes}.safetensors"
    save_weights(path, build_model(model, classes, pretrained=False))
    return path


def cub_with_broken_image(env, tmp: Path) -> Path:
    """The tiny CUB tree with its first training image's bytes not a JPEG."""
    root = copy_cub(env, tmp)
    write(sorted((root / "images").rglob("*.jpg"))[0], b"\xff\xd8 not a jpeg")
    return root


def sidecar_input_size(size: list[int]) -> Callable[[Path], None]:
    """A run change: the fp32 artifact's sidecar says another input size (the artifact itself unchanged)."""

    def change(run: Path) -> None:
        path = run / "export" / "student-onnx-fp32.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | {"input_size": size}))

    return change


def first_line(replacement: str) -> Callable[[str], str]:
    return lambda text: "\n".join([replacement, *text.splitlines()[1:]]) + "\n"


def distill(env, tmp: Path, *flags, data_root=None, **options) -> list:
    """The tiny offline run's `distill` arguments (run in tmp/run); `options` override, None drops one."""
    return env.tiny_args(data_root or env.cub.root, env.vlm.config, env.vlm.weights, tmp, *flags, **options)


def sweep(env, tmp: Path, *flags, **options) -> list:
    """The tiny run as a one-student sweep into tmp/run; progress on stdout (no --json)."""
    flags = flags if "--students" in flags else ("--students", "test_efficientnet", *flags)
    args = distill(env, tmp, *flags, student=None, teacher_cache=None, **options)
    args.remove("--json")
    return ["sweep", *args[1:]]


def export(run, tmp: Path, *flags) -> list:
    return ["export", run, "--out", tmp / "out", *flags]


def report(tmp: Path, *sources) -> list:
    return ["report", *sources, "--out", tmp / "out"]


def compare(tmp: Path, *sources) -> list:
    return ["compare", *sources, "--out", tmp / "out"]


def inspect(dataset: str, root) -> list:
    return ["data", "inspect", "--dataset", dataset, "--data-root", root, "--no-check-images"]


def artifact(tmp: Path, sidecar: str | None = None, hashed: bool = False) -> Path:
    """An .onnx file that is not a model, with `sidecar` as its JSON where given: as the sidecar says
    (`hashed`: its artifact_sha256 is this file's), or another file's (the sidecar's hash is another's)."""
    path = write(tmp / "artifacts" / "model.onnx", b"not an onnx model")
    if sidecar is not None:
        if hashed:
            from dait_edge.utils.io import sha256_file

            sidecar = json.dumps(json.loads(sidecar) | {"artifact_sha256": sha256_file(path)})
        write(path.with_suffix(".json"), sidecar)
    return path


def profile_toml(tmp: Path, edit: Callable[[str], str]) -> Path:
    """The shipped x86-ort-cpu-fp32 profile, edited."""
    from dait_edge.profiling.profiles import PROFILES_DIR

    return write(tmp / "my-profile.toml", edit((PROFILES_DIR / "x86-ort-cpu-fp32.toml").read_text()))


def unfinished(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    write(run / "summary.json", json.dumps(summary | {"completed": False}))


def imagefolder(env, tmp: Path, *class_folders: str) -> Path:
    """An ImageFolder tree holding one image in each of `class_folders` (e.g. "train/a")."""
    root = tmp / "images"
    for name in class_folders:
        env.layouts.write_jpeg(root / name / "0.jpg", (200, 40, 40))
    return root


def remove_weights(run: Path) -> None:
    for weights in (run / "stage2").glob("*.safetensors"):
        weights.unlink()


# --------------------------------------------------------------------------------------------- cases

DISTILL = [
    Case(
        "distill-unreadable-image",
        lambda e, t: distill(e, t, data_root=cub_with_broken_image(e, t)),
        ("001.Black_footed_Albatross", "cannot be read", "--skip-bad-images"),
        DISTILL_DONE,
    ),
    Case(
        "distill-student-weights-of-another-model",
        lambda e, t: distill(e, t, "--method", "none", student_weights=weights_of(t, "test_resnet", 3)),
        ("does not fit test_efficientnet", "--student-weights"),
        DISTILL_DONE,
    ),
    Case(
        "distill-teacher-checkpoint-for-other-classes",
        lambda e, t: distill(e, t, teacher_checkpoint=weights_of(t, "test_resnet", 5)),
        ("classifies 5 classes but cub has 3", "--teacher-checkpoint"),
        DISTILL_DONE,
    ),
    Case(
        "distill-unknown-student",
        lambda e, t: distill(e, t, student="not_a_net"),
        ("unknown student 'not_a_net'", "dait-edge list students"),
        DISTILL_DONE,
    ),
    Case(
        "distill-unknown-method",
        lambda e, t: distill(e, t, method="dait_x"),
        ("unknown method 'dait_x'", "dait-edge list methods"),
        DISTILL_DONE,
    ),
    Case(
        "distill-unknown-teacher",
        lambda e, t: distill(e, t, teacher="no_teacher"),
        ("unknown teacher 'no_teacher'", "dait-edge list teachers"),
        DISTILL_DONE,
    ),
    Case(
        "distill-unknown-dataset",
        lambda e, t: distill(e, t, dataset="mnist"),
        ("unknown dataset 'mnist'", "dait-edge list datasets"),
        DISTILL_DONE,
    ),
    Case(
        "distill-missing-data-root",
        lambda e, t: distill(e, t, data_root=t / "nowhere"),
        ("nowhere does not exist", "--data-root"),
        DISTILL_DONE,
    ),
    Case(
        "distill-data-root-wrong-layout",
        lambda e, t: distill(e, t, data_root=folder(t / "not-cub" / "images")),
        ("CUB-200-2011 layout not found", "missing images.txt", "--data-root"),
        DISTILL_DONE,
    ),
    Case(
        "distill-zero-epochs",
        lambda e, t: distill(e, t, epochs=0),
        ("'--epochs'", "0 is not in the range x>=1"),
        DISTILL_DONE,
        usage=True,
    ),
    Case(
        "distill-negative-lr",
        lambda e, t: distill(e, t, lr=-0.1),
        ("lr must be positive (got -0.1)", "--lr"),
        DISTILL_DONE,
    ),
    Case(
        "distill-unknown-recipe",
        lambda e, t: distill(e, t, recipe="fast"),
        ("unknown recipe 'fast'", "use shared, own, or one of", "--recipe"),
        DISTILL_DONE,
    ),
    Case(
        "distill-bad-train-crop",
        lambda e, t: distill(e, t, train_crop="rrc:2"),
        ("'rrc:2' is not a crop", "rrc:MIN_SCALE", "--train-crop"),
        DISTILL_DONE,
    ),
    Case(
        "distill-bad-rise-weights",
        lambda e, t: distill(e, t, rise_weights="1,1"),
        ("'1,1' is not a RISE weights setting", "--rise-weights"),
        DISTILL_DONE,
    ),
    Case(
        "distill-zero-temperature",
        lambda e, t: distill(e, t, temperature=0),
        ("temperature must be positive (got 0.0)", "--temperature"),
        DISTILL_DONE,
    ),
    Case(
        "distill-zero-batch-size",
        lambda e, t: distill(e, t, batch_size=0),
        ("'--batch-size'", "0 is not in the range x>=1"),
        DISTILL_DONE,
        usage=True,
    ),
    Case(
        "distill-img-size-8",
        lambda e, t: distill(e, t, img_size=8),
        ("'--img-size'", "8 is not in the range x>=16"),
        DISTILL_DONE,
        usage=True,
    ),
    Case(
        "distill-labelled-fraction-1.5",
        lambda e, t: distill(e, t, labelled_fraction=1.5),
        ("labelled fraction must be in (0, 1] (got 1.5)", "--labelled-fraction"),
        DISTILL_DONE,
    ),
    Case(
        "distill-kd-weights-unreadable",
        lambda e, t: distill(e, t, method="kd", kd_weights="often"),
        ("kd_weights", "'often' is not a weights setting", "alpha, constant or W_CE,W_KD", "--kd-weights"),
        DISTILL_DONE,
    ),
    Case(
        "distill-val-fraction-1",
        lambda e, t: distill(e, t, val_fraction=1.0),
        ("'--val-fraction'", "1.0 is not in the range 0.0<=x<1.0"),
        DISTILL_DONE,
        usage=True,
    ),
    Case(
        "distill-stages-3",
        lambda e, t: distill(e, t, stages="3"),
        ("stages must be 1, 2 or 1,2 (got '3')", "--stages"),
        DISTILL_DONE,
    ),
    Case(
        "distill-vlm-views-not-a-number",
        lambda e, t: distill(e, t, vlm_views="lots"),
        ("got 'lots'", "auto", "--vlm-views"),
        DISTILL_DONE,
    ),
    Case(
        "distill-unknown-device",
        lambda e, t: distill(e, t, device="tpu"),
        ("unknown device 'tpu'", "--device"),
        DISTILL_DONE,
    ),
    Case(
        "distill-missing-teacher-checkpoint",
        lambda e, t: distill(e, t, teacher_checkpoint=t / "nope.safetensors"),
        ("nope.safetensors does not exist", "--teacher-checkpoint"),
        DISTILL_DONE,
    ),
    Case(
        "distill-teacher-checkpoint-not-weights",
        lambda e, t: distill(e, t, teacher_checkpoint=junk(t / "teacher.safetensors")),
        ("cannot read weights file", "teacher.safetensors", "--teacher-checkpoint"),
        DISTILL_DONE,
    ),
    Case(
        "distill-missing-kd-teacher",
        lambda e, t: distill(e, t, method="kd", kd_teacher=t / "no-teacher"),
        ("no-teacher does not exist", "--kd-teacher"),
        DISTILL_DONE,
    ),
    Case(
        "distill-missing-student-weights",
        lambda e, t: distill(e, t, method="none", stages="2", student_weights=t / "nope.safetensors"),
        ("nope.safetensors does not exist", "--student-weights"),
        DISTILL_DONE,
    ),
    Case(
        "distill-missing-vlm-checkpoint",
        lambda e, t: distill(e, t, vlm_pretrained=t / "nope.safetensors"),
        ("VLM checkpoint", "nope.safetensors does not exist", "--vlm-pretrained"),
        DISTILL_DONE,
    ),
    Case(
        "distill-unknown-vlm",
        lambda e, t: distill(e, t, vlm="not_a_clip", vlm_pretrained="none"),
        ("unknown OpenCLIP model 'not_a_clip'", "--vlm"),
        DISTILL_DONE,
    ),
    Case(
        "distill-template-without-placeholder",
        lambda e, t: distill(e, t, "--template", "a photo"),
        ("prompt template 'a photo'", "'{}'"),
        DISTILL_DONE,
    ),
    Case(
        "distill-resume-empty-folder",
        lambda e, t: distill(e, t, "--resume", out=folder(t / "empty")),
        ("empty holds no run to resume", "--resume"),
        DISTILL_DONE,
    ),
    Case(
        "distill-new-run-into-a-run",
        lambda e, t: distill(e, t, out=copy_run(e, t)),
        ("src-run already holds a run", "--resume"),
        DISTILL_DONE,
    ),
    Case(
        "distill-config-missing",
        lambda e, t: distill(e, t, "--config", t / "nope.toml"),
        ("nope.toml does not exist", "--config"),
        DISTILL_DONE,
    ),
    Case(
        "distill-config-syntax-error",
        lambda e, t: distill(e, t, "--config", write(t / "distill.toml", "[distill\nseed = 1\n")),
        ("cannot parse config file", "distill.toml", "--config"),
        DISTILL_DONE,
    ),
    Case(
        "distill-config-unknown-key",
        lambda e, t: distill(e, t, "--config", write(t / "distill.toml", "[distill]\nlearning_rate = 0.1\n")),
        ("distill.toml has unknown option(s) learning_rate", "dait-edge distill --help"),
        DISTILL_DONE,
    ),
    Case(
        "distill-config-wrong-type",
        lambda e, t: distill(
            e, t, "--config", write(t / "distill.toml", '[distill]\nepochs = "ten"\n'), epochs=None
        ),
        ("distill.toml", "must be a whole number", '"ten"', "fix the value"),
        DISTILL_DONE,
    ),
    Case(
        "distill-config-zero-batch-size",
        lambda e, t: distill(
            e, t, "--config", write(t / "distill.toml", "batch-size = 0\n"), batch_size=None
        ),
        ("batch_size must be at least 1 (got 0)", "--batch-size"),
        DISTILL_DONE,
    ),
    Case(
        "distill-config-img-size-8",
        lambda e, t: distill(
            e, t, "--config", write(t / "distill.toml", "img-size = 8\n"), img_size=None, method="none"
        ),
        ("img_size", "8", "--img-size"),
        DISTILL_DONE,
    ),
]

EXPORT = [
    Case(
        "export-missing-path",
        lambda e, t: export(t / "nope", t),
        ("nope does not exist", "pass a run directory"),
        EXPORT_DONE,
    ),
    Case(
        "export-folder-not-a-run",
        lambda e, t: export(folder(t / "not-a-run"), t),
        ("not-a-run holds no summary.json", "dait-edge distill"),
        EXPORT_DONE,
    ),
    Case(
        "export-file-not-a-checkpoint",
        lambda e, t: export(copy_run(e, t) / "summary.json", t),
        ("summary.json is not a .safetensors checkpoint", "pass a run directory"),
        EXPORT_DONE,
    ),
    Case(
        "export-checkpoint-outside-a-run",
        lambda e, t: export(junk(t / "student.safetensors"), t),
        ("no summary.json in any folder above", "student.safetensors", "inside its run directory"),
        EXPORT_DONE,
    ),
    Case(
        "export-summary-not-json",
        lambda e, t: export(copy_run(e, t, lambda r: write(r / "summary.json", "{oops")), t),
        ("summary.json is not valid JSON", "dait-edge distill --resume"),
        EXPORT_DONE,
    ),
    Case(
        "export-run-without-weights",
        lambda e, t: export(copy_run(e, t, remove_weights), t),
        ("student_last.safetensors is missing", "--checkpoint"),
        EXPORT_DONE,
    ),
    Case(
        "export-best-checkpoint-missing",
        lambda e, t: export(
            copy_run(e, t, lambda r: (r / "stage2" / "student_best.safetensors").unlink()),
            t,
            "--checkpoint",
            "best",
        ),
        ("student_best.safetensors is missing", "--checkpoint"),
        EXPORT_DONE,
    ),
    Case(
        "export-weights-not-readable",
        lambda e, t: export(copy_run(e, t, lambda r: junk(r / "stage2" / "student_last.safetensors")), t),
        ("cannot read weights file", "student_last.safetensors", "pass a .safetensors file"),
        EXPORT_DONE,
    ),
    Case(
        "export-unknown-checkpoint",
        lambda e, t: export(e.run, t, "--checkpoint", "middle"),
        ("'--checkpoint'", "'middle' is not one of 'last', 'best'"),
        EXPORT_DONE,
        usage=True,
    ),
    Case(
        "export-unknown-format",
        lambda e, t: export(e.run, t, "--formats", "onnx,onnx-int4"),
        ("unknown export format 'onnx-int4'", "--formats"),
        EXPORT_DONE,
    ),
    Case(
        "export-recipe-missing",
        lambda e, t: export(e.run, t, "--formats", t / "nope.toml"),
        ("export recipe", "nope.toml does not exist", "--formats"),
        EXPORT_DONE,
    ),
    Case(
        "export-recipe-syntax-error",
        lambda e, t: export(e.run, t, "--formats", write(t / "recipe.toml", "name = [\n")),
        ("cannot parse export recipe", "recipe.toml", "fix the recipe"),
        EXPORT_DONE,
    ),
    Case(
        "export-recipe-unknown-key",
        lambda e, t: export(
            e.run,
            t,
            "--formats",
            write(t / "recipe.toml", 'name = "x"\nkind = "onnx"\nprecision = "fp32"\nspeed = 3\n'),
        ),
        ("recipe.toml: unknown keys speed", "allowed:"),
        EXPORT_DONE,
    ),
    Case(
        "export-negative-top1-drop",
        lambda e, t: export(e.run, t, "--int8", "--max-top1-drop", "-1"),
        ("'--max-top1-drop'", "-1.0 is not in the range x>=0"),
        EXPORT_DONE,
        usage=True,
    ),
    Case(
        "export-top1-drop-101",
        lambda e, t: export(e.run, t, "--int8", "--max-top1-drop", "101"),
        ("between 0 and 100 points, not 101", "--max-top1-drop"),
        EXPORT_DONE,
    ),
    Case(
        "export-unknown-calibration",
        lambda e, t: export(e.run, t, "--int8", "--calibration", "magic"),
        ("unknown calibration method 'magic'", "--calibration"),
        EXPORT_DONE,
    ),
    Case(
        "export-unknown-calibration-without-int8",
        lambda e, t: export(e.run, t, "--calibration", "magic", "--parity-samples", "2"),
        ("unknown calibration method 'magic'", "--calibration"),
        EXPORT_DONE,
    ),
    Case(
        "export-zero-val-samples",
        lambda e, t: export(e.run, t, "--int8", "--val-samples", "0"),
        ("'--val-samples'", "0 is not in the range x>=1"),
        EXPORT_DONE,
        usage=True,
    ),
    Case(
        "export-opset-12",
        lambda e, t: export(e.run, t, "--opset", "12"),
        ("'--opset'", "12 is not in the range x>=13"),
        EXPORT_DONE,
        usage=True,
    ),
    Case(
        "export-opset-99",
        lambda e, t: export(e.run, t, "--opset", "99", "--parity-samples", "2"),
        ("opset", "99"),
        EXPORT_DONE,
    ),
    Case(
        "export-missing-data-root",
        lambda e, t: export(e.run, t, "--data-root", t / "moved", "--parity-samples", "2"),
        ("moved does not exist", "--data-root"),
        EXPORT_DONE,
    ),
]

PROFILE = [
    Case(
        "profile-sidecar-input-shape-differs",
        lambda e, t: [
            "profile",
            copy_run(e, t, sidecar_input_size([3, 48, 48])) / "export" / "student-onnx-fp32.onnx",
        ],
        (
            "student-onnx-fp32.onnx takes inputs of shape",
            "its sidecar says [batch, 3, 48, 48]",
            "export it again",
        ),
        PROFILE_DONE,
    ),
    Case(
        "profile-unknown-profile",
        lambda e, t: ["profile", copy_run(e, t) / "export", "--profile", "no-such-profile"],
        ("unknown profile 'no-such-profile'", "x86-ort-cpu-fp32", "a path to a .toml file"),
        PROFILE_DONE,
    ),
    Case(
        "profile-missing-path",
        lambda e, t: ["profile", t / "nope.onnx"],
        ("nope.onnx does not exist", "pass exported artifacts"),
        PROFILE_DONE,
    ),
    Case(
        "profile-folder-without-artifacts",
        lambda e, t: ["profile", folder(t / "empty")],
        ("no artifacts for profile x86-ort-cpu-fp32", "dait-edge export"),
        PROFILE_DONE,
    ),
    Case(
        "profile-not-an-onnx-file",
        lambda e, t: ["profile", write(t / "notes.txt", "hello")],
        ("notes.txt is not a .onnx file", "pick a profile"),
        PROFILE_DONE,
    ),
    Case(
        "profile-onnx-without-sidecar",
        lambda e, t: ["profile", artifact(t)],
        ("model.onnx has no sidecar model.json", "dait-edge export"),
        PROFILE_DONE,
    ),
    Case(
        "profile-sidecar-not-json",
        lambda e, t: ["profile", artifact(t, sidecar="{oops")],
        ("model.json is not valid JSON", "re-export"),
        PROFILE_DONE,
    ),
    Case(
        "profile-onnx-not-a-model",
        lambda e, t: [
            "profile",
            artifact(t, sidecar=(e.run / "export" / "student-onnx-fp32.json").read_text(), hashed=True),
        ],
        ("ONNX Runtime cannot load", "model.onnx", "re-export"),
        PROFILE_DONE,
    ),
    Case(
        "profile-onnx-differs-from-its-sidecar",
        lambda e, t: [
            "profile",
            artifact(t, sidecar=(e.run / "export" / "student-onnx-fp32.json").read_text()),
        ],
        ("model.onnx does not match its sidecar model.json", "SHA-256", "export it again"),
        PROFILE_DONE,
    ),
    Case(
        "profile-toml-syntax-error",
        lambda e, t: [
            "profile",
            copy_run(e, t) / "export",
            "--profile",
            write(t / "my-profile.toml", "name = 'x\n"),
        ],
        ("cannot parse profile", "my-profile.toml", "fix the TOML"),
        PROFILE_DONE,
    ),
    Case(
        "profile-toml-bad-batch-sizes",
        lambda e, t: [
            "profile",
            copy_run(e, t) / "export",
            "--profile",
            profile_toml(t, lambda text: text.replace("batch_sizes = [1, 8]", "batch_sizes = [0]")),
        ],
        ("my-profile.toml: batch_sizes must be a list of integers of at least 1", "not [0]"),
        PROFILE_DONE,
    ),
    Case(
        "profile-toml-unknown-runtime",
        lambda e, t: [
            "profile",
            copy_run(e, t) / "export",
            "--profile",
            write(t / "my-profile.toml", "name = 'x'\nruntime = 'tflite'\n"),
        ],
        ("runtime must be one of", "not 'tflite'"),
        PROFILE_DONE,
    ),
    Case(
        "profile-toml-misspelt-key",
        lambda e, t: [
            "profile",
            copy_run(e, t) / "export",
            "--profile",
            profile_toml(t, lambda text: text.replace("iterations = 50", "iteratons = 5")),
        ],
        ("iteratons", "my-profile.toml"),
        PROFILE_DONE,
    ),
    Case(
        "profile-zero-batch-size",
        lambda e, t: ["profile", copy_run(e, t) / "export", "--batch-sizes", "1,0"],
        ("'--batch-sizes'", "batch sizes must be positive integers"),
        PROFILE_DONE,
        usage=True,
    ),
    Case(
        "profile-batch-sizes-not-numbers",
        lambda e, t: ["profile", copy_run(e, t) / "export", "--batch-sizes", "1,x"],
        ("'--batch-sizes'", "a comma-separated list of integers"),
        PROFILE_DONE,
        usage=True,
    ),
    Case(
        "profile-dataset-without-data-root",
        lambda e, t: ["profile", copy_run(e, t) / "export", "--dataset", "cub"],
        ("needs both the dataset and its data root", "--data-root"),
        PROFILE_DONE,
    ),
    Case(
        "profile-unknown-dataset",
        lambda e, t: ["profile", copy_run(e, t) / "export", "--dataset", "mnist", "--data-root", e.cub.root],
        ("unknown dataset 'mnist'", "dait-edge list datasets"),
        PROFILE_DONE,
    ),
]

REPORT = [
    Case(
        "report-missing-source",
        lambda e, t: report(t, t / "nope"),
        ("nope does not exist", "dait-edge profile"),
        REPORT_DONE,
    ),
    Case(
        "report-folder-without-runs",
        lambda e, t: report(t, folder(t / "empty")),
        ("no profile results under", "empty", "dait-edge profile"),
        REPORT_DONE,
    ),
    Case(
        "report-run-not-profiled",
        lambda e, t: report(t, copy_run(e, t)),
        ("src-run has no profile results", "dait-edge profile"),
        REPORT_DONE,
    ),
    Case(
        "report-json-not-a-profile-result",
        lambda e, t: report(t, write(t / "results.json", '{"a": 1}')),
        ("results.json", "does not look like a profile result", "dait-edge profile --json"),
        REPORT_DONE,
    ),
    Case(
        "report-file-not-json",
        lambda e, t: report(t, write(t / "results.txt", "hello")),
        ("results.txt is not valid JSON", "dait-edge profile"),
        REPORT_DONE,
    ),
    Case(
        "report-run-with-unreadable-profile-json",
        lambda e, t: report(
            t, copy_run(e, t, lambda r: write(r / "profile" / "x86-ort-cpu-fp32.json", "{oops"))
        ),
        ("x86-ort-cpu-fp32.json", "not valid JSON"),
        REPORT_DONE,
    ),
    Case(
        "report-zero-batch",
        lambda e, t: report(t, e.run, "--batch", "0"),
        ("'--batch'", "0 is not in the range x>=1"),
        REPORT_DONE,
        usage=True,
    ),
    Case(
        "report-negative-top1-drop",
        lambda e, t: report(t, e.run, "--max-top1-drop", "-1"),
        ("'--max-top1-drop'", "-1.0 is not in the range x>=0"),
        REPORT_DONE,
        usage=True,
    ),
]

COMPARE = [
    Case(
        "compare-no-sources",
        lambda e, t: ["compare", "--out", t / "out"],
        ("Missing argument 'SOURCES...'",),
        COMPARE_DONE,
        usage=True,
    ),
    Case(
        "compare-missing-run",
        lambda e, t: compare(t, e.run, t / "nope"),
        ("nope does not exist", "pass run folders"),
        COMPARE_DONE,
    ),
    Case(
        "compare-folder-without-runs",
        lambda e, t: compare(t, folder(t / "empty")),
        ("empty holds no run", "distil first"),
        COMPARE_DONE,
    ),
    Case(
        "compare-file-not-a-run",
        lambda e, t: compare(t, write(t / "notes.txt", "hello")),
        ("notes.txt holds no run", "distil first"),
        COMPARE_DONE,
    ),
    Case(
        "compare-unfinished-run",
        lambda e, t: compare(t, copy_run(e, t, unfinished)),
        ("no finished run with a student under", "src-run", "finish a distill run first"),
        COMPARE_DONE,
    ),
    Case(
        "compare-summary-not-json",
        lambda e, t: compare(t, copy_run(e, t, lambda r: write(r / "summary.json", "{oops"))),
        ("summary.json", "not valid JSON"),
        COMPARE_DONE,
    ),
]

SWEEP = [
    Case(
        "sweep-unknown-student",
        lambda e, t: sweep(e, t, "--students", "test_efficientnet,not_a_net"),
        ("unknown student 'not_a_net'", "dait-edge list students"),
        SWEEP_DONE,
    ),
    Case(
        "sweep-student-twice",
        lambda e, t: sweep(e, t, "--students", "test_efficientnet,test_efficientnet"),
        ("a student is named twice", "--students"),
        SWEEP_DONE,
    ),
    Case(
        "sweep-no-students",
        lambda e, t: sweep(e, t, "--students", ","),
        ("the list of students is empty", "--students"),
        SWEEP_DONE,
    ),
    Case(
        "sweep-unknown-method",
        lambda e, t: sweep(e, t, "--methods", "dait_f,dait_x"),
        ("unknown method 'dait_x'", "dait-edge list methods"),
        SWEEP_DONE,
    ),
    Case(
        "sweep-unknown-profile",
        lambda e, t: sweep(e, t, "--profile", "no-such-profile"),
        ("unknown profile 'no-such-profile'", "a path to a .toml file"),
        SWEEP_DONE,
    ),
    Case(
        "sweep-zero-batch-size",
        lambda e, t: sweep(e, t, "--batch-sizes", "0"),
        ("'--batch-sizes'", "batch sizes must be positive integers"),
        SWEEP_DONE,
        usage=True,
    ),
    Case(
        "sweep-unknown-dataset",
        lambda e, t: sweep(e, t, dataset="mnist"),
        ("unknown dataset 'mnist'", "dait-edge list datasets"),
        SWEEP_DONE,
    ),
    Case(
        "sweep-missing-data-root",
        lambda e, t: sweep(e, t, data_root=t / "nowhere"),
        ("nowhere does not exist", "--data-root"),
        SWEEP_DONE,
    ),
    Case(
        "sweep-unknown-format",
        lambda e, t: sweep(e, t, "--formats", "onnx,onnx-int4", method="none"),
        ("unknown export format 'onnx-int4'", "--formats"),
        SWEEP_DONE,
    ),
]

DATA = [
    Case(
        "data-unknown-dataset",
        lambda e, t: inspect("mnist", e.cub.root),
        ("unknown dataset 'mnist'", "dait-edge list datasets"),
        NOTHING,
    ),
    Case(
        "data-missing-option",
        lambda e, t: ["data", "inspect", "--data-root", e.cub.root],
        ("Missing option '--dataset'",),
        NOTHING,
        usage=True,
    ),
    Case(
        "data-missing-root",
        lambda e, t: inspect("cub", t / "nowhere"),
        ("nowhere does not exist", "--data-root"),
        NOTHING,
    ),
    Case(
        "data-root-is-a-file",
        lambda e, t: inspect("cub", write(t / "images.txt", "1 a.jpg\n")),
        ("images.txt does not exist or is not a folder", "--data-root"),
        NOTHING,
    ),
    Case(
        "data-wrong-layout",
        lambda e, t: inspect("aircraft", e.cub.root),
        ("FGVC-Aircraft layout not found", "no fgvc-aircraft-2013b/ folder", "--data-root"),
        NOTHING,
    ),
    Case(
        "data-cub-without-images-folder",
        lambda e, t: inspect("cub", cub_without_images(e, t)),
        ("CUB-200-2011 layout not found", "missing images/", "--data-root"),
        NOTHING,
    ),
    Case(
        "data-cub-image-without-label",
        lambda e, t: inspect("cub", copy_cub(e, t, "image_class_labels.txt", lambda x: "")),
        ("image id 1 of images.txt has no entry", "re-extract CUB-200-2011"),
        NOTHING,
    ),
    Case(
        "data-cub-label-outside-classes",
        lambda e, t: inspect("cub", copy_cub(e, t, "image_class_labels.txt", first_line("1 999"))),
        ("labels fall outside the 3 classes", "re-extract the dataset"),
        NOTHING,
    ),
    Case(
        "data-cub-split-not-0-or-1",
        lambda e, t: inspect("cub", copy_cub(e, t, "train_test_split.txt", first_line("1 7"))),
        ("train_test_split.txt", "7"),
        NOTHING,
    ),
    Case(
        "data-imagefolder-without-test",
        lambda e, t: inspect("imagefolder", imagefolder(e, t, "train/husky")),
        ("ImageFolder layout not found", "need train/ and test/ (or val/)", "--data-root"),
        NOTHING,
    ),
    Case(
        "data-imagefolder-classes-differ",
        lambda e, t: inspect("imagefolder", imagefolder(e, t, "train/husky", "test/pug")),
        ("different class folders", "only in train/: husky", "make both hold the same class folders"),
        NOTHING,
    ),
]


CASES = DISTILL + EXPORT + PROFILE + REPORT + COMPARE + SWEEP + DATA


def _param(case: Case):
    return pytest.param(case, id=case.id)


def assert_usage_error(result, *fragments: str) -> None:
    """click's own refusal (a range, a choice, a missing option): one `error:` line too, pointing at --help."""
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert lines[0].endswith(" --help`."), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_catalogue_covers_every_command():
    assert len({case.id for case in CASES}) == len(CASES)
    per_command = Counter(case.id.split("-")[0] for case in CASES)
    assert set(per_command) == {"distill", "export", "profile", "report", "compare", "sweep", "data"}
    assert min(per_command.values()) >= 3, per_command


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_bad_input(case: Case, env, tmp_path, assert_user_error):
    argv = [str(arg) for arg in case.argv(env, tmp_path)]
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    result = CliRunner().invoke(cli, argv)

    assert isinstance(result.exception, SystemExit), (
        "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else result.output
    )
    assert "Traceback" not in result.output
    (assert_usage_error if case.usage else assert_user_error)(result, *case.fragments)
    written = [  # new files, and files written again
        p.relative_to(tmp_path).as_posix()
        for p in tmp_path.rglob("*")
        if p.is_file() and before.get(p) != p.stat().st_mtime_ns
    ]
    finished = [p for p in written if any(fnmatch.fnmatch(p, pattern) for pattern in case.finished)]
    assert not finished, f"{' '.join(argv)} left {finished}"
