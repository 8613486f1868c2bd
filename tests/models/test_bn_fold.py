"""The one BN fold against torch's own (torch.nn.utils.fusion)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from acoustic_lottery.models.bn_fold import fold_bn


def _trained_bn(channels: int, gen: torch.Generator, cls=nn.BatchNorm2d) -> nn.Module:
    bn = cls(channels).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.rand(channels, generator=gen) + 0.5)
        bn.bias.copy_(torch.randn(channels, generator=gen))
        bn.running_mean.copy_(torch.randn(channels, generator=gen))
        bn.running_var.copy_(torch.rand(channels, generator=gen) + 0.1)
    return bn


@pytest.mark.parametrize("bias", [False, True])
def test_conv_fold_equals_torchs_and_the_unfolded_pair(bias: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(3, 6, 3, padding=1, bias=bias).eval()
    bn = _trained_bn(6, gen)
    w, b = fold_bn(conv.weight, bn, conv.bias)
    theirs = fuse_conv_bn_eval(copy.deepcopy(conv), bn)
    torch.testing.assert_close(w.float(), theirs.weight, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(b.float(), theirs.bias, rtol=1e-6, atol=1e-6)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    folded = nn.functional.conv2d(x.double(), w, b, padding=1)
    torch.testing.assert_close(folded, bn.double()(conv.double()(x.double())))


def test_linear_fold_equals_torchs() -> None:
    gen = torch.Generator().manual_seed(1)
    linear = nn.Linear(5, 4).eval()
    bn = _trained_bn(4, gen, nn.BatchNorm1d)
    w, b = fold_bn(linear.weight, bn, linear.bias)
    theirs = fuse_linear_bn_eval(copy.deepcopy(linear), bn)
    torch.testing.assert_close(w.float(), theirs.weight, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(b.float(), theirs.bias, rtol=1e-6, atol=1e-6)


def test_pruned_zeros_stay_exactly_zero() -> None:
    gen = torch.Generator().manual_seed(2)
    conv = nn.Conv2d(2, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight[0].zero_()
    w, _ = fold_bn(conv.weight, _trained_bn(3, gen))
    assert bool((w[0] == 0).all())
