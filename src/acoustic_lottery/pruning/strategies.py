"""Mask builders (step 8 of Algorithm 1): which of the surviving weights to prune next.

Every strategy takes the trained ("final") weights θ_f, the current mask and a ``rate``,
and prunes a fraction ``rate`` of the weights STILL REMAINING under the mask; weights
already pruned stay pruned (the new mask is a subset of the old one). Counts are exact:
a layer with R surviving weights loses round_half_up(rate_l × R) of them, capped so that
it keeps at least ``min_keep`` (or all it has, if it has fewer). Ties in |θ_f| are broken
deterministically by flat index (stable sort: the lower index is pruned first).

The report (Section 2.3, Figure 2) compares three strategies, citing Frankle & Carbin
[10] and Zhou et al. [20] ("Deconstructing lottery tickets"). All three rank weights by
final magnitude |θ_f|; what distinguishes them is how the pruning budget is spread over
the layers. The mapping chosen here:

``small_weights`` (the report's choice) — layer-wise magnitude pruning with ONE rate:
    every layer loses the same fraction ``rate`` of its surviving weights, the ones with
    the smallest |θ_f|. This is the plain reading of Frankle & Carbin's procedure
    ("prune p % of the weights of each layer") and of the name: small weights go.

``large_final`` — Zhou et al.'s criterion *as they run it*: keep the largest |θ_f| in
    each layer, but with layer-family rates. Their released code (uber-research/
    deconstructing-lottery-tickets, ``get_weight_init.py`` with ``--prune_base``) prunes
    conv layers, hidden dense layers and the output layer at different speeds, taken from
    Frankle & Carbin: per round keep 85 % of conv, 80 % of dense and 90 % of output
    weights (Conv-6 setting; the output layer always at half the dense rate). Here the
    families keep their *relative* speeds on the compounding scale: a layer of family g
    loses 1 − (1 − ρ)^f_g of its survivors, f_g = ln(keep_g) / ln(keep_dense), and ρ is
    solved so that the model as a whole still loses the fraction ``rate`` of its
    surviving prunable weights (``match_overall=True``, the default, so that the three
    strategies reach the same overall sparsity under one schedule and can be compared at
    equal sparsity as in Figure 2). ``match_overall=False`` is Zhou's literal use: dense
    layers at ``rate``, the other families slower. The output layer is the last prunable
    layer in registration order, whatever its type; models with several heads (MTL)
    name all head layers through ``outputs``.

``global_small_weights`` — Frankle & Carbin's global pruning (their VGG/ResNet setting,
    also Audio Lottery's ``prune.global_unstructured``): ONE |θ_f| threshold over all
    prunable layers, removing round_half_up(rate × total surviving) weights. Layers with
    small weights lose more, which at 99 % sparsity can empty a layer and disconnect the
    network; so the ``min_keep`` largest-|θ_f| survivors of every layer are protected and
    left out of the global ranking. The shortfall is redistributed globally: the
    threshold simply rises over the remaining candidates of all layers, so the overall
    count stays exact.

``random`` — Zhou et al.'s random criterion / Frankle & Carbin's random-pruning control:
    per layer, the same count as ``small_weights`` but chosen uniformly at random among
    the survivors (needs an explicit ``torch.Generator``).

`random_mask_like` is the other random control: a random mask with exactly the per-layer
kept counts of a given (winning) mask. Re-initialisation controls live in `rewind`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from typing import Any

import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.pruning.masks import (
    Mask,
    check_mask_matches,
    full_mask,
    layer_kinds,
    state_of,
)

ZHOU_KEEP_PER_ROUND: dict[str, float] = {"conv": 0.85, "linear": 0.80, "output": 0.90}
"""Per-round keep fractions of Zhou et al. / Frankle & Carbin (Conv-6) by layer family."""

LARGE_FINAL_FACTORS: dict[str, float] = {
    g: math.log(k) / math.log(ZHOU_KEEP_PER_ROUND["linear"]) for g, k in ZHOU_KEEP_PER_ROUND.items()
}
"""Relative pruning speeds (compounding scale) of ``large_final``: linear 1, conv ≈ 0.728,
output ≈ 0.472."""


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _check_rate(rate: float) -> float:
    try:
        r = float(rate)
    except (TypeError, ValueError) as exc:
        raise InputError(f"rate: expected a number in [0, 1], found {rate!r}") from exc
    if not (0.0 <= r <= 1.0) or math.isnan(r):
        raise InputError(
            f"rate: expected the fraction of remaining weights to prune, in [0, 1], found {rate}"
        )
    return r


def _check_min_keep(min_keep: int) -> int:
    if isinstance(min_keep, bool) or not isinstance(min_keep, int) or min_keep < 0:
        raise InputError(f"min_keep: expected an integer >= 0, found {min_keep!r}")
    return min_keep


def _prune_count(rate: float, remaining: int, min_keep: int) -> int:
    """round_half_up(rate × remaining), never leaving fewer than min_keep survivors."""
    k = _round_half_up(rate * remaining)
    return max(0, min(k, remaining - min(min_keep, remaining)))


class _Layer:
    """One layer's survivors, flattened on the CPU, scores in float64 (exact for all floats)."""

    def __init__(self, name: str, weight: torch.Tensor, mask: torch.Tensor) -> None:
        self.name = name
        self.shape = mask.shape
        self.device = mask.device
        self.mask = mask.detach().to("cpu").reshape(-1).clone()
        self.idx = torch.nonzero(self.mask, as_tuple=False).reshape(-1)  # ascending
        w = weight.detach().to("cpu").reshape(-1)
        self.score = w[self.idx].to(torch.float64).abs()
        if not torch.isfinite(self.score).all():
            raise InputError(
                f"{name!r}: surviving weights contain NaN or inf; cannot rank them by magnitude "
                "(did training diverge?)"
            )

    @property
    def remaining(self) -> int:
        return int(self.idx.numel())

    def ascending(self) -> torch.Tensor:
        """Flat indices of survivors, smallest |θ_f| first, ties by lower index first."""
        order = torch.sort(self.score, stable=True).indices
        return self.idx[order]

    def without(self, flat_idx: torch.Tensor) -> torch.Tensor:
        out = self.mask.clone()
        out[flat_idx] = False
        return out.reshape(self.shape).to(self.device)


