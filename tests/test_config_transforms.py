"""Config files and flags: values, overrides, validation."""

from __future__ import annotations

import pytest

from dait_edge.config import DistillConfig, build_config, load_toml
from dait_edge.errors import UserError


def test_toml_values_then_flags_override(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[distill]\ndataset = "cub"\ndata-root = "/data/cub"\nstage1_epochs = 7\nlr = 0.01\n')
    config = build_config(load_toml(path), {"lr": 0.5})
    assert (config.dataset, config.data_root, config.stage1_epochs, config.lr) == ("cub", "/data/cub", 7, 0.5)
    assert config.stage2_epochs == DistillConfig().stage2_epochs


@pytest.mark.parametrize(
    ("text", "message"),
    [("dataset = [", "cannot parse"), ("datset = 'cub'", r"unknown option\(s\) datset")],
)
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_toml(path)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"stages": "3"}, r"stages must be 1, 2 or 1,2 \(got '3'\)"),
        ({"labelled_fraction": 0.0}, r"labelled fraction must be in \(0, 1\]"),
        ({"stage1_epochs": 0}, "stage1_epochs must be at least 1"),
        ({"dataset": ""}, "the dataset is required"),
        ({"lr": -1.0}, "lr must be positive"),
    ],
)
def test_validation(values, message):
    with pytest.raises(UserError, match=message) as err:
        build_config({"dataset": "cub", "data_root": "/x", **values}, {})
    assert "--" not in str(err.value)  # the library says what is wrong; the CLI names the flag
    assert err.value.settings == (next(iter(values)),)


def test_config_file_values_have_their_settings_types(tmp_path):
    """What the manifest will hold is read back with the same checks, so a wrongly typed value stops here,
    naming the file and the setting, not after training, when export reads the manifest."""
    path = tmp_path / "run.toml"
    path.write_text('[distill]\nlr = "fast"\n')
    with pytest.raises(UserError, match=r"config file .*run.toml: field 'lr' must be a number, not \"fast\""):
        load_toml(path)
    path.write_text("[distill]\nstages = 2\nepochs = 3\n")  # an int is the stage's name
    assert load_toml(path)["stages"] == "2"
