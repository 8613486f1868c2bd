"""Sizes planned from the configuration, and the budget check at DAG-build time."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from acoustic_lottery import pipeline
from acoustic_lottery.configuration import validate_config
from acoustic_lottery.errors import InputError
from acoustic_lottery.planned_size import check_row_budgets, planned_size_kb

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


@pytest.fixture(scope="module")
def shipped() -> dict:
    return validate_config(yaml.safe_load((ROOT / "config.yaml").read_text()), SCHEMA)


def test_rows_stated_by_architecture_match_the_paper(shipped, caplog):
    caplog.set_level(logging.ERROR)
    sizes = check_row_budgets(shipped)
    for row, kb in {
        "row0": 90.3, "row3": 503, "row4": 503, "row6": 1006, "row7": 504, "row9": 1006,
        "row12": 3528, "row13": 3528, "row15": 7056,
    }.items():  # fmt: skip
        assert sizes[row] == pytest.approx(kb, rel=0.01), row


def test_lottery_rows_follow_from_the_sparsity_reached(shipped, caplog):
    """Weights-only tickets (scope weights): 0.67 % of the conv weights plus every BN
    value, where the report's 3.4 / 23.6 KB count the remaining weights only."""
    caplog.set_level(logging.ERROR)
    sizes = check_row_budgets(shipped)
    assert sizes["row5"] == pytest.approx(10.98, rel=0.01)  # report 3.4 KB
    assert sizes["row11"] == pytest.approx(10.98 / 4, rel=0.01)  # int8, report 0.9 KB
    assert sizes["row14"] == pytest.approx(49.25, rel=0.01)  # report 23.6 KB
    assert sizes["row16"] == pytest.approx(49.25 + 49.05, rel=0.01)  # report 47.2 KB


def test_the_size_matched_variant_plans_the_report_sizes(shipped):
    cfg = dict(shipped, models=dict(shipped["models"]))
    for name in ("sic_lth", "lic_lth"):
        lottery = {**cfg["models"][name]["lottery"], "preset": "acoustic_lottery_size_matched"}
        cfg["models"][name] = {**cfg["models"][name], "lottery": lottery}
    assert planned_size_kb(cfg, "sic_lth") == pytest.approx(3.4, rel=0.02)
    assert planned_size_kb(cfg, "lic_lth") == pytest.approx(23.6, rel=0.02)


def test_rows_over_budget_with_weights_only_tickets_say_so(shipped, caplog):
    """Rows 21, 22 and systems (a), (c), (d) exceed 128 KB by the honest rule and carry
    over_budget_ok; every other lottery row and system fits without it."""
    caplog.set_level(logging.ERROR)
    sizes = check_row_budgets(shipped)
    rows = pipeline.table_rows(shipped)
    over = {"row21": 196.6, "row22": 207.6, "systema": 256.8, "systemc": 211.7,
            "systemd": 146.2}  # fmt: skip
    for name, kb in over.items():
        assert sizes[name] == pytest.approx(kb, abs=0.1), name
        assert rows[name]["over_budget_ok"], name
    for name in ("row5", "row11", "row14", "row16", "row17", "row18", "row19", "row20",
                 "systemb"):  # fmt: skip
        assert sizes[name] <= 128 and not rows[name].get("over_budget_ok"), name


def test_int8_is_a_quarter_of_float32(shipped):
    assert planned_size_kb(shipped, "sic", quantized=True) == pytest.approx(126, rel=0.01)


def test_a_row_over_budget_names_each_member(shipped):
    row6 = dict(shipped["table1"]["6"], over_budget_ok=False)
    cfg = dict(shipped, table1={"6": row6}, systems={})
    with pytest.raises(InputError) as err:
        check_row_budgets(cfg)
    text = str(err.value)
    assert "table1.6" in text and "sic 503.00 KB" in text and "sic3 500.7" in text
    assert "128 KB budget" in text


CONFIGS = [ROOT / "config.yaml", *sorted((ROOT / "tests/workflow").glob("*_config.yaml"))]
OVERLAYS = sorted((ROOT / "configs").glob("*.yaml"))


def test_known_counts_are_the_models_they_name():
    """Each entry of the committed table equals the count of the model built with torch:
    an architecture change that forgets to rewrite the table fails here."""
    from acoustic_lottery.planned_size import KNOWN_VALUES, count_dense_values

    table = json.loads(KNOWN_VALUES.read_text())
    assert table, KNOWN_VALUES
    for key, counts in table.items():
        arch, task, width = key.split("/")
        assert list(count_dense_values(arch, task, float(width))) == counts, key


def test_every_shipped_and_test_config_is_counted_without_torch():
    """The shipped configs (and overlays) and the workflow tests' configs need no torch to
    plan their rows, so building their DAG does not import it. The fix when this fails:
    python -m acoustic_lottery.planned_size config.yaml tests/workflow/*_config.yaml
    --overlay configs/tau2020.yaml"""
    from acoustic_lottery.planned_size import KNOWN_VALUES, known_values_key, models_of_configs

    table = json.loads(KNOWN_VALUES.read_text())
    models = models_of_configs(CONFIGS, SCHEMA, OVERLAYS)
    assert {known_values_key(*m) for m in models} <= set(table)
    code = (
        "import sys, yaml\n"
        "from acoustic_lottery.configuration import validate_config\n"
        "from acoustic_lottery.planned_size import check_row_budgets\n"
        f"cfg = validate_config(yaml.safe_load(open({str(ROOT / 'config.yaml')!r})), "
        f"{str(SCHEMA)!r})\n"
        "check_row_budgets(cfg)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
