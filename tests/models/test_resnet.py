"""The D20 two-path ResNet: size, frequency split, residual downsampling."""

from __future__ import annotations

import torch
from torch import nn

from acoustic_lottery.models import build_model
from acoustic_lottery.models.resnet import ResidualBlock


def _values(model: nn.Module) -> int:
    return sum(
        t.numel() for n, t in model.state_dict().items() if not n.endswith("num_batches_tracked")
    )


def test_width_one_is_about_3_2_m() -> None:
    model = build_model("resnet")
    assert 3_150_000 < _values(model) < 3_350_000
    trunk = model.trunk
    assert trunk.low.out_channels == 192 and trunk.out_channels == 768


def test_paths_see_only_their_frequency_half() -> None:
    model = build_model("resnet", width=0.125, seed=0).eval()
    x = torch.randn(1, 3, 128, 40)
    y = x.clone()
    y[:, :, 64:] += torch.randn_like(y[:, :, 64:])  # change the high half only
    with torch.no_grad():
        low_x, low_y = model.trunk.low(x[:, :, :64]), model.trunk.low(y[:, :, :64])
        high_x, high_y = model.trunk.high(x[:, :, 64:]), model.trunk.high(y[:, :, 64:])
        torch.testing.assert_close(low_x, low_y)
        assert not torch.allclose(high_x, high_y)
        # Frequency resolution is kept (time-only striding), halves concatenated.
        assert low_x.shape[2] == 64 and model.trunk(x).shape[2] == 128


def test_downsampling_block_pools_time_and_pads_channels() -> None:
    block = ResidualBlock(4, 8, downsample=True).eval()
    x = torch.randn(2, 4, 6, 11)
    with torch.no_grad():
        y = block(x)
        conv = block.conv2(block.conv1(x))
        shortcut = block.pool(x)
    assert y.shape == (2, 8, 6, 6)
    torch.testing.assert_close(y[:, :4], conv[:, :4] + shortcut)
    torch.testing.assert_close(y[:, 4:], conv[:, 4:])
