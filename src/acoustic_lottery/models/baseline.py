"""The DCASE 2021 Task 1a baseline CNN (GitHub marmoi/dcase2021_task1a_baseline).

Input (B, 1, 40, 500): 40 log-mel bands, 500 frames (10 s, 20 ms hop).
Conv(16, 7×7, same)-BN-ReLU, Conv(16, 7×7, same)-BN-ReLU, MaxPool(5, 5), Dropout(0.3),
Conv(32, 7×7, same)-BN-ReLU, MaxPool(4, 100), Dropout(0.3), Flatten, Dense(100)-ReLU,
Dropout(0.3), Dense(10): 46,246 stored values (BN moving mean/variance counted), the
Table 1 row 0 model (90.3 KB in float16).

The second pooling is `BandMaxPool(2)`, adaptive max pooling to (2 bands, 1 frame): on the
8 × 100 map of a 40 × 500 input it is exactly MaxPool(4, 100), and for other clip lengths
(or band counts) it keeps the flattened size at 32 × 2 × 1, so the parameter count is
46,246 for any input length.
The convolutions keep their biases (as the Keras baseline does).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from acoustic_lottery.models.heads import HeadedModel, batch_norm, scale_width

#: The baseline's input: 1 channel, 40 bands, 500 frames.
BASELINE_INPUT = (1, 40, 500)


class BandMaxPool(nn.Module):
    """Adaptive max pooling to (bands, 1): global over time, adaptive bins over frequency.

    Same bins as `nn.AdaptiveMaxPool2d((bands, 1))`, written with slices and `amax` so it
    also exports to ONNX with a dynamic time axis (the adaptive op does not).
    """

    def __init__(self, bands: int = 2) -> None:
        super().__init__()
        self.bands = bands

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = x.shape[2]
        pooled = [
            x[:, :, (i * f) // self.bands : -((-(i + 1) * f) // self.bands)].amax(dim=(2, 3))
            for i in range(self.bands)
        ]
        return torch.stack(pooled, dim=2).unsqueeze(3)


def _conv_block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 7, padding=3), batch_norm(cout), nn.ReLU(inplace=True)]


def build_baseline(
    heads: Sequence[tuple[str, int]], width: float = 1.0, in_channels: int = 1
) -> HeadedModel:
    """The DCASE 2021 baseline; `width` scales the filters (16, 16, 32) and Dense(100)."""
    c1, c2 = scale_width(16, width), scale_width(32, width)
    hidden = scale_width(100, width)
    trunk = nn.Sequential(
        *_conv_block(in_channels, c1),
        *_conv_block(c1, c1),
        nn.MaxPool2d(5),
        nn.Dropout(0.3),
        *_conv_block(c1, c2),
        BandMaxPool(2),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(c2 * 2 * 1, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(0.3),
    )
    return HeadedModel(trunk, heads, lambda n: nn.Linear(hidden, n), in_channels)
