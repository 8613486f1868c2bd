"""Tests for pruning.rewind: Θ0 bit for bit under the mask, late rewinding, re-init control."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.pruning.masks import apply_mask, full_mask, model_sparsity
from acoustic_lottery.pruning.rewind import reinit_state, rewind_state, rewind_to_snapshot
from acoustic_lottery.pruning.strategies import build_mask


def build() -> nn.Sequential:
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


def seeded(seed: int) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def train_a_little(model: nn.Module, steps: int, seed: int, mask=None) -> None:
    """A few SGD+momentum steps on random data so that every tensor moves."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    model.train()
    for _ in range(steps):
        x = torch.randn(8, 1, 9, 9, generator=g)
        y = torch.randint(0, 10, (8,), generator=g)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if mask is not None:
            apply_mask(model, mask)


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32) if t.dtype == torch.float32 else t


def test_rewind_state_restores_theta0_bit_for_bit():
    model = seeded(0)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    train_a_little(model, 5, seed=1)
    mask = build_mask("small_weights", model, None, 0.8)
    before = {k: v.clone() for k, v in theta0.items()}
    state = rewind_state(theta0, mask)
    assert set(state) == set(theta0)
    for key, t0 in theta0.items():
        if key in mask:
            m = mask[key]
            assert torch.equal(bits(state[key][m]), bits(t0[m])), key
            assert torch.equal(state[key][~m], torch.zeros_like(state[key][~m]))
            assert not torch.signbit(state[key][~m]).any()
        else:  # BN affine + running stats, num_batches_tracked, biases: from Θ0
            assert torch.equal(bits(state[key]), bits(t0)), key
    # Θ0 itself is untouched and the result shares no storage with it
    for key in theta0:
        assert torch.equal(theta0[key], before[key])
        assert state[key].data_ptr() != theta0[key].data_ptr()
    # loading it gives exactly the mask's sparsity
    fresh = build()
    fresh.load_state_dict(state)
    assert model_sparsity(fresh)["pruned"] == sum(int((~m).sum()) for m in mask.values())


def test_rewind_from_checkpoint_dict_and_module():
    model = seeded(0)
    mask = build_mask("global_small_weights", model, None, 0.5)
    ref = rewind_state(model.state_dict(), mask)
    for obj in ({"format": "acoustic-lottery/1", "state_dict": model.state_dict()}, model):
        out = rewind_state(obj, mask)
        assert all(torch.equal(out[k], ref[k]) for k in ref)


def test_late_rewinding_uses_the_snapshot():
    model = seeded(0)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    train_a_little(model, 2, seed=1)
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    train_a_little(model, 5, seed=2)
    mask = build_mask("small_weights", model, None, 0.5)
    state = rewind_to_snapshot(snapshot, mask)
    m = mask["3.weight"]
    assert torch.equal(bits(state["3.weight"][m]), bits(snapshot["3.weight"][m]))
    assert not torch.equal(state["3.weight"][m], theta0["3.weight"][m])
    assert torch.equal(state["1.running_mean"], snapshot["1.running_mean"])


def test_pruned_weights_stay_zero_through_masked_training_after_rewind():
    model = seeded(0)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    train_a_little(model, 3, seed=1)
    mask = build_mask("small_weights", model, None, 0.7)
    model.load_state_dict(rewind_state(theta0, mask))
    train_a_little(model, 3, seed=2, mask=mask)
    for name, m in mask.items():
        w = dict(model.named_parameters())[name].detach()
        assert torch.equal(w[~m], torch.zeros_like(w[~m]))


def test_reinit_state_is_seeded_masked_and_leaves_global_rng_alone():
    mask = build_mask("small_weights", seeded(0), None, 0.6)
    rng_before = torch.get_rng_state()
    a = reinit_state(build, 123, mask)
    assert torch.equal(torch.get_rng_state(), rng_before)
    b = reinit_state(build, 123, mask)
    c = reinit_state(build, 124, mask)
    theta0 = rewind_state(seeded(0), mask)
    for name, m in mask.items():
        assert torch.equal(a[name], b[name])
        assert torch.equal(a[name][~m], torch.zeros_like(a[name][~m]))
        assert not torch.equal(a[name][m], c[name][m])
        assert not torch.equal(a[name][m], theta0[name][m])
    assert set(a) == set(theta0)


def test_rewind_input_errors():
    model = seeded(0)
    mask = full_mask(model)
    bad = dict(mask)
    bad["3.weight"] = torch.ones(2, 2, dtype=torch.bool)
    with pytest.raises(InputError, match="shape mismatch"):
        rewind_state(model.state_dict(), bad)
    with pytest.raises(InputError, match="unknown parameter"):
        rewind_to_snapshot(model.state_dict(), {"x.weight": torch.ones(1, dtype=torch.bool)})
    with pytest.raises(InputError, match="no tensors"):
        rewind_state({}, mask)
    with pytest.raises(InputError, match="seed"):
        reinit_state(build, "1", mask)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="nn.Module"):
        reinit_state(lambda: {"a": 1}, 1, mask)  # type: ignore[arg-type, return-value]