def _layers(weights: Mapping[str, Any], mask: Mapping[str, torch.Tensor]) -> list[_Layer]:
    tensors = state_of(weights)
    check_mask_matches(tensors, mask)
    return [_Layer(name, tensors[name], m) for name, m in mask.items()]


def _per_layer(
    weights: Mapping[str, Any],
    mask: Mapping[str, torch.Tensor],
    rates: Mapping[str, float],
    min_keep: int,
) -> Mask:
    out: Mask = {}
    for layer in _layers(weights, mask):
        k = _prune_count(rates[layer.name], layer.remaining, min_keep)
        out[layer.name] = layer.without(layer.ascending()[:k])
    return out


def small_weights(
    weights: Mapping[str, Any],
    mask: Mapping[str, torch.Tensor],
    rate: float,
    *,
    min_keep: int = 1,
) -> Mask:
    """Per layer, prune the fraction ``rate`` of surviving weights with the smallest |θ_f|.

    The report's chosen strategy: every layer shrinks by the same factor, so no layer is
    starved and the architecture keeps its shape.
    """
    rate = _check_rate(rate)
    min_keep = _check_min_keep(min_keep)
    return _per_layer(weights, mask, dict.fromkeys(mask, rate), min_keep)


def large_final_rates(
    mask: Mapping[str, torch.Tensor],
    rate: float,
    kinds: Mapping[str, str] | None = None,
    *,
    layer_factors: Mapping[str, float] | None = None,
    match_overall: bool = True,
    outputs: Collection[str] | None = None,
) -> dict[str, float]:
    """The per-layer rates ``large_final`` uses (see the module docstring).

    ``kinds`` maps names to "conv" / "linear" (default: from the mask's ndim); the last
    name is the output layer unless ``outputs`` names the output layer(s). Exposed so
    that callers and tests can see the allocation.
    """
    rate = _check_rate(rate)
    factors = dict(LARGE_FINAL_FACTORS if layer_factors is None else layer_factors)
    for g in ("conv", "linear", "output"):
        f = factors.get(g)
        try:
            ok = f is not None and 0.0 <= float(f) < math.inf
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"layer_factors[{g!r}]: expected a finite number >= 0, found {f!r}")
    names = list(mask)
    if not names:
        return {}
    groups = {}
    for name in names:
        if kinds is not None and name in kinds:
            groups[name] = kinds[name]
        else:
            groups[name] = "linear" if mask[name].dim() == 2 else "conv"
    if outputs is None:
        outputs = [names[-1]]
    stray = sorted(set(outputs) - set(names))
    if stray:
        raise InputError(f"large_final outputs: {stray} are not in the mask")
    for name in outputs:
        groups[name] = "output"
    f_l = {n: float(factors[groups[n]]) for n in names}
    remaining = {n: int(mask[n].sum().item()) for n in names}

    def layer_rate(rho: float, f: float) -> float:
        return 0.0 if f == 0.0 else 1.0 - (1.0 - rho) ** f

    if not match_overall:
        rho = rate
    else:
        total = sum(remaining.values())
        goal = rate * total

        def pruned(rho: float) -> float:
            return sum(remaining[n] * layer_rate(rho, f_l[n]) for n in names)

        if total == 0 or goal <= 0.0:
            rho = 0.0
        elif pruned(1.0) <= goal:
            rho = 1.0
        else:
            lo, hi = 0.0, 1.0
            for _ in range(200):  # monotone in rho; bisection to float precision
                mid = 0.5 * (lo + hi)
                if pruned(mid) < goal:
                    lo = mid
                else:
                    hi = mid
            rho = 0.5 * (lo + hi)
    return {n: layer_rate(rho, f_l[n]) for n in names}


