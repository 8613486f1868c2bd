"""Lottery presets and round arithmetic: plain Python, no torch.

Why here and not in `pruning`: the config resolver (`pipeline.lottery_settings`) reads
the presets while Snakemake builds the DAG, and importing the `pruning` package imports
torch (2 s a call). `pruning.schedule` re-exports all of it.

Rates are always "fraction of the REMAINING prunable weights removed", so T rounds at
rate r leave (1 − r)^T of the prunable weights: sparsity s = 1 − (1 − r)^T.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from acoustic_lottery.errors import InputError

__all__ = [
    "ACOUSTIC_LOTTERY_TARGET",
    "PRESETS",
    "PRESET_NAMES",
    "preset",
    "rate_per_round",
    "rounds_for",
    "sparsity_after",
]

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
