"""`dait-edge report`: the best artifact per student and why the others lost, collecting profile results,
and the five report files; all on constructed profile rows (no export, no torch)."""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dait_edge.cli import cli
from dait_edge.errors import UserError
from dait_edge.records import ProfileResult, Report, RunSummary
from dait_edge.report import build_report, choose_best, collect, collect_rows
from dait_edge.report.pareto import pareto_front, plot_pareto
from dait_edge.report.reasons import NO_TOP1, PARITY_FAILED, PARITY_WAIVED
from dait_edge.report.tables import table_records

PROFILE = "x86-ort-cpu-int8"


def by_format(entry) -> dict:
    return {c.format: c for c in entry.candidates}


# --- choose_best -------------------------------------------------------------------------------------------


def test_faster_int8_within_the_budget_is_chosen(profile_row):
    [entry] = choose_best([profile_row("onnx-fp32", 7.0, 85.0), profile_row("onnx-int8-u8s8", 3.1, 84.5)])
    assert entry.chosen_format == "onnx-int8-u8s8" and entry.chosen.endswith("resnet18-onnx-int8-u8s8.onnx")
    assert entry.reference_top1 == 85.0 and entry.reference == "onnx-fp32 artifact"
    assert entry.student == "resnet18" and entry.profile == PROFILE and entry.batch == 1
    cands = by_format(entry)
    assert cands["onnx-int8-u8s8"].status == "chosen" and cands["onnx-int8-u8s8"].top1_drop == 0.5
    assert cands["onnx-fp32"].status == "lost"
    assert cands["onnx-fp32"].reason == "slower: p50 7.0 ms vs 3.1 ms for onnx-int8-u8s8 (2.3x)"
    assert [c.status for c in entry.candidates] == ["chosen", "lost"]


def test_int8_beyond_the_top1_budget_loses_with_the_reason(profile_row):
    rows = [profile_row("onnx-fp32", 7.0, 85.0), profile_row("onnx-int8-u8s8", 3.1, 81.8)]
    [entry] = choose_best(rows)
    assert entry.chosen_format == "onnx-fp32"
    assert by_format(entry)["onnx-int8-u8s8"].reason == "top-1 81.8% is 3.2 points below fp32 (budget 1.0)"
    # a looser budget lets the same int8 artifact win
    assert choose_best(rows, max_top1_drop=3.5)[0].chosen_format == "onnx-int8-u8s8"
    # a drop of exactly the budget is within it
    assert choose_best([profile_row("onnx-fp32", 7.0, 85.0), profile_row("onnx-int8-u8s8", 3.1, 84.0)])[
        0
    ].chosen_format == ("onnx-int8-u8s8")


def test_int8_slower_than_fp32_says_so(profile_row):
    [entry] = choose_best([profile_row("onnx-fp32", 7.0, 85.0), profile_row("onnx-int8-u8s8", 9.1, 84.9)])
    assert entry.chosen_format == "onnx-fp32"
    assert (
        by_format(entry)["onnx-int8-u8s8"].reason
        == "int8 slower than fp32 on this hardware (p50 9.1 vs 7.0 ms)"
    )
    assert "onnx-fp32 is the fastest accurate artifact" in entry.note


def test_failed_parity_is_excluded_and_nothing_left_means_no_choice(profile_row):
    rows = [profile_row("onnx-fp32", 7.0), profile_row("onnx-int8-u8s8", 3.1, parity=False)]
    [entry] = choose_best(rows)
    assert entry.chosen_format == "onnx-fp32"
    assert by_format(entry)["onnx-int8-u8s8"].reason == PARITY_FAILED
    [none] = choose_best(
        [profile_row("onnx-int8-u8s8", 3.1, parity=False), profile_row("onnx-int8-s8s8", 3.5, parity=False)]
    )
    assert none.chosen is None and none.chosen_format is None
    assert none.note.startswith("no artifact qualifies") and PARITY_FAILED in none.note
    assert {c.status for c in none.candidates} == {"lost"}


