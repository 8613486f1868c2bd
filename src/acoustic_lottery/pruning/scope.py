"""Which stored values a lottery mask may prune ("scope"), and masks over that scope.

Two scopes:

``weights`` (the default; the ``acoustic_lottery`` preset, every Table 1 LTH row) — the
    ``weight`` of every Conv / Linear layer; biases and BatchNorm are kept. ``exclude_first``
    / ``exclude_last`` keep the first / last Conv-or-Linear layer dense (see
    `masks.prunable_layers`).

``all`` (the ``acoustic_lottery_size_matched`` preset, a labelled variant no default row
    uses) — additionally every Conv / Linear ``bias`` as a tensor of its own, and every
    affine BatchNorm layer by CHANNEL: channel c is one unit, ranked by |γ_c|; when it is
    pruned, γ_c, β_c, running_mean_c and running_var_c are all exactly 0. Its output is
    then exactly 0 in train mode (0·x̂ + 0) and in eval mode (0·(x − 0)/√(0 + ε) + 0), so
    zeroing the running statistics changes nothing the network computes, and the DCASE
    size rule (zeros are not counted) stops charging the channel's four values.
    BatchNorms without γ (``affine=False``: FCNN, ResNet) cannot be silenced this way and
    are kept.

Why two — the size arithmetic. The report's pruned sizes are 3.4 KB (SIC) and 23.6 KB
(LIC), "99.33 % pruned" (Figure 3b); every pruned size in its Table 1 is the dense size ×
0.0067 and Figure 2's axis is "weights remaining":

    SIC: 128,768 values = 503.0 KB;  0.67 % of them = 862.7 values = 3.37 KB  (report 3.4)
    LIC: 903,176 values = 3528 KB;   0.67 % of them = 6051 values  = 23.64 KB (report 23.6)

i.e. the report computed sizes from a WEIGHT sparsity and counted the remaining weights
only. The lottery strategies it cites prune conv / linear weights, so ``weights`` is the
reproduction; its honest DCASE size also charges the BN it keeps (SIC's 490 BN channels
store 1,960 values = 7.66 KB: the SIC ticket is ≈ 11.0 KB, the LIC ticket ≈ 49.2 KB;
folding BN into the conv biases, `models.size.bn_folded_size`, leaves ≈ 5.3 / 29.9 KB).
``all`` lands on the report's numbers by pruning 99.33 % of every stored value, BN
included — read literally it keeps 1 of the head BN's 10 channels, so 9 class logits are
identically 0 and argmax reaches at most 2 of 10 classes: a 20 % accuracy ceiling
whatever the training. The reachability guard below prevents that (it gives back the
head channels and paths every class needs, a few dozen values above the report's size).

A mask is a dict over state-dict names (parameters AND BN running buffers), so the size
rule and the trainer see exact zeros; the members of a BN channel share one mask. The
strategies rank "units": each group below is ranked through its *leader* tensor
(``weight`` of Conv / Linear, ``bias`` itself, γ = ``bn.weight`` of a BN), and the
leader's mask is copied to the members. "A layer is never emptied" holds per tensor
(``min_keep``), and "every class stays reachable" per head: `build_scoped_mask` gives
back the few units a class's logit needs (`reachability`), in every scope. Per-layer
strategies therefore prune every tensor by the same fraction;
``global_small_weights`` puts every unit in one ranking (a BN channel is one unit, ranked
by |γ|, which after training is typically far larger than conv weights, so global
pruning tends to keep BN channels and reach the value sparsity less exactly).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.pruning.masks import KINDS, Mask, prunable_layers, state_of
from acoustic_lottery.pruning.strategies import (
    STRATEGIES,
    global_small_weights,
    large_final,
    random_prune,
    small_weights,
)

__all__ = [
    "BN_MEMBERS",
    "SCOPES",
    "Groups",
    "build_scoped_mask",
    "check_scope_mask",
    "expand_mask",
    "full_scope_mask",
    "group_kinds",
    "leader_mask",
    "output_leaders",
    "prunable_groups",
    "reachable_leaders",
]

SCOPES: tuple[str, ...] = ("weights", "all")
BN_MEMBERS: tuple[str, ...] = ("weight", "bias", "running_mean", "running_var")
"""The per-channel tensors of a BatchNorm pruned together (γ first: it ranks the channel)."""

Groups = dict[str, tuple[str, ...]]
"""leader name -> member names (leader first), in module registration order."""


def _check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise InputError(f"pruning scope: expected one of {list(SCOPES)}, found {scope!r}")
    return scope


def _join(module: str, attr: str) -> str:
    return f"{module}.{attr}" if module else attr


def prunable_groups(
    model: nn.Module,
    scope: str = "weights",
    *,
    exclude_first: bool = False,
    exclude_last: bool = False,
) -> Groups:
    """The prunable units of ``model`` under ``scope``: leader -> its members.

    ``weights``: one group per Conv / Linear weight. ``all``: also each Conv / Linear bias
    (its own group) and each affine BN with running statistics (γ leads β, running_mean,
    running_var). ``exclude_first`` / ``exclude_last`` drop the first / last Conv-or-
    Linear layer, its bias included; BN layers are not "first/last layers".
    """
    _check_scope(scope)
    weights = prunable_layers(model, exclude_first=exclude_first, exclude_last=exclude_last)
    if scope == "weights":
        return {w: (w,) for w in weights}
    groups: Groups = {}
    for name, module in model.named_modules():
        if isinstance(module, KINDS["conv"] + KINDS["linear"]):
            w = _join(name, "weight")
            if w not in weights:
                continue  # excluded first / last layer
            groups[w] = (w,)
            if isinstance(getattr(module, "bias", None), torch.Tensor):
                b = _join(name, "bias")
                groups[b] = (b,)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            if not module.affine or not module.track_running_stats:
                continue  # without γ a channel cannot be silenced exactly
            members = tuple(_join(name, m) for m in BN_MEMBERS)
            groups[members[0]] = members
    return groups


def output_leaders(model: nn.Module, groups: Mapping[str, Sequence[str]]) -> list[str]:
    """Leaders belonging to the output layer(s): ``large_final`` prunes them slowest.

    For a `HeadedModel` (``model.head`` a ModuleDict) the last Conv / Linear of every head
    and the BN registered after it in that head; otherwise the last Conv / Linear. Only
    leaders present in ``groups`` (an excluded layer is not pruned at all).
    """
    heads = getattr(model, "head", None)
    parents: list[tuple[str, nn.Module]]
    if isinstance(heads, nn.ModuleDict) and len(heads):
        parents = [(f"head.{k}", m) for k, m in heads.items()]
    else:
        parents = [("", model)]
    out: list[str] = []
    for prefix, parent in parents:
        mods = list(parent.named_modules(prefix=prefix))
        last = None
        for i, (_, m) in enumerate(mods):
            if isinstance(m, KINDS["conv"] + KINDS["linear"]):
                last = i
        if last is None:
            continue
        for j, (name, m) in enumerate(mods):
            if j == last:
                out += [n for n in (_join(name, "weight"), _join(name, "bias")) if n in groups]
            elif (
                j > last
                and isinstance(m, nn.modules.batchnorm._BatchNorm)
                and _join(name, "weight") in groups
            ):
                out.append(_join(name, "weight"))
    return out


def group_kinds(model: nn.Module, groups: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Layer family ("conv" / "linear") of each leader, for ``large_final``'s rates.

    A bias belongs to its layer's family; a BN channel normalises a convolution's output,
    so it counts as "conv".
    """
    kinds: dict[str, str] = {}
    for name, module in model.named_modules():
        for kind in ("conv", "linear"):
            if isinstance(module, KINDS[kind]):
                for attr in ("weight", "bias"):
                    kinds[_join(name, attr)] = kind
    return {leader: kinds.get(leader, "conv") for leader in groups}


