"""The D20 FCNN teacher with channel attention (GitHub MihawkHu/DCASE2020_task1, fcnn_att.py).

At width 1.0 (filters 144/288/576, i.e. D20's 48/96/192 times 3 input channels):

    BN(input)
    stage 1  pad 2, Conv 5×5 stride 2 -BN-ReLU, Conv 3×3 -BN-ReLU, MaxPool 2
    stage 2  Conv 3×3 -BN-ReLU, Conv 3×3 -BN-ReLU, MaxPool 2            (288)
    stage 3  4 × (Conv 3×3 -BN-ReLU), Dropout 0.3 after the first three, MaxPool 2 (576)
    head     Conv 1×1 to the classes, BN (no scale/shift), ReLU, BN (no scale/shift),
             channel attention (shared 2-layer MLP, ratio 2, on average- and max-pooled
             descriptors, sigmoid gate), global average pooling

No conv has a bias (as in D20). The head outputs logits (D20 applied a softmax on top).
`width` scales the three filter counts (rounded, at least 4): width 0.125 gives
18/36/72 filters, small enough to train on a CPU on 1 s clips.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from acoustic_lottery.models.heads import ConvBNReLU, HeadedModel, batch_norm, scale_width

#: D20 FCNN filters at width 1.0 (48, 96, 192 per input channel times 3 channels).
FCNN_FILTERS = (144, 288, 576)


class ChannelAttention(nn.Module):
    """CBAM channel attention (D20 attention_layer.py): x · sigmoid(MLP(avg) + MLP(max))."""

    def __init__(self, channels: int, ratio: int = 2) -> None:
        super().__init__()
        hidden = max(1, channels // ratio)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def _mlp(self, v: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(v)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3))
        mx = x.amax(dim=(2, 3))
        gate = torch.sigmoid(self._mlp(avg) + self._mlp(mx))
        return x * gate[:, :, None, None]


class FCNNHead(nn.Module):
    """1×1 conv to the classes, BN-ReLU-BN (no affine), channel attention, GAP."""

    def __init__(self, in_channels: int, n_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, n_classes, 1, bias=False)
        self.bn1 = batch_norm(n_classes, affine=False)
        self.bn2 = batch_norm(n_classes, affine=False)
        self.attention = ChannelAttention(n_classes, ratio=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(torch.relu(self.bn1(self.conv(x))))
        return self.attention(x).mean(dim=(2, 3))


def build_fcnn(
    heads: Sequence[tuple[str, int]], width: float = 1.0, in_channels: int = 3
) -> HeadedModel:
    """The D20 FCNN (about 11.8 M values at width 1.0)."""
    f1, f2, f3 = (scale_width(f, width) for f in FCNN_FILTERS)
    trunk = nn.Sequential(
        batch_norm(in_channels),
        ConvBNReLU(in_channels, f1, 5, stride=2),
        ConvBNReLU(f1, f1, 3),
        nn.MaxPool2d(2),
        ConvBNReLU(f1, f2, 3),
        ConvBNReLU(f2, f2, 3),
        nn.MaxPool2d(2),
        ConvBNReLU(f2, f3, 3),
        nn.Dropout(0.3),
        ConvBNReLU(f3, f3, 3),
        nn.Dropout(0.3),
        ConvBNReLU(f3, f3, 3),
        nn.Dropout(0.3),
        ConvBNReLU(f3, f3, 3),
        nn.MaxPool2d(2),
    )
    return HeadedModel(trunk, heads, lambda n: FCNNHead(f3, n), in_channels)
