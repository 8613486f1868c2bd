"""Pruning masks: which weights are prunable, applying masks, sparsity, mask files.

A mask is a plain ``dict`` mapping a parameter name (as in ``model.state_dict()``) to a
bool tensor of the parameter's shape: ``True`` = the weight survives, ``False`` = it is
pruned and held at exactly 0. Masks cover the prunable parameters only (weights of
convolutions and linear layers); biases and BatchNorm parameters are never pruned,
because they are few, and pruning them changes the function far more per value removed.
The dict's insertion order is the module registration order; strategies rely on it to
know which layer is the output layer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.io import write_torch

Mask = dict[str, torch.Tensor]
"""param-name -> bool tensor (True = kept). Plain dict so that torch.load(weights_only) works."""

KINDS: dict[str, tuple[type[nn.Module], ...]] = {
    "conv": (nn.modules.conv._ConvNd,),
    "linear": (nn.Linear,),
}
"""Module families whose ``weight`` may be pruned (``include`` names these keys)."""


def _module_kind(module: nn.Module, include: Sequence[str]) -> str | None:
    for kind in include:
        if isinstance(module, KINDS[kind]):
            return kind
    return None


def _check_include(include: Sequence[str]) -> None:
    if isinstance(include, str):
        raise InputError(
            f"include: expected a sequence of layer kinds from {sorted(KINDS)}, "
            f"found the string {include!r} (write ({include!r},))"
        )
    unknown = [k for k in include if k not in KINDS]
    if unknown:
        raise InputError(
            f"include: unknown layer kind(s) {unknown}; expected a subset of {sorted(KINDS)}"
        )


def prunable_layers(
    model: nn.Module,
    *,
    include: Sequence[str] = ("conv", "linear"),
    exclude_first: bool = False,
    exclude_last: bool = False,
) -> dict[str, str]:
    """Prunable weight names mapped to their layer kind ("conv" / "linear"), in order.

    The kind matters to `strategies.large_final`, which prunes layer families at
    different speeds; everything else only needs the names (`prunable_parameters`).
    """
    _check_include(include)
    layers: dict[str, str] = {}
    for mod_name, module in model.named_modules():
        kind = _module_kind(module, include)
        if kind is None:
            continue
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor):
            continue
        layers[f"{mod_name}.weight" if mod_name else "weight"] = kind
    names = list(layers)
    if exclude_first and names:
        del layers[names[0]]
    if exclude_last and len(names) > (1 if exclude_first else 0):
        del layers[names[-1]]
    return layers


def prunable_parameters(
    model: nn.Module,
    *,
    include: Sequence[str] = ("conv", "linear"),
    exclude_first: bool = False,
    exclude_last: bool = False,
) -> list[str]:
    """Names of the prunable weights, in module registration order.

    Default: the ``weight`` of every Conv*d / ConvTranspose*d and Linear module; never
    biases or BatchNorm. ``exclude_first`` / ``exclude_last`` drop the first / last
    prunable layer (in registration order), which some LTH recipes keep dense because
    they are tiny and sit on the input / output bottleneck.
    """
    return list(
        prunable_layers(
            model, include=include, exclude_first=exclude_first, exclude_last=exclude_last
        )
    )


def state_of(model_or_state: nn.Module | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Tensors by name from a module, a state dict, or a checkpoint dict (``state_dict`` key).

    Accepting all three lets the strategies work on a live model and on files alike.
    """
    if isinstance(model_or_state, nn.Module):
        return dict(model_or_state.state_dict())
    if not isinstance(model_or_state, Mapping):
        raise InputError(
            "expected an nn.Module, a state dict or a checkpoint dict, "
            f"found {type(model_or_state).__name__}"
        )
    if "state_dict" in model_or_state and isinstance(model_or_state["state_dict"], Mapping):
        model_or_state = model_or_state["state_dict"]
    out: dict[str, torch.Tensor] = {}
    for key, value in model_or_state.items():
        if isinstance(value, torch.Tensor):
            out[str(key)] = value
    return out


def layer_kinds(
    model_or_state: nn.Module | Mapping[str, Any], names: Iterable[str]
) -> dict[str, str]:
    """Kind ("conv" / "linear") of each named weight.

    From a module the module type decides; from a bare state dict only the shape is
    known, so a 2-D weight is taken as linear and a 3-D to 5-D one as a convolution.
    """
    names = list(names)
    if isinstance(model_or_state, nn.Module):
        known = prunable_layers(model_or_state)
        out = {}
        for name in names:
            if name not in known:
                raise InputError(
                    f"mask key {name!r}: not the weight of a Conv or Linear module of the model"
                )
            out[name] = known[name]
        return out
    state = state_of(model_or_state)
    out = {}
    for name in names:
        if name not in state:
            raise InputError(f"mask key {name!r}: no such tensor in the state dict")
        out[name] = "linear" if state[name].dim() == 2 else "conv"
    return out


def prunable_from_state(state: Mapping[str, Any]) -> list[str]:
    """Prunable names guessed from a state dict alone: ``*weight`` tensors with >= 2 dims.

    BatchNorm weights are 1-D and biases are not named ``weight``, so for the conv/linear
    models of this project the guess equals `prunable_parameters` of the module.
    """
    tensors = state_of(state)
    return [
        k
        for k, v in tensors.items()
        if k.split(".")[-1] == "weight" and v.dim() >= 2 and v.is_floating_point()
    ]


def _params_by_name(model: nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.named_parameters())


