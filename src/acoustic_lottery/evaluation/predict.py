"""Prediction files: a model's class probabilities per clip, the currency of the systems layer.

Why files of probabilities: two-stage fusion, ensembles and quantized variants combine
predictions, never models, so they cost seconds and never rerun a network
(CONTRACTS "Prediction files"). `read_predictions` / `write_predictions` are the one
reader and writer every module uses; `predict` runs a checkpoint over a feature file
(eval mode, full-length inputs, softmax per head).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from acoustic_lottery.errors import InputError
from acoustic_lottery.io import atomic_path, progress
from acoustic_lottery.labels import class_names as task_class_names

if TYPE_CHECKING:
    import torch

# torch (and the feature store's pandas) are imported by the functions that run a model:
# reading and writing prediction files, which fusion, ensembles and `evaluate` do in
# hundreds of short jobs, should not pay seconds of imports.

__all__ = [
    "Predictions",
    "predict",
    "read_predictions",
    "resolve_device",
    "write_predictions",
]

_STR = h5py.string_dtype("utf-8")


@dataclass
class Predictions:
    """Per-clip class probabilities of one classifier (one head) on one split.

    probs (N, K) float32 (rows should sum to 1; metrics renormalise), label (N,) int64
    (-1 = unlabelled), device / filename (N,) str, class_names (K), task ("scene" or
    "super" for the TAU heads), source (JSON-able description of where they came from),
    logits (N, K) float32 or None (fusion and ensembles have none).
    """

    probs: np.ndarray
    label: np.ndarray
    device: np.ndarray
    filename: np.ndarray
    class_names: list[str]
    task: str
    source: dict[str, Any] = field(default_factory=dict)
    logits: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.probs = np.asarray(self.probs, dtype=np.float32)
        self.label = np.asarray(self.label, dtype=np.int64)
        self.device = np.asarray(self.device, dtype=object).astype(str).astype(object)
        self.filename = np.asarray(self.filename, dtype=object).astype(str).astype(object)
        self.class_names = [str(c) for c in self.class_names]
        if self.logits is not None:
            self.logits = np.asarray(self.logits, dtype=np.float32)
        self.validate("predictions")

    @property
    def n(self) -> int:
        return int(self.probs.shape[0])

    def validate(self, where: str) -> None:
        """Raise InputError (prefixed with `where`) if the arrays do not fit together."""
        if self.probs.ndim != 2:
            raise InputError(f"{where}: 'probs' must be 2-D (N, K), found shape {self.probs.shape}")
        n, k = self.probs.shape
        if len(self.class_names) != k:
            raise InputError(
                f"{where}: 'class_names' has {len(self.class_names)} names, expected {k} "
                "(the number of probability columns)"
            )
        for name in ("label", "device", "filename"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise InputError(f"{where}: {name!r} must have shape ({n},), found {arr.shape}")
        if self.logits is not None and self.logits.shape != (n, k):
            raise InputError(
                f"{where}: 'logits' must have shape ({n}, {k}) like 'probs', found "
                f"{self.logits.shape}"
            )
        if not isinstance(self.task, str) or not self.task:
            raise InputError(f"{where}: 'task' must be a non-empty string, found {self.task!r}")
        bad = (self.label < -1) | (self.label >= k)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"{where}: 'label' row {i} is {int(self.label[i])}, expected -1 (unlabelled) "
                f"or a class index in 0..{k - 1}"
            )
        try:
            json.dumps(self.source, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise InputError(f"{where}: 'source' must be JSON-able: {e}") from e


def write_predictions(path: str | os.PathLike[str], pred: Predictions) -> Path:
    """Write a prediction file atomically (CONTRACTS layout); returns the path."""
    pred.validate(f"write_predictions {path}")
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("probs", data=pred.probs.astype(np.float32))
        if pred.logits is not None:
            f.create_dataset("logits", data=pred.logits.astype(np.float32))
        f.create_dataset("label", data=pred.label.astype(np.int64))
        f.create_dataset("device", data=pred.device.astype(object), dtype=_STR)
        f.create_dataset("filename", data=pred.filename.astype(object), dtype=_STR)
        f.attrs["class_names"] = json.dumps(pred.class_names)
        f.attrs["task"] = pred.task
        f.attrs["source"] = json.dumps(pred.source, sort_keys=True)
    return path


def read_predictions(path: str | os.PathLike[str]) -> Predictions:
    """Read and check a prediction file; InputError names the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"predictions {path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(f"predictions {path}: not a readable HDF5 file ({e})") from e
    with f:
        for key in ("probs", "label", "device", "filename"):
            if key not in f:
                raise InputError(f"predictions {path}: missing dataset {key!r}")
        for key in ("class_names", "task"):
            if key not in f.attrs:
                raise InputError(f"predictions {path}: missing attribute {key!r}")
        try:
            names = json.loads(f.attrs["class_names"])
            source = json.loads(f.attrs["source"]) if "source" in f.attrs else {}
        except (TypeError, ValueError) as e:
            raise InputError(
                f"predictions {path}: attributes 'class_names'/'source' must be JSON ({e})"
            ) from e
        if not isinstance(names, list):
            raise InputError(
                f"predictions {path}: attribute 'class_names' must be a JSON list, found {names!r}"
            )
        task = f.attrs["task"]
        task = task.decode() if isinstance(task, bytes) else str(task)
        pred = Predictions.__new__(Predictions)
        pred.probs = np.asarray(f["probs"][()], dtype=np.float32)
        pred.logits = np.asarray(f["logits"][()], dtype=np.float32) if "logits" in f else None
        pred.label = np.asarray(f["label"][()], dtype=np.int64)
        pred.device = np.asarray(f["device"].asstr()[()], dtype=object)
        pred.filename = np.asarray(f["filename"].asstr()[()], dtype=object)
        pred.class_names = [str(c) for c in names]
        pred.task = task
        pred.source = source
    pred.validate(f"predictions {path}")
    return pred


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when available, else CPU) -> torch.device."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r}: CUDA is not available on this machine")
        return torch.device(name)
    raise InputError(f"device: expected 'cpu', 'auto', 'cuda' or 'cuda:N', found {name!r}")


