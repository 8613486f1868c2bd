"""Model size by the DCASE 2021 Task 1a rule (the Table 1 "System size" column).

The rule (official baseline's model_size_calculation.py): every stored value counts —
weights, biases, BN gamma/beta and moving mean/variance — except zeros (so a pruned
model is charged only for its remaining weights); each value costs the bytes of its
dtype (float32 4, float16 2, int8 1); KB = 1024 bytes. `num_batches_tracked` is
bookkeeping, not a parameter, and is not counted.

`bn_folded_size` is the rule's size after folding BN into the convolutions (a
deployment's float model); `int8_estimate` is the size of a BN-folded int8 model as a
dynamic-range quantizer stores it: one int8 per conv/linear weight and one float32 bias
per output channel.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from acoustic_lottery.errors import InputError

RULE = "DCASE2021: all stored values incl. BN statistics, zeros skipped, KB = 1024 bytes"

_DTYPE_BYTES: dict[torch.dtype, int] = {
    torch.float64: 8,
    torch.float32: 4,
    torch.float16: 2,
    torch.bfloat16: 2,
    torch.int64: 8,
    torch.int32: 4,
    torch.int16: 2,
    torch.int8: 1,
    torch.uint8: 1,
    torch.qint8: 1,
    torch.quint8: 1,
    torch.qint32: 4,
}

#: Names of the --dtype choices of the CLI and their bytes per value.
DTYPE_CHOICES: dict[str, int] = {"float32": 4, "float16": 2, "int8": 1}

_PRUNE_ORIG, _PRUNE_MASK = "_orig", "_mask"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _bytes_per_value(name: str, tensor: torch.Tensor, dtype_bytes: Mapping[str, int] | None):
    """(bytes, dtype label): the first matching `dtype_bytes` pattern wins, else the dtype."""
    if dtype_bytes:
        for pattern, nbytes in dtype_bytes.items():
            if fnmatch.fnmatchcase(name, pattern):
                return int(nbytes), {1: "int8", 2: "float16", 4: "float32"}.get(
                    int(nbytes), f"{nbytes}B"
                )
    if tensor.dtype not in _DTYPE_BYTES:
        raise InputError(
            f"size report: tensor {name!r} has dtype {_dtype_name(tensor.dtype)}, "
            f"expected one of {sorted(_dtype_name(d) for d in _DTYPE_BYTES)}"
        )
    return _DTYPE_BYTES[tensor.dtype], _dtype_name(tensor.dtype)


def _nonzero(tensor: torch.Tensor) -> int:
    if tensor.is_quantized:
        tensor = tensor.dequantize()  # zero exactly when the integer equals the zero-point
    return int(torch.count_nonzero(tensor).item())


def _state_of(model_or_state: nn.Module | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(model_or_state, nn.Module):
        return dict(model_or_state.state_dict())
    if isinstance(model_or_state, Mapping):
        return dict(model_or_state)
    raise InputError(
        "size report: expected a torch model or a state dict, "
        f"found {type(model_or_state).__name__}"
    )


def _validate_dtype_bytes(dtype_bytes: Mapping[str, int] | None) -> None:
    if dtype_bytes is None:
        return
    for pattern, nbytes in dtype_bytes.items():
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 1:
            raise InputError(
                f"size report: dtype_bytes[{pattern!r}] must be a positive integer "
                f"(bytes per value), found {nbytes!r}"
            )


def size_report(
    model_or_state_dict: nn.Module | Mapping[str, Any],
    *,
    dtype_bytes: Mapping[str, int] | None = None,
    exclude: Iterable[str] = (),
) -> dict[str, Any]:
    """Size by the DCASE 2021 rule, per layer (module) and in total.

    dtype_bytes: glob patterns over state-dict names -> bytes per value, first match wins,
    overriding the stored dtype; e.g. {"*": 2} reports a float16 store, {"*bn*": 4, "*": 2}
    float16 with float32 BN. exclude: glob patterns of names not to count.
    torch.nn.utils.prune pairs (`x_orig`, `x_mask`) are counted as the effective `x`.
    Bool tensors (masks) and non-tensors are listed in `skipped`, not counted.

    `bytes`/`kb` follow the rule (zeros skipped); `dense_bytes`/`dense_kb` count every value,
    the architecture's capacity: a freshly initialised model has zero BN shifts and running
    means, which the rule skips, so its `kb` is below what the trained model will cost.

    Returns {"rule", "params", "nonzero", "bytes", "kb", "dense_bytes", "dense_kb",
    "sparsity", "dtype_bytes", "layers": [{"name", "params", "nonzero", "bytes", "kb",
    "dense_bytes", "dtype"}], "skipped"}.
    """
    _validate_dtype_bytes(dtype_bytes)
    state = _state_of(model_or_state_dict)
    exclude = tuple(exclude)
    layers: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for name, value in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude):
            skipped.append(name)
            continue
        if not isinstance(value, torch.Tensor) or value.dtype == torch.bool:
            skipped.append(name)
            continue
        if name.endswith(_PRUNE_MASK) and name[: -len(_PRUNE_MASK)] + _PRUNE_ORIG in state:
            continue  # counted with its `_orig` partner
        tensor = value
        if name.endswith(_PRUNE_ORIG):
            mask = state.get(name[: -len(_PRUNE_ORIG)] + _PRUNE_MASK)
            if isinstance(mask, torch.Tensor):
                name = name[: -len(_PRUNE_ORIG)]
                tensor = value * mask.to(value.dtype)
        nbytes, dtype = _bytes_per_value(name, tensor, dtype_bytes)
        nonzero = _nonzero(tensor.detach())
        module = name.rsplit(".", 1)[0] if "." in name else ""
        layer = layers.setdefault(
            module,
            {
                "name": module,
                "params": 0,
                "nonzero": 0,
                "bytes": 0,
                "kb": 0.0,
                "dense_bytes": 0,
                "dtype": dtype,
            },
        )
        layer["params"] += tensor.numel()
        layer["nonzero"] += nonzero
        layer["bytes"] += nonzero * nbytes
        layer["dense_bytes"] += tensor.numel() * nbytes
        if layer["dtype"] != dtype:
            layer["dtype"] = "mixed"
    for layer in layers.values():
        layer["kb"] = layer["bytes"] / 1024
    return _totals(list(layers.values()), skipped=skipped, dtype_bytes=dtype_bytes)


def _totals(
    layers: list[dict[str, Any]],
    *,
    skipped: list[str],
    dtype_bytes: Mapping[str, int] | None,
) -> dict[str, Any]:
    params = sum(layer["params"] for layer in layers)
    nonzero = sum(layer["nonzero"] for layer in layers)
    nbytes = sum(layer["bytes"] for layer in layers)
    dense = sum(layer["dense_bytes"] for layer in layers)
    return {
        "rule": RULE,
        "params": params,
        "nonzero": nonzero,
        "bytes": nbytes,
        "kb": nbytes / 1024,
        "dense_bytes": dense,
        "dense_kb": dense / 1024,
        "sparsity": 1.0 - nonzero / params if params else 0.0,
        "dtype_bytes": dict(dtype_bytes) if dtype_bytes else None,
        "layers": layers,
        "skipped": skipped,
    }


def combine_reports(
    reports: list[dict[str, Any]], names: list[str] | None = None
) -> dict[str, Any]:
    """Size of a system of several models (two-stage 10 + 3 class, ensembles): the sum.

    Layers are prefixed with the member's name (`names`, else the report's "name", else
    its index); `members` lists each member's totals.
    """
    if not reports:
        raise InputError("combine_reports: expected at least one size report, found none")
    if names is not None and len(names) != len(reports):
        raise InputError(f"combine_reports: {len(names)} names given for {len(reports)} reports")
    members, layers, skipped = [], [], []
    for i, report in enumerate(reports):
        missing = [
            k for k in ("params", "nonzero", "bytes", "dense_bytes", "layers") if k not in report
        ]
        if missing:
            raise InputError(f"combine_reports: report {i} lacks keys {missing}")
        name = names[i] if names is not None else str(report.get("name", i))
        members.append(
            {
                "name": name,
                "params": report["params"],
                "nonzero": report["nonzero"],
                "bytes": report["bytes"],
                "kb": report["bytes"] / 1024,
                "dense_bytes": report["dense_bytes"],
                "dense_kb": report["dense_bytes"] / 1024,
            }
        )
        layers += [{**layer, "name": f"{name}/{layer['name']}"} for layer in report["layers"]]
        skipped += [f"{name}/{s}" for s in report.get("skipped", [])]
    combined = _totals(layers, skipped=skipped, dtype_bytes=None)
    combined["members"] = members
    return combined


def bn_folded_size(
    model: nn.Module, *, dtype_bytes: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """Size by the DCASE rule after folding every foldable BN into its conv / linear.

    Folding (`quantization.int8.fold_batchnorm`, eval-mode statistics) replaces a BN's
    four values per channel (γ, β, running mean and variance) by one bias per channel of
    the conv before it; weights keep their zeros (0·γ/σ = 0). A BN that follows no conv
    (e.g. after a concatenation) stays as it is. This is what a deployment stores; the
    honest size of the checkpoint as trained stays `size_report`'s. The report's pruned
    sizes (SIC 3.4 KB = dense × 0.0067) count neither: they are weights only.

    Returns {"rule", "params", "nonzero", "bytes", "kb", "folded_bn"} (``folded_bn``: the
    number of BN layers folded).
    """
    from acoustic_lottery.quantization.int8 import fold_batchnorm

    folded, pairs, _ = fold_batchnorm(model)
    rep = size_report(folded, dtype_bytes=dtype_bytes)
    return {
        "rule": RULE + "; BN folded into the conv / linear before it (one bias per channel)",
        "params": rep["params"],
        "nonzero": rep["nonzero"],
        "bytes": rep["bytes"],
        "kb": rep["kb"],
        "folded_bn": len(pairs),
    }


def int8_estimate(model: nn.Module) -> dict[str, Any]:
    """Bytes of the model quantized to int8 with every BN folded into its conv / linear.

    Each Conv / Linear stores its non-zero weights as int8 (1 byte each) and one float32
    bias per output channel (4 bytes, whether or not the float layer had a bias: folding
    the BN creates one); BN layers disappear. For the students (every conv followed by a
    BN, no conv biases) this equals the float32 value count, e.g. SIC 125.75 KB.
    """
    layers = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv1d | nn.Conv2d | nn.Linear):
            continue
        weight = module.weight.detach()
        out_channels = weight.shape[0]
        nonzero = _nonzero(weight)
        nbytes = nonzero + 4 * out_channels
        layers.append(
            {
                "name": name,
                "weights": weight.numel(),
                "nonzero": nonzero,
                "biases": out_channels,
                "bytes": nbytes,
                "kb": nbytes / 1024,
            }
        )
    nbytes = sum(layer["bytes"] for layer in layers)
    return {
        "rule": "int8 weights (non-zero) + one float32 bias per output channel, BN folded",
        "weights": sum(layer["weights"] for layer in layers),
        "nonzero": sum(layer["nonzero"] for layer in layers),
        "biases": sum(layer["biases"] for layer in layers),
        "bytes": nbytes,
        "kb": nbytes / 1024,
        "layers": layers,
    }