def test_measured_top1_within_budget_overrides_a_failed_parity_check(profile_row):
    """Parity stands in for accuracy only without a top-1: the user's budget is in top-1 points."""
    rows = [profile_row("onnx-fp32", 7.0, 33.3), profile_row("onnx-int8-u8s8", 3.1, 34.4, parity=False)]
    [entry] = choose_best(rows)
    assert entry.chosen_format == "onnx-int8-u8s8"
    assert PARITY_WAIVED in by_format(entry)["onnx-int8-u8s8"].reason
    # the same artifact over the budget loses on top-1, and the reason says top-1, not parity
    [entry] = choose_best(
        [profile_row("onnx-fp32", 7.0, 70.0), profile_row("onnx-int8-u8s8", 3.1, 66.7, parity=False)]
    )
    assert entry.chosen_format == "onnx-fp32"
    assert by_format(entry)["onnx-int8-u8s8"].reason == "top-1 66.7% is 3.3 points below fp32 (budget 1.0)"


def test_without_top1_parity_is_the_only_accuracy_gate(profile_row):
    [entry] = choose_best([profile_row("onnx-fp32", 7.0), profile_row("onnx-int8-u8s8", 3.1)])
    assert entry.chosen_format == "onnx-int8-u8s8" and entry.reference_top1 is None
    assert entry.reference is None and NO_TOP1 in entry.note
    assert all(c.top1 is None and c.top1_drop is None for c in entry.candidates)


def test_pytorch_top1_is_the_reference_when_no_fp32_artifact_was_scored(profile_row):
    rows = [
        profile_row("onnx-fp32", 7.0, torch_top1=86.0),
        profile_row("onnx-int8-u8s8", 3.1, 84.0, torch_top1=86.0),
        profile_row("onnx-int8-s8s8", 4.0, 85.5, torch_top1=86.0),
    ]
    [entry] = choose_best(rows)
    assert entry.reference_top1 == 86.0 and entry.reference == "PyTorch checkpoint"
    cands = by_format(entry)
    assert cands["onnx-int8-u8s8"].reason == "top-1 84.0% is 2.0 points below PyTorch (budget 1.0)"
    assert entry.chosen_format == "onnx-int8-s8s8" and cands["onnx-int8-s8s8"].top1_drop == 0.5
    assert "86.0% for the PyTorch checkpoint" in entry.note


def test_one_checkpoint_eager_and_compiled_are_separate_candidates(profile_row):
    """The torch runner measures one file twice (eager, compiled): both compete, labelled by backend."""
    checkpoint = "runs/resnet18/stage2/student_last.safetensors"
    rows = [
        profile_row(
            "checkpoint", 24.0, 80.0, artifact=checkpoint, backend="torch-eager", profile="x86-torch-cpu"
        ),
        profile_row(
            "checkpoint", 15.0, 80.0, artifact=checkpoint, backend="torch-compiled", profile="x86-torch-cpu"
        ),
    ]
    (entry,) = choose_best(rows)
    assert entry.chosen == checkpoint and entry.chosen_backend == "torch-compiled"
    (lost,) = [c for c in entry.candidates if c.status == "lost"]
    assert lost.label == "checkpoint (torch-eager)"
    assert lost.reason == "slower: p50 24.0 ms vs 15.0 ms for checkpoint (torch-compiled) (1.6x)"


def test_onnx_plain_and_cuda_graph_replay_are_separate_candidates(profile_row):
    rows = [
        profile_row("onnx-fp16", 0.61, 80.0, profile="cuda-ort-trt"),
        profile_row("onnx-fp16", 0.42, 80.0, profile="cuda-ort-trt", backend="onnxruntime-cudagraph"),
    ]
    (entry,) = choose_best(rows)
    assert entry.chosen_backend == "onnxruntime-cudagraph"
    assert {c.label for c in entry.candidates} == {"onnx-fp16", "onnx-fp16 (onnxruntime-cudagraph)"}


