"""Tests for pruning.masks: prunable names, apply, sparsity, mask files."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.pruning.masks import (
    apply_mask,
    check_mask_matches,
    full_mask,
    layer_kinds,
    load_mask,
    mask_sparsity,
    model_sparsity,
    prunable_from_state,
    prunable_parameters,
    save_mask,
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


def random_mask(model: nn.Module, keep: float, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        n: torch.rand(t.shape, generator=g) < keep
        for n, t in model.named_parameters()
        if n in prunable_parameters(model)
    }


def test_prunable_parameters_are_conv_and_linear_weights_in_order():
    m = small_model()
    assert prunable_parameters(m) == ["0.weight", "3.weight", "8.weight"]
    assert prunable_parameters(m, exclude_first=True) == ["3.weight", "8.weight"]
    assert prunable_parameters(m, exclude_last=True) == ["0.weight", "3.weight"]
    assert prunable_parameters(m, exclude_first=True, exclude_last=True) == ["3.weight"]
    assert prunable_parameters(m, include=("linear",)) == ["8.weight"]
    assert prunable_parameters(m, include=("conv",)) == ["0.weight", "3.weight"]
    # nested modules keep registration order and dotted names; BN and biases never appear
    nested = nn.Sequential(nn.Sequential(nn.Conv1d(2, 3, 1), nn.BatchNorm1d(3)), nn.Linear(3, 2))
    assert prunable_parameters(nested) == ["0.0.weight", "1.weight"]
    assert prunable_parameters(nn.Linear(3, 2)) == ["weight"]
    assert layer_kinds(m, prunable_parameters(m)) == {
        "0.weight": "conv",
        "3.weight": "conv",
        "8.weight": "linear",
    }


def test_prunable_from_state_matches_module():
    m = small_model()
    assert prunable_from_state(m.state_dict()) == prunable_parameters(m)


@pytest.mark.parametrize("include", [("conv", "bn"), "conv"])
def test_prunable_parameters_rejects_bad_include(include):
    with pytest.raises(InputError, match="include"):
        prunable_parameters(small_model(), include=include)


def test_full_mask_is_all_true_with_parameter_shapes():
    m = small_model()
    mask = full_mask(m)
    assert list(mask) == prunable_parameters(m)
    params = dict(m.named_parameters())
    for name, t in mask.items():
        assert t.dtype == torch.bool and bool(t.all())
        assert t.shape == params[name].shape
    with pytest.raises(InputError, match="nope.weight"):
        full_mask(m, ["nope.weight"])


def test_apply_mask_gives_exact_positive_zeros_and_keeps_survivors():
    m = small_model()
    with torch.no_grad():
        m[8].weight[0, 0] = float("inf")
        m[8].weight[0, 1] = float("nan")
        m[8].weight[0, 2] = -3.0
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    mask = random_mask(m, 0.5, seed=1)
    mask["8.weight"][0, :3] = False
    apply_mask(m, mask)
    params = dict(m.named_parameters())
    for name, keep in mask.items():
        p = params[name].detach()
        pruned = p[~keep]
        assert torch.equal(pruned, torch.zeros_like(pruned))
        assert not torch.signbit(pruned).any(), "pruned weights must be +0.0, not -0.0"
        assert torch.equal(p[keep], before[name][keep])
    # biases and BN untouched
    assert torch.equal(params["0.bias"], before["0.bias"])
    assert torch.equal(params["1.weight"], before["1.weight"])


def test_mask_and_model_sparsity_agree_after_apply():
    m = small_model()
    mask = random_mask(m, 0.3, seed=2)
    apply_mask(m, mask)
    ms = mask_sparsity(mask)
    zs = model_sparsity(m)
    assert ms == zs
    total = sum(t.numel() for t in mask.values())
    kept = sum(int(t.sum()) for t in mask.values())
    assert ms["total"] == total and ms["kept"] == kept and ms["pruned"] == total - kept
    assert ms["sparsity"] == pytest.approx((total - kept) / total)
    layer = ms["layers"]["3.weight"]
    assert layer["total"] == 4 * 8 * 9
    assert layer["kept"] + layer["pruned"] == layer["total"]


def test_model_sparsity_counts_actual_zeros_not_the_mask():
    m = small_model()
    with torch.no_grad():
        m[0].weight.zero_()
    s = model_sparsity(m)
    assert s["layers"]["0.weight"]["sparsity"] == 1.0
    assert s["layers"]["3.weight"]["sparsity"] == 0.0
    assert model_sparsity(m.state_dict(), ["0.weight"])["pruned"] == m[0].weight.numel()


def test_check_mask_matches_names_unknown_and_mismatched():
    m = small_model()
    mask = full_mask(m)
    check_mask_matches(m, mask)
    with pytest.raises(InputError, match="unknown parameter name.*'9.weight'"):
        check_mask_matches(m, {**mask, "9.weight": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(InputError, match=r"'3.weight': shape mismatch, mask \(8, 4, 3\)"):
        check_mask_matches(m, {**mask, "3.weight": torch.ones(8, 4, 3, dtype=torch.bool)})
    with pytest.raises(InputError, match="'0.weight': expected dtype torch.bool"):
        check_mask_matches(m, {**mask, "0.weight": torch.ones(4, 1, 3, 3)})
    with pytest.raises(InputError):
        apply_mask(m, {**mask, "3.weight": torch.ones(3, dtype=torch.bool)})


def test_save_load_round_trip(tmp_path):
    m = small_model()
    mask = random_mask(m, 0.4, seed=3)
    path = tmp_path / "sub" / "mask.pt"
    save_mask(path, mask)
    loaded = load_mask(path)
    assert list(loaded) == list(mask)
    for name in mask:
        assert loaded[name].dtype == torch.bool
        assert torch.equal(loaded[name], mask[name])
    # only the final file: the atomic temp file was renamed
    assert [p.name for p in path.parent.iterdir()] == ["mask.pt"]
    # the file is a plain dict of tensors, readable with weights_only=True
    raw = torch.load(path, weights_only=True)
    assert isinstance(raw, dict) and set(raw) == set(mask)


def test_load_mask_rejects_non_bool_tensor_naming_path_and_key(tmp_path):
    path = tmp_path / "mask.pt"
    mask = full_mask(small_model())
    tampered = dict(mask)
    tampered["3.weight"] = tampered["3.weight"].float()
    torch.save(tampered, path)
    with pytest.raises(InputError) as err:
        load_mask(path)
    assert str(path) in str(err.value) and "'3.weight'" in str(err.value)
    assert "torch.float32" in str(err.value)


@pytest.mark.parametrize(
    "payload, expected",
    [
        ([torch.ones(2, dtype=torch.bool)], "expected a dict"),
        ({"a.weight": [True, False]}, "key 'a.weight': expected a bool tensor"),
        ({3: torch.ones(2, dtype=torch.bool)}, "key 3: expected a parameter name"),
        ({}, "empty"),
    ],
)
def test_load_mask_rejects_wrong_types(tmp_path, payload, expected):
    path = tmp_path / "mask.pt"
    torch.save(payload, path)
    with pytest.raises(InputError, match=expected) as err:
        load_mask(path)
    assert str(path) in str(err.value)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_load_mask_rejects_garbage_and_unsafe_pickles(tmp_path):
    good = tmp_path / "good.pt"
    save_mask(good, full_mask(small_model()))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(good.read_bytes()[:50])
    with pytest.raises(InputError, match="not a loadable mask file") as err:
        load_mask(corrupt)
    assert str(corrupt) in str(err.value)

    unsafe = tmp_path / "unsafe.pt"
    with open(unsafe, "wb") as fh:
        pickle.dump({"0.weight": _Evil()}, fh, protocol=2)
    with pytest.raises(InputError, match="not a loadable mask file"):
        load_mask(unsafe)

    with pytest.raises(InputError, match="not found"):
        load_mask(tmp_path / "missing.pt")


def test_save_mask_refuses_invalid_masks_and_leaves_nothing(tmp_path):
    path = tmp_path / "mask.pt"
    with pytest.raises(InputError, match="expected dtype torch.bool"):
        save_mask(path, {"w": torch.ones(3)})
    assert list(tmp_path.iterdir()) == []