def full_scope_mask(state: Mapping[str, Any] | nn.Module, groups: Groups) -> Mask:
    """All-True mask over every member of ``groups`` (nothing pruned yet)."""
    tensors = state_of(state)
    out: Mask = {}
    for members in groups.values():
        for name in members:
            if name not in tensors:
                raise InputError(f"prunable tensor {name!r}: not in the model's state dict")
            out[name] = torch.ones(tensors[name].shape, dtype=torch.bool)
    return out


def check_scope_mask(
    mask: Mapping[str, Any],
    groups: Groups,
    state: Mapping[str, Any] | nn.Module,
    where: str = "mask",
) -> None:
    """InputError unless ``mask`` covers exactly the scope's tensors, shaped like the model,
    with each BN channel's members agreeing.

    A mask of another architecture, width, head or scope is caught here by name and shape
    instead of failing (or silently broadcasting) during training.
    """
    if not isinstance(mask, Mapping):
        raise InputError(f"{where}: expected a dict of bool tensors, found {type(mask).__name__}")
    tensors = state_of(state)
    expected = [n for members in groups.values() for n in members]
    missing = [n for n in expected if n not in mask]
    extra = [n for n in mask if n not in set(expected)]
    problems = []
    if extra:
        more = " ..." if len(extra) > 5 else ""
        problems.append(f"{len(extra)} name(s) not prunable in this model/scope: {extra[:5]}{more}")
    if missing:
        more = " ..." if len(missing) > 5 else ""
        problems.append(f"{len(missing)} prunable tensor(s) missing: {missing[:5]}{more}")
    for name in expected:
        m = mask.get(name)
        if m is None:
            continue
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool:
            problems.append(f"{name!r}: expected a bool tensor")
        elif name in tensors and tuple(m.shape) != tuple(tensors[name].shape):
            problems.append(
                f"{name!r}: mask shape {tuple(m.shape)} vs model {tuple(tensors[name].shape)}"
            )
    if problems:
        raise InputError(f"{where} does not match the model: " + "; ".join(problems))
    for leader, members in groups.items():
        for name in members[1:]:
            if not torch.equal(mask[name], mask[leader]):
                raise InputError(
                    f"{where}: {name!r} and {leader!r} disagree; a BN channel's γ, β and "
                    "running statistics must be pruned together"
                )


