"""The typed records: every file the tool writes and reads back round-trips, names a missing or mistyped
field in one line, refuses a newer schema, and files written before records had versions stay readable."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest

from dait_edge import records as R
from dait_edge.records import FILE_RECORDS, RecordError

V0 = Path(__file__).parent / "data" / "v0"
# Each record that is a file, and the files of it the code wrote before records had versions.
LEGACY = {
    R.RunSummary: ["run-summary.json"],
    R.RunManifest: ["run-manifest.json"],
    R.TeacherInfo: ["teacher-info.json"],
    R.Sidecar: ["sidecar-onnx-fp32.json", "sidecar-onnx-int8-u8s8.json"],
    R.ExportSummary: ["export-summary.json"],
    R.ProfileResult: [
        "profile-result-ort.json",
        "profile-result-torch.json",
        "profile-json-output.json",
        "profile-result-earliest.json",
    ],
    R.Report: ["report.json"],
    R.SweepState: ["sweep.json"],
}


def legacy(cls) -> R.Record:
    return cls.read(V0 / LEGACY[cls][0])


def test_every_file_record_has_a_legacy_fixture():
    assert set(LEGACY) == set(FILE_RECORDS)  # a new record needs a file of the shape before it


@pytest.mark.parametrize("cls", FILE_RECORDS, ids=lambda c: c.__name__)
def test_round_trip_write_read_equal(cls, tmp_path):
    record = legacy(cls)
    path = record.write(tmp_path / "one" / (cls.FILE or "record.json"))
    assert cls.read(path) == record
    written = json.loads(path.read_text())
    assert written["kind"] == cls.KIND and written[cls.VERSION_KEY] == cls.VERSION
    if cls.FILE:  # a folder is enough to find it
        assert cls.read(path.parent) == record
    assert not list(path.parent.glob(".*.tmp"))  # written atomically


@pytest.mark.parametrize(
    ("cls", "name"), [(cls, name) for cls, names in LEGACY.items() for name in names], ids=lambda v: str(v)
)
def test_files_written_before_versions_are_read(cls, name):
    data = json.loads((V0 / name).read_text())
    assert "kind" not in data and "schema_version" not in data  # really the old shape
    record = cls.read(V0 / name)
    assert cls.matches(data) and cls.from_dict(data) == record
    # what the old file said is what the record holds
    for field in dataclasses.fields(cls):
        if field.name in data and not dataclasses.is_dataclass(getattr(record, field.name)):
            value = getattr(record, field.name)
            if isinstance(value, (str, int, bool)) or value is None:
                assert value == data[field.name], field.name


def test_legacy_values_survive_the_upgrade():
    torch_rows = R.ProfileResult.read(V0 / "profile-result-torch.json")
    assert [r.label for r in torch_rows.rows] == ["checkpoint (torch-eager)", "checkpoint (torch-compiled)"]
    assert all(r.reference for r in torch_rows.rows)  # the PyTorch model parity is measured against
    assert torch_rows.measured.hardware.versions == {"torch": "2.14.1+cu130"}
    assert torch_rows.measured.hardware.cpu == "AMD EPYC"
    ort_rows = R.ProfileResult.read(V0 / "profile-result-ort.json").rows
    assert {r.label for r in ort_rows} == {"onnx-fp32", "onnx-int8-u8s8"} and not any(
        r.reference for r in ort_rows
    )
    summary = legacy(R.RunSummary)
    assert summary.checkpoints.student == "stage2/student_last.safetensors"
    assert summary.data_config.input_size == [3, 32, 32] and summary.has_student
    old_config = legacy(R.RunManifest).config
    assert old_config.stage1_epochs == 1
    # settings it did not record read as those runs trained: the shared recipe's protocol, RISE's old weights
    assert (old_config.recipe, old_config.optimizer, old_config.train_crop) == ("shared", "adamw", "resize")
    assert (old_config.lr_schedule, old_config.warmup_epochs, old_config.rise_weights) == ("step", 0, "alpha")
    assert [m.losses for m in R.read_metrics(V0 / "metrics.jsonl")][1] == {
        "loss": pytest.approx(0.16613169),
        "loss_ce": pytest.approx(8.62727213),
        "loss_sra": pytest.approx(0.16613169),
    }
    assert legacy(R.SweepState).students["mobilenetv2_100"].profiled == ["x86-ort-cpu-int8"]
    earliest = R.ProfileResult.read(V0 / "profile-result-earliest.json")
    assert earliest.measured.runtime == "onnxruntime" and earliest.measured.latency_budget_ms is None
    assert earliest.measured.hardware.cpu == "x86_64"  # the processor, before the CPU model was recorded
    assert {(r.profile, r.model, r.top1_data) for r in earliest.rows} == {("x86-ort-cpu-int8", None, None)}


def test_files_of_one_name_are_told_apart():
    """An export's summary.json is not a run's: readers that look for runs pass over it."""
    export = json.loads((V0 / "export-summary.json").read_text())
    assert R.ExportSummary.matches(export) and not R.RunSummary.matches(export)
    assert R.RunSummary.read_if_present(V0 / "export-summary.json") is None
    with pytest.raises(
        RecordError, match="export-summary.json: field 'kind' is missing and the file does not look"
    ):
        R.RunSummary.read(V0 / "export-summary.json")
    written = legacy(R.ExportSummary).to_dict()
    with pytest.raises(
        RecordError, match="field 'kind' says 'export-summary': this file is not a run summary"
    ):
        R.RunSummary.from_dict(written, "x.json")


def _required(cls) -> list[str]:
    return [
        f.name
        for f in dataclasses.fields(cls)
        if not f.metadata and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


def _wrong_value(annotation):
    """A JSON value that does not fit `annotation` (None where null is not allowed)."""
    args = typing.get_args(annotation)
    allows_null = type(None) in args
    if annotation in (str, int, float, bool) or (
        allows_null and set(args) - {type(None)} <= {str, int, float, bool}
    ):
        return {"an": "object"}
    return 12345 if allows_null else None


@pytest.mark.parametrize("cls", FILE_RECORDS, ids=lambda c: c.__name__)
def test_a_missing_or_mistyped_field_is_one_line_naming_file_and_field(cls, tmp_path):
    good = legacy(cls).to_dict()
    hints = typing.get_type_hints(cls)
    path = tmp_path / "bad.json"
    for name in _required(cls):
        path.write_text(json.dumps({k: v for k, v in good.items() if k != name}))
        with pytest.raises(RecordError) as missing:
            cls.read(path)
        assert str(missing.value) == f"{path}: field {name!r} is missing; {cls.FIX}."
        path.write_text(json.dumps(good | {name: _wrong_value(hints[name])}))
        with pytest.raises(RecordError) as mistyped:
            cls.read(path)
        message = str(mistyped.value)
        assert message.startswith(f"{path}: field '{name}") and " must be " in message, message
        assert "\n" not in message and message.endswith(f"; {cls.FIX}.")


def test_nested_fields_are_named_by_their_path(tmp_path):
    data = R.ProfileResult.read(V0 / "profile-result-ort.json").to_dict()
    data["rows"][1]["latency_ms"]["p50"] = "fast"
    with pytest.raises(
        RecordError, match=r"field 'rows\[1\]\.latency_ms\.p50' must be a number, not \"fast\""
    ):
        R.ProfileResult.from_dict(data, "x.json")
    data = legacy(R.RunSummary).to_dict()
    data["checkpoints"]["student"] = ["a", "list"]
    with pytest.raises(RecordError, match=r"field 'checkpoints\.student' must be a string"):
        R.RunSummary.from_dict(data, "summary.json")


def test_a_newer_schema_or_a_damaged_file_is_refused(tmp_path):
    newer = legacy(R.RunSummary).to_dict() | {"schema_version": R.RunSummary.VERSION + 1}
    with pytest.raises(RecordError, match="newer than this dait-edge reads .* upgrade dait-edge"):
        R.RunSummary.from_dict(newer, "summary.json")
    truncated = tmp_path / "summary.json"
    truncated.write_text(json.dumps(legacy(R.RunSummary).to_dict())[:200])
    with pytest.raises(RecordError, match="is not valid JSON"):
        R.RunSummary.read(truncated)
    with pytest.raises(RecordError, match="does not exist"):
        R.RunSummary.read(tmp_path / "absent")
    # looking for runs passes over a file that is not JSON (it cannot tell what it was); a run summary
    # with a bad field is named
    assert R.RunSummary.read_if_present(truncated.parent) is None
    truncated.write_text(json.dumps(legacy(R.RunSummary).to_dict() | {"num_classes": "three"}))
    with pytest.raises(RecordError, match="field 'num_classes' must be a whole number"):
        R.RunSummary.read_if_present(truncated.parent)


def test_metrics_lines_flatten_their_loss_terms(tmp_path):
    lines = R.read_metrics(V0 / "metrics.jsonl")
    path = tmp_path / "metrics.jsonl"
    R.write_metrics(path, lines[:1])
    R.append_metrics(path, lines[1])
    assert R.read_metrics(path) == lines
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first) == [
        "stage",
        "epoch",
        "alpha",
        "lr",
        "loss",
        "loss_ce",
        "loss_ira",
        "loss_sia",
        "top1",
        "top5",
        "seconds",
    ]
    path.write_text(path.read_text() + '{"stage": 2, "epoch": "one"}\n')
    with pytest.raises(RecordError, match=r"metrics.jsonl line 3: field 'epoch' must be a whole number"):
        R.read_metrics(path)
