"""How much to prune when: per-round rates, size targets, presets, progressive steps.

Rates are always "fraction of the REMAINING prunable weights removed", so T rounds at
rate r leave (1 − r)^T of the prunable weights: sparsity s = 1 − (1 − r)^T.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.pruning.masks import prunable_from_state, prunable_parameters, state_of

_EPS = 1e-9


def _check_sparsity(name: str, s: float, *, allow_one: bool = False) -> float:
    try:
        v = float(s)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: expected a fraction in [0, 1), found {s!r}") from exc
    hi_ok = v <= 1.0 if allow_one else v < 1.0
    if math.isnan(v) or v < 0.0 or not hi_ok:
        rng = "[0, 1]" if allow_one else "[0, 1)"
        raise InputError(f"{name}: expected a fraction in {rng}, found {s!r}")
    return v


def _check_positive_int(name: str, n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InputError(f"{name}: expected an integer >= 1, found {n!r}")
    return n


def rate_per_round(target_sparsity: float, rounds: int) -> float:
    """Fraction of the remaining weights to prune per round to reach the target in ``rounds``.

    r = 1 − (1 − s)^(1/T): equal multiplicative steps, as in iterative magnitude pruning.
    """
    s = _check_sparsity("target_sparsity", target_sparsity)
    t = _check_positive_int("rounds", rounds)
    return 1.0 - (1.0 - s) ** (1.0 / t)


def sparsity_after(rate: float, rounds: int) -> float:
    """Prunable sparsity after ``rounds`` rounds at ``rate`` of remaining: 1 − (1 − r)^T."""
    r = _check_sparsity("rate", rate, allow_one=True)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise InputError(f"rounds: expected an integer >= 0, found {rounds!r}")
    return 1.0 - (1.0 - r) ** rounds


def rounds_for(target_sparsity: float, rate: float = 0.2) -> int:
    """Fewest rounds at ``rate`` whose sparsity reaches ``target_sparsity`` (Audio Lottery IMP).

    A tiny tolerance keeps exact cases exact (0.36 at 20 % is 2 rounds, not 3 from
    floating-point noise).
    """
    s = _check_sparsity("target_sparsity", target_sparsity)
    r = _check_sparsity("rate", rate)
    if s == 0.0:
        return 0
    if r == 0.0:
        raise InputError("rate: 0 never reaches a positive target sparsity")
    n = math.log1p(-s) / math.log1p(-r)
    return max(0, math.ceil(n - _EPS))


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


ACOUSTIC_LOTTERY_TARGET = 0.9933
"""Figure 3b of the report: the LTH-pruned SIC keeps 0.67 % of its weights."""

_ACOUSTIC_LOTTERY: dict[str, Any] = {
    "strategy": "small_weights",
    "scope": "weights",
    "rounds": 2,
    "target_sparsity": ACOUSTIC_LOTTERY_TARGET,
    "rewind": "init",
    "rewind_step": 0,
    "reset_optimizer": True,
    "distillation": True,
    "min_keep": 1,
}

_PRESETS: dict[str, dict[str, Any]] = {
    "acoustic_lottery": {
        "description": (
            "Acoustic Lottery (report Alg. 1, Sec. 2.3): teacher-student training, "
            "per-layer small-weights masks over the conv / linear WEIGHTS (BN and biases "
            "kept), 99.33 % of the weights pruned in T = 2 rounds, survivors rewound to Θ0, "
            "retrained. 'rounds' counts mask updates (Alg. 1 read literally prunes only when "
            "t < T, i.e. T−1 times). The report's sizes (SIC 3.4 KB = 503 KB × 0.0067) count "
            "the remaining weights only; the DCASE size of this ticket also counts its BN."
        ),
        **_ACOUSTIC_LOTTERY,
    },
    "acoustic_lottery_size_matched": {
        "description": (
            "The report's sizes read as 0.67 % of ALL stored values: as acoustic_lottery but "
            "scope 'all' (biases and BN channels pruned too), so the DCASE size lands on "
            "3.4 KB (SIC) / 23.6 KB (LIC). Read literally it keeps 1 of the head BN's 10 "
            "channels: 9 logits are constant and argmax reaches at most 2 of 10 classes "
            "(a 20 % accuracy ceiling). The mask builders' reachability guard restores the "
            "head channels and paths every class needs (a few dozen values), so the size "
            "lands slightly above the report's. Not used by any default row."
        ),
        **_ACOUSTIC_LOTTERY,
        "scope": "all",
    },
    "audio_lottery": {
        "description": (
            "Audio Lottery (Ding et al. 2022) IMP: prune 20 % of the remaining weights per "
            "round with one global magnitude threshold (their prune.global_unstructured), "
            "rewind weights AND optimizer state to Θ0, until the target sparsity."
        ),
        "strategy": "global_small_weights",
        "scope": "weights",
        "rate": 0.2,
        "target_sparsity": ACOUSTIC_LOTTERY_TARGET,
        "rewind": "init",
        "rewind_step": 0,
        "reset_optimizer": True,
        "distillation": False,
        "min_keep": 1,
    },
    "progressive": {
        "description": (
            "Rep-Mobile progressive pruning: many small magnitude prunes during fine-tuning "
            "with distillation, no rewinding; see progressive_steps for the ramp."
        ),
        "strategy": "small_weights",
        "target_sparsity": ACOUSTIC_LOTTERY_TARGET,
        "n_steps": 10,
        "ramp": "cubic",
        "start_fraction": 0.1,
        "end_fraction": 0.7,
        "rewind": None,
        "reset_optimizer": False,
        "distillation": True,
        "min_keep": 1,
    },
}

PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)


def preset(name: str, **overrides: Any) -> dict[str, Any]:
    """A fresh plain-dict preset with derived fields filled in.

    acoustic_lottery(_size_matched): ``rate`` = rate_per_round(target, rounds);
    audio_lottery: ``rounds`` = rounds_for(target, rate) and ``final_sparsity``;
    progressive: the fractions of the fine-tuning run over which ``progressive_steps``
    ramps. ``overrides`` replace keys before deriving (e.g.
    ``preset("acoustic_lottery", rounds=1)``). ``scope`` is the lottery presets' pruning
    scope (`pruning.scope`).
    """
    if name not in _PRESETS:
        raise InputError(f"pruning preset: unknown {name!r}; expected one of {list(_PRESETS)}")
    p = copy.deepcopy(_PRESETS[name])
    unknown = sorted(set(overrides) - set(p) - {"rate", "rounds"})
    if unknown:
        raise InputError(f"pruning preset {name!r}: unknown key(s) {unknown}; known {sorted(p)}")
    p.update(overrides)
    p["name"] = name
    if "rounds" in _PRESETS[name]:  # acoustic_lottery and its size-matched variant
        if "rate" not in overrides:
            p["rate"] = rate_per_round(p["target_sparsity"], p["rounds"])
        p["final_sparsity"] = sparsity_after(p["rate"], p["rounds"])
    elif "rate" in _PRESETS[name]:  # audio_lottery
        if "rounds" not in overrides:
            p["rounds"] = rounds_for(p["target_sparsity"], p["rate"])
        p["final_sparsity"] = sparsity_after(p["rate"], p["rounds"])
    return p


PRESETS: dict[str, dict[str, Any]] = {n: preset(n) for n in _PRESETS}
"""The presets with default values (plain dicts; use `preset` for a modified copy)."""
