"""The DCASE 2021 baseline: exact size, layer layout, any input length."""

from __future__ import annotations

import torch
from torch import nn

from acoustic_lottery.models import build_model
from acoustic_lottery.models.baseline import BandMaxPool
from acoustic_lottery.models.size import size_report


def _values(model: nn.Module) -> int:
    return sum(
        t.numel() for n, t in model.state_dict().items() if not n.endswith("num_batches_tracked")
    )


def test_exactly_46246_values_for_any_length() -> None:
    model = build_model("baseline", seed=0)
    assert _values(model) == 46_246
    report = size_report(model)
    assert report["params"] == 46_246
    # float16 store: the Table 1 row 0 figure, 90.3 KB.
    assert round(size_report(model, dtype_bytes={"*": 2})["dense_kb"], 2) == 90.32
    # Global adaptive pooling keeps the flatten at 32 x 2 x 1 for other lengths.
    model.eval()
    with torch.no_grad():
        for frames in (50, 500, 731):
            feats = model.trunk[:-3](torch.randn(2, 1, 40, frames))
            assert feats.shape == (2, 64)


def test_layer_layout_matches_the_keras_baseline() -> None:
    model = build_model("baseline")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 16, (7, 7), (3, 3)),
        (16, 16, (7, 7), (3, 3)),
        (16, 32, (7, 7), (3, 3)),
    ]
    assert all(c.bias is not None for c in convs)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 100), (100, 10)]
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3, 0.3]


def test_adaptive_pool_equals_maxpool_4_100_on_the_standard_input() -> None:
    model = build_model("baseline", seed=1).eval()
    x = torch.randn(2, 1, 40, 500)
    with torch.no_grad():
        before_pool = model.trunk[:11](x)  # through the third conv block
        assert before_pool.shape == (2, 32, 8, 100)
        ours = model.trunk[11](before_pool)
        keras = nn.functional.max_pool2d(before_pool, (4, 100))
    torch.testing.assert_close(ours, keras)


def test_band_pool_has_the_adaptive_pool_bins() -> None:
    x = torch.randn(2, 3, 9, 17)
    for bands in (1, 2, 4):
        torch.testing.assert_close(
            BandMaxPool(bands)(x), nn.functional.adaptive_max_pool2d(x, (bands, 1))
        )


def test_mtl_and_super_baseline() -> None:
    mtl = build_model("baseline", task="mtl")
    assert _values(mtl) == 46_246 + 100 * 3 + 3
    assert _values(build_model("baseline", task="super")) == 46_246 - 7 * 101
