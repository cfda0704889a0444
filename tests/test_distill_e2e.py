"""`dait-edge distill` end to end on a tiny CUB tree and a tiny OpenCLIP model, on the CPU.

The run directory and summary, stage-1 teacher reuse, kill-and-resume equality, a 2-process
DDP run under torchrun (gloo), and bad input. Every run is 1-2 epochs at 32 px from random
weights, so the numbers mean nothing; what is checked is what the runs write and how they agree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file

from dait_edge import __version__
from dait_edge.cli import cli
from dait_edge.config import DistillConfig
from dait_edge.data import load_dataset
from dait_edge.data.images import ImageListDataset
from dait_edge.data.transforms import eval_transform_for
from dait_edge.distill import run_distill
from dait_edge.engine.checkpoint import save_weights
from dait_edge.engine.evaluate import evaluate
from dait_edge.models import build_model
from dait_edge.records import DataConfig, RunManifest, RunSummary, TeacherInfo, read_metrics
from dait_edge.records.recipe import SHARED

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 3
SUMMARY_FIELDS = (
    "student",
    "method",
    "dataset",
    "student_top1",
    "student_top5",
    "student_top1_best",
    "teacher_top1",
    "stage1_seconds",
    "stage2_seconds",
    "params",
    "macs",
    "student_sha256",
    "checkpoints",
)
STUDENT_FIELDS = (
    "student",
    "student_top1",
    "student_top5",
    "student_top1_best",
    "stage2_seconds",
    "params",
    "macs",
    "student_sha256",
)
LOSS_TERMS = {1: {"loss", "loss_ce", "loss_sia", "loss_ira"}, "dait_f": {"loss", "loss_ce", "loss_sra"}}
LOSS_TERMS["dait_l"] = {"loss", "loss_ce", "loss_kd"}


# --------------------------------------------------------------------------------- helpers


@dataclass
class Env:
    base: Path
    data_root: Path
    vlm_config: Path
    vlm_weights: Path
    tiny_config: Callable  # conftest's make_tiny_config
    tiny_args: Callable  # conftest's make_tiny_args

    def args(self, out: Path, *flags: str, **options) -> list[str]:
        """`distill` arguments for a tiny offline run into `out` (MobileNet-V2 from RegNetY-1.6GF, DAIT-F);
        options override (None drops one)."""
        defaults = {"student": "mobilenetv2", "teacher": "regnety_016", "method": "dait_f", "out": out}
        return self.tiny_args(
            self.data_root, self.vlm_config, self.vlm_weights, self.base, *flags, **(defaults | options)
        )

    def config(self, out: Path, teacher_cache: Path, **overrides) -> DistillConfig:
        """Two epochs per stage of timm's tiny test models: resume equality does not need real students.
        A cosine after a one-epoch warm-up: the rate moves every step, so a resumed run matches only if the
        per-step schedule resumes exactly."""
        options = dict(
            method="dait_f",
            stage1_epochs=2,
            stage2_epochs=2,
            out=out,
            teacher_cache=teacher_cache,
            lr_schedule="cosine",
            warmup_epochs=1,
        )
        return self.tiny_config(
            self.data_root, self.vlm_config, self.vlm_weights, self.base, **(options | overrides)
        )


def distill(args: list[str]) -> tuple[RunSummary, Path]:
    """Run the CLI; returns the --json summary (also checked against summary.json) and the run dir."""
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, (result.output, result.exception)
    summary = RunSummary.from_dict(json.loads(result.stdout), "distill --json")
    run_dir = Path(summary.run_dir)
    assert RunSummary.read(run_dir) == summary
    return summary, run_dir


def metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl as written: one flat JSON object per line (what a notebook reads)."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m.to_dict() for m in read_metrics(run_dir)] == lines  # the record reads back what it wrote
    return lines


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cub_test_split(data_root: Path, data_config: DataConfig, img_size: int) -> ImageListDataset:
    """The CUB test split as the run evaluated it (eval transform in the model's normalisation)."""
    spec = load_dataset("cub", str(data_root))
    return ImageListDataset(spec.split("test"), eval_transform_for(data_config, img_size), spec.crop_bottom)


# -------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def env(tmp_path_factory, layouts, tiny_vlm, tiny_config, tiny_args) -> Env:
    base = tmp_path_factory.mktemp("distill")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAIT_EDGE_CACHE", str(base / "cache"))
        cub = layouts.cub(base / "cub", classes=NUM_CLASSES, train_per_class=2, test_per_class=1)
        yield Env(base, cub.root, tiny_vlm.config, tiny_vlm.weights, tiny_config, tiny_args)


@pytest.fixture(scope="module")
def run_dait_f(env):
    """Both stages, DAIT-F, mobilenetv2 from regnety_016; its teacher lands in <base>/teachers."""
    return distill(env.args(env.base / "runs" / "dait_f"))


@pytest.fixture(scope="module")
def run_dait_l(env):
    """Both stages, DAIT-L, resnet18 from regnety_016, with a teacher cache of its own."""
    return distill(
        env.args(
            env.base / "runs" / "dait_l",
            student="resnet18",
            method="dait_l",
            teacher_cache=env.base / "teachers_l",
        )
    )


# ------------------------------------------------------------------ 1. the run, end to end


@pytest.mark.parametrize("run", ["run_dait_f", "run_dait_l"])
def test_cli_run_dir_and_summary(request, env, run):
    summary, run_dir = request.getfixturevalue(run)
    method = run.removeprefix("run_")

    for rel in (
        "manifest.json",
        "metrics.jsonl",
        "summary.json",
        "stage1/teacher.safetensors",
        "stage1/teacher.json",
        "stage2/student_last.safetensors",
        "stage2/student_best.safetensors",
    ):
        assert (run_dir / rel).is_file(), rel

    for name in SUMMARY_FIELDS:
        assert getattr(summary, name) is not None, name
    assert summary.completed is True
    assert summary.method == method and summary.dataset == "cub"
    assert summary.student == ("mobilenetv2_100" if method == "dait_f" else "resnet18")
    assert summary.teacher_reused is False
    for name in ("student_top1", "student_top5", "student_top1_best", "teacher_top1"):
        assert 0.0 <= getattr(summary, name) <= 100.0
    assert summary.student_top1 <= summary.student_top5
    assert summary.student_top1_best >= summary.student_top1
    assert summary.stage1_seconds > 0 and summary.stage2_seconds > 0
    plain = build_model(summary.student, NUM_CLASSES, pretrained=False)
    assert summary.params == sum(p.numel() for p in plain.parameters())
    assert summary.macs > 0

    checkpoints = summary.checkpoints
    assert checkpoints.teacher == "stage1/teacher.safetensors"
    assert checkpoints.student == "stage2/student_last.safetensors"
    assert checkpoints.student_best == "stage2/student_best.safetensors"
    for rel in (checkpoints.teacher, checkpoints.student, checkpoints.student_best):
        assert not Path(rel).is_absolute() and (run_dir / rel).is_file(), rel
    assert summary.student_sha256 == sha256(run_dir / "stage2/student_last.safetensors")

    # the teacher the run reports is the one stage 1 wrote
    teacher_info = TeacherInfo.read(run_dir / "stage1")
    assert teacher_info.top1 == summary.teacher_top1
    assert teacher_info.teacher == "regnety_016"


@pytest.mark.parametrize("run", ["run_dait_f", "run_dait_l"])
def test_manifest(request, env, run):
    summary, run_dir = request.getfixturevalue(run)
    manifest = RunManifest.read(run_dir)
    config = manifest.config
    assert config.method == summary.method
    assert config.img_size == 32 and config.batch_size == 4 and config.pretrained is False
    assert config.stage1_epochs == config.stage2_epochs == 1
    assert config.data_root == str(env.data_root)
    assert config.out == str(run_dir)
    assert manifest.seed == config.seed == 0
    versions = manifest.versions
    assert versions["torch"] and torch.__version__.startswith(versions["torch"])
    assert versions["dait-edge"] == __version__
    for name in ("timm", "open_clip_torch", "safetensors"):
        assert versions[name], name
    hardware = manifest.hardware
    assert hardware.device == "cpu" and hardware.world_size == 1
    assert hardware.platform and hardware.python


@pytest.mark.parametrize("run", ["run_dait_f", "run_dait_l"])
def test_metrics_one_line_per_epoch_per_stage(request, run):
    summary, run_dir = request.getfixturevalue(run)
    records = metrics(run_dir)
    assert [(r["stage"], r["epoch"]) for r in records] == [(1, 0), (2, 0)]
    for record in records:
        terms = LOSS_TERMS[1] if record["stage"] == 1 else LOSS_TERMS[summary.method]
        assert terms <= set(record), record
        assert {"alpha", "top1", "top5", "seconds"} <= set(record)
        assert record["alpha"] == 0.0  # alpha(0) = clip(k * 0 + 0, 0, 1)
        assert all(torch.isfinite(torch.tensor(record[t])) for t in terms)
    stage1, stage2 = records
    assert stage1["top1"] == summary.teacher_top1
    assert stage2["top1"] == summary.student_top1 and stage2["top5"] == summary.student_top5


@pytest.mark.parametrize("run", ["run_dait_f", "run_dait_l"])
def test_student_file_is_the_plain_student(request, env, run):
    summary, run_dir = request.getfixturevalue(run)
    name = summary.student
    for rel in ("stage2/student_last.safetensors", "stage2/student_best.safetensors"):
        state = load_file(str(run_dir / rel))
        plain = build_model(name, NUM_CLASSES, pretrained=False)
        assert set(state) == set(plain.state_dict()), rel  # no adapter, no teacher
        assert not any("adapter" in key or "teacher" in key for key in state)

    path = run_dir / "stage2/student_last.safetensors"
    first = build_model(name, NUM_CLASSES, pretrained=False, weights=path).eval()
    second = build_model(name, NUM_CLASSES, pretrained=False, weights=path).eval()
    strict = build_model(name, NUM_CLASSES, pretrained=False).eval()
    strict.load_state_dict(load_file(str(path)), strict=True)
    fresh = build_model(name, NUM_CLASSES, pretrained=False).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = first(x)
        assert torch.equal(logits, second(x))
        assert torch.equal(logits, strict(x))
        assert not torch.allclose(logits, fresh(x))  # the trained weights, not a new initialisation

    # the file scores on the test split what the run reported
    scores = evaluate(
        first, cub_test_split(env.data_root, summary.data_config, 32), device=torch.device("cpu")
    )
    assert scores["images"] == NUM_CLASSES
    assert scores["top1"] == pytest.approx(summary.student_top1)
    assert scores["top5"] == pytest.approx(summary.student_top5)


# ------------------------------------------------------- 2. and 3. stage 1 alone, teacher reuse


@pytest.fixture(scope="module")
def run_stage1_only(env, run_dait_f):
    """--stages 1 with another --seed into the dait_f run's teacher cache: a new teacher."""
    return distill(env.args(env.base / "runs" / "stage1_seed1", "--stages", "1", seed=1))


def test_stages_1_trains_only_the_teacher(run_stage1_only):
    summary, run_dir = run_stage1_only
    assert summary.completed is True
    for name in STUDENT_FIELDS:
        assert getattr(summary, name) is None, name
    assert summary.teacher_top1 is not None and summary.stage1_seconds > 0
    assert not (run_dir / "stage2").exists()
    assert (run_dir / "stage1/teacher.safetensors").is_file()
    assert {r["stage"] for r in metrics(run_dir)} == {1}


def test_teacher_reused_by_a_later_student(env, run_dait_f):
    first, first_dir = run_dait_f
    summary, run_dir = distill(  # another stage-2 setting (DAIT-F's feature term) leaves the key alone
        env.args(env.base / "runs" / "reuse_resnet18", student="resnet18", method="dait_l", sra_form="paper")
    )
    assert summary.teacher_reused is True
    assert summary.stage1_key == first.stage1_key
    assert summary.teacher_top1 == first.teacher_top1
    assert [r["stage"] for r in metrics(run_dir)] == [2]
    teacher = run_dir / "stage1/teacher.safetensors"
    assert teacher.read_bytes() == (first_dir / "stage1/teacher.safetensors").read_bytes()
    assert summary.student == "resnet18" and summary.student_sha256 is not None


def test_changed_stage1_setting_trains_a_new_teacher(env, run_dait_f, run_stage1_only):
    first, first_dir = run_dait_f
    summary, run_dir = run_stage1_only  # same as run_dait_f but --seed 1
    assert summary.teacher_reused is False
    assert summary.stage1_key != first.stage1_key
    assert [r["stage"] for r in metrics(run_dir)] == [1]
    assert sha256(run_dir / "stage1/teacher.safetensors") != sha256(first_dir / "stage1/teacher.safetensors")
    cached = sorted(p.name for p in (env.base / "teachers").iterdir() if p.is_dir())
    assert sorted([first.stage1_key, summary.stage1_key]) == cached

    # and --stages 2 alone with those settings picks that teacher up from the cache
    later, later_dir = distill(env.args(env.base / "runs" / "stage2_seed1", "--stages", "2", seed=1))
    assert later.teacher_reused is True
    assert [r["stage"] for r in metrics(later_dir)] == [2]
    assert sha256(later_dir / "stage1/teacher.safetensors") == sha256(run_dir / "stage1/teacher.safetensors")


def test_stage2_alone_without_a_teacher_is_a_user_error(assert_user_error, env, tmp_path):
    result = CliRunner().invoke(cli, env.args(tmp_path / "run", "--stages", "2", seed=99))
    assert_user_error(result, "--teacher-checkpoint")


def test_teacher_checkpoint_skips_stage1(env, run_dait_f):
    first, first_dir = run_dait_f
    teacher = first_dir / "stage1/teacher.safetensors"
    summary, run_dir = distill(
        env.args(
            env.base / "runs" / "given_teacher",
            teacher_checkpoint=teacher,
            teacher_cache=env.base / "teachers_unused",
        )
    )
    assert [r["stage"] for r in metrics(run_dir)] == [2]
    assert not (run_dir / "stage1").exists()
    assert not (env.base / "teachers_unused").exists()
    assert summary.stage1_seconds == 0.0
    assert Path(summary.checkpoints.teacher) == teacher.resolve()
    # measured on the test split: the same figure stage 1 recorded for its last epoch
    assert summary.teacher_top1 == pytest.approx(first.teacher_top1)
    assert summary.student_top1 is not None


# ------------------------------------------------------------------- 4. kill and resume


def test_weights_file_bytes_depend_only_on_the_weights(tmp_path):
    # safetensors writes its metadata in hash-map order, different on every call; student_sha256
    # and teacher reuse compare files, so save_weights must write equal weights as equal bytes.
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    metadata = {"role": "student", "model": "m", "method": "dait_f", "epoch": "1", "top1": "50.0"}
    digests = set()
    for k in range(6):
        save_weights(tmp_path / f"w{k}.safetensors", module, metadata)
        digests.add(sha256(tmp_path / f"w{k}.safetensors"))
    assert len(digests) == 1
    with safe_open(str(tmp_path / "w0.safetensors"), "pt") as f:
        assert f.metadata() == metadata
        assert torch.equal(f.get_tensor("0.weight"), module[0].weight.detach())


@pytest.fixture(scope="module")
def uninterrupted(env):
    out = env.base / "resume" / "whole"
    config = env.config(out, env.base / "resume" / "teachers_whole")
    return run_distill(config), out, config


def _comparable(summary: dict) -> dict:
    return {
        k: v
        for k, v in summary.to_dict().items()
        if k not in ("run_dir", "stage1_seconds", "stage2_seconds", "teacher_seconds", "cache_seconds")
    }


def _comparable_metrics(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in metrics(run_dir)]


@pytest.mark.parametrize("stop", [{1: 0}, {2: 0}], ids=["killed_in_stage1", "killed_in_stage2"])
def test_kill_and_resume_matches_an_uninterrupted_run(env, uninterrupted, stop):
    whole, whole_dir, _ = uninterrupted
    stage = next(iter(stop))
    out = env.base / "resume" / f"stopped{stage}"
    config = env.config(out, env.base / "resume" / f"teachers_{stage}")

    partial = run_distill(config, stop_after_epoch=stop)
    assert partial.completed is False
    assert not (out / "summary.json").exists()
    expected_lines = [(1, 0)] if stage == 1 else [(1, 0), (1, 1), (2, 0)]
    assert [(r["stage"], r["epoch"]) for r in metrics(out)] == expected_lines

    resumed = run_distill(config, resume=True)
    assert resumed.completed is True
    assert [(r["stage"], r["epoch"]) for r in metrics(out)] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert resumed.student_sha256 == whole.student_sha256
    for rel in ("stage1/teacher.safetensors", "stage2/student_best.safetensors"):
        assert (out / rel).read_bytes() == (whole_dir / rel).read_bytes(), rel
    assert _comparable_metrics(out) == _comparable_metrics(whole_dir)
    assert _comparable(resumed) == _comparable(whole)
    assert RunSummary.read(out) == resumed


def test_the_student_starts_alike_whether_the_teacher_was_trained_cached_or_given(env, uninterrupted):
    """Each stage reseeds from (seed, stage, rank): stage 2 is the same run whatever produced its teacher."""
    whole, whole_dir, config = uninterrupted  # trained its teacher in the same process
    cached = run_distill(dataclasses.replace(config, out=str(env.base / "resume" / "cached_teacher")))
    assert cached.teacher_reused is True and cached.stage1_seconds == 0.0
    assert cached.teacher_seconds == whole.teacher_seconds > 0  # where it was trained, how long it took
    given = run_distill(
        dataclasses.replace(
            config,
            out=str(env.base / "resume" / "given_teacher"),
            teacher_checkpoint=str(whole_dir / "stage1/teacher.safetensors"),
        )
    )
    assert whole.student_sha256 == cached.student_sha256 == given.student_sha256


def test_a_teacher_checkpoint_for_other_classes_is_refused(assert_user_error, env, tmp_path):
    classes = load_dataset("cub", env.data_root).num_classes + 1
    wrong = tmp_path / "teacher.safetensors"
    save_weights(wrong, build_model("test_resnet", classes, pretrained=False, role="teacher"))
    args = env.args(
        tmp_path / "run", student="test_efficientnet", teacher="test_resnet", teacher_checkpoint=wrong
    )
    result = CliRunner().invoke(cli, args)
    assert_user_error(
        result, f"classifies {classes} classes but cub has {classes - 1}", "--teacher-checkpoint"
    )
    assert not (tmp_path / "run" / "stage2" / "student_last.safetensors").exists()


def test_resume_of_a_finished_run_changes_nothing(uninterrupted):
    whole, whole_dir, config = uninterrupted
    before = (whole_dir / "metrics.jsonl").read_text()
    again = run_distill(config, resume=True)
    assert again == whole
    assert (whole_dir / "metrics.jsonl").read_text() == before
    assert sha256(whole_dir / "stage2/student_last.safetensors") == whole.student_sha256


def test_alpha_follows_the_schedule(uninterrupted):
    _, whole_dir, _ = uninterrupted
    # alpha(e) = e / (8 * epochs) by default; 2 epochs per stage
    assert [r["alpha"] for r in metrics(whole_dir)] == [0.0, 1 / 16, 0.0, 1 / 16]


def test_new_run_into_an_existing_run_dir_needs_resume(assert_user_error, env, run_dait_f):
    _, run_dir = run_dait_f
    before = (run_dir / "metrics.jsonl").read_text()
    result = CliRunner().invoke(cli, env.args(run_dir))
    assert_user_error(result, "--resume", str(run_dir))
    assert (run_dir / "metrics.jsonl").read_text() == before


def test_resume_on_an_empty_dir_is_a_user_error(assert_user_error, env, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, env.args(empty, "--resume"))
    assert_user_error(result, "--resume")
    assert list(empty.iterdir()) == []


# ----------------------------------------------------------------- 5. two processes, gloo


def test_ddp_two_processes_on_cpu(tmp_path, layouts, tiny_vlm, tiny_config, tiny_args):
    # 7 test images: rank 0 scores 4, rank 1 scores 3. A figure from one shard (k/4) or a mean of
    # the two shards' figures is a multiple of 1/7 only at 0 or 100 %, so checking that every
    # recorded figure is a multiple of 1/7 and equals a one-process evaluation catches both.
    classes = 7
    cub = layouts.cub(tmp_path / "cub", classes=classes, train_per_class=2, test_per_class=1)
    env = Env(tmp_path, cub.root, tiny_vlm.config, tiny_vlm.weights, tiny_config, tiny_args)
    out = tmp_path / "ddp"
    # alpha = epoch: the second epoch of each stage trains on labels alone, with the teacher skipped and
    # the training-only modules (MLPs, adapter) idle: DDP must still see a gradient for every parameter
    args = env.args(
        out,
        student="test_efficientnet",
        teacher="test_resnet",
        epochs=None,
        stage1_epochs=2,
        stage2_epochs=2,
        alpha_rate=1.0,
        lr_schedule="cosine",
        warmup_epochs=1,
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "dait_edge", *args]
    environ = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "DAIT_EDGE_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    proc = subprocess.run(
        command, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=240, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    # printed once (rank 0), so stdout is one JSON document
    summary = RunSummary.from_dict(json.loads(proc.stdout), "stdout")
    assert summary.completed is True
    assert RunSummary.read(out) == summary
    assert not list(out.glob(".*.tmp"))
    assert RunManifest.read(out).hardware.world_size == 2

    records = metrics(out)
    assert [(r["stage"], r["epoch"], r["alpha"]) for r in records] == [
        (1, 0, 0.0),
        (1, 1, 1.0),
        (2, 0, 0.0),
        (2, 1, 1.0),
    ]
    assert "loss_sra" in records[2] and set(records[3]) - {"loss", "loss_ce"} == set(records[2]) - {
        "loss",
        "loss_ce",
        "loss_sra",
    }
    # the per-step schedule under DDP: 13 training images (one of 14 held out), a global batch of 4 split over
    # two ranks -> 3 steps per epoch on each, as in one process; a one-epoch warm-up starts at 1/3 of the
    # rate and reaches it exactly at the second epoch's first step
    base_lr = SHARED.lr  # the recipe the run trained with
    assert [r["lr"] for r in records] == pytest.approx([base_lr / 3, base_lr] * 2, rel=1e-9)
    assert records[-1]["top1"] == summary.student_top1
    assert records[1]["top1"] == summary.teacher_top1

    cpu = torch.device("cpu")
    student = build_model(
        summary.student, classes, pretrained=False, weights=out / "stage2/student_last.safetensors"
    )
    teacher = build_model(
        "test_resnet", classes, pretrained=False, weights=out / "stage1/teacher.safetensors"
    )
    figures = []
    for model, record in ((student, records[-1]), (teacher, records[1])):
        scores = evaluate(model, cub_test_split(cub.root, model.data_config, 32), device=cpu)
        assert scores["images"] == classes
        for key in ("top1", "top5"):
            assert record[key] == pytest.approx(scores[key]), (key, record)
            assert record[key] * classes / 100 == pytest.approx(round(record[key] * classes / 100))
            figures.append(record[key])
    assert any(0.0 < f < 100.0 for f in figures), figures  # else the check above proves nothing

    # a failure on rank 0 before a barrier (the run folder is taken) stops every rank with rank 0's message
    again = subprocess.run(
        command, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120, check=False
    )
    assert again.returncode != 0
    assert again.stderr.count("already holds a run") >= 2, again.stderr[-3000:]  # both ranks say it
    # no traceback from our code (torchrun prints its own ChildFailedError report)
    assert "dait_edge/" not in again.stderr.replace("-m dait_edge", ""), again.stderr[-3000:]


# --------------------------------------------------------------------------- 6. bad input


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        ({"student": "not_a_net"}, ("unknown student 'not_a_net'",)),
        ({"method": "dait_x"}, ("unknown method 'dait_x'",)),
        ({"stages": "3"}, ("--stages",)),
        (
            {"teacher_checkpoint": "/nowhere/teacher.safetensors"},
            ("/nowhere/teacher.safetensors", "does not exist"),
        ),
    ],
    ids=["student", "method", "stages", "teacher_checkpoint"],
)
def test_bad_input_is_one_line_exit_2(assert_user_error, env, tmp_path, options, fragments):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, env.args(out, **options))
    assert_user_error(result, *fragments)
    assert not (out / "manifest.json").exists()  # nothing to --resume: the same --out works once fixed


