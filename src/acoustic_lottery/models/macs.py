"""Multiply-accumulate count of a model on a given input shape (complexity beside size).

Counted (in `macs`, per example): Conv1d/Conv2d — output elements × (in_channels / groups)
× kernel area; Linear — output elements × in_features. Bias additions are not MACs.
Listed separately in `other` and NOT in `macs`: BatchNorm (one multiply-add per element;
it folds into the conv at inference) and pooling (input elements read). Element-wise
activations, global average pooling done with `mean` and additions are not counted.
Pruned (zero) weights still count: this is the dense cost.

Kept beside torch's `torch.utils.flop_counter.FlopCounterMode` because that counts the
whole forward only, not per layer or the BN/pooling `other`; its total is exactly twice
ours (2 FLOPs per MAC) on every architecture, which tests/models/test_macs.py checks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from acoustic_lottery.errors import InputError

_OTHER = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveAvgPool2d,
)


def _module_macs(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> int:
    batch = output.shape[0]
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        return output.numel() // batch * per_output
    if isinstance(module, nn.Linear):
        return output.numel() // batch * module.in_features
    return inputs[0].numel() // batch  # _OTHER: elements touched


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> dict[str, Any]:
    """MACs of one example of shape `input_shape` ((C, F, T), or (B, C, F, T): per example).

    Runs one forward pass on zeros in eval mode without gradients (the model's mode is
    restored). Returns {"input_shape", "macs", "layers": [{"name", "type", "macs",
    "calls"}], "other": {module type: elements}}.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise InputError(
            f"count_macs: expected an input shape (C, F, T) or (B, C, F, T) of positive "
            f"sizes, found {tuple(input_shape)}"
        )
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32

    layers: dict[str, dict[str, Any]] = {}
    other: dict[str, int] = {}
    handles = []

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
            n = _module_macs(module, inputs, output)
            kind = type(module).__name__
            if isinstance(module, _OTHER):
                other[kind] = other.get(kind, 0) + n
                return
            entry = layers.setdefault(name, {"name": name, "type": kind, "macs": 0, "calls": 0})
            entry["macs"] += n
            entry["calls"] += 1

        return record

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear, *_OTHER)):
            handles.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(shape, device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {
        "input_shape": list(shape[1:]),
        "macs": sum(entry["macs"] for entry in layers.values()),
        "layers": list(layers.values()),
        "other": other,
    }