def large_final(
    weights: Mapping[str, Any],
    mask: Mapping[str, torch.Tensor],
    rate: float,
    *,
    min_keep: int = 1,
    kinds: Mapping[str, str] | None = None,
    layer_factors: Mapping[str, float] | None = None,
    match_overall: bool = True,
    outputs: Collection[str] | None = None,
) -> Mask:
    """Zhou et al.'s ``large_final``: per layer keep the largest |θ_f|, family-dependent rates.

    Conv, dense and output layers shrink at Zhou / Frankle & Carbin's relative speeds
    (`large_final_rates`); with ``match_overall`` the whole model still loses ``rate`` of
    its surviving prunable weights.
    """
    min_keep = _check_min_keep(min_keep)
    rates = large_final_rates(
        mask,
        rate,
        kinds,
        layer_factors=layer_factors,
        match_overall=match_overall,
        outputs=outputs,
    )
    return _per_layer(weights, mask, rates, min_keep)


def global_small_weights(
    weights: Mapping[str, Any],
    mask: Mapping[str, torch.Tensor],
    rate: float,
    *,
    min_keep: int = 1,
) -> Mask:
    """One |θ_f| threshold over all layers; every layer keeps its ``min_keep`` largest.

    Protected weights are left out of the ranking, so the shortfall of a layer that
    would have been emptied moves to the next-smallest weights of the other layers and
    the overall count stays round_half_up(rate × total surviving).
    """
    rate = _check_rate(rate)
    min_keep = _check_min_keep(min_keep)
    layers = _layers(weights, mask)
    total = sum(layer.remaining for layer in layers)
    k = _round_half_up(rate * total)
    out: Mask = {}
    if not layers:
        return out
    cand_idx, cand_score, cand_layer = [], [], []
    for li, layer in enumerate(layers):
        order = torch.sort(layer.score, stable=True).indices
        n_cand = layer.remaining - min(min_keep, layer.remaining)
        cand = torch.sort(order[:n_cand]).values  # all but the min_keep largest, by index
        cand_idx.append(layer.idx[cand])
        cand_score.append(layer.score[cand])
        cand_layer.append(torch.full((n_cand,), li, dtype=torch.long))
    idx = torch.cat(cand_idx)
    owner = torch.cat(cand_layer)
    # Candidates are concatenated in (layer order, index); a stable sort by score thus
    # breaks ties by layer order, then by index.
    order = torch.sort(torch.cat(cand_score), stable=True).indices[: min(k, idx.numel())]
    chosen_idx, chosen_owner = idx[order], owner[order]
    for li, layer in enumerate(layers):
        out[layer.name] = layer.without(chosen_idx[chosen_owner == li])
    return out