def predict(
    checkpoint: str | os.PathLike[str],
    features: str | os.PathLike[str],
    out: str | os.PathLike[str] | Mapping[str, str | os.PathLike[str]],
    *,
    batch_size: int = 64,
    device: str = "cpu",
) -> dict[str, Predictions]:
    """Run a checkpoint over a feature file and write one prediction file per head.

    out: a path for a single-head model; for a multi-head (mtl) model a mapping
    head -> path (any non-empty subset of the heads). Inputs are full length (no crop),
    the model in eval mode. Returns head -> Predictions as written.
    """
    import torch

    from acoustic_lottery.features.store import open_features
    from acoustic_lottery.models.checkpoint import load_model
    from acoustic_lottery.models.heads import split_heads

    checkpoint, features = Path(checkpoint), Path(features)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"predict: batch_size must be an integer >= 1, found {batch_size!r}")
    model, meta = load_model(checkpoint)
    heads = [name for name, _ in model.heads]
    if isinstance(out, Mapping):
        outs = {str(h): Path(p) for h, p in out.items()}
        unknown = sorted(set(outs) - set(heads))
        if unknown or not outs:
            raise InputError(
                f"predict {checkpoint}: output heads {unknown or '(none)'} are not heads of "
                f"this model (heads: {heads})"
            )
    elif len(heads) == 1:
        outs = {heads[0]: Path(out)}
    else:
        raise InputError(
            f"predict {checkpoint}: the model has heads {heads}; name the head of each output "
            "(out={head: path}; on the command line --head and/or --out-super)"
        )

    fs = open_features(features)  # read batch by batch: memory of a batch, not the file
    if fs.shape[1] != int(meta["in_channels"]):
        raise InputError(
            f"predict: features {features} have shape {fs.shape}, expected "
            f"(N, {meta['in_channels']}, F, T) for the model {checkpoint}"
        )
    fset = fs.attrs.get("feature_set")
    if fset is not None and meta.get("feature_set") is not None and fset != meta["feature_set"]:
        raise InputError(
            f"predict: features {features} are feature_set {fset!r} but the model "
            f"{checkpoint} was trained on {meta['feature_set']!r}"
        )
    dev = resolve_device(device)
    fmt = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
    model.to(dev, memory_format=fmt)
    model.eval()
    n = len(fs)
    logits_parts: list[np.ndarray] = []
    starts = range(0, n, batch_size)
    with fs, torch.inference_mode():
        for s in progress(starts, desc=f"predict {features.name}", total=len(starts)):
            xb = torch.from_numpy(fs.read_slice(s, s + batch_size))
            xb = xb.to(dev).contiguous(memory_format=fmt)
            logits_parts.append(model(xb).float().cpu().numpy())
    k_total = sum(k for _, k in model.heads)
    all_logits = (
        np.concatenate(logits_parts) if logits_parts else np.zeros((0, k_total), np.float32)
    )
    per_head = split_heads(torch.from_numpy(all_logits), model.heads)

    results: dict[str, Predictions] = {}
    for head, path in outs.items():
        z = per_head[head]
        probs = torch.softmax(z.double(), dim=1).float().numpy()
        label = np.asarray(fs.label10 if head == "scene" else fs.label3, dtype=np.int64)
        k = z.shape[1]
        names = _head_class_names(head, k, fs.attrs)
        pred = Predictions(
            probs=probs,
            logits=z.numpy().astype(np.float32),
            label=label,
            device=fs.device,
            filename=fs.filename,
            class_names=names,
            task=head,
            source={
                "kind": "model",
                "checkpoint": str(checkpoint),
                "arch": meta.get("arch"),
                "model_task": meta.get("task"),
                "head": head,
                "epoch": meta.get("epoch"),
                "global_step": meta.get("global_step"),
                "features": str(features),
                "feature_set": fset,
                "split": fs.attrs.get("split"),
                "copy": fs.attrs.get("copy"),
            },
        )
        write_predictions(path, pred)
        results[head] = pred
    return results


def _head_class_names(head: str, k: int, attrs: Mapping[str, Any]) -> list[str]:
    """Class names of a head: from the feature file's attrs when present, else labels.py."""
    key = "scenes" if head == "scene" else "super_classes"
    names: Any = attrs.get(key)
    if isinstance(names, str):
        try:
            names = json.loads(names)
        except ValueError:
            names = None
    if isinstance(names, list | tuple) and len(names) == k:
        return [str(c) for c in names]
    default = task_class_names(head)
    if len(default) == k:
        return default
    return [f"class{i}" for i in range(k)]
