"""Tests for pruning.schedule: compounding rates, size targets, presets, progressive steps."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.pruning.schedule import (
    PRESETS,
    count_values,
    preset,
    progressive_steps,
    prunable_sparsity_for_size,
    rate_per_round,
    rounds_for,
    size_kb,
    sparsity_after,
    target_for_size,
)


def small_model() -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 8, 3),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 10),
        )


def test_rate_per_round_compounds_back_to_the_target():
    r = rate_per_round(0.9933, 2)
    assert r == pytest.approx(1 - 0.0067**0.5, abs=1e-15)
    assert r == pytest.approx(0.918146, abs=1e-6)
    assert sparsity_after(r, 2) == pytest.approx(0.9933, abs=1e-12)
    # and one round at that rate is far from the target
    assert sparsity_after(r, 1) < 0.93
    for s, t in [(0.5, 1), (0.9, 3), (0.99, 10)]:
        assert sparsity_after(rate_per_round(s, t), t) == pytest.approx(s, abs=1e-12)
    assert rate_per_round(0.0, 4) == 0.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: rate_per_round(1.0, 2),
        lambda: rate_per_round(-0.1, 2),
        lambda: rate_per_round(0.5, 0),
        lambda: rate_per_round(0.5, 1.5),
        lambda: sparsity_after(1.2, 1),
        lambda: rounds_for(0.5, 0.0),
    ],
)
def test_schedule_input_errors(call):
    with pytest.raises(InputError):
        call()


def test_rounds_for_imp_at_20_percent():
    assert rounds_for(0.36, 0.2) == 2  # exactly 1 - 0.8**2, not 3 from float noise
    assert rounds_for(0.5, 0.2) == 4  # 0.8**3 = 0.512 leaves too many
    assert rounds_for(0.9933, 0.2) == 23
    assert sparsity_after(0.2, 23) >= 0.9933 > sparsity_after(0.2, 22)
    assert rounds_for(0.0, 0.2) == 0


def test_size_formula_and_the_report_sic_example():
    # A SIC-sized model: 128,768 stored values, 2,000 of them BN / biases.
    # 3.4 KB at 4 bytes is 870.4 values: fewer than the 2,000 unprunable ones, so no
    # weight sparsity reaches it (the report's 3.4 KB must count pruned BN/bias too).
    with pytest.raises(InputError, match=r"below the 7\.81 KB taken by the 2000 unprunable"):
        prunable_sparsity_for_size(128_768 - 2_000, 2_000, 3.4)
    # what 99.33 % prunable sparsity actually gives for that model
    assert size_kb(126_768, 2_000, 0.9933) == pytest.approx(
        (2_000 + 0.0067 * 126_768) * 4 / 1024, rel=1e-12
    )
    assert size_kb(126_768, 2_000, 0.9933) == pytest.approx(11.13, abs=0.01)
    # with 200 unprunable values 3.4 KB is reachable: s = 1 - (870.4 - 200) / 128,568
    s = prunable_sparsity_for_size(128_768 - 200, 200, 3.4)
    assert s == pytest.approx(1 - (3.4 * 1024 / 4 - 200) / 128_568, rel=1e-12)
    assert size_kb(128_568, 200, s) == pytest.approx(3.4, rel=1e-12)
    # int8 (1 byte per value) needs less pruning for the same size
    assert prunable_sparsity_for_size(128_568, 200, 3.4, bytes_per_value=1) < s
    # a target above the dense size needs no pruning
    assert prunable_sparsity_for_size(1000, 10, 100.0) == 0.0


def test_target_for_size_counts_the_model():
    m = small_model()
    prunable, unprunable = count_values(m)
    weights = 4 * 1 * 9 + 8 * 4 * 9 + 10 * 8
    assert prunable == weights
    # biases 4+8+10, BN gamma/beta/mean/var 4*4 + 4*8; num_batches_tracked excluded
    assert unprunable == (4 + 8 + 10) + 4 * 4 + 4 * 8
    target = (unprunable + 0.25 * prunable) * 4 / 1024
    s = target_for_size(m, target)
    assert s == pytest.approx(0.75, abs=1e-12)
    assert target_for_size(m.state_dict(), target) == pytest.approx(s, abs=1e-12)
    # with only one layer prunable, the rest of the model alone exceeds that size
    with pytest.raises(InputError, match="unprunable values alone"):
        target_for_size(m, target, names=["3.weight"])


def test_presets_are_plain_dicts_with_derived_values():
    json.dumps(PRESETS)  # plain, serialisable
    al = PRESETS["acoustic_lottery"]
    assert al["strategy"] == "small_weights" and al["rounds"] == 2
    assert al["rate"] == pytest.approx(rate_per_round(0.9933, 2))
    assert al["final_sparsity"] == pytest.approx(0.9933, abs=1e-12)
    assert al["rewind"] == "init" and al["reset_optimizer"] is True
    audio = PRESETS["audio_lottery"]
    assert audio["rate"] == 0.2 and audio["rounds"] == 23
    assert audio["reset_optimizer"] is True and audio["rewind"] == "init"
    assert audio["final_sparsity"] >= audio["target_sparsity"]
    prog = PRESETS["progressive"]
    assert prog["rewind"] is None and prog["ramp"] in ("cubic", "linear")
    one = preset("acoustic_lottery", rounds=1)
    assert one["rate"] == pytest.approx(0.9933)
    assert preset("audio_lottery", target_sparsity=0.36)["rounds"] == 2
    # a fresh copy each time: editing it does not change the registry
    one["strategy"] = "random"
    assert PRESETS["acoustic_lottery"]["strategy"] == "small_weights"
    with pytest.raises(InputError, match="unknown 'lth'"):
        preset("lth")
    with pytest.raises(InputError, match="unknown key"):
        preset("progressive", stepz=3)


@pytest.mark.parametrize("ramp", ["cubic", "linear"])
def test_progressive_steps_reach_target_on_distinct_steps(ramp):
    steps = progressive_steps(0.9, 8, start_epoch=2, end_epoch=10, steps_per_epoch=25, ramp=ramp)
    assert len(steps) == 8
    at = [p.step for p in steps]
    assert at == sorted(set(at)) and at[0] > 50 and at[-1] == 250
    sp = [p.sparsity for p in steps]
    assert all(b > a for a, b in zip(sp, sp[1:]))
    assert sp[-1] == 0.9
    # the per-step rates (fractions of the remaining) compound to the cumulative sparsity
    keep = 1.0
    for p in steps:
        keep *= 1.0 - p.rate
        assert 1.0 - keep == pytest.approx(p.sparsity, abs=1e-12)
    inc = [b - a for a, b in zip([0.0] + sp, sp)]
    if ramp == "linear":
        assert inc == pytest.approx([0.9 / 8] * 8)
    else:  # cubic: front-loaded, gentle at the end
        assert inc[0] > inc[-1] * 10
        assert sp[0] == pytest.approx(0.9 * (1 - (1 - 1 / 8) ** 3))


def test_progressive_steps_errors_and_initial_sparsity():
    with pytest.raises(InputError, match="does not fit"):
        progressive_steps(0.9, 30, 0, 1, 20)
    with pytest.raises(InputError, match="ramp"):
        progressive_steps(0.9, 3, 0, 1, 20, ramp="exp")
    with pytest.raises(InputError, match="start_epoch"):
        progressive_steps(0.9, 3, 2, 1, 20)
    with pytest.raises(InputError, match="below initial_sparsity"):
        progressive_steps(0.5, 3, 0, 1, 20, initial_sparsity=0.6)
    steps = progressive_steps(0.9, 2, 0, 1, 10, ramp="linear", initial_sparsity=0.5)
    assert [p.sparsity for p in steps] == pytest.approx([0.7, 0.9])
    assert steps[0].rate == pytest.approx(1 - 0.3 / 0.5)
