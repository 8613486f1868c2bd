"""How much to prune when: per-round rates, size targets, presets, progressive steps.

Rates are always "fraction of the REMAINING prunable weights removed", so T rounds at
rate r leave (1 − r)^T of the prunable weights: sparsity s = 1 − (1 − r)^T.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.lottery_presets import (  # noqa: F401 - re-exported
    _EPS,
    ACOUSTIC_LOTTERY_TARGET,
    PRESET_NAMES,
    PRESETS,
    _check_positive_int,
    _check_sparsity,
    preset,
    rate_per_round,
    rounds_for,
    sparsity_after,
)
from acoustic_lottery.pruning.masks import prunable_from_state, prunable_parameters, state_of


def prunable_sparsity_for_size(
    n_prunable: int, n_unprunable: int, target_kb: float, bytes_per_value: float = 4
) -> float:
    """Prunable sparsity s giving a total size of ``target_kb`` (KB = 1024 bytes).

    Size = (n_unprunable + (1 − s) · n_prunable) · bytes_per_value, counting every
    unprunable value (BN, biases) as stored. Raises InputError when the unprunable
    values alone exceed the target: no pruning of weights can reach it.
    """
    if n_prunable <= 0 or n_unprunable < 0:
        raise InputError(
            f"expected n_prunable > 0 and n_unprunable >= 0, found {n_prunable}, {n_unprunable}"
        )
    if target_kb <= 0 or bytes_per_value <= 0:
        raise InputError(
            f"expected target_kb > 0 and bytes_per_value > 0, found {target_kb}, {bytes_per_value}"
        )
    budget_values = target_kb * 1024.0 / bytes_per_value
    floor_kb = n_unprunable * bytes_per_value / 1024.0
    kept = budget_values - n_unprunable
    if kept < 0:
        raise InputError(
            f"target size {target_kb} KB is below the {floor_kb:.2f} KB taken by the "
            f"{n_unprunable} unprunable values alone ({bytes_per_value} bytes each); "
            "prune or quantize those too, or raise the target"
        )
    if kept >= n_prunable:
        return 0.0
    return 1.0 - kept / n_prunable


def size_kb(
    n_prunable: int, n_unprunable: int, sparsity: float, bytes_per_value: float = 4
) -> float:
    """Total size in KB at a prunable sparsity (the inverse of `prunable_sparsity_for_size`)."""
    s = _check_sparsity("sparsity", sparsity, allow_one=True)
    return (n_unprunable + (1.0 - s) * n_prunable) * bytes_per_value / 1024.0


def count_values(
    model: nn.Module | Mapping[str, Any], names: Iterable[str] | None = None
) -> tuple[int, int]:
    """(prunable, unprunable) stored value counts by the DCASE rule's inventory.

    Every tensor of the state dict counts (weights, biases, BN γ/β/mean/var) except
    ``num_batches_tracked``, which is not a parameter.
    """
    state = state_of(model)
    if names is None:
        if isinstance(model, nn.Module):
            names = prunable_parameters(model)
        else:
            names = prunable_from_state(state)
    names = set(names)
    missing = sorted(names - set(state))
    if missing:
        raise InputError(f"prunable name(s) not in the model: {missing[:5]}")
    prunable = unprunable = 0
    for key, t in state.items():
        if key.split(".")[-1] == "num_batches_tracked":
            continue
        if key in names:
            prunable += t.numel()
        else:
            unprunable += t.numel()
    return prunable, unprunable


def target_for_size(
    model: nn.Module | Mapping[str, Any],
    target_kb: float,
    bytes_per_value: float = 4,
    names: Iterable[str] | None = None,
) -> float:
    """Prunable sparsity needed for the WHOLE model (BN and biases included) to be ``target_kb``.

    The report's 3.4 KB (SIC) and 23.6 KB (LIC) are whole-model sizes by the DCASE rule,
    while a pruning rate only touches conv/linear weights; this converts one to the other.
    """
    prunable, unprunable = count_values(model, names)
    return prunable_sparsity_for_size(prunable, unprunable, target_kb, bytes_per_value)


class PruneStep(NamedTuple):
    """One progressive-pruning event: once ``step`` optimizer steps have completed, bring
    the prunable sparsity to ``sparsity`` by pruning the fraction ``rate`` of the
    remaining weights."""

    step: int
    sparsity: float
    rate: float


RAMPS = ("cubic", "linear")


def progressive_steps(
    target_sparsity: float,
    n_steps: int,
    start_epoch: float,
    end_epoch: float,
    steps_per_epoch: int,
    *,
    ramp: str = "cubic",
    initial_sparsity: float = 0.0,
) -> list[PruneStep]:
    """Steps of Rep-Mobile-style progressive pruning (many small prunes while fine-tuning).

    Between global steps t0 = start_epoch·steps_per_epoch and t1 = end_epoch·steps_per_epoch
    prune ``n_steps`` times, at t_k = t0 + round(k·(t1 − t0)/n) for k = 1..n. Cumulative
    sparsity follows
      cubic (Zhu & Gupta 2017, default): s_k = s_f + (s_i − s_f)(1 − k/n)^3 — prunes
        fast while many redundant weights remain, gently near the end;
      linear: s_k = s_i + (s_f − s_i)·k/n.
    The last step lands exactly on ``target_sparsity``. Rep-Mobile's exact schedule is not
    published (only "pruning the model multiple times in small amounts"); both ramps are
    offered and the choice is recorded by the caller.
    """
    s_f = _check_sparsity("target_sparsity", target_sparsity)
    s_i = _check_sparsity("initial_sparsity", initial_sparsity)
    n = _check_positive_int("n_steps", n_steps)
    spe = _check_positive_int("steps_per_epoch", steps_per_epoch)
    if ramp not in RAMPS:
        raise InputError(f"ramp: expected one of {list(RAMPS)}, found {ramp!r}")
    if s_f < s_i:
        raise InputError(
            f"target_sparsity {s_f} is below initial_sparsity {s_i}; pruning never un-prunes"
        )
    if not (0 <= start_epoch < end_epoch):
        raise InputError(
            f"expected 0 <= start_epoch < end_epoch, found start {start_epoch}, end {end_epoch}"
        )
    t0 = int(round(start_epoch * spe))
    t1 = int(round(end_epoch * spe))
    if t1 - t0 < n:
        raise InputError(
            f"n_steps {n} does not fit into the {t1 - t0} optimizer steps between epochs "
            f"{start_epoch} and {end_epoch}; use fewer steps or a longer window"
        )
    out: list[PruneStep] = []
    prev = s_i
    for k in range(1, n + 1):
        frac = k / n
        if k == n:
            s = s_f
        elif ramp == "cubic":
            s = s_f + (s_i - s_f) * (1.0 - frac) ** 3
        else:
            s = s_i + (s_f - s_i) * frac
        step = t0 + int(math.floor(k * (t1 - t0) / n + 0.5))
        rate = 0.0 if prev >= 1.0 else 1.0 - (1.0 - s) / (1.0 - prev)
        out.append(PruneStep(step=step, sparsity=s, rate=max(0.0, rate)))
        prev = s
    return out
