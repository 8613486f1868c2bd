"""Rep-Mobile: exact folding of multi-branch blocks, one conv per block, sizes, rebuild."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.models import build_model
from acoustic_lottery.models.checkpoint import load_model, save_checkpoint
from acoustic_lottery.models.heads import ConvHead, resolve_heads
from acoustic_lottery.models.macs import count_macs
from acoustic_lottery.models.repmobile import (
    DEPLOY_ARCH,
    VARIANTS,
    RepConvBlock,
    block_structure,
    build_repmobile,
    max_output_diff,
    rep_blocks,
    reparameterize,
)
from acoustic_lottery.models.size import size_report

ONE_SECOND = (3, 128, 44)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convs gain nothing from threads; on a busy 2-core machine they lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


BLOCKS = [
    # RepVGG unit: 3x3 + 1x1 + identity
    {"in_channels": 8, "out_channels": 8, "kernel_size": 3},
    # strided, channel change: no identity
    {"in_channels": 6, "out_channels": 10, "kernel_size": 3, "stride": 2},
    # depthwise with MobileOne repeats and ACNet asymmetric branches
    {
        "in_channels": 12,
        "out_channels": 12,
        "kernel_size": 3,
        "groups": 12,
        "branches": [(3, 3), (3, 3), (1, 1), (1, 3), (3, 1)],
    },
    # pointwise: two 1x1 + identity, no activation
    {"in_channels": 8, "out_channels": 8, "kernel_size": 1, "activation": False},
    # grouped 5x5, anisotropic stride, mixed smaller kernels
    {
        "in_channels": 8,
        "out_channels": 8,
        "kernel_size": 5,
        "stride": (2, 1),
        "groups": 2,
        "branches": [(5, 5), (3, 3), (1, 5), (5, 1)],
    },
    # identity only on a grouped unit (identity kernel must respect the groups)
    {"in_channels": 6, "out_channels": 6, "kernel_size": 3, "groups": 3, "branches": []},
]


def _randomize(module: nn.Module, gen: torch.Generator, wild: bool = False) -> None:
    """Random conv weights and random BN gamma/beta/running mean/var."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / fan_in**0.5)
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                spread = 3.0 if wild else 1.0
                m.weight.copy_(0.5 + spread * torch.rand(n, generator=gen))
                m.bias.copy_(spread * 0.3 * torch.randn(n, generator=gen))
                m.running_mean.copy_(spread * 0.3 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.3 + spread * torch.rand(n, generator=gen))


def _trained_like(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """Random weights and BN affine terms, running statistics estimated on random inputs.

    Like a trained network, the running statistics then fit the activations, so outputs
    stay O(1) through the 17 units (raw random statistics make them explode, and float32
    rounding with them).
    """
    _randomize(model, gen)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, *ONE_SECOND, generator=gen))
    for m in bns:
        m.momentum = 0.01
    return model.eval()


@pytest.mark.parametrize("cfg", BLOCKS)
def test_folded_block_equals_branch_sum_float32(cfg: dict) -> None:
    gen = torch.Generator().manual_seed(0)
    block = RepConvBlock(**cfg)
    _randomize(block, gen)
    block.eval()
    x = torch.randn(3, cfg["in_channels"], 17, 13, generator=gen)
    with torch.no_grad():
        expected = block(x)
        folded = copy.deepcopy(block)
        folded.switch_to_deploy()
        got = folded(x)
    assert got.shape == expected.shape
    assert expected.abs().max() > 0.5  # a real signal, not a vanishing one
    assert (got - expected).abs().max().item() < 1e-5
    assert [type(m) for m in folded.modules() if isinstance(m, nn.Conv2d | nn.BatchNorm2d)] == [
        nn.Conv2d
    ]
    assert folded.conv.bias is not None


@pytest.mark.parametrize("cfg", BLOCKS)
def test_folding_is_exact_in_float64(cfg: dict) -> None:
    """With float64 weights the fold is exact to rounding even for extreme BN statistics."""
    gen = torch.Generator().manual_seed(1)
    block = RepConvBlock(**cfg)
    _randomize(block, gen, wild=True)
    block = block.double().eval()
    x = torch.randn(2, cfg["in_channels"], 11, 9, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        expected = block(x)
        folded = copy.deepcopy(block)
        folded.switch_to_deploy()
        assert folded.conv.weight.dtype == torch.float64
        got = folded(x)
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-10)


def test_training_mode_matters_only_through_bn() -> None:
    """The fold uses running statistics: in train mode (batch statistics) outputs differ."""
    gen = torch.Generator().manual_seed(2)
    block = RepConvBlock(8, 8, 3)
    _randomize(block, gen)
    folded = copy.deepcopy(block).eval()
    folded.switch_to_deploy()
    x = torch.randn(4, 8, 9, 9, generator=gen)
    with torch.no_grad():
        # (a copy: a train-mode pass also moves the running statistics)
        assert (copy.deepcopy(block).train()(x) - folded(x)).abs().max() > 1e-2
        assert (block.eval()(x) - folded(x)).abs().max() < 1e-5


