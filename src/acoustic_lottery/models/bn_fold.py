"""Folding an eval-mode BatchNorm into the convolution or linear layer before it: the one
formula behind the int8 path (`quantization.int8.fold_batchnorm`), the BN-folded size
(`models.size`) and Rep-Mobile's re-parameterization (`models.repmobile`).

torch ships the same fold (`torch.nn.utils.fusion.fuse_conv_bn_weights`), in the
weights' own dtype; this one computes in float64 and leaves the cast to the caller, so
that a re-parameterized block (several branches summed) rounds once, not per branch.
tests/models/test_bn_fold.py holds the two equal to float32 rounding.
"""

from __future__ import annotations

import torch
from torch import nn


def fold_bn(
    weight: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the layer that computes `bn(layer(x))` in eval mode, in float64.

    `weight` has the output channels first (a conv kernel or a linear matrix); pruned
    zeros stay exactly zero (0·γ/σ = 0).
    """
    w = weight.detach().double()
    b = (
        bias.detach().double()
        if bias is not None
        else torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
    )
    mean, var = bn.running_mean.detach().double(), bn.running_var.detach().double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mean)
    inv = gamma / torch.sqrt(var + bn.eps)
    return w * inv.view(-1, *([1] * (w.dim() - 1))), (b - mean) * inv + beta
