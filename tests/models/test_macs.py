"""MAC counting against hand-computed formulas."""

from __future__ import annotations

import pytest
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.models import build_model
from acoustic_lottery.models.macs import count_macs


def test_single_conv_equals_the_formula() -> None:
    conv = nn.Conv2d(3, 8, (3, 5), stride=(1, 2), padding=(1, 2))
    result = count_macs(conv, (3, 20, 30))
    # output 8 x 20 x 15, each output: 3 x 3 x 5 MACs
    assert result["macs"] == 8 * 20 * 15 * 3 * 3 * 5
    assert result["layers"] == [
        {"name": "", "type": "Conv2d", "macs": 8 * 20 * 15 * 45, "calls": 1}
    ]


def test_grouped_conv_and_linear() -> None:
    grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4)
    assert count_macs(grouped, (8, 5, 7))["macs"] == 8 * 5 * 7 * (8 // 4) * 9
    linear = nn.Linear(12, 5)
    assert count_macs(linear, (2, 12))["macs"] == 5 * 12  # batch of 2: per example
    assert count_macs(nn.Linear(12, 5), (1, 4, 12))["macs"] == 4 * 5 * 12


def test_sequential_totals_and_other_ops_are_separate() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 10),
    )
    model.train()
    result = count_macs(model, (1, 10, 10))
    assert result["macs"] == 4 * 10 * 10 * 9 + 100 * 10
    assert [layer["name"] for layer in result["layers"]] == ["0", "5"]
    assert result["other"] == {"BatchNorm2d": 400, "MaxPool2d": 400}
    assert model.training  # mode restored


def test_shared_layers_count_every_call() -> None:
    model = build_model("fcnn", width=0.125)
    result = count_macs(model, (3, 128, 36))
    fc1 = next(layer for layer in result["layers"] if layer["name"].endswith("attention.fc1"))
    assert fc1["calls"] == 2 and fc1["macs"] == 2 * 10 * 5


def test_students_macs_scale_with_length() -> None:
    sic = build_model("sic")
    long, short = count_macs(sic, (3, 128, 423))["macs"], count_macs(sic, (3, 128, 36))["macs"]
    assert 300e6 < long < 400e6
    assert 8 < long / short < 14


def test_bad_shape() -> None:
    with pytest.raises(InputError, match="input shape"):
        count_macs(nn.Linear(2, 2), (0, 2))
    with pytest.raises(InputError, match="input shape"):
        count_macs(nn.Linear(2, 2), (2,))


@pytest.mark.parametrize("arch", ["baseline", "sic", "lic", "fcnn", "resnet", "repmobile"])
def test_every_architecture_agrees_with_torchs_flop_counter(arch: str) -> None:
    """Cross-check with the stack's own counter: torch.utils.flop_counter counts 2 FLOPs
    per multiply-accumulate of convolutions and matrix products (and nothing for BN), so
    its total is exactly twice ours on every model the pipeline builds."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    width = {"fcnn": 0.25, "resnet": 0.25}.get(arch, 1.0)
    kwargs = {"width": width} if width != 1.0 else {}
    model = build_model(arch, **kwargs).eval()
    channels = 1 if arch == "baseline" else 3
    shape = (channels, 40 if arch == "baseline" else 128, 48)
    ours = count_macs(model, shape)["macs"]
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, *shape))
    assert counter.get_total_flops() == 2 * ours
