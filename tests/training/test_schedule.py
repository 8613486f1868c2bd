"""SGDR schedule: lr_max at cycle starts, exactly lr_min at cycle ends 2, 6, 14."""

from __future__ import annotations

import logging
import math

import pytest

from acoustic_lottery.training.schedule import check_epochs, cycle_ends, cycle_position, lr_at
from acoustic_lottery.training.spec import TrainSpec

SPEC = TrainSpec.from_dict({"arch": "sic"})
SPE = 7  # steps per epoch


def test_cycle_boundaries() -> None:
    assert cycle_ends(SPEC) == [2, 6, 14]
    for start_epoch in (0, 2, 6):
        assert lr_at(start_epoch * SPE, SPE, SPEC) == pytest.approx(SPEC.lr_max, abs=0)
    for end_epoch in (2, 6, 14):
        assert lr_at(end_epoch * SPE - 1, SPE, SPEC) == pytest.approx(SPEC.lr_min, rel=1e-12)
    # After the last batch of a cycle the next one restarts at lr_max.
    assert lr_at(14 * SPE, SPE, SPEC) == SPEC.lr_max
    assert cycle_position(14 * SPE, SPE, SPEC) == (3, 0, 16 * SPE)


def test_cosine_shape_within_a_cycle() -> None:
    n = 4 * SPE  # second cycle: epochs 2..6
    lrs = [lr_at(2 * SPE + i, SPE, SPEC) for i in range(n)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))  # strictly decreasing
    mid = SPEC.lr_min + 0.5 * (SPEC.lr_max - SPEC.lr_min) * (1 + math.cos(math.pi * 10 / (n - 1)))
    assert lrs[10] == pytest.approx(mid, rel=1e-12)


def test_pure_function_is_exactly_resumable() -> None:
    # Same value whether computed in one pass or "after a resume" at any step.
    straight = [lr_at(s, SPE, SPEC) for s in range(14 * SPE)]
    for resume_at in (0, 5, 2 * SPE, 6 * SPE + 3):
        resumed = [lr_at(s, SPE, SPEC) for s in range(resume_at, 14 * SPE)]
        assert resumed == straight[resume_at:]


def test_warns_when_training_stops_mid_cycle(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert check_epochs(SPEC) is True
        assert not caplog.records
        assert check_epochs(SPEC.replace(epochs=10)) is False
    assert "epochs=10" in caplog.text and "next 14" in caplog.text


def test_other_cycle_settings() -> None:
    spec = SPEC.replace(cycle_epochs=1, cycle_mult=1, epochs=3)
    assert cycle_ends(spec) == [1, 2, 3]
    assert lr_at(SPE, SPE, spec) == spec.lr_max and lr_at(SPE - 1, SPE, spec) == spec.lr_min
