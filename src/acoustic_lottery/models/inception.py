"""Shallow (SIC) and Large (LIC) Inception students of the Acoustic Lottery report.

The report gives only their sizes (DCASE 2021 rule, float32): SIC 2 inception blocks,
503 KB; LIC 3 blocks with more filters, 3528 KB; MTL SIC 504 KB. The layers were never
published, so these are designed to land on those sizes:

    stem   Conv 5×5 stride 2 -BN-ReLU, MaxPool 2
    block  GoogLeNet inception: 1×1 | 1×1→3×3 | 1×1→5×5 | MaxPool 3×3→1×1, each
           Conv-BN-ReLU (no conv bias), branches concatenated
           MaxPool 2 between blocks
    head   Dropout(0.3), 1×1 conv to the classes + BN, global average pooling

Every conv is followed by a BN and has no bias, so the float32 model stores
W + 4·(output channels) values and the int8 model with BN folded into the convs
(int8 weights + one float32 bias per output channel) takes the same number of bytes:
SIC 128,768 values = 503.0 KB float32 = 125.75 KB int8 (the report's 126 KB).
The last block of SIC outputs 80 channels, so a 3-class head costs 3·(80 + 4) = 252
values (0.98 KB): MTL SIC = 504.0 KB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass

import torch
from torch import nn

from acoustic_lottery.models.heads import ConvBNReLU, ConvHead, HeadedModel, scale_width


@dataclass(frozen=True)
class BlockSpec:
    """Filters of one inception block (GoogLeNet's naming)."""

    c1: int  # 1×1 branch
    c3r: int  # 1×1 reduction before the 3×3
    c3: int  # 3×3 branch
    c5r: int  # 1×1 reduction before the 5×5
    c5: int  # 5×5 branch
    cp: int  # 1×1 after the 3×3 max-pool

    @property
    def out_channels(self) -> int:
        return self.c1 + self.c3 + self.c5 + self.cp

    def scaled(self, width: float) -> BlockSpec:
        return BlockSpec(*(scale_width(c, width) for c in astuple(self)))


@dataclass(frozen=True)
class InceptionSpec:
    stem: int
    blocks: tuple[BlockSpec, ...]


#: SIC: 128,768 stored values with a 10-class head (503.0 KB in float32).
SIC = InceptionSpec(
    stem=40,
    blocks=(
        BlockSpec(c1=48, c3r=72, c3=112, c5r=8, c5=32, cp=32),  # -> 224
        BlockSpec(c1=16, c3r=40, c3=32, c5r=16, c5=16, cp=16),  # -> 80
    ),
)

#: LIC: 903,176 stored values with a 10-class head (3528.0 KB in float32).
LIC = InceptionSpec(
    stem=64,
    blocks=(
        BlockSpec(c1=64, c3r=96, c3=128, c5r=16, c5=32, cp=32),  # -> 256 (GoogLeNet 3a)
        BlockSpec(c1=128, c3r=128, c3=192, c5r=32, c5=96, cp=64),  # -> 480 (GoogLeNet 3b)
        BlockSpec(c1=128, c3r=96, c3=224, c5r=24, c5=32, cp=64),  # -> 448
    ),
)


class InceptionBlock(nn.Module):
    """Four parallel branches over the same input, concatenated along channels."""

    def __init__(self, in_channels: int, spec: BlockSpec) -> None:
        super().__init__()
        self.branch1 = ConvBNReLU(in_channels, spec.c1, 1)
        self.branch3 = nn.Sequential(
            ConvBNReLU(in_channels, spec.c3r, 1), ConvBNReLU(spec.c3r, spec.c3, 3)
        )
        self.branch5 = nn.Sequential(
            ConvBNReLU(in_channels, spec.c5r, 1), ConvBNReLU(spec.c5r, spec.c5, 5)
        )
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), ConvBNReLU(in_channels, spec.cp, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], dim=1
        )


def build_inception(
    spec: InceptionSpec,
    heads: Sequence[tuple[str, int]],
    width: float = 1.0,
    in_channels: int = 3,
    dropout: float = 0.3,
) -> HeadedModel:
    """An inception student from `spec` (SIC or LIC), channels scaled by `width`."""
    stem = scale_width(spec.stem, width)
    layers: list[nn.Module] = [ConvBNReLU(in_channels, stem, 5, stride=2), nn.MaxPool2d(2)]
    channels = stem
    for i, block in enumerate(spec.blocks):
        block = block.scaled(width) if width != 1.0 else block
        if i > 0:
            layers.append(nn.MaxPool2d(2))
        layers.append(InceptionBlock(channels, block))
        channels = block.out_channels
    layers.append(nn.Dropout(dropout))
    trunk = nn.Sequential(*layers)
    return HeadedModel(trunk, heads, lambda n: ConvHead(channels, n), in_channels)


def build_sic(
    heads: Sequence[tuple[str, int]], width: float = 1.0, in_channels: int = 3
) -> HeadedModel:
    """Shallow Inception (2 blocks, 503 KB)."""
    return build_inception(SIC, heads, width, in_channels)


def build_lic(
    heads: Sequence[tuple[str, int]], width: float = 1.0, in_channels: int = 3
) -> HeadedModel:
    """Large Inception (3 blocks, 3528 KB)."""
    return build_inception(LIC, heads, width, in_channels)
