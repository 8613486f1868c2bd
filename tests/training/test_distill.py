"""kd_loss: CE when soft_weight is 0; soft term zero (with zero gradient) at z_s = z_t + c;
the two-stage teacher's soft targets are row 1's fused probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from acoustic_lottery.labels import super_index_map
from acoustic_lottery.systems.fusion import two_stage
from acoustic_lottery.training.distill import kd_loss, soft_cross_entropy, two_stage_logits


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


# ------------------------------------------------------------------ two-stage teacher


def test_fused_teacher_soft_targets_are_row_1s_two_stage_probabilities() -> None:
    """At T = 1, softmax(two_stage_logits) = two_stage(P10, P3), renormalised (row 1)."""
    z10 = 3 * torch.randn(64, 10, generator=gen(8), dtype=torch.float64)
    z3 = 3 * torch.randn(64, 3, generator=gen(9), dtype=torch.float64)
    fused = two_stage_logits(z10, z3)
    soft = F.softmax(fused / 1.0, dim=1).numpy()
    expected = two_stage(
        F.softmax(z10, 1).numpy(), F.softmax(z3, 1).numpy(), super_index_map()
    ).astype(np.float64)
    np.testing.assert_allclose(soft, expected, atol=1e-6, rtol=0)
    # float32 logits (what the trainer's teachers give) agree just as well
    soft32 = F.softmax(two_stage_logits(z10.float(), z3.float()), dim=1).double().numpy()
    np.testing.assert_allclose(soft32, expected, atol=1e-6, rtol=0)
    # and kd_loss is zero, with zero gradient, for a student that predicts exactly that
    zs = torch.from_numpy(np.log(expected)).requires_grad_(True)
    y = F.one_hot(torch.arange(64) % 10, 10).double()
    loss = kd_loss(zs, fused, y, temperature=1.0, hard_weight=0.0, soft_weight=1.0)
    loss.backward()
    assert abs(loss.item()) < 1e-6 and zs.grad.abs().max().item() < 1e-6


def test_fused_teacher_follows_the_3_class_model_and_never_underflows() -> None:
    # the 10-class teacher is unsure between airport (indoor) and bus (transportation);
    # a confident 3-class "transportation" makes bus win
    z10 = torch.tensor([[2.0, 2.0, -5, -5, -5, -5, -5, -5, -5, -5]])
    z3 = torch.tensor([[0.0, 0.0, 4.0]])
    assert int(two_stage_logits(z10, z3).argmax()) == 1
    # probabilities of 1e-40 each would multiply to 0 in float32; log space keeps them
    z10 = torch.full((1, 10), -100.0)
    z10[0, 0] = 100.0
    z3 = torch.tensor([[-100.0, 100.0, -100.0]])
    out = two_stage_logits(z10, z3)
    assert torch.isfinite(out).all() and torch.isfinite(F.log_softmax(out, 1)).all()


def test_fused_teacher_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="rows"):
        two_stage_logits(torch.zeros(2, 10), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="index_map"):
        two_stage_logits(torch.zeros(2, 10), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="index_map"):
        two_stage_logits(torch.zeros(2, 3), torch.zeros(2, 3))