def test_config_file_with_an_unknown_key(assert_user_error, env, tmp_path):
    config = tmp_path / "distill.toml"
    config.write_text('[distill]\nstudent = "resnet18"\nlearning_rate = 0.1\n')
    result = CliRunner().invoke(cli, [*env.args(tmp_path / "run"), "--config", str(config)])
    assert_user_error(result, "learning_rate", str(config))


def test_config_file_values_with_flags_overriding(env, tmp_path):
    config = tmp_path / "distill.toml"
    config.write_text(
        "[distill]\n"
        'student = "resnet18"\n'
        'method = "dait_l"\n'
        "epochs = 2\n"
        "img-size = 64\n"
        "seed = 5\n"
        "lr = 0.001\n"
        'stages = "1"\n'
    )
    args = env.args(
        tmp_path / "run",
        "--config",
        str(config),
        student=None,
        method=None,
        epochs=None,
        img_size=32,  # flag beats the file's 64
        seed=None,
        teacher="resnet18",
        stage1_epochs=1,  # flag beats the file's epochs = 2 for stage 1 only
        teacher_cache=tmp_path / "teachers",
    )
    summary, run_dir = distill(args)
    resolved = RunManifest.read(run_dir).config
    assert resolved.student == "resnet18" and resolved.method == "dait_l"  # from the file
    assert resolved.seed == 5 and resolved.lr == 0.001 and resolved.stages == "1"
    assert resolved.stage1_epochs == 1 and resolved.stage2_epochs == 2
    assert resolved.img_size == 32 and resolved.teacher == "resnet18"
    assert resolved.batch_size == 4  # a flag the file does not set
    assert resolved.pretrained is False
    assert [(r["stage"], r["epoch"]) for r in metrics(run_dir)] == [(1, 0)]
    assert summary.method == "dait_l" and summary.student is None