def random_prune(
    weights: Mapping[str, Any],
    mask: Mapping[str, torch.Tensor],
    rate: float,
    *,
    generator: torch.Generator | None = None,
    min_keep: int = 1,
) -> Mask:
    """Per layer, prune the ``small_weights`` count among survivors chosen at random.

    The pruning-criterion control: same per-layer sparsity as magnitude pruning, no
    information from the weights. ``weights`` is used only to check the mask's shapes.
    """
    rate = _check_rate(rate)
    min_keep = _check_min_keep(min_keep)
    gen = _need_generator(generator)
    out: Mask = {}
    for layer in _layers(weights, mask):
        k = _prune_count(rate, layer.remaining, min_keep)
        pick = torch.randperm(layer.remaining, generator=gen)[:k]
        out[layer.name] = layer.without(layer.idx[pick])
    return out


def _need_generator(generator: torch.Generator | None) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise InputError(
            "random masks need an explicit seeded torch.Generator (CPU), e.g. "
            "seeded_generator(seed); found " + type(generator).__name__
        )
    return generator


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU torch.Generator seeded with ``seed`` (random controls never use global RNG)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


def random_mask_like(mask: Mapping[str, torch.Tensor], generator: torch.Generator) -> Mask:
    """A random mask with exactly the per-layer kept counts of ``mask`` (winning-ticket control).

    Positions are drawn uniformly over the whole layer, so the control has the ticket's
    layer-wise sparsity but none of its structure (Frankle & Carbin's "random pruning").
    """
    gen = _need_generator(generator)
    out: Mask = {}
    for name, m in mask.items():
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool:
            raise InputError(f"mask key {name!r}: expected a bool tensor")
        n = m.numel()
        kept = int(m.sum().item())
        flat = torch.zeros(n, dtype=torch.bool)
        flat[torch.randperm(n, generator=gen)[:kept]] = True
        out[name] = flat.reshape(m.shape).to(m.device)
    return out


STRATEGIES: dict[str, Callable[..., Mask]] = {
    "large_final": large_final,
    "small_weights": small_weights,
    "global_small_weights": global_small_weights,
    "random": random_prune,
}
"""Name -> mask builder ``fn(weights, mask, rate, **kw) -> Mask``."""

REPORT_STRATEGIES: tuple[str, ...] = ("large_final", "small_weights", "global_small_weights")
"""The three strategies of the report's Figure 2."""


def build_mask(
    strategy: str,
    model_or_state: nn.Module | Mapping[str, Any],
    prev_mask: Mapping[str, torch.Tensor] | None,
    rate: float,
    *,
    generator: torch.Generator | None = None,
    min_keep: int = 1,
    **options: Any,
) -> Mask:
    """Next mask from trained weights: the single entry point used by the lottery rounds.

    ``model_or_state`` holds θ_f (module, state dict or checkpoint dict); ``prev_mask``
    None means nothing pruned yet (all prunable weights). ``options`` go to
    ``large_final`` only (``layer_factors``, ``match_overall``, ``outputs``).
    """
    if strategy not in STRATEGIES:
        raise InputError(
            f"pruning strategy: unknown {strategy!r}; expected one of {sorted(STRATEGIES)}"
        )
    if prev_mask is None:
        prev_mask = full_mask(model_or_state)
    check_mask_matches(model_or_state, prev_mask)
    weights = state_of(model_or_state)
    if strategy == "large_final":
        allowed = {"layer_factors", "match_overall", "outputs"}
        bad = sorted(set(options) - allowed)
        if bad:
            raise InputError(f"large_final: unknown option(s) {bad}; allowed {sorted(allowed)}")
        kinds = layer_kinds(model_or_state, prev_mask)
        return large_final(weights, prev_mask, rate, min_keep=min_keep, kinds=kinds, **options)
    if options:
        raise InputError(f"{strategy}: takes no options, found {sorted(options)}")
    if strategy == "random":
        return random_prune(weights, prev_mask, rate, generator=generator, min_keep=min_keep)
    return STRATEGIES[strategy](weights, prev_mask, rate, min_keep=min_keep)