def full_mask(model: nn.Module | Mapping[str, Any], names: Iterable[str] | None = None) -> Mask:
    """An all-True mask (nothing pruned yet) for ``names`` (default: all prunable weights)."""
    if names is None:
        names = (
            prunable_parameters(model)
            if isinstance(model, nn.Module)
            else prunable_from_state(model)
        )
    tensors = _params_by_name(model) if isinstance(model, nn.Module) else state_of(model)
    out: Mask = {}
    for name in names:
        if name not in tensors:
            raise InputError(f"mask key {name!r}: the model has no parameter of that name")
        t = tensors[name]
        out[name] = torch.ones(t.shape, dtype=torch.bool, device=t.device)
    return out


def check_mask_matches(model: nn.Module | Mapping[str, Any], mask: Mapping[str, Any]) -> None:
    """Raise InputError unless every mask entry is a bool tensor shaped like its parameter.

    A mask saved for a different architecture, width or head would otherwise be applied
    by broadcasting or fail deep inside training with an unhelpful message.
    """
    if not isinstance(mask, Mapping):
        raise InputError(f"mask: expected a dict of bool tensors, found {type(mask).__name__}")
    tensors = _params_by_name(model) if isinstance(model, nn.Module) else state_of(model)
    unknown = [k for k in mask if k not in tensors]
    problems = []
    if unknown:
        more = " ..." if len(unknown) > 5 else ""
        problems.append(f"unknown parameter name(s) {unknown[:5]}{more}")
    for key, value in mask.items():
        if key in unknown:
            continue
        if not isinstance(value, torch.Tensor):
            problems.append(f"{key!r}: expected a bool tensor, found {type(value).__name__}")
            continue
        if value.dtype != torch.bool:
            problems.append(f"{key!r}: expected dtype torch.bool, found {value.dtype}")
        if tuple(value.shape) != tuple(tensors[key].shape):
            problems.append(
                f"{key!r}: shape mismatch, mask {tuple(value.shape)} "
                f"vs parameter {tuple(tensors[key].shape)}"
            )
    if problems:
        raise InputError("mask does not match the model: " + "; ".join(problems))


@torch.no_grad()
def apply_mask(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> None:
    """Set pruned weights to exactly +0.0 in place.

    ``masked_fill`` rather than multiplication: ``w * 0`` gives -0.0 for negative w and
    NaN for inf/NaN, which would break "count zeros" size checks.
    """
    check_mask_matches(model, mask)
    params = _params_by_name(model)
    for name, m in mask.items():
        p = params[name]
        p.masked_fill_(~m.to(p.device), 0.0)


def _sparsity_entry(total: int, kept: int) -> dict[str, float | int]:
    pruned = total - kept
    return {
        "total": total,
        "kept": kept,
        "pruned": pruned,
        "sparsity": pruned / total if total else 0.0,
    }


def _summary(per_layer: dict[str, tuple[int, int]]) -> dict[str, Any]:
    layers = {name: _sparsity_entry(t, k) for name, (t, k) in per_layer.items()}
    total = sum(t for t, _ in per_layer.values())
    kept = sum(k for _, k in per_layer.values())
    return {"layers": layers, **_sparsity_entry(total, kept)}


def mask_sparsity(mask: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Per-layer and overall counts of a mask (what the mask *says*).

    Returns ``{"layers": {name: {total, kept, pruned, sparsity}}, "total", "kept",
    "pruned", "sparsity"}`` with sparsity = pruned / total of the prunable weights.
    """
    return _summary({n: (int(m.numel()), int(m.sum().item())) for n, m in mask.items()})


def model_sparsity(
    model: nn.Module | Mapping[str, Any], names: Iterable[str] | None = None
) -> dict[str, Any]:
    """Like `mask_sparsity` but counted from the actual zeros of the weights.

    This is what the DCASE size rule sees; a gap to `mask_sparsity` means a mask was
    not re-applied (e.g. momentum revived pruned weights) or weights are exactly 0
    by chance.
    """
    tensors = _params_by_name(model) if isinstance(model, nn.Module) else state_of(model)
    if names is None:
        names = (
            prunable_parameters(model)
            if isinstance(model, nn.Module)
            else prunable_from_state(model)
        )
    per_layer = {}
    for name in names:
        if name not in tensors:
            raise InputError(f"{name!r}: the model has no parameter of that name")
        t = tensors[name].detach()
        per_layer[name] = (int(t.numel()), int(torch.count_nonzero(t).item()))
    return _summary(per_layer)


def _validate_mask_object(obj: Any, where: str) -> Mask:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a dict of bool tensors, found {type(obj).__name__}")
    if not obj:
        raise InputError(f"{where}: the mask is empty (no prunable parameters listed)")
    out: Mask = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise InputError(f"{where}: key {key!r}: expected a parameter name (str)")
        if not isinstance(value, torch.Tensor):
            raise InputError(
                f"{where}: key {key!r}: expected a bool tensor, found {type(value).__name__}"
            )
        if value.dtype != torch.bool:
            raise InputError(
                f"{where}: key {key!r}: expected dtype torch.bool, found {value.dtype}"
            )
        out[key] = value
    return out


def save_mask(path: str | os.PathLike[str], mask: Mapping[str, torch.Tensor]) -> None:
    """Write a mask as a plain dict of CPU bool tensors (loadable with weights_only=True)."""
    clean = _validate_mask_object(dict(mask), f"save_mask({os.fspath(path)!r})")
    payload = {k: v.detach().to("cpu").contiguous().clone() for k, v in clean.items()}
    write_torch(path, payload)


def load_mask(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Mask:
    """Read a mask file written by `save_mask`; any other content is an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: mask file not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise InputError(
            f"{path}: not a loadable mask file (expected a torch.save'd dict of bool "
            f"tensors): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    return _validate_mask_object(obj, str(path))