@pytest.mark.parametrize("task", ["scene", "mtl"])
def test_reparameterized_model_matches_and_has_one_conv_per_block(task: str) -> None:
    gen = torch.Generator().manual_seed(3)
    model = _trained_like(build_model("repmobile", task=task, seed=0), gen)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = reparameterize(model)

    x = torch.randn(2, *ONE_SECOND, generator=gen)
    with torch.no_grad():
        y = model(x)
        assert 0.1 < y.abs().max().item() < 1e3
        assert (y - folded(x)).abs().max().item() < 1e-4
    assert max_output_diff(model, folded, (3, 128, 36)) < 1e-4
    # the input model is untouched (still multi-branch, same weights)
    assert all(not b.deploy for b in rep_blocks(model))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    blocks = rep_blocks(folded)
    assert len(blocks) == len(rep_blocks(model)) == 17
    for block in blocks:
        convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == 1 and convs[0].bias is not None
        assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    # outside the blocks only the heads' 1x1 conv + BN remain
    head_convs = [m for m in folded.head.modules() if isinstance(m, nn.Conv2d)]
    all_convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert len(all_convs) == len(blocks) + len(head_convs)
    assert all(isinstance(h, ConvHead) for h in folded.head.values())
    assert folded.spec == {**model.spec, "arch": DEPLOY_ARCH}
    assert all(row["convs"] == 1 and row["form"] == "deploy" for row in block_structure(folded))


def test_deploy_arch_rebuilds_the_folded_model_from_a_checkpoint(tmp_path) -> None:
    gen = torch.Generator().manual_seed(4)
    model = _trained_like(build_model("repmobile", task="super", width=0.75, seed=1), gen)
    folded = reparameterize(model)
    fresh = build_model(DEPLOY_ARCH, task="super", width=0.75)
    assert set(fresh.state_dict()) == set(folded.state_dict())
    path = tmp_path / "deploy.pt"
    save_checkpoint(path, folded, {"feature_set": "lmfb"})
    loaded, meta = load_model(path)
    assert meta["arch"] == DEPLOY_ARCH and meta["width"] == 0.75 and meta["task"] == "super"
    x = torch.randn(2, 3, 128, 40, generator=gen)
    with torch.no_grad():
        assert torch.equal(loaded(x), folded(x))
    assert reparameterize(loaded) is not loaded  # folding a folded model is a no-op copy
    with torch.no_grad():
        assert torch.equal(reparameterize(loaded)(x), folded(x))


def test_default_model_is_well_under_the_dcase2024_limits() -> None:
    model = build_model("repmobile", seed=0)
    folded = reparameterize(model.eval())
    size = size_report(folded)
    macs = count_macs(folded, ONE_SECOND)["macs"]
    # the figures documented in docs/repmobile.md
    assert size["params"] == 21_560
    assert size["dense_bytes"] == 86_240  # float32: 86.2 kB of the 128 kB
    assert macs == 15_744_256  # 15.7 M of the 30 M for 3 x 128 x 44
    assert size["dense_bytes"] < 0.75 * 128_000 and macs < 0.6 * 30_000_000
    # the training form is larger in both: its extra branches disappear when folded
    assert size_report(model)["params"] > 2 * size["params"]
    assert count_macs(model, ONE_SECOND)["macs"] > macs


def test_variants_and_width_scale_depth_and_channels() -> None:
    heads = resolve_heads("scene")
    params = {
        v: size_report(reparameterize(build_repmobile(heads, variant=v).eval()))["params"]
        for v in VARIANTS
    }
    assert params["small"] < params["base"] < params["deep"]
    narrow = build_repmobile(heads, 0.5)
    wide = build_repmobile(heads, 1.5)
    assert size_report(narrow)["params"] < size_report(wide)["params"]
    assert len(rep_blocks(build_repmobile(heads, variant="deep"))) > len(
        rep_blocks(build_repmobile(heads))
    )
    with pytest.raises(InputError, match="variant"):
        build_repmobile(heads, variant="huge")


def test_asymmetric_branches_fold_to_the_same_architecture() -> None:
    heads = resolve_heads("scene")
    gen = torch.Generator().manual_seed(5)
    model = _trained_like(build_repmobile(heads, asymmetric=True), gen)
    assert "1x3" in block_structure(model)[0]["branches"]
    folded = reparameterize(model)
    plain = build_repmobile(heads, deploy=True)
    assert {k: v.shape for k, v in folded.state_dict().items()} == {
        k: v.shape for k, v in plain.state_dict().items()
    }
    assert max_output_diff(model, folded, (3, 64, 20)) < 1e-4


def test_training_form_trains_every_branch() -> None:
    model = build_model("repmobile", seed=0).train()
    model(torch.randn(4, 3, 64, 20)).logsumexp(dim=1).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"in_channels": 4, "out_channels": 4, "kernel_size": 2}, "odd"),
        (
            {"in_channels": 4, "out_channels": 4, "kernel_size": 3, "branches": [(5, 5)]},
            "no larger",
        ),
        ({"in_channels": 4, "out_channels": 4, "kernel_size": 3, "branches": [(2, 1)]}, "odd"),
        ({"in_channels": 4, "out_channels": 8, "kernel_size": 3, "identity": True}, "identity"),
        ({"in_channels": 4, "out_channels": 6, "kernel_size": 3, "groups": 4}, "groups"),
        (
            {"in_channels": 4, "out_channels": 8, "kernel_size": 3, "branches": []},
            "at least one branch",
        ),
    ],
)
def test_bad_block_settings_are_input_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        RepConvBlock(**kwargs)


def test_reparameterize_rejects_models_without_rep_blocks() -> None:
    with pytest.raises(InputError, match=r"RepConvBlock.*'sic'"):
        reparameterize(build_model("sic"))
