"""Atomic writes: all or nothing, and a folder that cannot be written is a one-line error."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dait_edge.cli import cli
from dait_edge.errors import UserError
from dait_edge.records import ProfileResult
from dait_edge.utils.io import atomic_path, write_json_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out" / "result.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"v": 2, "half')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]


def test_an_unwritable_folder_is_a_user_error(tmp_path, profile_row, measured, assert_user_error):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(
        UserError, match=r"cannot write .*a-file/x\.json: .*; choose a folder you can write to"
    ):
        write_json_atomic(blocker / "x.json", {})

    result_file = tmp_path / "pi5.json"
    ProfileResult(measured=measured(), rows=[profile_row("onnx-fp32", 3.0, 80.0)]).write(result_file)
    result = CliRunner().invoke(cli, ["report", str(result_file), "--out", str(blocker / "report")])
    assert_user_error(result, "cannot write", "choose a folder you can write to")
