"""Can every class still be predicted? Structural reachability of a pruned model's logits.

The invariant every pruning round keeps (issue 11): after any round, **every output
class of every head can still be predicted** (no class logit is a constant function of
the input) and **no layer is emptied** (every masked tensor keeps an entry).

Definition. Class c of a head is *reachable* under a mask when some path of surviving
values connects the input to logit c. Without such a path the logit is the same number
for every input (what reaches it is only biases, BN shifts and running means: constants),
so the class wins argmax either never or for every input alike. The old ``all``-scope
reading of the report's 99.33 % ticket is the example: it keeps 1 of the 10 channels of
the head's BN, 9 logits are identically 0 and argmax can reach at most 2 classes (a 20 %
accuracy ceiling whatever the training).

How it is checked — one forward pass of the *path network* (`path_logits`): a float64
eval-mode copy of the model in which every surviving conv / linear weight is positive
(1, or |θ| when ranking), every pruned one 0; every bias, BN shift and running mean 0,
running variance 1, and each BN scale positive for a kept channel and 0 for a pruned one
(scope ``all``); the input is all ones. Every operation of the model zoo — convolution,
linear, BN, ReLU, max / average pooling, concatenation, residual sums, the channel
attention's sigmoid gate, dropout (eval) — maps non-negative inputs with non-negative
weights to non-negative outputs, and a unit is positive exactly when a path of non-zero
weights reaches it from the input. So logit c > 0 ⟺ a path exists. The check is
structural and exact for "no path" (such a class is provably constant); a class with a
path is input-dependent for generic weights (only weights that cancel exactly, or a ReLU
dead for every input, could still make it constant: a matter of training, not of the
mask). Each activation is rescaled by its (detached) maximum so that deep products
neither overflow nor underflow; that scales all paths through a layer alike. The probe
input is (channels, 128 bands, 64 frames), 40 bands for the DCASE baseline: large
enough that every kernel offset of the zoo's convolutions reads real input somewhere.

Repair (`restore_reachability`): a mask builder never has to fail. Candidates (entries
of ``pool``, the previous mask, that the new mask dropped) enter the path network with a
small gate δ (kept entries 1); a path needing m restored entries then carries δ^m, so
the gradient of Σ log(logit_c) over the unreachable classes w.r.t. the gates points at
the entries of a path with the fewest restorations, weighted by |θ| along it. Those
entries are restored (gate 1), and this repeats until every class is reachable.
Restored entries come from ``pool`` only, so masks stay nested. Typically the head's
last layer lost every weight of a class's row (one entry per class to restore), or the
head BN a class's channel (scope ``all``); rarely a trunk path.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from acoustic_lottery.errors import InputError

__all__ = [
    "UnreachableClassError",
    "check_reachable",
    "emptied_tensors",
    "path_logits",
    "probe_shape",
    "restore_reachability",
    "unreachable_classes",
    "unreachable_report",
]

_LINEAR_KINDS = (nn.modules.conv._ConvNd, nn.Linear)
_BN = nn.modules.batchnorm._BatchNorm
#: Gate of a candidate (restorable) entry in the ranking pass.
DELTA = 1e-3
#: A path move restores the best candidate of every tensor whose best gradient is within
#: this share of the overall best (the dominant path's entries).
PATH_SHARE = 0.5


class UnreachableClassError(InputError):
    """A mask leaves a class logit constant (or empties a tensor): the round stops."""


# ---------------------------------------------------------------------- path network


def probe_shape(model: nn.Module) -> tuple[int, int, int]:
    """(channels, bands, frames) of the all-ones probe: the model's own input channels,
    40 bands for the DCASE baseline (its features), 128 otherwise, 64 frames."""
    spec = getattr(model, "spec", {}) or {}
    channels = int(getattr(model, "in_channels", spec.get("in_channels", 3)))
    bands = 40 if spec.get("arch") == "baseline" else 128
    return channels, bands, 64


def _heads(model: nn.Module, n_out: int) -> list[tuple[str, int]]:
    heads = getattr(model, "heads", None)
    if heads and sum(int(n) for _, n in heads) == n_out:
        return [(str(h), int(n)) for h, n in heads]
    return [("output", n_out)]


def _gateable(model: nn.Module) -> dict[str, str]:
    """State names whose mask entries cut paths -> 'weight' (conv / linear) or 'bn' (γ)."""
    out: dict[str, str] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, _LINEAR_KINDS) and isinstance(module.weight, torch.Tensor):
            out[prefix + "weight"] = "weight"
        elif isinstance(module, _BN) and module.affine:
            out[prefix + "weight"] = "bn"
    return out


class _PathNet:
    """The path network of `model` (module docstring); built once, evaluated per gate set."""

    def __init__(
        self,
        model: nn.Module,
        weights: Mapping[str, torch.Tensor] | None,
        input_shape: Sequence[int] | None,
    ) -> None:
        net = copy.deepcopy(model).to(device="cpu", dtype=torch.float64).eval()
        for m in net.modules():
            if isinstance(m, nn.ReLU | nn.ReLU6 | nn.LeakyReLU | nn.Hardtanh):
                m.inplace = False
        self.net = net
        self.gateable = _gateable(net)
        self.order: list[str] = []  # modules in call order (diagnostics)
        self.alive: dict[str, bool] = {}
        self.inputs: dict[str, torch.Tensor] = {}  # per input channel: reached? (recorded)
        self.record = False
        for name, m in net.named_modules():
            if isinstance(m, _LINEAR_KINDS + (_BN,)):
                m.register_forward_hook(self._hook(name))
        state = net.state_dict()
        source = state if weights is None else {k: torch.as_tensor(v) for k, v in weights.items()}
        base: dict[str, torch.Tensor] = {}
        bn_modules = {n for n, m in net.named_modules() if isinstance(m, _BN)}
        for key, value in state.items():
            module, _, attr = key.rpartition(".")
            if not value.is_floating_point():
                base[key] = value
                continue
            if module in bn_modules:
                fill = {"running_mean": 0.0, "running_var": 1.0, "bias": 0.0}.get(attr)
                if fill is not None:
                    base[key] = torch.full_like(value, fill)
                    continue
            if attr == "bias":
                base[key] = torch.zeros_like(value)
                continue
            if weights is None:
                base[key] = torch.ones_like(value)
            else:
                v = source.get(key, value).detach().to("cpu", torch.float64).abs()
                top = float(v.max()) if v.numel() else 0.0
                base[key] = v + 1e-9 * (top if top > 0 else 1.0)  # a kept 0 still connects
        self.base = base
        shape = tuple(int(s) for s in (input_shape or probe_shape(model)))
        self.x = torch.ones((1, *shape), dtype=torch.float64)

    def _hook(self, name: str):
        def hook(_m: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
            top = out.detach().amax()
            if self.record:
                if name not in self.alive:
                    self.order.append(name)
                self.alive[name] = bool(top > 0)
                x = args[0].detach()
                dims = [d for d in range(x.dim()) if d != 1]
                self.inputs[name] = (x.amax(dim=dims) if dims else x) > 0
            return out / top if top > 0 else out

        return hook

    def __call__(self, gates: Mapping[str, torch.Tensor], record: bool = False) -> torch.Tensor:
        params = dict(self.base)
        for key, g in gates.items():
            if key in self.gateable:
                gate = g.to("cpu", torch.float64).reshape(self.base[key].shape)
                params[key] = self.base[key] * gate
        self.record = record
        if record:
            self.order, self.alive, self.inputs = [], {}, {}
        try:
            out = torch.func.functional_call(self.net, params, (self.x,), strict=False)
        finally:
            self.record = False
        return out.reshape(out.shape[0], -1)[0]


def path_logits(
    model: nn.Module,
    mask: Mapping[str, torch.Tensor] | None,
    *,
    input_shape: Sequence[int] | None = None,
) -> dict[str, torch.Tensor]:
    """Logits of the path network (structure only: kept = 1) per head; > 0 = reachable."""
    net = _PathNet(model, None, input_shape)
    with torch.no_grad():
        out = net({k: v.to(torch.bool) for k, v in (mask or {}).items()})
    heads, start = {}, 0
    for head, n in _heads(model, out.numel()):
        heads[head] = out[start : start + n]
        start += n
    return heads


# ----------------------------------------------------------------------------- checks


def unreachable_classes(
    model: nn.Module,
    mask: Mapping[str, torch.Tensor] | None,
    *,
    input_shape: Sequence[int] | None = None,
) -> dict[str, list[int]]:
    """Head -> the classes whose logit no path of surviving values reaches (empty lists
    for a healthy mask). ``mask`` names state-dict entries (a lottery / scope mask);
    entries other than conv / linear weights and BN γ do not cut paths and are ignored."""
    return {
        head: [int(i) for i in torch.nonzero(logits <= 0).reshape(-1)]
        for head, logits in path_logits(model, mask, input_shape=input_shape).items()
    }


def emptied_tensors(mask: Mapping[str, torch.Tensor]) -> list[str]:
    """Masked tensors that keep no entry at all (an emptied layer)."""
    return [k for k, m in mask.items() if m.numel() and not bool(m.any())]


def _head_layers(model: nn.Module, head: str) -> tuple[str | None, str | None]:
    """(last conv / linear weight of the head, the BN γ after it) as state names."""
    heads = getattr(model, "head", None)
    if isinstance(heads, nn.ModuleDict) and head in heads:
        mods = list(heads[head].named_modules(prefix=f"head.{head}"))
    else:
        mods = list(model.named_modules())
    last = None
    for i, (_, m) in enumerate(mods):
        if isinstance(m, _LINEAR_KINDS):
            last = i
    if last is None:
        return None, None
    layer = f"{mods[last][0]}.weight" if mods[last][0] else "weight"
    bn = next((f"{n}.weight" for n, m in mods[last + 1 :] if isinstance(m, _BN) and m.affine), None)
    return layer, bn


def unreachable_report(
    model: nn.Module,
    mask: Mapping[str, torch.Tensor] | None,
    *,
    input_shape: Sequence[int] | None = None,
) -> dict[str, Any]:
    """{"unreachable": head -> classes, "emptied": tensors, "why": head -> class -> reason}:
    the reason names the layer that cuts the class off (its row of the head's last layer,
    its head BN channel, the first layer with no reachable unit, or the trunk channels)."""
    mask = dict(mask or {})
    net = _PathNet(model, None, input_shape)
    with torch.no_grad():
        out = net({k: v.to(torch.bool) for k, v in mask.items()}, record=True)
    dead_layer = next((n for n in net.order if not net.alive[n]), None)
    unreachable: dict[str, list[int]] = {}
    why: dict[str, dict[int, str]] = {}
    start = 0
    for head, n in _heads(model, out.numel()):
        logits = out[start : start + n]
        start += n
        classes = [int(i) for i in torch.nonzero(logits <= 0).reshape(-1)]
        unreachable[head] = classes
        layer, bn = _head_layers(model, head)
        module = layer.removesuffix(".weight") if layer else ""
        for c in classes:
            if layer in mask and not bool(mask[layer][c].any()):
                reason = f"every weight of row {c} of {layer} is pruned"
            elif bn in mask and not bool(mask[bn][c]):
                reason = f"channel {c} of {bn} is pruned"
            elif module in net.inputs and not bool(net.inputs[module].any()):
                first = f" (first layer left without one: {dead_layer})" if dead_layer else ""
                reason = f"no surviving path reaches the input of {module}{first}"
            else:
                reason = (
                    f"the surviving weights of row {c} of {layer} read only input channels "
                    "that no surviving path reaches"
                )
            why.setdefault(head, {})[c] = reason
    return {"unreachable": unreachable, "emptied": emptied_tensors(mask), "why": why}


def check_reachable(
    model: nn.Module,
    mask: Mapping[str, torch.Tensor],
    where: str = "mask",
    *,
    input_shape: Sequence[int] | None = None,
) -> None:
    """UnreachableClassError naming head, classes and layer unless every class of every
    head is reachable and no masked tensor is emptied."""
    rep = unreachable_report(model, mask, input_shape=input_shape)
    problems = []
    if rep["emptied"]:
        problems.append(f"emptied layer(s) {rep['emptied'][:5]}")
    for head, classes in rep["unreachable"].items():
        if classes:
            reasons = sorted(set(rep["why"][head].values()))
            problems.append(
                f"head {head!r}: class(es) {classes} unreachable, their logits are "
                f"constant in the input ({'; '.join(reasons[:3])})"
            )
    if problems:
        raise UnreachableClassError(f"{where}: " + "; ".join(problems))


# ----------------------------------------------------------------------------- repair


def restore_reachability(
    model: nn.Module,
    weights: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    pool: Mapping[str, torch.Tensor] | None = None,
    *,
    input_shape: Sequence[int] | None = None,
    delta: float = DELTA,
    max_restored: int = 10_000,
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """A superset of ``mask`` within ``pool`` that reaches every class, restoring few entries.

    ``weights`` (trained θ: |θ| ranks the entries) and ``mask`` / ``pool`` (None = every
    entry) share state-dict names. Two moves, repeated until every class is reachable:

    * head move (cheap, the usual case): for an unreachable class c, restore its head BN
      channel if pruned, and, when no surviving weight of row c of the head's last layer
      reads a reachable input channel, the largest-|θ| pool entry of row c that does;
    * path move (when the trunk itself is cut): the pool entries with the largest
      gradient of Σ log(logit_c) over the unreachable classes in the δ-gated path network
      (module docstring): the entries of the path needing the fewest restorations, which
      all carry (nearly) its whole flow, so all within PATH_SHARE of the best gradient.

    Returns the new mask (copies, devices kept) and the entries restored per tensor (only
    tensors with any). UnreachableClassError when ``pool`` itself reaches no path.
    """
    out = {k: v.detach().to("cpu", torch.bool).clone() for k, v in mask.items()}
    devices = {k: v.device for k, v in mask.items()}
    if pool is None:
        pool_ = {k: torch.ones_like(v) for k, v in out.items()}
    else:
        pool_ = {k: pool[k].detach().to("cpu", torch.bool) for k in out}
        grown = [k for k in out if bool((out[k] & ~pool_[k]).any())]
        if grown:
            raise InputError(f"reachability repair: mask keeps entries the pool lacks: {grown[:5]}")
    state = {k: v for k, v in dict(weights).items() if isinstance(v, torch.Tensor)}
    structure = _PathNet(model, None, input_shape)
    shape = tuple(input_shape or probe_shape(model))
    small = (shape[0], max(8, shape[1] // 2), max(8, shape[2] // 2))
    ranking = {s: None for s in (small, shape)}  # built on first use
    gated = [k for k in out if k in structure.gateable]
    heads = None
    restored: dict[str, int] = {}
    total = 0

    def restore(key: str, flat: int) -> None:
        nonlocal total
        out[key].view(-1)[flat] = True
        restored[key] = restored.get(key, 0) + 1
        total += 1

    while True:
        with torch.no_grad():
            hard = structure({k: out[k] for k in gated}, record=True)
        bad = torch.nonzero(hard <= 0).reshape(-1)
        if bad.numel() == 0:
            break
        if total >= max_restored:
            raise UnreachableClassError(
                f"reachability repair: {total} entries restored and classes "
                f"{bad.tolist()} still unreachable"
            )
        heads = heads or _heads(model, hard.numel())
        if _head_move(model, heads, bad.tolist(), structure.inputs, out, pool_, state, restore):
            continue
        # Path move: the best single entry by the gated network's gradient.
        cand = {k: pool_[k] & ~out[k] for k in gated}
        soft = None
        for probe in ranking:
            if ranking[probe] is None:
                ranking[probe] = _PathNet(model, state, probe)
            gates = {
                k: (out[k].to(torch.float64) + delta * cand[k].to(torch.float64)).requires_grad_()
                for k in gated
            }
            soft = ranking[probe](gates)[bad]
            if bool((soft > 0).all()):
                break
        if soft is None or not bool((soft > 0).all()):
            names = _flat_to_head(heads, bad[soft <= 0].tolist())
            raise UnreachableClassError(
                f"reachability repair: no path of the previous mask reaches {names}"
            )
        torch.log(soft).sum().backward()
        scores = {
            k: torch.where(cand[k], gates[k].grad, torch.zeros_like(gates[k].grad)).reshape(-1)
            for k in gated
            if gates[k].grad is not None and bool(cand[k].any())
        }
        best = max((float(v.max()) for v in scores.values()), default=0.0)
        if not best > 0.0:
            raise UnreachableClassError(
                f"reachability repair: no restorable entry leads to classes {bad.tolist()}"
            )
        # Every δ-entry of the dominant path carries (nearly) all of its flow, so its
        # gradient d log(logit)/dg = flow share / δ is (nearly) the best: restore the
        # whole path at once — the best entry of each tensor within PATH_SHARE of the
        # best (a path crosses a tensor once; parallel taps of a kernel share the flow).
        for k, v in scores.items():
            i = int(torch.argmax(v))
            if float(v[i]) >= PATH_SHARE * best:
                restore(k, i)
    return {k: v.to(devices[k]) for k, v in out.items()}, restored


def _head_move(
    model: nn.Module,
    heads: Sequence[tuple[str, int]],
    bad: Sequence[int],
    inputs: Mapping[str, torch.Tensor],
    out: dict[str, torch.Tensor],
    pool: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    restore: Any,
) -> bool:
    """The head move of `restore_reachability`; True when it restored anything."""
    moved = False
    for head, classes in _flat_to_head(heads, bad).items():
        layer, bn = _head_layers(model, head)
        for c in classes:
            if bn in out and not bool(out[bn][c]) and bool(pool[bn][c]):
                restore(bn, c)
                moved = True
            module = layer.removesuffix(".weight") if layer else None
            if layer not in out or module not in inputs:
                continue
            reach = inputs[module]
            row_kept, row_pool = out[layer][c], pool[layer][c]
            if reach.numel() != row_kept.shape[0]:
                continue  # grouped conv: leave it to the path move
            view = (-1,) + (1,) * (row_kept.dim() - 1)
            reach = reach.reshape(view).expand_as(row_kept)
            if bool((row_kept & reach).any()):
                continue
            cand = row_pool & ~row_kept & reach
            if not bool(cand.any()):
                continue
            score = state[layer][c].detach().to("cpu", torch.float64).abs()
            score = torch.where(cand, score + 1e-300, torch.zeros_like(score))
            flat = int(torch.argmax(score))
            restore(layer, c * row_kept.numel() + flat)
            moved = True
    return moved


def _flat_to_head(heads: Sequence[tuple[str, int]], flat: Sequence[int]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    start = 0
    for head, n in heads:
        for i in flat:
            if start <= i < start + n:
                out.setdefault(head, []).append(i - start)
        start += n
    return out