def test_two_runs_of_one_student_are_judged_each_against_its_own_fp32(profile_row):
    run_a = dict(model="hash-a", run_dir="runs/cub-resnet18-dait_f")
    run_b = dict(model="hash-b", run_dir="runs/cub-resnet18-kd")
    rows = [
        profile_row("onnx-fp32", 7.0, 86.0, artifact="a/export/fp32.onnx", **run_a),
        profile_row("onnx-int8-u8s8", 3.0, 85.5, artifact="a/export/int8.onnx", **run_a),
        profile_row("onnx-fp32", 7.0, 80.0, artifact="b/export/fp32.onnx", **run_b),
        profile_row("onnx-int8-u8s8", 3.0, 79.9, artifact="b/export/int8.onnx", **run_b),
    ]
    entries = choose_best(rows)
    assert [(e.reference_top1, e.chosen_format) for e in entries] == [
        (86.0, "onnx-int8-u8s8"),
        (80.0, "onnx-int8-u8s8"),  # 0.1 below its own fp32, not 6.1 below the other run's
    ]
    assert [e.where for e in entries] == [
        f"resnet18 on {PROFILE} (run cub-resnet18-dait_f)",
        f"resnet18 on {PROFILE} (run cub-resnet18-kd)",
    ]
    assert choose_best(rows[:2])[0].where == f"resnet18 on {PROFILE}"  # one run: nothing to tell apart


def test_an_unchecked_engine_needs_a_measured_top1(profile_row):
    """TensorRT engines carry no parity check from export: without a measured top-1 they cannot be chosen."""
    engine = profile_row(
        "trt-fp16",
        0.3,
        parity=None,
        artifact="export/student-trt-fp16.engine",
        profile="cuda-trt",
        precision="fp16",
    )
    [entry] = choose_best([engine])
    assert entry.chosen is None and "accuracy not verified" in entry.candidates[0].reason
    [entry] = choose_best([dataclasses.replace(engine, top1=85.0, torch_top1=85.2)])
    assert entry.chosen_format == "trt-fp16"
    [entry] = choose_best(
        [dataclasses.replace(engine, top1=85.0)]
    )  # measured, but no reference to hold it against
    assert entry.chosen is None and "nothing to compare it with" in entry.candidates[0].reason
    # The PyTorch checkpoint needs no parity: it is what parity compares against.
    checkpoint = profile_row("checkpoint", 9.0, parity=None, backend="torch-eager", profile="x86-torch-cpu")
    [entry] = choose_best([checkpoint])
    assert (
        entry.chosen_format == "checkpoint" and "the PyTorch checkpoint itself" in entry.candidates[0].reason
    )


def test_latency_budget_excludes_unless_nothing_meets_it(profile_row):
    rows = [
        profile_row("onnx-fp32", 7.0, 85.0, within_budget=True, latency_budget_ms=10.0, p99=8.0),
        profile_row("onnx-int8-u8s8", 3.1, 84.8, within_budget=False, latency_budget_ms=10.0, p99=12.3),
    ]
    [entry] = choose_best(rows)
    assert entry.chosen_format == "onnx-fp32"
    assert by_format(entry)["onnx-int8-u8s8"].reason == "p99 12.3 ms over the profile's 10 ms budget"
    over = [
        dataclasses.replace(r, within_budget=False, latency_ms=dataclasses.replace(r.latency_ms, p99=15.0))
        for r in rows
    ]
    [entry] = choose_best(over)
    assert (
        entry.chosen_format == "onnx-int8-u8s8" and "nothing meets the profile's latency budget" in entry.note
    )
    assert by_format(entry)["onnx-fp32"].reason.startswith("slower: p50 7.0 ms vs 3.1 ms")


