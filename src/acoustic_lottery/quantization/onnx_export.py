"""ONNX export of the zoo's models and onnxruntime static int8 quantization (QDQ).

Why ONNX beside the PyTorch int8 model (`quantization.int8`): that one *evaluates* the int8
model exactly but runs in float32; an onnxruntime int8 model is the deployable thing that
actually runs integer kernels, so its accuracy, file size and latency can be measured.

Choices, each measured on the 2-core AMD EPYC (AVX-512 VNNI) development machine with
onnxruntime 1.31 (see benchmarks/onnx_latency.py):

* Exporter: the TorchScript ("legacy", ``dynamo=False``) exporter. It writes one
  self-contained file (weights inline, no ``.onnx.data``), honours the requested opset,
  folds eval-mode BatchNorm into the convolutions, exports in 0.1 s and matches
  onnxruntime to ~1e-6. The dynamo exporter took 7 s for SIC, could not down-convert
  to opset 17 (its version converter failed and it stayed at opset 18), wrote weights to
  ``.onnx.data`` by default and its output needed ``graph.value_info`` cleared before
  quantization (MACHINE_NOTES). The legacy exporter is deprecated upstream; if it goes,
  ``torch.onnx.export(..., dynamo=True, external_data=False)`` is the replacement.
* Quantization: ``quantize_static`` with QuantFormat.QDQ, int8 weights symmetric per
  output channel (pruned zeros stay exact zeros) and **uint8 asymmetric activations**
  calibrated by min/max over the given features. uint8 activations (U8S8) are what the
  CPU provider's fast kernels take: the whole SIC graph runs as QLinearConv /
  QLinearConcat / NhwcMaxPool with two layout transposes, 2.3x (SIC) and 2.6-2.7x
  (LIC) faster than float on one core (per 10 s clip). int8 activations (S8S8) left
  6 of SIC's 14 convs in float with transposes around them (1.3-1.5x); symmetric
  int8 activations also kept every ReLU (1.2-1.3x). The speed-up needs ORT_ENABLE_ALL
  (the NHWC layout transformer): at ORT_ENABLE_EXTENDED the int8 model is 2-2.6x
  *slower* than float. Dynamic quantization (ConvInteger) was 6x slower than float.
  On x86 CPUs *without* VNNI, U8S8 can saturate in the 16-bit intermediate; pass
  ``reduce_range=True`` there.
* onnxruntime's recommended pre-processing (``quant_pre_process``: shape inference and
  basic graph optimisation) runs first; ``graph.value_info`` is cleared before it, so
  stale shapes from any exporter cannot clash with the re-inferred ones.

Metadata (ONNX ``metadata_props``, keys prefixed ``acoustic_lottery.``): format, heads
(JSON list of [name, size]), spec (the `build_model` arguments), class_names (JSON
{head: names}), input (name, shape, dynamic axes), feature_set, source and, for int8
files, quantization (the settings). `OnnxClassifier` needs only the file.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.features.store import read_feature_attrs
from acoustic_lottery.io import atomic_path, progress
from acoustic_lottery.labels import class_names as task_class_names

__all__ = [
    "ACTIVATION_TYPES",
    "CALIBRATION_METHODS",
    "DEFAULT_INPUT",
    "INPUT_NAME",
    "META_PREFIX",
    "ONNX_FORMAT",
    "OUTPUT_NAME",
    "ExportReport",
    "FeatureCalibrationReader",
    "OnnxClassifier",
    "QuantizeReport",
    "compare_with_torch_int8",
    "export_checkpoint",
    "export_onnx",
    "make_session",
    "predict_onnx",
    "quantize_onnx_static",
    "read_feature_rows",
    "read_onnx_metadata",
]

INPUT_NAME = "features"
OUTPUT_NAME = "logits"
META_PREFIX = "acoustic_lottery."
ONNX_FORMAT = "acoustic-lottery-onnx/1"
#: (bands, frames) of a 10 s clip per feature set: lmfb 3 x 128 x 423, baseline 1 x 40 x 500.
DEFAULT_INPUT: dict[str, tuple[int, int]] = {"lmfb": (128, 423), "baseline": (40, 500)}
ACTIVATION_TYPES: tuple[str, ...] = ("quint8", "qint8")
CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile", "distribution")
OPTIMIZATION_LEVELS: dict[str, ort.GraphOptimizationLevel] = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

# Warnings of the legacy exporter that say nothing about this export: its own deprecation
# notice, and the tracer noting that HeadedModel's Python input-shape check is not traced
# (it is a guard, not part of the computation).
_EXPORT_NOISE = (
    r".*legacy TorchScript-based ONNX export.*",
    r"The feature will be removed.*",
    r"Converting a tensor to a Python boolean.*",
)


# onnxruntime.quantization logs through the root logger. Two of its warnings are expected
# here: the advice to pre-process (given even when `preprocess=False` was chosen) and the
# per-channel axis of the 1-D scale of a BatchNormalization that could not be folded
# (it falls back to one scale for the tensor, which is what such a BN needs).
_QUANT_NOISE = re.compile(
    r"Please consider (to run )?pre-?processing|Axis \d+ is out-of-range for weight"
)


class _DropQuantNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _QUANT_NOISE.search(record.getMessage())


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    root = logging.getLogger()
    noise = _DropQuantNoise()
    root.addFilter(noise)
    try:
        yield
    finally:
        root.removeFilter(noise)


# ----------------------------------------------------------------------- metadata


def _default_class_names(heads: Sequence[tuple[str, int]]) -> dict[str, list[str]]:
    out = {}
    for name, k in heads:
        try:
            names = task_class_names(name)
        except ValueError:
            names = []
        out[name] = names if len(names) == k else [f"class{i}" for i in range(k)]
    return out


def _encode_metadata(meta: Mapping[str, Any]) -> dict[str, str]:
    return {
        META_PREFIX + key: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        for key, value in meta.items()
    }


def _set_metadata(model: onnx.ModelProto, meta: Mapping[str, Any]) -> None:
    """Replace the acoustic_lottery.* metadata_props of `model` by `meta` (others kept)."""
    encoded = _encode_metadata(meta)
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in encoded]
    del model.metadata_props[:]
    for key, value in [*kept, *sorted(encoded.items())]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


_JSON_KEYS = ("heads", "spec", "class_names", "input", "source", "quantization", "export")


def _decode_metadata(props: Mapping[str, str], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in props.items():
        if not key.startswith(META_PREFIX):
            continue
        short = key[len(META_PREFIX) :]
        if short in _JSON_KEYS:
            try:
                out[short] = json.loads(value)
            except ValueError as e:
                raise InputError(f"{where}: metadata {key!r} is not valid JSON ({e})") from e
        else:
            out[short] = value
    if out.get("format") != ONNX_FORMAT:
        raise InputError(
            f"{where}: metadata {META_PREFIX}format is {out.get('format')!r}, expected "
            f"{ONNX_FORMAT!r} (was the file written by acoustic-lottery export-onnx?)"
        )
    heads = out.get("heads")
    if (
        not isinstance(heads, list)
        or not heads
        or not all(
            isinstance(h, list)
            and len(h) == 2
            and isinstance(h[0], str)
            and isinstance(h[1], int)
            and h[1] >= 1
            for h in heads
        )
    ):
        raise InputError(
            f"{where}: metadata {META_PREFIX}heads must be a JSON list of [name, size], "
            f"found {heads!r}"
        )
    out["heads"] = [(str(name), int(k)) for name, k in heads]
    names = out.get("class_names") or _default_class_names(out["heads"])
    for name, k in out["heads"]:
        if not isinstance(names.get(name), list) or len(names[name]) != k:
            raise InputError(
                f"{where}: metadata {META_PREFIX}class_names has no list of {k} names for "
                f"head {name!r}"
            )
    out["class_names"] = {name: [str(c) for c in names[name]] for name, _ in out["heads"]}
    return out


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The acoustic_lottery metadata of an exported file (JSON values decoded, heads checked)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ONNX model {path}: no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError, ValueError, ... on non-ONNX bytes
        raise InputError(f"ONNX model {path}: not a readable ONNX file ({e})") from e
    return _decode_metadata({p.key: p.value for p in model.metadata_props}, f"ONNX model {path}")


# ------------------------------------------------------------------------- export


@dataclass
class ExportReport:
    """What `export_onnx` wrote and how closely onnxruntime reproduced torch."""

    path: str
    opset: int
    input_shape: list[int]
    dynamic_time: bool
    file_bytes: int
    #: per checked input shape: {"shape": [B, C, F, T], "max_abs_diff": float, "max_abs": float}
    checks: list[dict[str, Any]] = field(default_factory=list)
    exporter: str = "torch.onnx.export(dynamo=False)"

    @property
    def max_abs_diff(self) -> float:
        return max((c["max_abs_diff"] for c in self.checks), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["max_abs_diff"] = self.max_abs_diff
        return out


def _check_shape(input_shape: Sequence[int], where: str) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) == 4:
        shape = shape[1:]
    if len(shape) != 3 or not all(
        isinstance(s, int | np.integer) and not isinstance(s, bool) and s >= 1 for s in shape
    ):
        raise InputError(
            f"{where}: input_shape must be (C, F, T) of positive integers, found "
            f"{tuple(input_shape)!r}"
        )
    return int(shape[0]), int(shape[1]), int(shape[2])


def _no_external_data(model: onnx.ModelProto) -> bool:
    return not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def make_session(
    path: str | os.PathLike[str],
    *,
    threads: int = 1,
    inter_op_threads: int = 1,
    optimization: str = "all",
) -> ort.InferenceSession:
    """A CPU onnxruntime session; threads=0 lets onnxruntime choose (all physical cores).

    Sequential execution and `threads` intra-op threads: threads=1 is the one-core
    setting the latency benchmark and a deployed low-complexity system use.
    """
    for name, value in (("threads", threads), ("inter_op_threads", inter_op_threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(
                f"onnxruntime session: {name} must be an integer >= 0, found {value!r}"
            )
    if optimization not in OPTIMIZATION_LEVELS:
        raise InputError(
            f"onnxruntime session: optimization must be one of {list(OPTIMIZATION_LEVELS)}, "
            f"found {optimization!r}"
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = inter_op_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    opts.log_severity_level = 3  # errors only: the CPU provider's notes are noise here
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own pybind exception types
        raise InputError(f"ONNX model {path}: onnxruntime cannot load it ({e})") from e


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    input_shape: Sequence[int],
    dynamic_time: bool = True,
    opset: int = 17,
    heads: Sequence[tuple[str, int]] | None = None,
    class_names: Mapping[str, Sequence[str]] | None = None,
    feature_set: str | None = None,
    source: Mapping[str, Any] | None = None,
    seed: int = 0,
    rtol: float = 1e-4,
) -> ExportReport:
    """Export `model` (eval mode) to one self-contained ONNX file, written atomically.

    input_shape: (C, F, T) of the tracing input ((B, C, F, T) also accepted, B ignored).
    The batch axis is always dynamic, the time axis too when `dynamic_time` (the models
    pool globally over time). The file is checked with onnx.checker and run by
    onnxruntime on seeded random inputs (the traced shape and, with a dynamic time axis,
    a longer one at batch 2); the largest |onnxruntime - torch| must stay within
    rtol * max(1, max|torch logits|) or the export fails (RuntimeError, no file).
    heads / class_names default to the model's `heads` and labels.py names.
    """
    path = Path(path)
    c, f, t = _check_shape(input_shape, f"export_onnx {path}")
    heads = [(str(n), int(k)) for n, k in (heads if heads is not None else _model_heads(model))]
    names = _default_class_names(heads)
    if class_names is not None:
        for head, k in heads:
            if head in class_names:
                if len(class_names[head]) != k:
                    raise InputError(
                        f"export_onnx {path}: class_names[{head!r}] has "
                        f"{len(class_names[head])} names, the head has {k} outputs"
                    )
                names[head] = [str(x) for x in class_names[head]]
    spec = getattr(model, "spec", None)
    meta = {
        "format": ONNX_FORMAT,
        "heads": [list(h) for h in heads],
        "class_names": names,
        "spec": dict(spec) if isinstance(spec, Mapping) and spec else None,
        "input": {
            "name": INPUT_NAME,
            "shape": [c, f, t],
            "dynamic_axes": ["batch", "time"] if dynamic_time else ["batch"],
        },
        "source": dict(source or {}),
        "export": {
            "exporter": "torch.onnx.export(dynamo=False)",
            "opset": int(opset),
            "torch_version": torch.__version__,
            "onnx_version": onnx.__version__,
        },
    }
    if feature_set is not None:
        meta["feature_set"] = str(feature_set)

    net = copy.deepcopy(model).cpu().float().eval()
    rng = np.random.default_rng(seed)
    trace_x = torch.from_numpy(rng.standard_normal((1, c, f, t)).astype(np.float32))
    dynamic_axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    if dynamic_time:
        dynamic_axes[INPUT_NAME][3] = "time"
    checks_x = [trace_x]
    if dynamic_time:
        checks_x.append(
            torch.from_numpy(rng.standard_normal((2, c, f, t + t // 2 + 1)).astype(np.float32))
        )
    with atomic_path(path) as tmp:
        with warnings.catch_warnings():
            for pattern in _EXPORT_NOISE:
                warnings.filterwarnings("ignore", message=pattern)
            torch.onnx.export(
                net,
                (trace_x,),
                str(tmp),
                dynamo=False,
                export_params=True,
                opset_version=int(opset),
                do_constant_folding=True,
                training=torch.onnx.TrainingMode.EVAL,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes,
            )
        proto = onnx.load(str(tmp))
        if not _no_external_data(proto) or proto.ByteSize() >= 2**31:
            raise InputError(
                f"export_onnx {path}: the model needs external data (> 2 GB); a single-file "
                "export is not possible"
            )
        proto.doc_string = "acoustic-lottery model; see metadata_props acoustic_lottery.*"
        _set_metadata(proto, meta)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
        session = make_session(tmp, threads=0)
        checks = []
        with torch.no_grad():
            for x in checks_x:
                ref = net(x).numpy()
                got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
                if got.shape != ref.shape:
                    raise RuntimeError(
                        f"export_onnx {path}: onnxruntime output shape {got.shape} != torch "
                        f"{ref.shape} for input {tuple(x.shape)}"
                    )
                diff = float(np.abs(got - ref).max())
                scale = float(np.abs(ref).max())
                checks.append({"shape": list(x.shape), "max_abs_diff": diff, "max_abs": scale})
                if not diff <= rtol * max(1.0, scale):
                    raise RuntimeError(
                        f"export_onnx {path}: onnxruntime differs from torch by {diff:.3g} on "
                        f"input {tuple(x.shape)} (logits up to {scale:.3g}; allowed "
                        f"{rtol:g} x max(1, that))"
                    )
        del session
        size = tmp.stat().st_size
    return ExportReport(
        path=str(path),
        opset=int(opset),
        input_shape=[c, f, t],
        dynamic_time=bool(dynamic_time),
        file_bytes=size,
        checks=checks,
    )


def _model_heads(model: nn.Module) -> list[tuple[str, int]]:
    heads = getattr(model, "heads", None)
    if not isinstance(heads, list | tuple) or not heads:
        raise InputError(
            "export_onnx: the model has no `heads` attribute (list of (name, size)); build it "
            "with acoustic_lottery.models.build_model or pass heads="
        )
    return [(str(n), int(k)) for n, k in heads]


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    frames: int | None = None,
    bands: int | None = None,
    opset: int = 17,
) -> ExportReport:
    """Export a training checkpoint: input size from its feature set unless given."""
    from acoustic_lottery.models.checkpoint import load_model

    checkpoint = Path(checkpoint)
    model, meta = load_model(checkpoint)
    fset = meta.get("feature_set")
    default_bands, default_frames = DEFAULT_INPUT.get(str(fset), DEFAULT_INPUT["lmfb"])
    if bands is None and fset not in DEFAULT_INPUT:
        raise InputError(
            f"export-onnx {checkpoint}: feature_set {fset!r} has no known band count; give --bands"
        )
    shape = (
        int(meta["in_channels"]),
        default_bands if bands is None else bands,
        default_frames if frames is None else frames,
    )
    return export_onnx(
        model,
        out,
        input_shape=_check_shape(shape, f"export-onnx {checkpoint}"),
        opset=opset,
        feature_set=fset,
        source={
            "kind": "checkpoint",
            "checkpoint": str(checkpoint),
            "epoch": meta.get("epoch"),
            "global_step": meta.get("global_step"),
        },
    )


# --------------------------------------------------------------------- quantization


@dataclass
class QuantizeReport:
    """What `quantize_onnx_static` wrote: settings, sizes and the int8 file's op census."""

    path: str
    float_path: str
    file_bytes: int
    float_bytes: int
    n_calibration: int
    settings: dict[str, Any]
    op_types: dict[str, int]

    @property
    def size_ratio(self) -> float:
        return self.file_bytes / self.float_bytes if self.float_bytes else float("nan")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["size_ratio"] = self.size_ratio
        return out


