"""The 128 KB budget: sums, the error message, and the over-budget escape hatch."""

from __future__ import annotations

import logging

import pytest

from acoustic_lottery.errors import InputError
from acoustic_lottery.systems.budget import check_budget, system_size_kb


def test_submission_system_a_fits():
    # System (a): five LICs of 23.6 KB and one SIC of 3.4 KB = 121.4 KB
    sizes = {f"lic{i}": 23.6 for i in range(5)} | {"sic": 3.4}
    assert check_budget("a", sizes) == pytest.approx(121.4)


def test_over_budget_names_system_budget_total_and_members():
    sizes = {"lic_two_stage_10": 3528.0, "lic_two_stage_3": 3528.0}
    with pytest.raises(InputError) as exc:
        check_budget("row15", sizes)
    msg = str(exc.value)
    for part in ("row15", "128 KB", "7056.00 KB", "lic_two_stage_10 3528.00 KB", "lic_two_stage_3"):
        assert part in msg


def test_over_budget_ok_returns_total_and_warns(caplog):
    with caplog.at_level(logging.WARNING):
        assert check_budget("row3", {"sic": 503.0}, over_budget_ok=True) == 503.0
    assert "row3" in caplog.text and "exceeds" in caplog.text


def test_exactly_on_budget_passes_and_custom_budget():
    assert check_budget("s", {"a": 100.0, "b": 28.0}) == 128.0
    with pytest.raises(InputError, match="64 KB"):
        check_budget("s", {"a": 100.0}, budget_kb=64)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "3", True])
def test_bad_sizes_are_errors(bad):
    with pytest.raises(InputError, match="member 'm'"):
        system_size_kb({"m": bad}, "s")


def test_no_members_and_bad_budget_are_errors():
    with pytest.raises(InputError, match="no member"):
        check_budget("s", {})
    with pytest.raises(InputError, match="budget"):
        check_budget("s", {"a": 1.0}, budget_kb=0)
