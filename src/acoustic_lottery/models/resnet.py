"""The D20 two-path ResNet (MihawkHu/DCASE2020_task1 resnet.py, after McDonnell & Gao 2019).

The input is split into its low and high frequency halves; each half goes through its own
residual network; the two outputs are concatenated along frequency and classified by 1×1
convolutions and global average pooling. Per path (base filters b = 24 at width 1.0,
D20's `model_resnet` default):

    BN(input), Conv 3×3 stride (1, 2) to b
    4 stacks × 2 pre-activation residual blocks (BN without scale/shift, ReLU, Conv 3×3)×2;
    filters b, 2b, 4b, 8b; the first block of stacks 2–4 halves time (stride (1, 2)) and
    its shortcut is AvgPool 3×3 stride (1, 2) plus zero channels (no shortcut conv)

then BN-ReLU-Conv 1×1 to 32b, BN (trunk output); head: Conv 1×1 to the classes, BN, GAP.
BNs inside the network have no scale/shift (D20's learn_bn=False); convs have no bias.
Width 1.0 gives about 3.25 M values; D20's training script used 48 base filters
(width 2.0, about 12.4 M).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from acoustic_lottery.models.heads import HeadedModel, batch_norm, scale_width

#: Base filters at width 1.0.
RESNET_BASE_FILTERS = 24


class PreActConv(nn.Module):
    """BN (optionally affine) - optional ReLU - Conv 'same' (no bias): D20's resnet_layer."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int | tuple[int, int] = 1,
        affine: bool = False,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.bn = batch_norm(in_channels, affine=affine)
        self.relu = relu
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(x)
        if self.relu:
            x = F.relu(x)
        return self.conv(x)


class ResidualBlock(nn.Module):
    """Two pre-activation convs; downsampling blocks pool the shortcut and pad channels."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool) -> None:
        super().__init__()
        stride = (1, 2) if downsample else 1
        self.conv1 = PreActConv(in_channels, out_channels, stride=stride)
        self.conv2 = PreActConv(out_channels, out_channels)
        self.downsample = downsample
        self.extra_channels = out_channels - in_channels
        self.pool = (
            nn.AvgPool2d(3, stride=(1, 2), padding=1, count_include_pad=False)
            if downsample
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        shortcut = self.pool(x)
        if self.extra_channels > 0:  # zero channels (D20: K.zeros_like), ONNX-exportable
            zeros = torch.zeros_like(shortcut[:, :1]).repeat(1, self.extra_channels, 1, 1)
            shortcut = torch.cat([shortcut, zeros], dim=1)
        return out + shortcut


class ResNetPath(nn.Module):
    """One frequency half: input BN + conv, then 4 stacks of 2 residual blocks."""

    def __init__(self, in_channels: int, base: int, stacks: int = 4, blocks: int = 2) -> None:
        super().__init__()
        self.stem = PreActConv(in_channels, base, stride=(1, 2), affine=True, relu=False)
        layers: list[nn.Module] = []
        channels = base
        for stack in range(stacks):
            out = base * 2**stack
            for block in range(blocks):
                layers.append(ResidualBlock(channels, out, downsample=stack > 0 and block == 0))
                channels = out
        self.blocks = nn.Sequential(*layers)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


class TwoPathTrunk(nn.Module):
    """Low and high frequency halves through separate paths, concatenated along frequency."""

    def __init__(self, in_channels: int, base: int) -> None:
        super().__init__()
        self.low = ResNetPath(in_channels, base)
        self.high = ResNetPath(in_channels, base)
        channels = self.low.out_channels
        self.out_channels = 4 * channels  # D20: 2 * (filters after the last doubling)
        self.conv_out = PreActConv(channels, self.out_channels, kernel_size=1)
        self.bn_out = batch_norm(self.out_channels, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[2] // 2
        y = torch.cat([self.low(x[:, :, :half]), self.high(x[:, :, half:])], dim=2)
        return self.bn_out(self.conv_out(y))


class ResNetHead(nn.Module):
    """Conv 1×1 to the classes, BN without scale/shift, global average pooling."""

    def __init__(self, in_channels: int, n_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, n_classes, 1, bias=False)
        self.bn = batch_norm(n_classes, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)).mean(dim=(2, 3))


def build_resnet(
    heads: Sequence[tuple[str, int]], width: float = 1.0, in_channels: int = 3
) -> HeadedModel:
    """The D20 two-path ResNet; `width` scales the base filters (24 at width 1.0)."""
    trunk = TwoPathTrunk(in_channels, scale_width(RESNET_BASE_FILTERS, width))
    return HeadedModel(trunk, heads, lambda n: ResNetHead(trunk.out_channels, n), in_channels)