def test_batch_fallback_groups_and_deterministic_order(profile_row):
    rows = [
        profile_row("onnx-fp32", 7.0, 85.0),
        profile_row("onnx-fp32", 30.0, 85.0, batch=8),
        profile_row("onnx-int8-u8s8", 12.0, 84.9, batch=8),  # never measured at batch 1
        profile_row("onnx-fp32", 2.0, 70.0, student="mobilenetv2_100"),
        profile_row("onnx-fp32", 1.0, 70.0, student="mobilenetv2_100", profile="arm-ort-cpu-int8"),
    ]
    entries = choose_best(rows)
    assert [(e.student, e.profile) for e in entries] == [
        ("mobilenetv2_100", "arm-ort-cpu-int8"),
        ("mobilenetv2_100", PROFILE),
        ("resnet18", PROFILE),
    ]
    resnet = by_format(entries[2])
    assert resnet["onnx-fp32"].batch == 1 and resnet["onnx-int8-u8s8"].batch == 8
    assert "measured at batch 8; no batch-1 run" in resnet["onnx-int8-u8s8"].reason
    assert choose_best(rows, batch=8)[2].chosen_format == "onnx-int8-u8s8"
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    assert choose_best(shuffled) == entries


# --- collect_rows ------------------------------------------------------------------------------------------


def make_run(parent: Path, name: str, rows: list, measured, *, student_top1=85.5) -> Path:
    """A run folder holding a summary and one profile result (what `dait-edge profile` saved in it)."""
    run = parent / name
    RunSummary(
        run_dir=str(run),
        dataset="cub",
        method="dait_f",
        student="resnet18",
        teacher="regnety_016",
        num_classes=3,
        classes=["a", "b", "c"],
        train_images=9,
        student_top1=student_top1,
    ).write(run)
    ProfileResult(measured=measured, rows=rows).write(run / "profile" / f"{measured.profile}.json")
    return run


def test_collect_from_a_run_a_folder_of_runs_and_a_json_file(profile_row, measured, tmp_path):
    runs = tmp_path / "runs"
    run_a = make_run(
        runs, "a", [profile_row("onnx-fp32", 7.0, 85.0), profile_row("onnx-int8-u8s8", 3.1, 84.5)], measured()
    )
    make_run(
        runs / "sweep",
        "b",
        [profile_row("onnx-fp32", 2.0, student="mobilenetv2_100")],
        measured(),
        student_top1=70.0,
    )
    (run_a / "profile" / "notes.json").write_text('{"not": "a profile"}')  # found by looking: skipped

    rows = collect_rows([run_a])
    assert len(rows) == 2 and {r.run_dir for r in rows} == {str(run_a)}
    assert all(r.profile == PROFILE and r.torch_top1 == 85.5 for r in rows)
    assert rows[0].hardware == "x86_64, 16 CPUs, onnxruntime 1.32.0"
    assert [r.format for r in rows] == ["onnx-fp32", "onnx-int8-u8s8"]  # fp32 first

    rows = collect_rows([runs])  # a/profile and sweep/b/profile
    assert sorted((r.student, r.torch_top1) for r in rows) == [
        ("mobilenetv2_100", 70.0),
        ("resnet18", 85.5),
        ("resnet18", 85.5),
    ]

    dumped = tmp_path / "pi5.json"  # `dait-edge profile --json` from another device, with a newer top-1
    result = ProfileResult.read(run_a / "profile" / f"{PROFILE}.json")
    result.measured = measured(created="2025-02-01T12:00:00+0000")
    result.rows[0].top1 = 85.2
    result.write(dumped)
    alone = collect_rows([dumped])
    assert len(alone) == 2 and all(r.run_dir is None and r.torch_top1 is None for r in alone)
    both = collect([run_a, dumped])
    assert len(both.rows) == 2  # the same rows read twice are kept once: the newer measurement
    assert {r.top1 for r in both.rows if r.format == "onnx-fp32"} == {85.2}
    assert list(both.measured) == [PROFILE] and len(both.measured[PROFILE]) == 2


def _on(measured_block, hardware_fields: dict):
    return dataclasses.replace(
        measured_block, hardware=dataclasses.replace(measured_block.hardware, **hardware_fields)
    )


