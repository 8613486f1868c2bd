"""Post-training dynamic-range int8 quantization (report Section 2.5, TFLite "DRQ" in D20).

What is quantized, and why this way:

* Every Conv1d/2d/3d and Linear weight becomes int8, SYMMETRIC per output channel:
  scale_c = max|w_c| / 127, q = round(w / scale_c) clipped to [-127, 127]. Symmetric
  (no zero-point) keeps pruned weights exactly 0, so a lottery-ticket model stays sparse
  (asymmetric int8 would turn them into the zero-point). A channel whose weights are all
  zero gets scale 1.0 (any positive value works; ONNX needs scales > 0).
* BatchNorm is folded into the conv / linear right before it first (eval-mode BN:
  w' = w·γ/√(σ²+ε), b' = (b−μ)·γ/√(σ²+ε)+β), so the deployable model holds int8
  weights and one float32 bias per output channel. Conv→BN pairs are found by tracing
  the model with torch.fx, not by names: a pair is folded only when the BN's sole input
  is the conv's output, the conv output feeds nothing else and each module is called
  once. When fx cannot trace a module (e.g. `HeadedModel.forward` checks the input shape
  in Python), its children are traced one by one; a module that cannot be traced at all
  falls back to adjacent (conv, BN) children of an nn.Sequential, which is exact because
  a Sequential feeds each child only into the next. BNs that follow anything else
  (a concatenation, a ReLU, the input) stay float parameters.
* Activations are quantized dynamically, as DRQ does at run time: the input of every
  quantized layer is rounded to int8, symmetric, with its range taken from the actual
  tensor. The range is per sample (each clip of a batch gets its own scale), which is
  what TFLite's hybrid kernels do (one scaling factor per batch row) and makes a clip's
  prediction independent of the other clips in its batch. The quantized model computes
  conv(q_x·s_x, q_w·s_w) in float32: the int8 × int8 products with int32 accumulation,
  up to float32 rounding of the sum, so it evaluates the int8 model itself, not an
  estimate (`exact_int8_reference` checks this).

Size by the DCASE 2021 rule (`quantized_size_report`): non-zero int8 weights 1 byte,
non-zero float32 biases and other float parameters 4 bytes (float16 2). The per-channel
scales are quantization metadata, not parameters, and are not counted (the artifact file
stores them; see `quantization.artifact`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.models.bn_fold import fold_bn

__all__ = [
    "ACTIVATION_MODES",
    "QuantizedState",
    "QuantizedTensor",
    "apply_fold_structure",
    "dequantize",
    "exact_int8_reference",
    "fake_quantize_activation",
    "find_conv_bn_pairs",
    "float_state",
    "fold_batchnorm",
    "quantize_model",
    "quantize_weight",
    "quantized_model",
    "quantized_size_report",
]

QUANTIZED_KINDS: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
BN_KINDS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
ACTIVATION_MODES: tuple[str, ...] = ("per_sample", "per_tensor", "none")
FLOAT_DTYPES: dict[str, np.dtype] = {"float32": np.dtype("float32"), "float16": np.dtype("float16")}
QMAX = 127

SIZE_RULE = (
    "DCASE2021 on the int8 model: non-zero int8 weights 1 byte, non-zero float32 biases / "
    "other floats 4 bytes (float16 2), KB = 1024 bytes; per-channel scales not counted"
)


# --------------------------------------------------------------------------- folding


def _fold_candidate(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        isinstance(conv, QUANTIZED_KINDS)
        and isinstance(bn, BN_KINDS)
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.num_features == conv.weight.shape[0]
    )


def _fx_pairs(module: nn.Module, prefix: str) -> list[tuple[str, str]] | None:
    """Conv→BN pairs of `module` found by fx tracing; None if fx cannot trace it."""
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception:  # fx raises many kinds (TraceError, TypeError, ...) on untraceable code
        return None
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    modules = dict(module.named_modules(remove_duplicate=False))
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), BN_KINDS):
            continue
        if len(node.args) != 1 or node.kwargs:
            continue
        src = node.args[0]
        if not isinstance(src, torch.fx.Node) or src.op != "call_module":
            continue
        if len(src.users) != 1 or calls[src.target] != 1 or calls[node.target] != 1:
            continue
        if _fold_candidate(modules[src.target], modules[node.target]):
            pairs.append((prefix + src.target, prefix + node.target))
    return pairs


def find_conv_bn_pairs(model: nn.Module) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """(conv name, BN name) pairs that can be folded, and how each module was searched.

    Returns (pairs, methods) where methods maps a module name ("" = the model) to "fx" or
    "sequential" (the fallback). Modules that are neither traceable nor Sequential are
    searched through their children.
    """
    pairs: list[tuple[str, str]] = []
    methods: dict[str, str] = {}

    def visit(mod: nn.Module, name: str) -> None:
        prefix = f"{name}." if name else ""
        found = _fx_pairs(mod, prefix)
        if found is not None:
            pairs.extend(found)
            methods[name] = "fx"
            return
        children = list(mod.named_children())
        if isinstance(mod, nn.Sequential):
            methods[name] = "sequential"
            for (cn, conv), (bn_name, bn) in zip(children, children[1:]):
                if _fold_candidate(conv, bn):
                    pairs.append((prefix + cn, prefix + bn_name))
        for cn, child in children:
            if not isinstance(child, QUANTIZED_KINDS + BN_KINDS):
                visit(child, prefix + cn)

    visit(model, "")
    return pairs, methods


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


def apply_fold_structure(model: nn.Module, pairs: list[tuple[str, str]]) -> nn.Module:
    """Give `model` the folded structure (BN → Identity, conv bias present), in place.

    Used both when folding and when rebuilding a folded model from a file, so the two
    have the same parameter names.
    """
    for conv_name, bn_name in pairs:
        try:
            conv = model.get_submodule(conv_name)
            model.get_submodule(bn_name)
        except AttributeError as e:
            raise InputError(
                f"BN folding: module {conv_name!r} or {bn_name!r} not found in the model ({e})"
            ) from e
        if not isinstance(conv, QUANTIZED_KINDS):
            raise InputError(
                f"BN folding: {conv_name!r} is a {type(conv).__name__}, expected a conv/linear"
            )
        if conv.bias is None:
            conv.bias = nn.Parameter(
                torch.zeros(
                    conv.weight.shape[0], dtype=conv.weight.dtype, device=conv.weight.device
                )
            )
        _set_submodule(model, bn_name, nn.Identity())
    return model


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, list[tuple[str, str]], dict[str, str]]:
    """An eval-mode copy of `model` with every foldable BN merged into its conv / linear.

    Returns (folded model, pairs, search methods). The arithmetic is `models.bn_fold`'s
    (float64), stored in the weights' dtype; pruned zeros stay exactly zero.
    """
    model = copy.deepcopy(model).eval()
    pairs, methods = find_conv_bn_pairs(model)
    stats = {}
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        w, b = fold_bn(conv.weight, bn, conv.bias)
        stats[conv_name] = (w.to(conv.weight.dtype), b.to(conv.weight.dtype))
    apply_fold_structure(model, pairs)
    for conv_name, (w, b) in stats.items():
        conv = model.get_submodule(conv_name)
        conv.weight.copy_(w)
        conv.bias.copy_(b)
    return model, pairs, methods


# ------------------------------------------------------------------------ weights


@dataclass
class QuantizedTensor:
    """An int8 weight with one float32 scale per output channel (dim 0)."""

    q: np.ndarray  # int8, the weight's shape
    scale: np.ndarray  # float32, (shape[0],)

    def dequantize(self) -> torch.Tensor:
        """float32 weight = q · scale (the values the quantized model computes with)."""
        q = torch.from_numpy(self.q.astype(np.float32))
        s = torch.from_numpy(self.scale.astype(np.float32))
        return q * s.view(-1, *([1] * (q.dim() - 1)))


def quantize_weight(w: torch.Tensor | np.ndarray) -> QuantizedTensor:
    """Symmetric per-output-channel int8: scale = max|w_c|/127, q = clip(round(w/scale))."""
    arr = w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise InputError(
            f"quantize_weight: expected a weight with output channels, found {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise InputError("quantize_weight: the weight holds non-finite values")
    w64 = arr.astype(np.float64).reshape(arr.shape[0], -1)
    amax = np.abs(w64).max(axis=1) if w64.shape[1] else np.zeros(w64.shape[0])
    scale = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)
    q = np.clip(np.rint(w64 / scale.astype(np.float64)[:, None]), -QMAX, QMAX)
    return QuantizedTensor(q=q.astype(np.int8).reshape(arr.shape), scale=scale)


def fake_quantize_activation(x: torch.Tensor, mode: str = "per_sample") -> torch.Tensor:
    """x rounded to symmetric int8 with its range from the tensor itself (dynamic range).

    per_sample: one scale per item of the batch (dim 0); per_tensor: one for the batch.
    """
    if mode == "none":
        return x
    if mode == "per_sample" and x.dim() >= 2:
        amax = x.detach().abs().flatten(1).amax(dim=1).view(-1, *([1] * (x.dim() - 1)))
    elif mode in ("per_sample", "per_tensor"):
        amax = x.detach().abs().amax()
    else:
        raise InputError(
            f"activation quantization: expected one of {ACTIVATION_MODES}, found {mode!r}"
        )
    scale = torch.where(amax > 0, amax / QMAX, torch.ones_like(amax))
    return torch.clamp(torch.round(x / scale), -QMAX, QMAX) * scale


@dataclass
class QuantizedState:
    """Everything a deployable model is: int8 weights + scales, float tensors, structure.

    weights: param name -> QuantizedTensor for every conv / linear weight; floats: every
    other state-dict entry as a numpy array (conv biases float32; other floats float32
    or float16 by `float_dtype`; integer buffers as they are); folded: the (conv, BN)
    pairs merged, so the structure can be rebuilt; arch: the `build_model` spec (None for
    models outside the registry); activations: the activation quantization mode. A float
    (unquantized) member of a system is a QuantizedState with no weights and
    activations "none" (see `float_state`).
    """

    arch: dict[str, Any] | None
    weights: dict[str, QuantizedTensor]
    floats: dict[str, np.ndarray]
    folded: list[tuple[str, str]] = field(default_factory=list)
    activations: str = "per_sample"
    float_dtype: str = "float32"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def quantized(self) -> bool:
        return bool(self.weights)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """float32 state dict of the (folded) model: dequantized weights + float tensors."""
        out: dict[str, torch.Tensor] = {}
        for name, arr in self.floats.items():
            t = torch.from_numpy(np.array(arr))
            out[name] = t.float() if t.is_floating_point() else t
        for name, qt in self.weights.items():
            out[name] = qt.dequantize()
        return out


def _arch_of(model: nn.Module) -> dict[str, Any] | None:
    spec = getattr(model, "spec", None)
    keys = ("arch", "task", "n_classes", "width", "in_channels")
    if isinstance(spec, Mapping) and all(k in spec for k in keys):
        return {k: spec[k] for k in keys}
    return None


def _check_float_dtype(float_dtype: str) -> None:
    if float_dtype not in FLOAT_DTYPES:
        raise InputError(
            f"float_dtype: expected one of {list(FLOAT_DTYPES)}, found {float_dtype!r}"
        )


@torch.no_grad()
def quantize_model(
    model: nn.Module, *, float_dtype: str = "float32", activations: str = "per_sample"
) -> QuantizedState:
    """Fold BN, quantize every conv / linear weight to int8, keep the rest as floats.

    float_dtype: storage of the float tensors that are not biases of quantized layers
    (e.g. BNs that could not be folded); "float16" rounds them, and the dequantized
    model computes with the rounded values, so a file written in float16 reproduces it.
    """
    _check_float_dtype(float_dtype)
    if activations not in ACTIVATION_MODES:
        raise InputError(f"activations: expected one of {ACTIVATION_MODES}, found {activations!r}")
    folded, pairs, methods = fold_batchnorm(model)
    modules = dict(folded.named_modules(remove_duplicate=False))
    weights: dict[str, QuantizedTensor] = {}
    floats: dict[str, np.ndarray] = {}
    state = folded.state_dict()
    qlayers = {
        name.rpartition(".")[0]
        for name in state
        if name.endswith(".weight")
        and isinstance(modules.get(name.rpartition(".")[0]), QUANTIZED_KINDS)
    }
    for name, tensor in state.items():
        layer, _, leaf = name.rpartition(".")
        if layer in qlayers and leaf == "weight":
            weights[name] = quantize_weight(tensor)
        elif tensor.is_floating_point():
            keep32 = layer in qlayers and leaf == "bias"
            dtype = np.float32 if keep32 else FLOAT_DTYPES[float_dtype]
            floats[name] = tensor.detach().cpu().numpy().astype(dtype)
        else:
            floats[name] = tensor.detach().cpu().numpy().copy()
    return QuantizedState(
        arch=_arch_of(model),
        weights=weights,
        floats=floats,
        folded=[tuple(p) for p in pairs],
        activations=activations,
        float_dtype=float_dtype,
        meta={"bn_search": methods},
    )


@torch.no_grad()
def float_state(model: nn.Module, *, float_dtype: str = "float32") -> QuantizedState:
    """An unquantized model as a QuantizedState (no int8 weights, no activation rounding)."""
    _check_float_dtype(float_dtype)
    floats = {}
    for name, tensor in model.state_dict().items():
        arr = tensor.detach().cpu().numpy()
        floats[name] = (
            arr.astype(FLOAT_DTYPES[float_dtype]) if tensor.is_floating_point() else arr.copy()
        )
    return QuantizedState(
        arch=_arch_of(model), weights={}, floats=floats, activations="none", float_dtype=float_dtype
    )


# ------------------------------------------------------------------ rebuilding


def _default_builder(arch: Mapping[str, Any]) -> nn.Module:
    from acoustic_lottery.models.registry import build_model

    return build_model(
        arch["arch"],
        arch.get("n_classes"),
        task=arch.get("task", "scene"),
        width=arch.get("width", 1.0),
        in_channels=arch.get("in_channels"),
        seed=0,  # the weights are overwritten; a fixed seed leaves the global RNG alone
    )


def _install_activation_hooks(model: nn.Module, layers: list[str], mode: str) -> None:
    def hook(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (fake_quantize_activation(args[0], mode), *args[1:])

    for name in layers:
        model.get_submodule(name).register_forward_pre_hook(hook)


def dequantize(
    qstate: QuantizedState,
    *,
    model: nn.Module | None = None,
    builder: Callable[[Mapping[str, Any]], nn.Module] | None = None,
) -> nn.Module:
    """The eval-mode model that computes exactly what the int8 model computes.

    Its weights are the dequantized int8 values (q · scale), its float tensors the stored
    ones, and every quantized layer rounds its input to int8 on the fly (forward
    pre-hooks, per `qstate.activations`). The model comes from `model` (a float template
    of the same architecture, copied, e.g. for models outside the registry), else from
    `builder(qstate.arch)` (default: `models.registry.build_model`).
    """
    if model is not None:
        net = copy.deepcopy(model)
        for module in net.modules():  # a template may itself carry activation hooks
            module._forward_pre_hooks.clear()
    else:
        if qstate.arch is None:
            raise InputError(
                "dequantize: the quantized state has no arch spec; pass the float model "
                "as `model=` to rebuild it"
            )
        net = (builder or _default_builder)(qstate.arch)
    apply_fold_structure(net, [tuple(p) for p in qstate.folded])
    state = qstate.state_dict()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise InputError(
            f"dequantize: the stored tensors do not fit the model {qstate.arch}: "
            f"{str(e).splitlines()[-1].strip()}"
        ) from e
    layers = [name.rpartition(".")[0] for name in qstate.weights]
    if qstate.activations != "none" and layers:
        _install_activation_hooks(net, layers, qstate.activations)
    net.quantization = {  # what a reader of the model should know it is
        "int8_layers": layers,
        "activations": qstate.activations if layers else "none",
        "folded": [list(p) for p in qstate.folded],
    }
    return net.eval()


def quantized_model(model: nn.Module, **kwargs: Any) -> nn.Module:
    """Shortcut: the int8 version of a float model, ready to evaluate."""
    return dequantize(quantize_model(model, **kwargs), model=model)


def exact_int8_reference(
    layer: nn.Conv2d | nn.Linear, qt: QuantizedTensor, x: torch.Tensor, mode: str = "per_sample"
) -> torch.Tensor:
    """One layer in true integer arithmetic: int8 inputs × int8 weights summed exactly
    (float64 holds every int32 accumulator exactly), then scaled and biased in float64.

    A check that the fake-quantized float32 model is the int8 model, not an estimate.
    """
    if mode == "per_sample" and x.dim() >= 2:
        amax = x.abs().flatten(1).amax(dim=1).view(-1, *([1] * (x.dim() - 1)))
    else:
        amax = x.abs().amax()
    sx = torch.where(amax > 0, amax / QMAX, torch.ones_like(amax))
    qx = torch.clamp(torch.round(x / sx), -QMAX, QMAX).double()
    qw = torch.from_numpy(qt.q.astype(np.float64))
    if isinstance(layer, nn.Linear):
        acc = torch.nn.functional.linear(qx, qw)
        shape = (1, -1)
    else:
        acc = torch.nn.functional.conv2d(
            qx, qw, None, layer.stride, layer.padding, layer.dilation, layer.groups
        )
        shape = (1, -1, 1, 1)
    out = (
        acc
        * sx.double().view(-1, *([1] * (acc.dim() - 1)))
        * torch.from_numpy(qt.scale.astype(np.float64)).view(shape)
    )
    if layer.bias is not None:
        out = out + layer.bias.detach().double().view(shape)
    return out


# ---------------------------------------------------------------------- size


def quantized_size_report(qstate: QuantizedState) -> dict[str, Any]:
    """DCASE 2021 size of the deployable model, same keys as `models.size.size_report`.

    int8 weights 1 byte per non-zero value; every other stored value by its dtype
    (float32 4, float16 2), zeros skipped; `num_batches_tracked` not counted
    (`dense_bytes`: every value counted, zeros included). The
    per-channel scales are listed under "scales" but not counted: they are metadata of
    the int8 encoding, not parameters.
    """
    layers: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []

    def add(name: str, numel: int, nonzero: int, nbytes: int, dtype: str) -> None:
        module = name.rpartition(".")[0]
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
        layer["params"] += numel
        layer["nonzero"] += nonzero
        layer["bytes"] += nonzero * nbytes
        layer["dense_bytes"] += numel * nbytes
        if layer["dtype"] != dtype:
            layer["dtype"] = "mixed"

    names = list(qstate.floats) + list(qstate.weights)
    order = {n: i for i, n in enumerate(names)}
    n_scales = 0
    for name in sorted(names, key=lambda n: (n.rpartition(".")[0], order[n])):
        if name in qstate.weights:
            qt = qstate.weights[name]
            add(name, qt.q.size, int(np.count_nonzero(qt.q)), 1, "int8")
            n_scales += qt.scale.size
            continue
        arr = qstate.floats[name]
        if name.endswith("num_batches_tracked"):
            continue
        if arr.dtype == np.bool_:
            skipped.append(name)
            continue
        add(name, arr.size, int(np.count_nonzero(arr)), arr.dtype.itemsize, arr.dtype.name)
    for layer in layers.values():
        layer["kb"] = layer["bytes"] / 1024
    out_layers = list(layers.values())
    params = sum(la["params"] for la in out_layers)
    nonzero = sum(la["nonzero"] for la in out_layers)
    nbytes = sum(la["bytes"] for la in out_layers)
    dense = sum(la["dense_bytes"] for la in out_layers)
    return {
        "rule": SIZE_RULE,
        "params": params,
        "nonzero": nonzero,
        "bytes": nbytes,
        "kb": nbytes / 1024,
        "dense_bytes": dense,
        "dense_kb": dense / 1024,
        "sparsity": 1.0 - nonzero / params if params else 0.0,
        "dtype_bytes": None,
        "layers": out_layers,
        "skipped": skipped,
        "scales": {"count": n_scales, "bytes_not_counted": 4 * n_scales},
    }