def leader_mask(mask: Mapping[str, torch.Tensor], groups: Groups) -> Mask:
    """The leaders' entries of a scope mask (what the strategies rank)."""
    return {leader: mask[leader] for leader in groups}


def expand_mask(leaders: Mapping[str, torch.Tensor], groups: Groups) -> Mask:
    """A scope mask from the leaders' masks: each member gets a copy of its leader's."""
    out: Mask = {}
    for leader, members in groups.items():
        m = leaders[leader].detach().to("cpu")
        for name in members:
            out[name] = m.clone()
    return out


def build_scoped_mask(
    strategy: str,
    model: nn.Module,
    weights: Mapping[str, Any] | nn.Module,
    prev_mask: Mapping[str, torch.Tensor] | None,
    rate: float,
    *,
    scope: str = "weights",
    exclude_first: bool = False,
    exclude_last: bool = False,
    min_keep: int = 1,
    generator: torch.Generator | None = None,
    keep_reachable: bool = True,
    restored: dict[str, int] | None = None,
) -> Mask:
    """Next mask over ``scope`` from trained weights θ_f (step 8 of Algorithm 1).

    ``model`` gives the layer structure (module types, heads); ``weights`` the trained
    values (state dict, checkpoint dict or module). ``prev_mask`` None = nothing pruned.
    Ranking is by each unit's leader (|w|, |b|, |γ|), the strategy prunes ``rate`` of the
    units still remaining, and the leaders' masks are copied to their members.

    ``keep_reachable`` (default): units the strategy pruned are given back, from
    ``prev_mask`` only, until every class of every head is reachable
    (`reachability.restore_reachability`); their counts per tensor are added to
    ``restored`` when given. False returns the strategy's mask as is (to show what the
    guard prevents).
    """
    if strategy not in STRATEGIES:
        raise InputError(
            f"pruning strategy: unknown {strategy!r}; expected one of {sorted(STRATEGIES)}"
        )
    groups = prunable_groups(model, scope, exclude_first=exclude_first, exclude_last=exclude_last)
    if not groups:
        raise InputError(f"pruning scope {scope!r}: the model has no prunable tensor")
    state = state_of(weights)
    if prev_mask is None:
        prev_mask = full_scope_mask(state, groups)
    check_scope_mask(prev_mask, groups, state, "previous mask")
    prev = leader_mask(prev_mask, groups)
    ranking = {leader: state[leader] for leader in groups}
    if strategy == "large_final":
        outputs = output_leaders(model, groups)
        new = large_final(
            ranking,
            prev,
            rate,
            min_keep=min_keep,
            kinds=group_kinds(model, groups),
            outputs=outputs,
        )
    elif strategy == "small_weights":
        new = small_weights(ranking, prev, rate, min_keep=min_keep)
    elif strategy == "global_small_weights":
        new = global_small_weights(ranking, prev, rate, min_keep=min_keep)
    else:
        new = random_prune(ranking, prev, rate, generator=generator, min_keep=min_keep)
    if keep_reachable:
        new = reachable_leaders(model, state, new, prev, restored)
    return expand_mask(new, groups)


def reachable_leaders(
    model: nn.Module,
    weights: Mapping[str, Any],
    leaders: Mapping[str, torch.Tensor],
    pool: Mapping[str, torch.Tensor] | None,
    restored: dict[str, int] | None = None,
) -> Mask:
    """``leaders`` with the units every class needs given back from ``pool`` (None = any
    unit); counts added to ``restored``. See `reachability.restore_reachability`."""
    from acoustic_lottery.pruning.reachability import restore_reachability

    out, added = restore_reachability(model, state_of(weights), leaders, pool)
    if restored is not None:
        for k, n in added.items():
            restored[k] = restored.get(k, 0) + n
    return out
