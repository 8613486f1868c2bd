"""Tests for pruning.strategies: exact counts, nesting, global safety, controls."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.pruning.masks import full_mask, layer_kinds, mask_sparsity
from acoustic_lottery.pruning.strategies import (
    LARGE_FINAL_FACTORS,
    REPORT_STRATEGIES,
    STRATEGIES,
    build_mask,
    global_small_weights,
    large_final,
    large_final_rates,
    random_mask_like,
    random_prune,
    seeded_generator,
    small_weights,
)


def small_model(seed: int = 0) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
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


def wide_model(seed: int = 0) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(3, 16, 3),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )


def trained_like(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """θ_f stand-in: the state with weights perturbed (no two |w| equal)."""
    g = torch.Generator().manual_seed(seed)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for k, v in state.items():
        if v.is_floating_point():
            state[k] = v + 0.1 * torch.randn(v.shape, generator=g)
    return state


def expected_rates(strategy, mask, rate, kinds):
    if strategy == "large_final":
        return large_final_rates(mask, rate, kinds)
    return dict.fromkeys(mask, rate)


def run(strategy, weights, mask, rate, kinds, seed=0):
    if strategy == "large_final":
        return large_final(weights, mask, rate, kinds=kinds)
    if strategy == "random":
        return random_prune(weights, mask, rate, generator=seeded_generator(seed))
    return STRATEGIES[strategy](weights, mask, rate)


@pytest.mark.parametrize("strategy", ["large_final", "small_weights", "random"])
@pytest.mark.parametrize("builder", [small_model, wide_model])
def test_per_layer_strategies_hit_target_within_one_weight_per_layer(strategy, builder):
    model = builder()
    kinds = layer_kinds(model, full_mask(model))
    mask = full_mask(model)
    for rnd, rate in enumerate([0.2, 0.5, 0.9]):
        weights = trained_like(model, seed=rnd)
        new = run(strategy, weights, mask, rate, kinds, seed=rnd)
        rates = expected_rates(strategy, mask, rate, kinds)
        for name in mask:
            before = int(mask[name].sum())
            after = int(new[name].sum())
            target = rates[name] * before
            assert abs((before - after) - target) <= 0.5 + 1e-9, (name, before, after, target)
            assert not (new[name] & ~mask[name]).any(), "a pruned weight came back"
        mask = new


@pytest.mark.parametrize("builder", [small_model, wide_model])
def test_global_hits_overall_target_exactly(builder):
    model = builder()
    mask = full_mask(model)
    for rnd, rate in enumerate([0.2, 0.5, 0.9]):
        new = global_small_weights(trained_like(model, rnd), mask, rate)
        before = mask_sparsity(mask)["kept"]
        after = mask_sparsity(new)["kept"]
        assert before - after == math.floor(rate * before + 0.5)
        for name in mask:
            assert not (new[name] & ~mask[name]).any()
        mask = new


def test_large_final_overall_sparsity_matches_rate_within_one_per_layer():
    model = wide_model()
    mask = full_mask(model)
    kinds = layer_kinds(model, mask)
    new = large_final(trained_like(model, 0), mask, 0.9, kinds=kinds)
    total = mask_sparsity(mask)["total"]
    pruned = mask_sparsity(new)["pruned"]
    assert abs(pruned - 0.9 * total) <= len(mask) * 0.5


def test_repeated_pruning_takes_a_fraction_of_the_remaining_weights():
    model = wide_model()
    mask = full_mask(model)
    sizes = {n: m.numel() for n, m in mask.items()}
    for rnd in range(2):
        mask = small_weights(trained_like(model, rnd), mask, 0.5)
    for name, n in sizes.items():
        # 0.5 of the remaining twice leaves a quarter (within the per-round rounding)
        assert abs(int(mask[name].sum()) - n / 4) <= 1.0


def test_already_pruned_weights_stay_pruned_even_if_large():
    model = small_model()
    weights = trained_like(model, 0)
    mask = small_weights(weights, full_mask(model), 0.5)
    # make the pruned positions the LARGEST weights: they must not be revived
    boosted = dict(weights)
    for name, m in mask.items():
        w = weights[name].clone()
        w[~m] = 1e6
        boosted[name] = w
    new = small_weights(boosted, mask, 0.5)
    for name in mask:
        assert not (new[name] & ~mask[name]).any()
        assert abs(int(new[name].sum()) - int(mask[name].sum()) / 2) <= 0.5


def test_small_weights_prunes_exactly_the_smallest_magnitudes():
    model = wide_model()
    weights = trained_like(model, 3)
    new = small_weights(weights, full_mask(model), 0.3)
    for name, m in new.items():
        a = weights[name].abs().reshape(-1).numpy()
        k = math.floor(0.3 * a.size + 0.5)
        expected = np.ones(a.size, dtype=bool)
        expected[np.argsort(a, kind="stable")[:k]] = False
        assert np.array_equal(m.reshape(-1).numpy(), expected), name


def test_ties_are_broken_by_index():
    weights = {"w": torch.ones(2, 5)}
    mask = {"w": torch.ones(2, 5, dtype=torch.bool)}
    for fn in (small_weights, global_small_weights):
        out = fn(weights, mask, 0.4)["w"].reshape(-1)
        assert out.tolist() == [False] * 4 + [True] * 6
    out = large_final(weights, mask, 0.4)["w"].reshape(-1)
    assert out.tolist() == [False] * 4 + [True] * 6


def test_global_never_empties_a_layer_with_tiny_weights():
    model = wide_model()
    weights = trained_like(model, 0)
    weights["8.weight"] = weights["8.weight"] * 1e-6  # all far below every other layer
    mask = full_mask(model)
    n_tiny = mask["8.weight"].numel()
    rate = 0.6
    total = mask_sparsity(mask)["total"]
    assert n_tiny < rate * total  # a plain global threshold would remove the whole layer

    for min_keep in (1, 5):
        new = global_small_weights(weights, mask, rate, min_keep=min_keep)
        assert int(new["8.weight"].sum()) == min_keep
        # the survivors of the tiny layer are its largest weights
        a = weights["8.weight"].abs()
        assert a[new["8.weight"]].min() >= a[~new["8.weight"]].max()
        # the shortfall went to other layers: the overall count is still exact
        assert mask_sparsity(new)["pruned"] == math.floor(rate * total + 0.5)
    # min_keep=0 reproduces the plain global threshold, which does empty it
    plain = global_small_weights(weights, mask, rate, min_keep=0)
    assert int(plain["8.weight"].sum()) == 0


def test_global_uses_one_threshold_when_no_layer_is_protected():
    model = wide_model()
    weights = trained_like(model, 5)
    new = global_small_weights(weights, full_mask(model), 0.5)
    kept = torch.cat([weights[n].abs()[m] for n, m in new.items()])
    pruned = torch.cat([weights[n].abs()[~m] for n, m in new.items()])
    assert pruned.max() <= kept.min()


def test_per_layer_min_keep_leaves_survivors():
    weights = {"a.weight": torch.randn(3, 1, generator=torch.Generator().manual_seed(0))}
    mask = {"a.weight": torch.ones(3, 1, dtype=torch.bool)}
    assert int(small_weights(weights, mask, 1.0)["a.weight"].sum()) == 1
    assert int(small_weights(weights, mask, 1.0, min_keep=0)["a.weight"].sum()) == 0
    assert int(small_weights(weights, mask, 0.9, min_keep=2)["a.weight"].sum()) == 2


def test_large_final_rates_follow_zhou_families():
    model = wide_model()
    mask = full_mask(model)
    kinds = layer_kinds(model, mask)
    literal = large_final_rates(mask, 0.2, kinds, match_overall=False)
    assert literal["8.weight"] == pytest.approx(0.2)  # hidden dense layer: the base rate
    assert literal["0.weight"] == pytest.approx(1 - 0.8 ** LARGE_FINAL_FACTORS["conv"])
    assert literal["0.weight"] == pytest.approx(0.15)  # Zhou's Conv-6 conv rate
    assert literal["10.weight"] == pytest.approx(0.10)  # output layer at half the dense rate
    matched = large_final_rates(mask, 0.9, kinds)
    assert matched["10.weight"] < matched["0.weight"] < matched["8.weight"] < 1.0
    assert matched["0.weight"] == matched["3.weight"]
    # several heads (MTL): every named output layer gets the output rate
    two = large_final_rates(
        mask, 0.2, kinds, match_overall=False, outputs=["8.weight", "10.weight"]
    )
    assert two["8.weight"] == pytest.approx(0.10) and two["10.weight"] == pytest.approx(0.10)
    with pytest.raises(InputError, match="not in the mask"):
        large_final_rates(mask, 0.2, kinds, outputs=["head.weight"])


def test_the_three_report_strategies_differ():
    for builder in (small_model, wide_model):
        model = builder()
        weights = trained_like(model, 7)
        masks = {s: build_mask(s, {"state_dict": weights}, None, 0.5) for s in REPORT_STRATEGIES}
        names = list(masks["small_weights"])
        for i, a in enumerate(REPORT_STRATEGIES):
            for b in REPORT_STRATEGIES[i + 1 :]:
                same = all(torch.equal(masks[a][n], masks[b][n]) for n in names)
                assert not same, f"{a} and {b} gave the same mask"


def test_build_mask_accepts_module_state_and_checkpoint_alike():
    model = wide_model()
    ref = build_mask("small_weights", model, None, 0.3)
    for obj in (
        model.state_dict(),
        {"format": "acoustic-lottery/1", "state_dict": model.state_dict()},
    ):
        out = build_mask("small_weights", obj, None, 0.3)
        assert all(torch.equal(out[n], ref[n]) for n in ref)
    # a module and its state dict give the same large_final allocation (kinds agree)
    lf_mod = build_mask("large_final", model, None, 0.5)
    lf_state = build_mask("large_final", model.state_dict(), None, 0.5)
    assert all(torch.equal(lf_mod[n], lf_state[n]) for n in lf_mod)


def test_build_mask_input_errors():
    model = small_model()
    with pytest.raises(InputError, match="unknown 'smallest'"):
        build_mask("smallest", model, None, 0.5)
    with pytest.raises(InputError, match="rate"):
        build_mask("small_weights", model, None, 1.5)
    with pytest.raises(InputError, match="takes no options"):
        build_mask("small_weights", model, None, 0.5, match_overall=False)
    with pytest.raises(InputError, match="unknown option"):
        build_mask("large_final", model, None, 0.5, speed=2)
    with pytest.raises(InputError, match="seeded torch.Generator"):
        build_mask("random", model, None, 0.5)
    bad = full_mask(model)
    bad["3.weight"] = torch.ones(2, dtype=torch.bool)
    with pytest.raises(InputError, match="shape mismatch"):
        build_mask("small_weights", model, bad, 0.5)
    nan_state = model.state_dict()
    nan_state["3.weight"] = nan_state["3.weight"].clone()
    nan_state["3.weight"][0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="'3.weight'.*NaN"):
        build_mask("small_weights", nan_state, None, 0.5)


def test_random_strategy_is_seeded():
    model = wide_model()
    a = build_mask("random", model, None, 0.5, generator=seeded_generator(1))
    b = build_mask("random", model, None, 0.5, generator=seeded_generator(1))
    c = build_mask("random", model, None, 0.5, generator=seeded_generator(2))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)


def test_random_mask_like_keeps_counts_and_moves_positions():
    model = wide_model()
    mask = full_mask(model)
    for rnd in range(2):
        mask = small_weights(trained_like(model, rnd), mask, 0.8)
    ctrl = random_mask_like(mask, seeded_generator(11))
    again = random_mask_like(mask, seeded_generator(11))
    other = random_mask_like(mask, seeded_generator(12))
    for name, m in mask.items():
        assert ctrl[name].dtype == torch.bool and ctrl[name].shape == m.shape
        assert int(ctrl[name].sum()) == int(m.sum())
        assert torch.equal(ctrl[name], again[name])
        assert not torch.equal(ctrl[name], m), name
    assert not all(torch.equal(ctrl[n], other[n]) for n in mask)
    with pytest.raises(InputError, match="Generator"):
        random_mask_like(mask, None)  # type: ignore[arg-type]