def test_collect_keeps_two_machines_and_the_newer_of_one_row(profile_row, measured, tmp_path):
    """Two boards under one profile name both stay (and are separate choices); of one row read twice the
    later measurement wins, comparing instants across time zones, not strings."""
    fp32 = profile_row("onnx-fp32", 40.0, 85.0, model="hash-a")
    pi4 = _on(measured(), {"cpu": "Cortex-A72", "cpu_count": 4})
    pi5 = _on(measured(), {"cpu": "Cortex-A76", "cpu_count": 4})

    def with_p50(row, p50):
        return dataclasses.replace(row, latency_ms=dataclasses.replace(row.latency_ms, p50=p50))

    for name, block, p50 in [("pi4", pi4, 40.0), ("pi5", pi5, 18.0)]:
        ProfileResult(measured=block, rows=[with_p50(fp32, p50)]).write(tmp_path / f"{name}.json")
    rows = collect_rows([tmp_path / "pi4.json", tmp_path / "pi5.json"])
    assert sorted(r.latency_ms.p50 for r in rows) == [18.0, 40.0]
    assert [e.where for e in choose_best(rows)] == [
        f"resnet18 on {PROFILE} (Cortex-A72, 4 CPUs, onnxruntime 1.32.0)",
        f"resnet18 on {PROFILE} (Cortex-A76, 4 CPUs, onnxruntime 1.32.0)",
    ]

    # One path measured on both boards: each board's choice marks its own row only.
    int8 = profile_row("onnx-int8-u8s8", 1.0, 85.0, model="hash-a")
    for name, block, fp32_ms, int8_ms in [("pi4", pi4, 40.0, 30.0), ("pi5", pi5, 18.0, 20.0)]:
        both = [with_p50(fp32, fp32_ms), with_p50(int8, int8_ms)]
        ProfileResult(measured=block, rows=both).write(tmp_path / f"{name}.json")
    rows = collect_rows([tmp_path / "pi4.json", tmp_path / "pi5.json"])
    marked = [
        (r["hardware"].split(",")[0], r["format"])
        for r in table_records(rows, choose_best(rows))
        if r["best"]
    ]
    assert sorted(marked) == [("Cortex-A72", "onnx-int8-u8s8"), ("Cortex-A76", "onnx-fp32")]

    earlier, later = tmp_path / "earlier.json", tmp_path / "later.json"
    # 13:30 at +02:00 is 11:30 UTC: earlier than 12:00 UTC, though the string sorts after it.
    block = dataclasses.replace(pi4, created="2025-01-01T13:30:00+0200")
    ProfileResult(measured=block, rows=[dataclasses.replace(fp32, top1=1.0)]).write(earlier)
    block = dataclasses.replace(pi4, created="2025-01-01T12:00:00+0000")
    ProfileResult(measured=block, rows=[dataclasses.replace(fp32, top1=2.0)]).write(later)
    assert [r.top1 for r in collect_rows([later, earlier])] == [2.0]
    assert [r.top1 for r in collect_rows([earlier, later])] == [2.0]


def test_collect_takes_the_latency_budget_recorded_with_the_result(profile_row, measured, tmp_path):
    over = profile_row("onnx-fp32", 7.0, within_budget=False)
    recorded = tmp_path / "recorded.json"
    ProfileResult(measured=measured(latency_budget_ms=5.0), rows=[over]).write(recorded)
    assert [r.latency_budget_ms for r in collect_rows([recorded])] == [5.0]
    # measured without a budget (recorded as null): none applies, whatever the profile TOML says today
    unbudgeted = tmp_path / "unbudgeted.json"
    ProfileResult(measured=measured(), rows=[over]).write(unbudgeted)
    assert [r.latency_budget_ms for r in collect_rows([unbudgeted])] == [None]
    [entry] = choose_best(collect_rows([recorded]))
    assert "nothing meets the profile's latency budget" in entry.note
    assert (
        "p99 8.4 ms over the profile's 5 ms budget (no accurate artifact meets it)"
        in entry.candidates[0].reason
    )


