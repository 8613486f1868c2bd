"""Sizes planned from the configuration, and the budget check at DAG-build time."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

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
    caplog.set_level(logging.ERROR)
    sizes = check_row_budgets(shipped)
    assert sizes["row5"] == pytest.approx(3.4, rel=0.05)
    assert sizes["row14"] == pytest.approx(23.6, rel=0.05)
    assert sizes["row16"] == pytest.approx(47.2, rel=0.05)


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
