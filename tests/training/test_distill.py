"""kd_loss: CE when soft_weight is 0; soft term zero (with zero gradient) at z_s = z_t + c."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from acoustic_lottery.training.distill import kd_loss, soft_cross_entropy


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_hard_only_is_plain_cross_entropy() -> None:
    zs = torch.randn(8, 10, generator=gen(0), dtype=torch.float64)
    y = torch.randint(0, 10, (8,), generator=gen(1))
    loss = kd_loss(
        zs, None, F.one_hot(y, 10).double(), temperature=3.0, hard_weight=1.0, soft_weight=0.0
    )
    assert loss.item() == pytest.approx(F.cross_entropy(zs, y).item(), rel=1e-12)
    # Soft (mixup) targets: the expectation of CE over the mixed labels.
    y2 = torch.randint(0, 10, (8,), generator=gen(2))
    soft = 0.3 * F.one_hot(y, 10).double() + 0.7 * F.one_hot(y2, 10).double()
    expect = 0.3 * F.cross_entropy(zs, y) + 0.7 * F.cross_entropy(zs, y2)
    assert soft_cross_entropy(zs, soft).item() == pytest.approx(expect.item(), rel=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_soft_term_is_zero_with_zero_gradient_at_the_teacher(temperature: float) -> None:
    zt = torch.randn(6, 10, generator=gen(3), dtype=torch.float64)
    y = F.one_hot(torch.arange(6) % 10, 10).double()
    shift = torch.randn(6, 1, generator=gen(4), dtype=torch.float64)  # any per-row constant
    zs = (zt + shift).requires_grad_(True)
    loss = kd_loss(zs, zt, y, temperature=temperature, hard_weight=0.0, soft_weight=1.0)
    loss.backward()
    assert abs(loss.item()) < 1e-12
    assert zs.grad.abs().max().item() < 1e-12
    # Elsewhere it is positive, and the teacher gets no gradient.
    zt2 = zt.clone().requires_grad_(True)
    other = torch.randn(6, 10, generator=gen(5), dtype=torch.float64).requires_grad_(True)
    loss2 = kd_loss(other, zt2, y, temperature=temperature, hard_weight=0.0, soft_weight=1.0)
    loss2.backward()
    assert loss2.item() > 1e-3 and zt2.grad is None and other.grad.abs().max() > 1e-6


def test_weights_and_t2_scaling_combine_linearly() -> None:
    zs = torch.randn(5, 3, generator=gen(6), dtype=torch.float64)
    zt = torch.randn(5, 3, generator=gen(7), dtype=torch.float64)
    y = F.one_hot(torch.tensor([0, 1, 2, 0, 1]), 3).double()
    T = 2.0
    ce = soft_cross_entropy(zs, y).item()
    pt = F.softmax(zt / T, 1)
    kl = (pt * (pt.log() - F.log_softmax(zs / T, 1))).sum(1).mean().item()
    with_t2 = kd_loss(zs, zt, y, temperature=T, hard_weight=0.3, soft_weight=0.7).item()
    without = kd_loss(
        zs, zt, y, temperature=T, hard_weight=0.3, soft_weight=0.7, t2_scaling=False
    ).item()
    assert with_t2 == pytest.approx(0.3 * ce + 0.7 * T * T * kl, rel=1e-12)
    assert without == pytest.approx(0.3 * ce + 0.7 * kl, rel=1e-12)


def test_bad_arguments() -> None:
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="teacher"):
        kd_loss(z, None, z, temperature=1.0, hard_weight=0.0, soft_weight=1.0)
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(z, z, z, temperature=0.0, hard_weight=1.0, soft_weight=1.0)
    with pytest.raises(ValueError, match="shape"):
        kd_loss(z, torch.zeros(2, 4), z, temperature=1.0, hard_weight=0.0, soft_weight=1.0)