def test_collect_errors_name_the_problem_and_the_fix(tmp_path, measured):
    with pytest.raises(UserError, match="does not exist"):
        collect_rows([tmp_path / "missing"])
    not_profile = tmp_path / "summary.json"
    not_profile.write_text('{"student": "resnet18"}')
    with pytest.raises(UserError, match="does not look like a profile result"):
        collect_rows([not_profile])
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{oops")
    with pytest.raises(UserError, match="garbage.json is not valid JSON"):
        collect_rows([garbage])
    broken = tmp_path / "broken.json"  # a result whose row lost a field: the file and the field are named
    broken.write_text(json.dumps({"kind": "profile-result", "schema_version": 1, "measured": {}, "rows": []}))
    with pytest.raises(UserError, match=r"broken.json: field 'measured.profile' is missing"):
        collect_rows([broken])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        UserError, match=r"no profile results under .*dait-edge profile RUN/export --profile NAME"
    ):
        collect_rows([empty])
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text("{}")
    with pytest.raises(UserError, match=rf"run {run} has no profile results.*dait-edge profile {run}/export"):
        collect_rows([run])
    no_rows = tmp_path / "no-rows.json"
    ProfileResult(measured=measured(), rows=[]).write(no_rows)
    with pytest.raises(UserError, match="hold no rows"):
        collect_rows([no_rows])


# --- the report files --------------------------------------------------------------------------------------


@pytest.fixture()
def two_profiles(tmp_path, profile_row, measured) -> Path:
    """Three runs (resnet18, mobilenetv2 and an escaped name) profiled on x86-ort-cpu-int8, one on arm."""
    runs = tmp_path / "runs"
    make_run(
        runs,
        "resnet",
        [
            profile_row("onnx-fp32", 7.0, 85.0),
            profile_row("onnx-fp32", 30.0, 85.0, batch=8),
            profile_row("onnx-int8-u8s8", 3.1, 84.5),
            profile_row("onnx-int8-u8s8", 14.0, 84.5, batch=8),
        ],
        measured(),
    )
    make_run(
        runs,
        "mobile",
        [
            profile_row("onnx-fp32", 2.0, 70.0, student="mobilenetv2_100"),
            profile_row("onnx-int8-u8s8", 1.5, 66.0, student="mobilenetv2_100"),
            profile_row("onnx-fp32", 1.0, student="<m&b>"),  # a name that must be escaped in the HTML
        ],
        measured(),
        student_top1=70.0,
    )
    arm = "arm-ort-cpu-int8"
    make_run(
        runs,
        "arm",
        [profile_row("onnx-fp32", 20.0, profile=arm), profile_row("onnx-int8-u8s8", 9.0, profile=arm)],
        measured(arm),
    )
    return runs


