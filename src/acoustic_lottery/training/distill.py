"""Knowledge-distillation loss (teacher-student learning, report §2.2).

loss = hard_weight·CE(targets, softmax(z_s))
     + soft_weight·(T² if t2_scaling)·KL(softmax(z_t/T) ‖ softmax(z_s/T))

Targets may be soft (mixup mixes one-hot labels). The soft term uses the KL divergence
rather than the cross-entropy of ASC_Knowledge_Transfer: they differ by the teacher's
entropy, a constant, so gradients are the same, but the KL is 0 at its minimum, which
makes the reported loss readable. T² keeps the soft gradients' scale independent of T
(Hinton et al.).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["kd_loss", "soft_cross_entropy"]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of −Σ_k y_k·log softmax(z)_k; y may be one-hot or mixed."""
    if logits.shape != targets.shape:
        raise ValueError(
            f"soft_cross_entropy: logits {tuple(logits.shape)} and targets "
            f"{tuple(targets.shape)} differ in shape"
        )
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    targets_soft: torch.Tensor,
    *,
    temperature: float,
    hard_weight: float,
    soft_weight: float,
    t2_scaling: bool = True,
) -> torch.Tensor:
    """Distillation loss, mean over the batch; the teacher side carries no gradient."""
    if temperature <= 0:
        raise ValueError(f"kd_loss: temperature must be > 0, got {temperature}")
    loss = student_logits.new_zeros(())
    if hard_weight:
        loss = loss + hard_weight * soft_cross_entropy(student_logits, targets_soft)
    if soft_weight:
        if teacher_logits is None:
            raise ValueError("kd_loss: soft_weight > 0 needs teacher logits")
        if teacher_logits.shape != student_logits.shape:
            raise ValueError(
                f"kd_loss: teacher logits {tuple(teacher_logits.shape)} and student logits "
                f"{tuple(student_logits.shape)} differ in shape"
            )
        t = float(temperature)
        log_p_t = F.log_softmax(teacher_logits.detach() / t, dim=1)
        log_p_s = F.log_softmax(student_logits / t, dim=1)
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()
        loss = loss + soft_weight * (t * t if t2_scaling else 1.0) * kl
    return loss
