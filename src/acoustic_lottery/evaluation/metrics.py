"""Metrics of a prediction file: the numbers of Table 1 and their breakdowns.

Log loss follows the DCASE evaluation (multi-class log loss) on *renormalised*
probabilities: each row is divided by its sum, then clipped to [1e-15, 1]. Why: the
two-stage fusion P10·P3[map] does not sum to one, and D20 relied on sklearn's implicit
handling; renormalising explicitly makes fused and plain systems comparable. On
probabilities that already sum to one it equals scikit-learn's `log_loss`
(tests/evaluation/test_metrics.py). The confusion matrix is a bincount, held equal to
scikit-learn's `confusion_matrix` by the same tests: importing scikit-learn costs 1.5 s,
paid by every evaluate and row job of the DAG for a one-line count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from acoustic_lottery import labels
from acoustic_lottery.errors import InputError
from acoustic_lottery.evaluation.predict import Predictions

__all__ = ["EPS", "evaluate_predictions", "log_loss", "renormalise"]

EPS = 1e-15


def renormalise(probs: np.ndarray, where: str = "predictions") -> np.ndarray:
    """Rows divided by their sums, clipped to [EPS, 1] (float64)."""
    p = np.asarray(probs, dtype=np.float64)
    if not np.isfinite(p).all():
        i = int(np.flatnonzero(~np.isfinite(p).all(axis=1))[0])
        raise InputError(f"{where}: 'probs' row {i} has a non-finite value: {p[i].tolist()}")
    if (p < 0).any():
        i = int(np.flatnonzero((p < 0).any(axis=1))[0])
        raise InputError(f"{where}: 'probs' row {i} has a negative value: {p[i].tolist()}")
    sums = p.sum(axis=1, keepdims=True)
    if (sums <= 0).any():
        i = int(np.flatnonzero(sums[:, 0] <= 0)[0])
        raise InputError(f"{where}: 'probs' row {i} sums to 0; cannot renormalise")
    return np.clip(p / sums, EPS, 1.0)


def log_loss(probs: np.ndarray, label: np.ndarray) -> float:
    """Mean −log p[true] over rows of renormalised, clipped probabilities."""
    p = renormalise(probs)
    return float(-np.mean(np.log(p[np.arange(len(label)), label])))


def _group(p: np.ndarray, correct: np.ndarray, label: np.ndarray, sel: np.ndarray) -> dict:
    n = int(sel.sum())
    if n == 0:
        return {"n": 0, "accuracy": None, "log_loss": None}
    return {
        "n": n,
        "accuracy": float(correct[sel].mean()),
        "log_loss": float(-np.mean(np.log(p[sel][np.arange(n), label[sel]]))),
    }


def _device_order(devices: np.ndarray) -> list[str]:
    present = {str(d) for d in devices}
    known = [d for d in labels.DEVICES if d in present]
    return known + sorted(present - set(known))


def evaluate_predictions(
    pred: Predictions,
    unseen_devices: Sequence[str] = labels.UNSEEN_DEVICES,
    *,
    name: str | None = None,
) -> dict[str, Any]:
    """Accuracy, log loss, per-device/per-class breakdowns, seen vs unseen, confusion matrix.

    Unlabelled rows (label −1) make it an InputError: metrics on a test split without
    labels would silently be wrong. `name` (e.g. the file path) prefixes error messages.
    """
    where = f"predictions {name}" if name else f"predictions (task {pred.task!r})"
    pred.validate(where)
    n, k = pred.probs.shape
    if n == 0:
        raise InputError(f"{where}: no rows to evaluate")
    label = pred.label
    if (label < 0).any():
        count = int((label < 0).sum())
        first = str(pred.filename[int(np.flatnonzero(label < 0)[0])])
        raise InputError(
            f"{where}: {count} of {n} rows are unlabelled (label -1), first {first!r}; "
            "metrics need labelled predictions"
        )
    p = renormalise(pred.probs, where)
    predicted = np.argmax(pred.probs, axis=1)
    correct = predicted == label
    everything = np.ones(n, dtype=bool)
    overall = _group(p, correct, label, everything)

    per_class = {}
    class_acc = []
    for c, name in enumerate(pred.class_names):
        g = _group(p, correct, label, label == c)
        per_class[name] = g
        if g["n"]:
            class_acc.append(g["accuracy"])

    devices = pred.device.astype(str)
    per_device = {d: _group(p, correct, label, devices == d) for d in _device_order(devices)}
    unseen_mask = np.isin(devices, list(unseen_devices))

    confusion = np.bincount(label * k + predicted, minlength=k * k).reshape(k, k)

    return {
        "task": pred.task,
        "n": n,
        "accuracy": overall["accuracy"],
        "log_loss": overall["log_loss"],
        "macro_class_accuracy": float(np.mean(class_acc)),
        "per_class": per_class,
        "per_device": per_device,
        "seen": _group(p, correct, label, ~unseen_mask),
        "unseen": _group(p, correct, label, unseen_mask),
        "unseen_devices": list(unseen_devices),
        "confusion_matrix": {
            "class_names": list(pred.class_names),
            "rows": "true",
            "cols": "predicted",
            "matrix": confusion.tolist(),
        },
        "source": pred.source,
    }