def test_build_report_writes_five_consistent_files(tmp_path, two_profiles):
    import matplotlib.image

    runs = two_profiles
    out = tmp_path / "out"
    result = build_report([runs], out, max_top1_drop=1.0, batch=1, log=lambda m: None)
    assert set(result.files) == {"html", "markdown", "csv", "json", "figure"}
    assert all(Path(p).is_file() and Path(p).parent == out for p in result.files.values())
    assert result.rows == 9 and result.out_dir == str(out)
    assert not list(out.glob(".*.tmp"))  # atomic writes left no temporary files

    png = (out / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(out / "pareto.png")
    assert image.ndim == 3 and image.shape[2] in (3, 4) and image.shape[0] > 200 and image.shape[1] > 400
    assert image.std() > 0.01  # something was drawn

    with open(out / "report.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 9
    best_lines = [line for line in lines if line["best"] == "true"]
    assert {(line["profile"], line["student"], line["format"]) for line in best_lines} == {
        (PROFILE, "resnet18", "onnx-int8-u8s8"),
        (PROFILE, "mobilenetv2_100", "onnx-fp32"),
        (PROFILE, "<m&b>", "onnx-fp32"),
        ("arm-ort-cpu-int8", "resnet18", "onnx-int8-u8s8"),
    }
    assert all(line["batch"] == "1" for line in best_lines)
    resnet_int8 = next(
        line for line in best_lines if line["student"] == "resnet18" and line["profile"] == PROFILE
    )
    assert float(resnet_int8["top1_drop"]) == pytest.approx(0.5) and float(resnet_int8["p50_ms"]) == 3.1

    report = Report.read(out)
    best = choose_best(collect_rows([runs]), max_top1_drop=1.0, batch=1)
    assert (
        [e.to_dict() for e in report.best]
        == [e.to_dict() for e in best]
        == [e.to_dict() for e in result.best]
    )
    assert report.settings.max_top1_drop == 1.0 and set(report.measured) == {PROFILE, "arm-ort-cpu-int8"}
    assert len(report.rows) == 9

    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "http://" not in html and "https://" not in html
    assert "&lt;m&amp;b&gt;" in html and "<m&b>" not in html
    # the answer first (students x profiles), then one table per profile
    assert html.count("<table>") == 3 and "Best artifact per student" in html
    assert html.index("The answer: what to ship") < html.index("<h2>Profile")

    markdown = (out / "report.md").read_text()
    assert "](pareto.png)" in markdown and "## Best artifact per student" in markdown
    assert "x86_64 (16 CPUs)" in markdown and "10 warm-up + 50 timed iterations" in markdown
    assert "onnxruntime 1.32.0" in markdown and "slower: p50 7.0 ms vs 3.1 ms" in markdown
    assert markdown.count("| resnet18 |") == 6  # 4 rows on x86, 2 on arm
    answer = markdown.split("## The answer: what to ship")[1].split("## Profile")[0]
    assert "| student |" in answer and "onnx-int8-u8s8, p50 3.1 ms" in answer
    # two trained resnet18s (the arm one is another run): a row each, named by run
    assert answer.count("| resnet18 (run ") == 2


def test_figure_without_top1_is_a_latency_bar_chart(profile_row):
    rows = [profile_row("onnx-fp32", 7.0), profile_row("onnx-int8-u8s8", 3.1)]
    figure = plot_pareto(rows, choose_best(rows), batch=1)
    assert figure["title"].startswith("p50 latency per artifact") and figure["png"][:4] == b"\x89PNG"
    mixed = [profile_row("onnx-fp32", 7.0, 85.0), profile_row("onnx-int8-u8s8", 3.1)]
    figure = plot_pareto(mixed, choose_best(mixed), batch=1)
    assert (
        figure["title"].startswith("Top-1 vs p50")
        and "1 artifact(s) without top-1 left out" in figure["caption"]
    )


def test_pareto_front_keeps_points_nothing_beats():
    points = [(3.0, 80.0), (7.0, 85.0), (5.0, 79.0), (3.0, 81.0), (9.0, 84.0), (1.0, 60.0)]
    assert pareto_front(points) == [(1.0, 60.0), (3.0, 81.0), (7.0, 85.0)]


# --- the commands ------------------------------------------------------------------------------------------


def test_report_command_end_to_end(profile_row, measured, tmp_path, monkeypatch, two_profiles):
    runs = two_profiles
    dumped = tmp_path / "device.json"
    ProfileResult(measured=measured("pi5"), rows=[profile_row("onnx-fp32", 40.0, profile="pi5")]).write(
        dumped
    )
    runner = CliRunner()

    out = tmp_path / "out"
    result = runner.invoke(cli, ["report", str(runs), str(dumped), "--out", str(out), "--max-top1-drop", "5"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {
        "report.html",
        "report.md",
        "report.csv",
        "report.json",
        "pareto.png",
    }
    assert str(out / "report.html") in result.stdout
    # with a 5-point budget the mobilenet int8 artifact (4 points down) wins too
    assert "mobilenetv2_100 on x86-ort-cpu-int8: onnx-int8-u8s8" in result.stdout
    assert "resnet18 on pi5: onnx-fp32" in result.stdout

    result = runner.invoke(cli, ["report", str(runs), "--json"])  # one source folder: SOURCE/report
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["out_dir"] == str(runs / "report") and (runs / "report" / "report.json").is_file()
    assert summary["rows"] == 9 and len(summary["best"]) == 4

    monkeypatch.chdir(tmp_path)  # several sources: ./report
    assert runner.invoke(cli, ["report", str(runs), str(dumped)]).exit_code == 0
    assert (tmp_path / "report" / "report.md").is_file()


def test_report_needs_no_torch(tmp_path, two_profiles):
    """Reports are made where the profiles are, which may be a device without PyTorch."""
    runs = two_profiles
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
        "from dait_edge.cli import main\n"
        f"main(['report', {str(runs)!r}, '--out', {str(tmp_path / 'out')!r}])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "report.html").is_file() and "resnet18 on arm-ort-cpu-int8" in result.stdout


def test_report_command_bad_input(assert_user_error, tmp_path):
    runner = CliRunner()
    assert_user_error(runner.invoke(cli, ["report", str(tmp_path / "missing")]), "does not exist")
    other = tmp_path / "other.json"
    other.write_text("[1, 2]")
    assert_user_error(runner.invoke(cli, ["report", str(other)]), "must be a JSON object (a profile result)")
    assert_user_error(
        runner.invoke(cli, ["report", str(tmp_path)]), "no profile results", "dait-edge profile"
    )
    bad = runner.invoke(cli, ["report", str(other), "--max-top1-drop", "-1"])
    assert bad.exit_code == 2 and "--max-top1-drop" in bad.output
    assert "pareto.png" in runner.invoke(cli, ["report", "--help"]).output


def test_profile_command_names_the_best_artifact(profile_row, measured, monkeypatch):
    rows = [profile_row("onnx-fp32", 7.0, 85.0), profile_row("onnx-int8-u8s8", 9.1, 84.9)]
    profiled = ProfileResult(measured=measured(PROFILE), rows=rows)
    monkeypatch.setattr("dait_edge.profiling.api.profile_artifacts", lambda *a, **k: profiled)
    runner = CliRunner()
    result = runner.invoke(cli, ["profile", "export", "--profile", PROFILE, "--json"])
    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.stdout)["best"]
    assert entry["profile"] == PROFILE and entry["chosen_format"] == "onnx-fp32"
    assert "int8 slower than fp32 on this hardware" in result.stderr
    result = runner.invoke(cli, ["profile", "export", "--profile", PROFILE, "--max-top1-drop", "0.05"])
    assert result.exit_code == 0, result.output
    assert "resnet18 on x86-ort-cpu-int8: onnx-fp32" in result.stdout
    assert "top-1 84.9% is 0.1 points below fp32 (budget 0.05)" in result.stdout


def test_hardware_is_named_by_cpu_model_and_gpu(measured):
    from dait_edge.records import Hardware
    from dait_edge.report.collect import short_hardware
    from dait_edge.report.tables import measured_lines

    hardware = Hardware("x86_64", "", "AMD EPYC 7B13", 2, "Linux", versions={"onnxruntime": "1.32.0"})
    assert short_hardware(hardware) == "AMD EPYC 7B13, 2 CPUs, onnxruntime 1.32.0"
    on_gpu = dataclasses.replace(
        hardware, gpu="NVIDIA H100", versions={"onnxruntime": "1.32.0", "tensorrt": "10.9"}
    )
    assert (
        short_hardware(on_gpu) == "AMD EPYC 7B13 with NVIDIA H100, 2 CPUs, onnxruntime 1.32.0, tensorrt 10.9"
    )
    [line] = measured_lines([measured(hardware=on_gpu)])
    assert line.startswith("Measured on AMD EPYC 7B13 with NVIDIA H100 (2 CPUs)")
