"""Per-batch cosine learning rate with warm restarts (SGDR), as a pure function of the step.

Why a pure function instead of a stateful torch scheduler: a run resumed at any global
step (from a checkpoint, or from a late-rewinding snapshot) gets exactly the learning
rate an uninterrupted run would have had, with nothing to save or restore.

Cycle k lasts cycle_epochs·cycle_mult^k epochs (2, 4, 8, 16, ... by default). Within a
cycle of n batches, batch i (0-based) uses
    lr = lr_min + (lr_max − lr_min)·(1 + cos(π·i/(n − 1)))/2,
so the first batch of every cycle runs at lr_max and the last one at exactly lr_min:
a run whose epochs end at a cycle end is taken at the learning-rate minimum, which is
how the 2021 system picked its models (no validation set).
"""

from __future__ import annotations

import logging
import math

from acoustic_lottery.training.spec import TrainSpec

__all__ = ["check_epochs", "cycle_ends", "cycle_position", "lr_at"]

log = logging.getLogger(__name__)


def cycle_position(step: int, steps_per_epoch: int, spec: TrainSpec) -> tuple[int, int, int]:
    """(cycle index k, batch index i within the cycle, cycle length n in batches).

    Integer arithmetic only, so the position of a step never depends on rounding.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    k = 0
    n = spec.cycle_epochs * steps_per_epoch
    i = step
    while i >= n:
        i -= n
        k += 1
        n *= spec.cycle_mult
    return k, i, n


def lr_at(step: int, steps_per_epoch: int, spec: TrainSpec) -> float:
    """Learning rate of the batch at global `step` (0-based)."""
    _, i, n = cycle_position(step, steps_per_epoch, spec)
    frac = i / (n - 1) if n > 1 else 1.0
    return spec.lr_min + 0.5 * (spec.lr_max - spec.lr_min) * (1.0 + math.cos(math.pi * frac))


def cycle_ends(spec: TrainSpec, up_to_epochs: int | None = None) -> list[int]:
    """Epoch counts at which a cycle ends (2, 6, 14, 30, ...), up to `up_to_epochs`."""
    limit = spec.epochs if up_to_epochs is None else up_to_epochs
    ends: list[int] = []
    total, length = 0, spec.cycle_epochs
    while total + length <= limit:
        total += length
        ends.append(total)
        length *= spec.cycle_mult
    return ends


def check_epochs(spec: TrainSpec) -> bool:
    """True if training ends at a cycle end; otherwise log a warning and return False.

    The model is taken after the last epoch; off a cycle end it is not at the LR minimum.
    """
    ends = cycle_ends(spec)
    if ends and ends[-1] == spec.epochs:
        return True
    next_end = (ends[-1] if ends else 0) + spec.cycle_epochs * spec.cycle_mult ** len(ends)
    log.warning(
        "epochs=%d does not end at a cosine cycle end (cycle ends: %s; next %d): the final "
        "model is not taken at the learning-rate minimum",
        spec.epochs,
        ", ".join(map(str, ends)) or "none",
        next_end,
    )
    return False
