"""The D20 FCNN teacher: size at width 1.0, width scaling, channel attention."""

from __future__ import annotations

import torch
from torch import nn

from acoustic_lottery.models import build_model
from acoustic_lottery.models.fcnn import ChannelAttention


def _values(model: nn.Module) -> int:
    return sum(
        t.numel() for n, t in model.state_dict().items() if not n.endswith("num_batches_tracked")
    )


def test_width_one_is_the_11_8_m_teacher() -> None:
    model = build_model("fcnn")
    assert 11_700_000 < _values(model) < 11_900_000
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [144, 144, 288, 288, 576, 576, 576, 576, 10]
    assert convs[0].kernel_size == (5, 5) and convs[0].stride == (2, 2)
    assert all(c.bias is None for c in convs)


def test_width_scales_filters_with_a_floor_of_four() -> None:
    convs = [m for m in build_model("fcnn", width=0.125).modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs[:-1]] == [18, 18, 36, 36, 72, 72, 72, 72]
    tiny = [m for m in build_model("fcnn", width=0.01).modules() if isinstance(m, nn.Conv2d)]
    assert min(c.out_channels for c in tiny[:-1]) == 4


def test_channel_attention_gates_each_channel_in_0_1() -> None:
    att = ChannelAttention(10, ratio=2)
    assert att.fc1.out_features == 5
    x = torch.rand(2, 10, 4, 6) + 0.1
    y = att(x)
    ratio = y / x
    assert ((ratio > 0) & (ratio < 1)).all()
    # One gate per (example, channel): constant across frequency and time.
    torch.testing.assert_close(ratio, ratio[:, :, :1, :1].expand_as(ratio))
    assert ChannelAttention(3, ratio=2).fc1.out_features == 1
