"""Nothing lost: SIGKILL / SIGTERM at several points of a run and --resume, NaN, out of memory, a full disk,
damaged or malicious checkpoints.

The faults are planned with DAIT_EDGE_FAULT (dait_edge.utils.faults): a real SIGKILL or SIGTERM that the
process sends itself at a named point, so each test stops exactly where it says.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dait_edge.cli import cli
from dait_edge.distill import run_distill
from dait_edge.engine.checkpoint import load_training_state
from dait_edge.errors import UserError
from dait_edge.records import RunSummary
from dait_edge.utils import faults
from dait_edge.utils.io import write_text_atomic

EPOCHS = {"stage1_epochs": 2, "stage2_epochs": 3}  # 12 training images, batch 4: 3 steps per epoch


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("reliability")


@pytest.fixture(scope="module")
def uninterrupted(base, tiny_cub, tiny_vlm, tiny_config):
    config = tiny_config(tiny_cub.root, tiny_vlm.config, tiny_vlm.weights, base / "whole", **EPOCHS)
    return run_distill(config), Path(config.out)


def _cli(args: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != faults.ENV}
    if fault:
        env[faults.ENV] = fault
    return subprocess.run(
        [sys.executable, "-m", "dait_edge", *args], env=env, capture_output=True, text=True, timeout=300
    )


def _flip(path: Path, at: int, bits: int = 0x01) -> None:
    """Damage one byte of `path` in place (`at` may count from the end)."""
    data = bytearray(path.read_bytes())
    data[at] ^= bits
    path.write_bytes(bytes(data))


def _cut(path: Path, keep: int) -> None:
    """Truncate `path` to its first `keep` bytes, as an interrupted copy leaves it."""
    path.write_bytes(path.read_bytes()[:keep])


def _stages_epochs(run_dir: Path) -> list[tuple[int, int]]:
    lines = (
        (run_dir / "metrics.jsonl").read_text().splitlines() if (run_dir / "metrics.jsonl").exists() else []
    )
    return [(m["stage"], m["epoch"]) for m in map(json.loads, lines)]


def _metrics_without_time(run_dir: Path) -> list[dict]:
    return [
        {k: v for k, v in json.loads(line).items() if k != "seconds"}
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]


def test_killed_at_every_point_and_resumed_equals_an_uninterrupted_run(
    base, tiny_cub, tiny_vlm, tiny_args, uninterrupted
):
    """One run, stopped five times (SIGKILL in the cache build, in stage 1, between the stages, in the
    middle of a checkpoint write; SIGTERM in stage 2), each time continued with `--out RUN --resume`
    alone; its weights and metrics equal those of the run that was never stopped."""
    whole, whole_dir = uninterrupted
    folder = base / "killed"
    run_dir = folder / "run"
    first = tiny_args(tiny_cub.root, tiny_vlm.config, tiny_vlm.weights, folder, epochs=None, **EPOCHS)
    resume = ["distill", "--out", str(run_dir), "--resume", "--json"]
    plan = [  # (fault, the (stage, epoch) lines on disk after it)
        ("kill@cache-chunk#1", []),
        ("kill@train-step#4", [(1, 0)]),
        ("kill@stage-start:2", [(1, 0), (1, 1)]),
        ("kill@write:state.pt#2", [(1, 0), (1, 1), (2, 0), (2, 1)]),  # epoch 1's metrics, not its state
    ]
    for step, (fault, lines) in enumerate(plan):
        result = _cli(first if step == 0 else resume, fault)
        assert result.returncode == -signal.SIGKILL, (fault, result.stderr[-2000:])
        if step > 0:  # the killed process still named in the lock file: taken over, and said
            assert f"took over the stale lock of the run directory {run_dir}" in result.stderr
        assert not (run_dir / "summary.json").exists()
        assert _stages_epochs(run_dir) == lines, fault
    assert (
        load_training_state(run_dir / "stage2" / "state.pt").epoch == 0
    )  # the write killed left it as it was

    stopped = _cli(resume, "sigterm@train-step#2")  # stage 2, epoch 2 (epoch 1 again), its second step
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr
    assert f"to continue: dait-edge distill --out {run_dir} --resume" in stopped.stderr
    assert "stopped: stage 2 stopped in epoch 2, step 2; the last completed epoch is saved" in stopped.stderr

    finished = _cli(resume)
    assert finished.returncode == 0, finished.stderr[-2000:]
    summary = RunSummary.read(run_dir)
    assert summary.completed and summary.student_sha256 == whole.student_sha256
    assert _metrics_without_time(run_dir) == _metrics_without_time(whole_dir)
    assert summary.student_top1 == whole.student_top1

    again = _cli(resume)  # a finished run: nothing happens, and it says so
    assert again.returncode == 0 and "already finished; nothing to resume" in again.stderr
    assert RunSummary.read(run_dir) == summary

    changed = CliRunner().invoke(cli, [*resume, "--lr", "0.5", "--batch-size", "2"])
    assert changed.exit_code == 2 and "Traceback" not in changed.output
    assert "changed settings: batch_size (4 in the run, 2 now), lr (" in changed.output


def test_sigint_stops_a_sweep_saying_how_to_go_on(tmp_path, tiny_cub, tiny_vlm, tiny_args):
    args = tiny_args(
        tiny_cub.root,
        tiny_vlm.config,
        tiny_vlm.weights,
        tmp_path,
        method="none",
        student=None,
        teacher_cache=None,
    )
    args = ["sweep", "--students", "test_efficientnet", *args[1:]]
    args.remove("--json")
    stopped = _cli(args, "sigint@train-step#2")
    assert stopped.returncode == 128 + signal.SIGINT, stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith("stopped: stage 2 stopped in epoch 1, step 2") and last.endswith(
        "to continue: the same `dait-edge sweep` command again (finished steps are reused, a stopped run"
        " resumes)"
    )
    run_dir = tmp_path / "run" / "runs" / "test_efficientnet-none"
    assert (run_dir / "manifest.json").is_file() and not (run_dir / "summary.json").exists()


def test_a_second_signal_exits_at_once_a_repeated_delivery_does_not(tmp_path):
    code = (
        "import os, signal, time\n"
        "from dait_edge.utils.signals import stop_on_signal\n"
        "with stop_on_signal():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)  # the same request delivered twice (torchrun and a scheduler)\n"
        "    time.sleep(1.5)\n"
        "    print('still stopping gracefully', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGINT)  # later: the user insists\n"
        "    time.sleep(30)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 128 + signal.SIGINT
    assert result.stdout == "still stopping gracefully\n"
    assert result.stderr.count("SIGTERM: stopping at the next safe point") == 1


# ------------------------------------------------------------------------------- runtime faults


@pytest.fixture
def planned(monkeypatch):
    """plan(fault): set DAIT_EDGE_FAULT for this test, counted from zero."""
    faults.reset()

    def plan(fault: str) -> None:
        monkeypatch.setenv(faults.ENV, fault)

    yield plan
    faults.reset()


def _single_stage(tiny_cub, tiny_vlm, tiny_config, folder: Path, **overrides):
    """CE only (`none`): no VLM, no teacher; the cheapest run that trains and checkpoints. Every labelled
    image trains (no validation share), so the fault plans count 3 steps per epoch."""
    values = dict(method="none", stage2_epochs=2, val_fraction=0.0) | overrides
    return tiny_config(tiny_cub.root, tiny_vlm.config, tiny_vlm.weights, folder, **values)


def test_a_nan_loss_stops_the_run_naming_where_and_keeps_the_last_good_epoch(
    tmp_path, tiny_cub, tiny_vlm, tiny_config, planned
):
    planned("nan@train-step#5")  # epoch 2, step 2
    config = _single_stage(tiny_cub, tiny_vlm, tiny_config, tmp_path)
    with pytest.raises(UserError, match=r"stage 2 epoch 2 step 2: loss_ce became NaN or infinite") as err:
        run_distill(config)
    assert "\n" not in str(err.value)
    run_dir = Path(config.out)
    assert load_training_state(run_dir / "stage2" / "state.pt").epoch == 0  # epoch 1, intact
    assert _stages_epochs(run_dir) == [(2, 0)]
    assert not (run_dir / "summary.json").exists()


def test_out_of_memory_names_a_batch_size_and_keeps_the_checkpoint(
    tmp_path, tiny_cub, tiny_vlm, tiny_config, planned
):
    planned("oom@train-step#4")  # epoch 2, step 1
    config = _single_stage(tiny_cub, tiny_vlm, tiny_config, tmp_path)
    with pytest.raises(UserError, match=r"ran out of memory in stage 2, epoch 2, at batch size 4") as err:
        run_distill(config)
    assert "batch size 2" in str(err.value) and err.value.settings == ("batch_size",)
    assert load_training_state(Path(config.out) / "stage2" / "state.pt").epoch == 0


def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_one(
    tmp_path, tiny_cub, tiny_vlm, tiny_config, planned
):
    planned("enospc@write:state.pt#2")
    config = _single_stage(tiny_cub, tiny_vlm, tiny_config, tmp_path)
    with pytest.raises(
        UserError, match="the disk is full while writing .*state.pt .the previous file is kept"
    ):
        run_distill(config)
    stage = Path(config.out) / "stage2"
    assert load_training_state(stage / "state.pt").epoch == 0
    assert not [p.name for p in stage.iterdir() if p.name.endswith(".tmp")]  # no temporary file left


def test_torch_reporting_a_full_disk_is_the_same_one_line_error(tmp_path):
    from dait_edge.utils.io import atomic_path

    target = tmp_path / "state.pt"
    target.write_bytes(b"before")
    with pytest.raises(
        UserError, match="the disk is full while writing .*state.pt .the previous file is kept"
    ):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError(
                "[enforce fail at inline_container.cc:664] . unexpected pos: No space left on device"
            )
    assert target.read_bytes() == b"before" and [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_a_full_disk_keeps_any_file_as_it_was(tmp_path, planned):
    target = tmp_path / "report.md"
    write_text_atomic(target, "before")
    planned("enospc@write:report.md")
    with pytest.raises(UserError, match="disk is full"):
        write_text_atomic(target, "after")
    assert target.read_text() == "before" and [p.name for p in tmp_path.iterdir()] == ["report.md"]


# ------------------------------------------------------------------------- damaged and malicious files


class _RunsCode:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def stopped_run(base, tiny_cub, tiny_vlm, tiny_config):
    """A single-stage run stopped after its first epoch: a state.pt to damage."""
    config = _single_stage(tiny_cub, tiny_vlm, tiny_config, base / "stopped")
    run_distill(config, stop_after_epoch={2: 0})
    return config


@pytest.mark.parametrize("damage", ["truncated", "malicious"])
def test_a_damaged_or_malicious_checkpoint_is_refused_on_resume(tmp_path, stopped_run, damage):
    import dataclasses
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(stopped_run.out, run_dir)
    state = run_dir / "stage2" / "state.pt"
    marker = tmp_path / "code-ran"
    if damage == "truncated":
        _cut(state, state.stat().st_size // 2)
    else:
        torch.save({"epoch": 0, "payload": _RunsCode(marker)}, state)
    before = state.read_bytes()
    with pytest.raises(UserError) as err:
        run_distill(dataclasses.replace(stopped_run, out=str(run_dir)), resume=True)
    message = str(err.value)
    assert str(state) in message and "\n" not in message
    if damage == "truncated":
        assert "damaged or truncated" in message
    else:
        assert "would run code" in message and "safetensors" in message
    assert not marker.exists() and state.read_bytes() == before


def test_a_malicious_weights_file_is_refused_and_its_code_never_runs(tmp_path):
    from dait_edge.models import build_model

    weights, marker = tmp_path / "student.pt", tmp_path / "code-ran"
    torch.save({"state_dict": _RunsCode(marker)}, weights)
    with pytest.raises(UserError, match="would run code when loaded .*refused.*safetensors"):
        build_model("test_resnet", 3, pretrained=False, weights=weights)
    assert not marker.exists()


# ------------------------------------------------------------------------------- integrity


@pytest.mark.parametrize("damage", ["one_byte", "truncated"])
def test_a_changed_artifact_is_refused_by_profile_and_predict(tmp_path, exported_run, tiny_cub, damage):
    """One byte changed (or the tail cut off) after export: profile and the on-device predictor refuse the
    file instead of measuring or serving it."""
    import shutil

    from dait_edge.export.predict import predict

    export = tmp_path / "export"
    shutil.copytree(exported_run / "export", export)
    artifact = export / "student-onnx-fp32.onnx"
    size = artifact.stat().st_size
    if damage == "one_byte":
        _flip(artifact, size // 2)
    else:
        _cut(artifact, size - 100)

    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(cli, ["profile", str(artifact), "--profile", "x86-ort-cpu-fp32"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "does not match its sidecar" in result.output and str(artifact) in result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no profile written
    with pytest.raises(UserError, match="does not match its sidecar"):
        predict(artifact, [next(tiny_cub.root.rglob("*.jpg"))])


# ------------------------------------------------------------------------------- two writers

_HOLD = (
    "import sys, time\n"
    "from dait_edge.utils.lock import exclusive\n"
    "with exclusive(sys.argv[1], 'run directory'):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(float(sys.argv[2]))\n"
)


def _holder(folder: Path, seconds: float) -> subprocess.Popen:
    """Another process holding `folder`'s lock for `seconds`."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(folder), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_of_a_run_directory_is_refused_naming_the_owner(
    tmp_path, tiny_cub, tiny_vlm, tiny_config
):
    config = _single_stage(tiny_cub, tiny_vlm, tiny_config, tmp_path)
    holder = _holder(Path(config.out), 60)
    try:
        with pytest.raises(UserError, match=rf"run directory .* is in use by process {holder.pid}@"):
            run_distill(config)
        assert sorted(p.name for p in Path(config.out).iterdir()) == [".lock"]  # nothing of this run written
    finally:
        holder.kill()
        holder.wait()
    summary = run_distill(config)  # the lock of a killed owner is stale: taken over
    assert summary.completed


