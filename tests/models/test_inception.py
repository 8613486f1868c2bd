"""SIC and LIC: sizes of the report (503 / 504 / 1006 / 3528 KB, int8 126 KB) and layout."""

from __future__ import annotations

import pytest
import torch

from acoustic_lottery.models import build_model
from acoustic_lottery.models.inception import LIC, SIC, InceptionBlock
from acoustic_lottery.models.size import combine_reports, int8_estimate, size_report


def _kb(arch: str, task: str = "scene") -> float:
    return size_report(build_model(arch, task=task))["dense_kb"]


def _within(value: float, target: float, rel: float = 0.01) -> bool:
    return abs(value - target) <= rel * target


def test_sic_sizes_match_the_report() -> None:
    sic = build_model("sic")
    assert size_report(sic)["params"] == 128_768
    assert _within(_kb("sic"), 503)
    assert _within(_kb("sic", "mtl"), 504)
    # The 3-class head costs about 1 KB (3 x (80 + 4) values).
    assert _kb("sic", "mtl") - _kb("sic") == pytest.approx(252 * 4 / 1024)
    two_stage = combine_reports([size_report(sic), size_report(build_model("sic", task="super"))])
    assert _within(two_stage["dense_kb"], 1006)


def test_sic_int8_estimate_is_126_kb() -> None:
    estimate = int8_estimate(build_model("sic"))
    assert _within(estimate["kb"], 126)
    assert estimate["biases"] <= 500


def test_lic_size_matches_the_report() -> None:
    assert _within(_kb("lic"), 3528)
    assert len(LIC.blocks) == 3 and len(SIC.blocks) == 2


def test_trained_sic_counts_the_same_under_the_rule() -> None:
    """Once BN shifts and running means are non-zero, the rule's KB equals the dense KB."""
    model = build_model("sic", seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
        model.train()(torch.randn(2, 3, 128, 36))  # running statistics move away from 0
    report = size_report(model)
    assert report["nonzero"] == report["params"]
    assert report["kb"] == pytest.approx(503.0)


def test_inception_block_concatenates_four_branches() -> None:
    block = InceptionBlock(16, SIC.blocks[1]).eval()
    with torch.no_grad():
        y = block(torch.randn(2, 16, 9, 13))
    assert y.shape == (2, SIC.blocks[1].out_channels, 9, 13)
    assert SIC.blocks[1].out_channels == 80


def test_width_scales_the_students() -> None:
    small = size_report(build_model("sic", width=0.5))["params"]
    assert 20_000 < small < 128_768 / 2
    model = build_model("lic", width=0.25).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 128, 36)).shape == (1, 10)
