"""params.yaml: the knobs `dvc exp run -S` edits, laid over config.yaml."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest
import yaml

from acoustic_lottery.configuration import validate_config
from acoustic_lottery.errors import InputError
from acoustic_lottery.experiment_params import (
    apply_params,
    check_params_file,
    render_params,
)
from acoustic_lottery.pipeline import train_spec

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "config.yaml").read_text())
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def test_committed_params_file_lists_every_knob_of_config_yaml():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert check_params_file(CONFIG, params) == []
    assert (ROOT / "params.yaml").read_text() == render_params(CONFIG)


def test_an_empty_params_file_changes_nothing():
    params = yaml.safe_load(render_params(CONFIG))
    assert apply_params(CONFIG, params) == CONFIG
    assert apply_params(CONFIG, None) == CONFIG


def test_set_values_reach_the_training_specs_and_the_command_line_still_wins():
    params = yaml.safe_load(render_params(CONFIG))
    params["models"]["sic"]["training"]["epochs"] = 3
    params["training"]["lr_max"] = 0.05
    config = validate_config(apply_params(CONFIG, params), SCHEMA)
    assert train_spec(config, "sic")["epochs"] == 3
    assert train_spec(config, "lic")["epochs"] == CONFIG["training"]["epochs"]
    assert train_spec(config, "lic")["lr_max"] == 0.05
    # a model's own training block keeps its other keys
    base = validate_config(CONFIG, SCHEMA)
    params["models"]["baseline"]["training"]["seed"] = 7
    config = validate_config(apply_params(CONFIG, params), SCHEMA)
    assert train_spec(config, "baseline") == {
        **train_spec(base, "baseline"),
        "seed": 7,
        "lr_max": 0.05,
    }
    # --config training.lr_max=0.2 (Snakemake's overwrite_config) beats params.yaml
    over = apply_params(CONFIG, params, overrides={"training": {"lr_max": 0.2}})
    assert over["training"]["lr_max"] == 0.2


def test_wrong_params_name_the_key():
    with pytest.raises(InputError, match=r"models\.sicc: no such model"):
        apply_params(CONFIG, {"models": {"sicc": {"training": {"epochs": 3}}}})
    with pytest.raises(InputError, match=r"unknown top-level key\(s\) \['features'\]"):
        apply_params(CONFIG, {"features": {"workers": 1}})
    with pytest.raises(InputError, match=r"models\.sic: only `training`"):
        apply_params(CONFIG, {"models": {"sic": {"arch": "lic"}}})
    # a wrong global type is the schema's error, naming the key, before any job runs
    bad = apply_params(CONFIG, {"training": {"epochs": "six"}})
    with pytest.raises(InputError, match=r"training\.epochs"):
        validate_config(bad, SCHEMA)


def test_check_reports_a_model_the_file_lacks():
    params = yaml.safe_load(render_params(CONFIG))
    del params["models"]["sic"]
    problems = check_params_file(CONFIG, params)
    assert "missing models.sic.training.epochs" in problems


@pytest.mark.parametrize(
    "override, line",
    [
        ("models.sic.training.epochs=3", "      epochs: 3"),
        ("training.lr_max=0.05", "  lr_max: 0.05"),
    ],
)
def test_dvc_set_param_changes_exactly_one_line(tmp_path, override, line):
    """What `dvc exp run -S` does to the file (DVC's own Hydra round trip), without `+`."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    apply_overrides(path, [override])
    before = (ROOT / "params.yaml").read_text().splitlines()
    after = path.read_text().splitlines()
    changed = [d for d in difflib.ndiff(before, after) if d[:2] in ("- ", "+ ")]
    assert len(changed) == 2 and changed[1] == f"+ {line}", changed
