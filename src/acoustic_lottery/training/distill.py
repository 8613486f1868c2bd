"""Knowledge-distillation loss (teacher-student learning, report §2.2).

loss = hard_weight·CE(targets, softmax(z_s))
     + soft_weight·(T² if t2_scaling)·KL(softmax(z_t/T) ‖ softmax(z_s/T))

Targets may be soft (mixup mixes one-hot labels). The soft term uses the KL divergence
rather than the cross-entropy of ASC_Knowledge_Transfer: they differ by the teacher's
entropy, a constant, so gradients are the same, but the KL is 0 at its minimum, which
makes the reported loss readable. T² keeps the soft gradients' scale independent of T
(Hinton et al.).

A two-stage teacher (report §3.3: the 10-class students learn from row 1's fused FCNN)
gives `two_stage_logits`: log P10 + log P3[:, map], the log of row 1's unnormalised
product. kd_loss's log_softmax(z_t / T) renormalises it, so at T = 1 the soft targets are
exactly the fused, renormalised probabilities of `systems.fusion.two_stage`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from acoustic_lottery.labels import super_index_map

__all__ = ["kd_loss", "soft_cross_entropy", "two_stage_logits"]


def two_stage_logits(
    scene_logits: torch.Tensor,
    super_logits: torch.Tensor,
    index_map: Sequence[int] | None = None,
) -> torch.Tensor:
    """Logits of the two-stage fused teacher: log_softmax(z10) + log_softmax(z3)[:, map].

    index_map[j] is the super-class of scene j (default: TAU's [0,2,2,0,1,1,0,1,1,2]).
    Computed in log space, so a product of tiny probabilities never underflows to 0.
    """
    idx = list(super_index_map() if index_map is None else index_map)
    if scene_logits.dim() != 2 or super_logits.dim() != 2:
        raise ValueError(
            f"two_stage_logits: expected (B, K) logits, found {tuple(scene_logits.shape)} "
            f"and {tuple(super_logits.shape)}"
        )
    if scene_logits.shape[0] != super_logits.shape[0]:
        raise ValueError(
            f"two_stage_logits: {scene_logits.shape[0]} scene rows but "
            f"{super_logits.shape[0]} super-class rows"
        )
    if len(idx) != scene_logits.shape[1] or not all(0 <= i < super_logits.shape[1] for i in idx):
        raise ValueError(
            f"two_stage_logits: index_map {idx} must give one super-class column in "
            f"0..{super_logits.shape[1] - 1} per scene ({scene_logits.shape[1]} scenes)"
        )
    cols = torch.as_tensor(idx, dtype=torch.long, device=super_logits.device)
    return F.log_softmax(scene_logits, dim=1) + F.log_softmax(super_logits, dim=1)[:, cols]


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