def test_a_waiting_writer_goes_on_when_the_owner_is_done(tmp_path, capfd):
    import time

    from dait_edge.utils.lock import exclusive

    started = time.monotonic()
    holder = _holder(tmp_path, 1.5)
    with exclusive(tmp_path, "VLM embedding cache", wait=True):
        assert time.monotonic() - started >= 1.5  # the owner held it that long after it started
    holder.wait()
    assert f"waiting for process {holder.pid}@" in capfd.readouterr().err


def test_the_stale_lock_of_a_dead_process_is_taken_over_and_said(tmp_path, capfd):
    from dait_edge.utils.lock import LOCK_FILE, exclusive

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (tmp_path / LOCK_FILE).write_text(f"{dead.stdout.strip()}@host")  # it died holding it (e.g. SIGKILL)
    with exclusive(tmp_path, "teacher cache entry"):
        assert (tmp_path / LOCK_FILE).read_text().startswith(f"{os.getpid()}@")
    assert (
        f"took over the stale lock of the teacher cache entry {tmp_path} (process {dead.stdout.strip()}@host"
        in (capfd.readouterr().err)
    )
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released cleanly


# ------------------------------------------------------------------------------- damaged caches


@pytest.mark.parametrize("damage", ["truncated", "one_byte"])
def test_a_damaged_vlm_cache_is_refused_never_used(tmp_path, uninterrupted, damage):
    import dataclasses
    import shutil

    from dait_edge.records import RunManifest

    _, whole_dir = uninterrupted
    config = RunManifest.read(whole_dir).config
    shutil.copytree(Path(config.cache_dir), tmp_path / "cache")
    (embeddings,) = (tmp_path / "cache").rglob("embeddings.f16")
    if damage == "truncated":
        _cut(embeddings, embeddings.stat().st_size // 2)
    else:
        _flip(embeddings, 7, 0x40)
    again = dataclasses.replace(
        config,
        out=str(tmp_path / "run"),
        cache_dir=str(tmp_path / "cache"),
        teacher_cache=str(tmp_path / "t"),
    )
    message = "is 0 bytes|is .* bytes, not" if damage == "truncated" else "differs from the hash"
    with pytest.raises(UserError, match=rf"VLM embedding cache .* is damaged: .*({message}).*cache clear"):
        run_distill(again)
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_damaged_teacher_in_the_cache_is_trained_again(tmp_path, uninterrupted, capfd):
    import dataclasses
    import shutil

    from dait_edge.records import RunManifest

    whole, whole_dir = uninterrupted
    config = RunManifest.read(whole_dir).config
    shutil.copytree(Path(config.teacher_cache), tmp_path / "teachers")
    (weights,) = (tmp_path / "teachers").rglob("teacher.safetensors")
    _flip(weights, -3)  # a weight, not the header: the file still reads
    again = run_distill(
        dataclasses.replace(config, out=str(tmp_path / "run"), teacher_cache=str(tmp_path / "teachers"))
    )
    assert "is damaged (its weights differ from the hash" in capfd.readouterr().err
    assert again.teacher_reused is False and again.student_sha256 == whole.student_sha256
    assert weights.read_bytes() == (whole_dir / "stage1" / "teacher.safetensors").read_bytes()  # stored anew


@pytest.mark.parametrize("damage", ["truncated", "one_byte"])
def test_a_damaged_text_embedding_file_is_built_again(tmp_path, damage):
    from dait_edge.vlm.text_embeddings import _read_cached, _write_cached

    path = tmp_path / "t.safetensors"
    _write_cached(path, {"mean": torch.arange(8.0), "var": torch.ones(8)})
    assert torch.equal(_read_cached(path)["mean"], torch.arange(8.0))
    if damage == "truncated":
        _cut(path, path.stat().st_size - 5)
    else:
        _flip(path, -1)
    with pytest.warns(UserWarning, match="text embedding cache .* is damaged"):
        assert _read_cached(path) is None


# ------------------------------------------------------------------------------- unreadable images


def test_an_unreadable_image_fails_up_front_or_is_skipped_and_counted(
    tmp_path, tiny_cub, tiny_vlm, tiny_config
):
    import dataclasses
    import shutil

    root = tmp_path / "CUB"
    shutil.copytree(tiny_cub.root, root)
    broken = sorted((root / "images").rglob("*.jpg"))[0]
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    config = tiny_config(root, tiny_vlm.config, tiny_vlm.weights, tmp_path, method="none", stage2_epochs=1)
    with pytest.raises(UserError, match=rf"image {broken} cannot be read .*leave such images out") as err:
        run_distill(config)
    assert err.value.settings == ("skip_bad_images",)
    assert not Path(config.out).exists()  # refused before the run folder was made

    summary = run_distill(dataclasses.replace(config, skip_bad_images=True))
    assert summary.completed and summary.skipped_images == 1
    assert summary.train_images + summary.val_images == tiny_cub.train - 1


# ------------------------------------------------------------------------- signals, in this process


def test_sigterm_in_the_cache_build_keeps_its_chunks_and_resume_finishes(
    tmp_path, tiny_cub, tiny_vlm, tiny_config, planned, uninterrupted
):
    from dait_edge.errors import Interrupted
    from dait_edge.utils.signals import stop_on_signal

    whole, _ = uninterrupted
    config = tiny_config(tiny_cub.root, tiny_vlm.config, tiny_vlm.weights, tmp_path, **EPOCHS)
    planned("sigterm@cache-chunk#1")
    with stop_on_signal(), pytest.raises(Interrupted) as err:
        run_distill(config)
    assert err.value.exit_code == 128 + signal.SIGTERM
    assert str(err.value).startswith("the VLM embedding cache build stopped; its finished chunks are kept in")
    assert err.value.folder == Path(config.out)
    (done,) = (tmp_path / "cache").rglob("done.u8")
    assert done.read_bytes() == b"\x01"  # the one chunk encoded before the stop is marked done
    assert run_distill(config, resume=True).student_sha256 == whole.student_sha256


def test_sigint_before_an_artifact_stops_the_export_with_nothing_half_written(tmp_path, exported_run):
    import shutil

    from dait_edge.errors import Interrupted
    from dait_edge.export.api import export_run
    from dait_edge.utils.signals import stop_on_signal

    run = tmp_path / "run"
    shutil.copytree(exported_run, run, ignore=shutil.ignore_patterns("export"))
    with stop_on_signal(), pytest.raises(Interrupted, match="export stopped before onnx-fp32"):
        os.kill(os.getpid(), signal.SIGINT)
        export_run(run, formats="onnx", parity_samples=2, measure_speed=False, log=lambda m: None)
    assert not list((run / "export").glob("*.onnx")) and not (run / "export" / "summary.json").exists()


def test_a_cache_hash_is_remembered_until_the_file_changes_and_cache_verify_hashes_again(
    tmp_path, uninterrupted
):
    import shutil

    from dait_edge.records import RunManifest
    from dait_edge.vlm.cache import VERIFIED_FILE, EmbeddingCache

    _, whole_dir = uninterrupted
    shutil.copytree(Path(RunManifest.read(whole_dir).config.cache_dir), tmp_path / "cache")
    (embeddings,) = (tmp_path / "cache").rglob("embeddings.f16")
    root, key = embeddings.parent.parent, embeddings.parent.name
    assert EmbeddingCache.open(root, key) is not None and (embeddings.parent / VERIFIED_FILE).is_file()

    before = embeddings.stat()
    _flip(embeddings, 3, 0x10)
    os.utime(embeddings, ns=(before.st_atime_ns, before.st_mtime_ns))  # a change that hides its time
    cache = EmbeddingCache.open(root, key)  # size, inode and time as remembered: not hashed again
    with pytest.raises(UserError, match="differs from the hash written when it was built"):
        cache.check(full=True)  # what `dait-edge cache verify` runs


def test_two_processes_needing_one_vlm_cache_build_it_once(tmp_path, tiny_cub, tiny_vlm, tiny_args):
    """Two real distill processes start at once on one data set and one cache folder (what a fanned-out
    sweep or two users do): one builds the VLM embedding cache while the other waits on its lock, then
    reads the finished entry; neither sees a half-built one, and the entry verifies."""
    procs = []
    for name in ("a", "b"):
        args = tiny_args(
            tiny_cub.root,
            tiny_vlm.config,
            tiny_vlm.weights,
            tmp_path,
            method="kd",
            student="test_efficientnet",
        )
        args[args.index("--out") + 1] = str(tmp_path / f"run-{name}")
        env = {k: v for k, v in os.environ.items() if k != faults.ENV}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "dait_edge", *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-1500:] for _, err in outputs]
    built = [err for _, err in outputs if re.search(r"VLM embedding cache: \d+ images", err)]
    assert len(built) == 1  # one build; the other process found it finished
    (entry,) = (tmp_path / "cache" / "vlm_embeddings").iterdir()
    verified = _cli(["cache", "verify", "--cache-dir", str(tmp_path / "cache")])
    assert verified.returncode == 0 and entry.name[:12] in verified.stdout + verified.stderr
    tops = [json.loads(out)["student_top1"] for out, _ in outputs]
    assert tops[0] == tops[1]  # the same cache, the same seed: the same run