class FeatureCalibrationReader:
    """onnxruntime CalibrationDataReader over an (N, C, F, T) array, `batch_size` clips a call.

    Batches (not single clips) keep calibration fast; min/max calibration does not depend
    on how the clips are batched.
    """

    def __init__(self, x: np.ndarray, batch_size: int = 8, input_name: str = INPUT_NAME) -> None:
        self.x = x
        self.batch_size = batch_size
        self.input_name = input_name
        self._starts: Iterator[int] = iter(range(0, len(x), batch_size))

    def get_next(self) -> dict[str, np.ndarray] | None:
        s = next(self._starts, None)
        if s is None:
            return None
        batch = np.ascontiguousarray(self.x[s : s + self.batch_size], dtype=np.float32)
        return {self.input_name: batch}

    def rewind(self) -> None:
        self._starts = iter(range(0, len(self.x), self.batch_size))

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)


def _input_dims(model: onnx.ModelProto, where: str) -> list[int | None]:
    inputs = [i for i in model.graph.input if i.name == INPUT_NAME]
    if not inputs:
        raise InputError(
            f"{where}: the model has no input named {INPUT_NAME!r} (inputs: "
            f"{[i.name for i in model.graph.input]})"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def _check_calibration(x: np.ndarray, dims: list[int | None], where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or len(dims) != 4:
        raise InputError(f"{where}: calibration data must be (N, C, F, T), found shape {x.shape}")
    if x.shape[0] < 1:
        raise InputError(f"{where}: calibration data holds no clips")
    for axis, (have, want) in enumerate(zip(x.shape, dims)):
        if axis > 0 and want is not None and have != want:
            raise InputError(
                f"{where}: calibration data of shape {x.shape} does not fit the model input "
                f"{['N' if d is None else d for d in dims]} (axis {axis}: {have} != {want})"
            )
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise InputError(f"{where}: calibration data holds non-finite values")
    return x


def quantize_onnx_static(
    float_path: str | os.PathLike[str],
    int8_path: str | os.PathLike[str],
    calibration: np.ndarray,
    *,
    per_channel: bool = True,
    activation_type: str = "quint8",
    activation_symmetric: bool = False,
    calibrate_method: str = "minmax",
    batch_size: int = 8,
    preprocess: bool = True,
    reduce_range: bool = False,
    source: Mapping[str, Any] | None = None,
) -> QuantizeReport:
    """Static int8 QDQ quantization of an exported float model, written atomically.

    Weights int8 symmetric (per output channel unless per_channel=False); activations
    `activation_type` (quint8 default: see the module docstring for the measurements)
    with ranges from running `calibration` (N, C, F, T) through the float model with
    `calibrate_method`. The int8 file keeps the float file's acoustic_lottery metadata
    and adds `quantization` (these settings).
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    float_path, int8_path = Path(float_path), Path(int8_path)
    where = f"quantize-onnx {float_path}"
    meta = read_onnx_metadata(float_path)
    if meta.get("quantization"):
        raise InputError(f"{where}: the model is already quantized")
    if activation_type not in ACTIVATION_TYPES:
        raise InputError(
            f"{where}: activation_type must be one of {list(ACTIVATION_TYPES)}, found "
            f"{activation_type!r}"
        )
    if calibrate_method not in CALIBRATION_METHODS:
        raise InputError(
            f"{where}: calibrate_method must be one of {list(CALIBRATION_METHODS)}, found "
            f"{calibrate_method!r}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"{where}: batch_size must be an integer >= 1, found {batch_size!r}")
    model = onnx.load(str(float_path))
    x = _check_calibration(calibration, _input_dims(model, where), where)
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
        "distribution": CalibrationMethod.Distribution,
    }
    act = QuantType.QUInt8 if activation_type == "quint8" else QuantType.QInt8
    settings = {
        "tool": "onnxruntime.quantization.quantize_static",
        "onnxruntime_version": ort.__version__,
        "format": "QDQ",
        "weight_type": "qint8",
        "weight_symmetric": True,
        "per_channel": bool(per_channel),
        "activation_type": activation_type,
        "activation_symmetric": bool(activation_symmetric),
        "calibrate_method": calibrate_method,
        "n_calibration": int(len(x)),
        "calibration_shape": list(x.shape[1:]),
        "preprocess": bool(preprocess),
        "reduce_range": bool(reduce_range),
        "source": dict(source or {}),
    }
    with tempfile.TemporaryDirectory(prefix="al-quant-") as work, _quiet_quantizer():
        work_dir = Path(work)
        # Shapes are re-inferred below; stale value_info (the dynamo exporter's) made
        # quantization fail on a shape mismatch (MACHINE_NOTES).
        del model.graph.value_info[:]
        src = work_dir / "float.onnx"
        onnx.save(model, str(src))
        if preprocess:
            pre = work_dir / "pre.onnx"
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
            src = pre
        raw = work_dir / "int8.onnx"
        quantize_static(
            str(src),
            str(raw),
            FeatureCalibrationReader(x, batch_size),
            quant_format=QuantFormat.QDQ,
            per_channel=bool(per_channel),
            reduce_range=bool(reduce_range),
            activation_type=act,
            weight_type=QuantType.QInt8,
            calibrate_method=methods[calibrate_method],
            extra_options={
                "WeightSymmetric": True,
                "ActivationSymmetric": bool(activation_symmetric),
            },
        )
        qmodel = onnx.load(str(raw))
    public = {k: v for k, v in meta.items()}
    public["quantization"] = settings
    _set_metadata(qmodel, public)
    onnx.checker.check_model(qmodel)
    with atomic_path(int8_path) as tmp:
        onnx.save(qmodel, str(tmp))
        session = make_session(tmp, threads=0)
        probe = np.ascontiguousarray(x[:1])
        out = session.run([OUTPUT_NAME], {INPUT_NAME: probe})[0]
        if out.shape != (1, sum(k for _, k in meta["heads"])) or not np.isfinite(out).all():
            raise RuntimeError(
                f"quantize-onnx {int8_path}: the int8 model gave output {out.shape} "
                f"(finite: {bool(np.isfinite(out).all())}) on a calibration clip"
            )
        del session
        size = tmp.stat().st_size
    ops: dict[str, int] = {}
    for node in qmodel.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return QuantizeReport(
        path=str(int8_path),
        float_path=str(float_path),
        file_bytes=size,
        float_bytes=float_path.stat().st_size,
        n_calibration=int(len(x)),
        settings=settings,
        op_types=dict(sorted(ops.items())),
    )


# ---------------------------------------------------------------------- inference


def _softmax(z: np.ndarray) -> np.ndarray:
    z64 = z.astype(np.float64)
    z64 -= z64.max(axis=1, keepdims=True)
    e = np.exp(z64)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class OnnxClassifier:
    """An exported (float or int8) model run by onnxruntime on the CPU.

    Reads heads and class names from the file's metadata, so the file alone is the model.
    threads: intra-op threads (1 = one core; 0 = onnxruntime's default).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        threads: int = 1,
        batch_size: int = 32,
        optimization: str = "all",
    ) -> None:
        self.path = Path(path)
        self.metadata = read_onnx_metadata(self.path)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(
                f"OnnxClassifier: batch_size must be an integer >= 1, found {batch_size!r}"
            )
        self.batch_size = batch_size
        self.session = make_session(self.path, threads=threads, optimization=optimization)
        self.heads: list[tuple[str, int]] = self.metadata["heads"]
        self.class_names: dict[str, list[str]] = self.metadata["class_names"]
        dims = self.session.get_inputs()[0].shape
        self.input_dims: list[int | None] = [d if isinstance(d, int) else None for d in dims]

    @property
    def quantized(self) -> bool:
        return bool(self.metadata.get("quantization"))

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4:
            raise InputError(f"ONNX model {self.path}: input must be (N, C, F, T), found {x.shape}")
        for axis in (1, 2, 3):
            want = self.input_dims[axis] if axis < len(self.input_dims) else None
            if want is not None and x.shape[axis] != want:
                raise InputError(
                    f"ONNX model {self.path}: input of shape {x.shape} does not fit the model "
                    f"input {['N' if d is None else d for d in self.input_dims]} (axis {axis})"
                )
        return x

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, sum of head sizes) float32 logits, heads concatenated in `heads` order."""
        x = self._check(x)
        parts = [
            self.session.run(
                [OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x[s : s + self.batch_size])}
            )[0]
            for s in range(0, len(x), self.batch_size)
        ]
        total = sum(k for _, k in self.heads)
        return np.concatenate(parts) if parts else np.zeros((0, total), np.float32)

    def split(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Cut (N, sum of head sizes) columns into one array per head."""
        out, start = {}, 0
        for name, k in self.heads:
            out[name] = values[:, start : start + k]
            start += k
        return out

    def predict_heads(self, x: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """head -> (logits, probabilities) with a softmax over each head's logits."""
        return {name: (z, _softmax(z)) for name, z in self.split(self.logits(x)).items()}

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(N, sum of head sizes) probabilities: a softmax per head, concatenated.

        For a single-head model this is the usual (N, K) matrix whose rows sum to 1.
        """
        heads = self.predict_heads(x)
        return np.concatenate([heads[name][1] for name, _ in self.heads], axis=1)


# ------------------------------------------------------------------- feature files


@dataclass
class FeatureRows:
    """Selected rows of a feature file (features + what a prediction file needs)."""

    x: np.ndarray
    label10: np.ndarray
    label3: np.ndarray
    filename: np.ndarray
    device: np.ndarray
    index: np.ndarray
    attrs: dict[str, Any]


def read_feature_rows(
    path: str | os.PathLike[str],
    rows: np.ndarray | None = None,
    *,
    max_clips: int | None = None,
    seed: int = 0,
) -> FeatureRows:
    """Read only some rows of a feature file (calibration needs a few hundred clips of a
    training split that may not fit in memory). rows: explicit row indices; else
    max_clips rows drawn without replacement by `seed` (all rows when None or >= N),
    returned in file order."""
    path = Path(path)
    attrs = read_feature_attrs(path)
    with h5py.File(path, "r") as f:
        for name in ("features", "label10", "label3", "filename", "device"):
            if name not in f:
                raise InputError(f"{path}: feature file lacks dataset {name!r}")
        ds = f["features"]
        if ds.ndim != 4:
            raise InputError(
                f"{path}: dataset 'features' must be 4-D (N, C, F, T), found shape {ds.shape}"
            )
        n = ds.shape[0]
        if rows is None:
            if max_clips is not None and (
                isinstance(max_clips, bool) or not isinstance(max_clips, int) or max_clips < 1
            ):
                raise InputError(f"{path}: max_clips must be an integer >= 1, found {max_clips!r}")
            if max_clips is None or max_clips >= n:
                idx = np.arange(n)
            else:
                idx = np.sort(np.random.default_rng(seed).choice(n, size=max_clips, replace=False))
        else:
            idx = np.asarray(rows, dtype=np.int64)
            if idx.ndim != 1 or (idx.size and (idx.min() < 0 or idx.max() >= n)):
                raise InputError(f"{path}: row indices must lie in 0..{n - 1}")
            if idx.size > 1 and np.any(np.diff(idx) <= 0):
                raise InputError(f"{path}: row indices must be strictly increasing")
        x = np.empty((len(idx), *ds.shape[1:]), dtype=np.float32)
        block = 256
        for s in range(0, len(idx), block):
            x[s : s + block] = ds[idx[s : s + block]]
        cols = {}
        for name in ("label10", "label3"):
            col = f[name]
            if col.shape != (n,):
                raise InputError(f"{path}: dataset {name!r} has shape {col.shape}, expected ({n},)")
            cols[name] = np.asarray(col[()], dtype=np.int64)[idx]
        for name in ("filename", "device"):
            col = f[name]
            if col.shape != (n,):
                raise InputError(f"{path}: dataset {name!r} has shape {col.shape}, expected ({n},)")
            cols[name] = np.asarray(col.asstr()[()], dtype=object)[idx]
    return FeatureRows(x=x, index=idx, attrs=attrs, **cols)


def _feature_class_names(head: str, attrs: Mapping[str, Any]) -> list[str] | None:
    key = {"scene": "scenes", "super": "super_classes"}.get(head)
    names = attrs.get(key) if key else None
    return [str(c) for c in names] if isinstance(names, list | tuple) else None


def _head_labels(head: str, rows: FeatureRows, where: str) -> np.ndarray:
    if head == "scene":
        return rows.label10
    if head == "super":
        return rows.label3
    raise InputError(f"{where}: head {head!r} has no label column in feature files")


def predict_onnx(
    model: str | os.PathLike[str],
    features: str | os.PathLike[str],
    out: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
    *,
    threads: int = 1,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Run an exported model over a feature file and write prediction files
    (`evaluation.predict.write_predictions`): one per head, like `predict` does for a
    checkpoint. out: a path (single-head model) or a mapping head -> path."""
    from acoustic_lottery.evaluation.predict import Predictions, write_predictions

    model, features = Path(model), Path(features)
    clf = OnnxClassifier(model, threads=threads, batch_size=batch_size)
    heads = [name for name, _ in clf.heads]
    if isinstance(out, Mapping):
        outs = {str(h): Path(p) for h, p in out.items()}
        unknown = sorted(set(outs) - set(heads))
        if unknown or not outs:
            raise InputError(
                f"predict-onnx {model}: output heads {unknown or '(none)'} are not heads of this "
                f"model (heads: {heads})"
            )
    elif len(heads) == 1:
        outs = {heads[0]: Path(out)}
    else:
        raise InputError(
            f"predict-onnx {model}: the model has heads {heads}; name the head of each output "
            "(--head and/or --out-super)"
        )
    rows = read_feature_rows(features)
    fset, mset = rows.attrs.get("feature_set"), clf.metadata.get("feature_set")
    if fset is not None and mset is not None and fset != mset:
        raise InputError(
            f"predict-onnx: features {features} are feature_set {fset!r} but the model {model} "
            f"was exported for {mset!r}"
        )
    for head in outs:
        names = _feature_class_names(head, rows.attrs)
        if names is not None and names != clf.class_names[head]:
            raise InputError(
                f"predict-onnx: class names of head {head!r} differ between the features "
                f"{features} ({names}) and the model {model} ({clf.class_names[head]})"
            )
    logits = np.concatenate(
        [
            clf.logits(rows.x[s : s + batch_size])
            for s in progress(
                range(0, len(rows.x), batch_size),
                desc=f"predict-onnx {features.name}",
                total=-(-len(rows.x) // batch_size),
            )
        ]
        or [np.zeros((0, sum(k for _, k in clf.heads)), np.float32)]
    )
    results: dict[str, Any] = {}
    for head, z in clf.split(logits).items():
        if head not in outs:
            continue
        pred = Predictions(
            probs=_softmax(z),
            logits=z,
            label=_head_labels(head, rows, f"predict-onnx {features}"),
            device=rows.device,
            filename=rows.filename,
            class_names=clf.class_names[head],
            task=head,
            source={
                "kind": "onnx-int8" if clf.quantized else "onnx",
                "model": str(model),
                "head": head,
                "spec": clf.metadata.get("spec"),
                "onnx_source": clf.metadata.get("source"),
                "quantization": clf.metadata.get("quantization"),
                "features": str(features),
                "feature_set": fset,
                "split": rows.attrs.get("split"),
                "copy": rows.attrs.get("copy"),
                "onnxruntime_version": ort.__version__,
            },
        )
        write_predictions(outs[head], pred)
        results[head] = pred
    return results


def compare_with_torch_int8(
    checkpoint: str | os.PathLike[str],
    int8_onnx: str | os.PathLike[str],
    features: str | os.PathLike[str],
    *,
    tolerance_points: float = 0.5,
    threads: int = 1,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Accuracy of the onnxruntime int8 model vs the PyTorch int8 evaluation
    (`quantization.int8.quantized_model`: BN folded, per-channel int8 weights, dynamic
    per-sample int8 activations) on the labelled clips of a feature file.

    The issue's acceptance test: |difference| <= tolerance_points (percentage points)
    for every head. Returns per head: n, accuracies (percent), difference, argmax
    agreement, and `within_tolerance` overall.
    """
    from acoustic_lottery.models.checkpoint import load_model
    from acoustic_lottery.quantization.int8 import quantized_model

    checkpoint, int8_onnx, features = Path(checkpoint), Path(int8_onnx), Path(features)
    model, meta = load_model(checkpoint)  # first: a wrong --model fails before onnxruntime
    clf = OnnxClassifier(int8_onnx, threads=threads, batch_size=batch_size)
    if not clf.quantized:
        raise InputError(f"compare-onnx: {int8_onnx} is not a quantized (int8) ONNX model")
    if [tuple(h) for h in model.heads] != clf.heads:
        raise InputError(
            f"compare-onnx: heads of {checkpoint} {model.heads} differ from {int8_onnx} {clf.heads}"
        )
    qnet = quantized_model(model)
    rows = read_feature_rows(features)
    torch_parts, onnx_parts = [], []
    with torch.inference_mode():
        for s in progress(
            range(0, len(rows.x), batch_size),
            desc=f"compare-onnx {features.name}",
            total=-(-len(rows.x) // batch_size),
        ):
            xb = rows.x[s : s + batch_size]
            torch_parts.append(qnet(torch.from_numpy(xb)).float().numpy())
            onnx_parts.append(clf.logits(xb))
    total = sum(k for _, k in clf.heads)
    z_torch = clf.split(np.concatenate(torch_parts) if torch_parts else np.zeros((0, total)))
    z_onnx = clf.split(np.concatenate(onnx_parts) if onnx_parts else np.zeros((0, total)))
    out: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "onnx": str(int8_onnx),
        "features": str(features),
        "tolerance_points": float(tolerance_points),
        "heads": {},
    }
    ok = True
    for head, _ in clf.heads:
        label = _head_labels(head, rows, f"compare-onnx {features}")
        keep = label >= 0
        if not keep.any():
            raise InputError(f"compare-onnx: {features} has no labelled clips for head {head!r}")
        pt = z_torch[head].argmax(1)[keep]
        po = z_onnx[head].argmax(1)[keep]
        acc_t = 100.0 * float(np.mean(pt == label[keep]))
        acc_o = 100.0 * float(np.mean(po == label[keep]))
        diff = acc_o - acc_t
        ok = ok and abs(diff) <= tolerance_points
        out["heads"][head] = {
            "n": int(keep.sum()),
            "torch_int8_accuracy": acc_t,
            "onnx_int8_accuracy": acc_o,
            "difference_points": diff,
            "argmax_agreement": float(np.mean(pt == po)),
        }
    out["within_tolerance"] = bool(ok)
    return out
