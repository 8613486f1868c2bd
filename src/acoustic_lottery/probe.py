"""A linear probe of how hard a data set is, per device group.

Why: the CNNs of Table 1 take minutes to train and mix the difficulty of the data with
their own training budget. A probe that takes seconds measures the data alone: a
multinomial logistic regression on simple per-clip statistics (the mean and the standard
deviation over time of every mel band of the log-mel channel), fitted on the training
split and scored on the evaluation split, per device group:

* ``a``: the reference device that dominates the training split;
* ``seen``: b, c, s1-s3 (in the training split, on a fraction of its segments);
* ``unseen``: s4-s6 (evaluation only);
* ``all``: every evaluation clip.

The fit is deterministic (numpy only, full batch): features standardised with the
training split's mean and standard deviation, then the mean cross-entropy plus
``l2 / 2 * ||W||^2`` (the bias is not penalised) minimised by accelerated gradient
descent with adaptive restart, at the step 1/L of the loss's Lipschitz bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from acoustic_lottery.errors import InputError
from acoustic_lottery.labels import DEVICES, TRAIN_DEVICES, UNSEEN_DEVICES

__all__ = [
    "DEVICE_GROUPS",
    "FORMAT",
    "LogisticRegression",
    "clip_statistics",
    "fit_logistic",
    "probe",
    "probe_table",
]

FORMAT = "acoustic-lottery-probe/1"
#: Device groups of the report, in table order.
DEVICE_GROUPS: dict[str, tuple[str, ...]] = {
    "a": ("a",),
    "seen": tuple(d for d in TRAIN_DEVICES if d != "a"),
    "unseen": tuple(UNSEEN_DEVICES),
    "all": tuple(DEVICES),
}


def clip_statistics(x: np.ndarray, channel: int = 0) -> np.ndarray:
    """(N, C, F, T) features -> (N, 2F): mean over time of each band, then its std."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise InputError(f"features must be 4-D (N, C, F, T), found shape {x.shape}")
    if not 0 <= channel < x.shape[1]:
        raise InputError(f"channel {channel} out of range: the features have {x.shape[1]}")
    bands = x[:, channel].astype(np.float64)
    return np.concatenate([bands.mean(axis=2), bands.std(axis=2)], axis=1)


@dataclass(frozen=True)
class LogisticRegression:
    """A fitted standardised multinomial logistic regression."""

    mean: np.ndarray  # (D,) of the training features
    scale: np.ndarray  # (D,)
    weights: np.ndarray  # (D, K)
    bias: np.ndarray  # (K,)
    iterations: int
    converged: bool

    def logits(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.scale) @ self.weights + self.bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(self.logits(x), axis=1)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    l2: float = 1e-3,
    max_iter: int = 5000,
    tol: float = 1e-5,
) -> LogisticRegression:
    """Fit on features `x` (N, D) and labels `y` (N,) in [0, n_classes).

    Stops when the largest gradient entry is below `tol` (`converged`) or after
    `max_iter` steps. The same inputs give the same model, bit for bit.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise InputError(f"expected features (N, D) and N labels, got {x.shape} and {y.shape}")
    if y.min() < 0 or y.max() >= n_classes:
        raise InputError(f"labels must lie in [0, {n_classes}), found {y.min()}..{y.max()}")
    if not l2 > 0:
        raise InputError(f"l2 must be positive, got {l2}")
    n, d = x.shape
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    z = np.concatenate([(x - mean) / scale, np.ones((n, 1))], axis=1)  # last column: bias
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), y] = 1.0
    # The softmax cross-entropy's Hessian is at most 1/2 (Z^T Z / N) per class.
    lipschitz = 0.5 * float(np.linalg.eigvalsh(z.T @ z / n)[-1]) + l2
    step = 1.0 / lipschitz
    penalty = np.ones((d + 1, 1))
    penalty[-1] = 0.0  # no penalty on the bias

    def loss(w: np.ndarray) -> float:
        logits = z @ w
        logits -= logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1))
        nll = float(np.mean(log_norm - logits[np.arange(n), y]))
        return nll + 0.5 * l2 * float(np.sum(penalty * w * w))

    def grad(w: np.ndarray) -> np.ndarray:
        return z.T @ (_softmax(z @ w) - onehot) / n + l2 * penalty * w

    w = np.zeros((d + 1, n_classes))
    v, t = w.copy(), 1.0
    converged = False
    iterations = 0
    loss_w = loss(w)
    while iterations < max_iter:
        iterations += 1
        grad_v = grad(v)
        if float(np.max(np.abs(grad_v))) < tol:
            w, converged = v, True
            break
        w_next = v - step * grad_v
        loss_next = loss(w_next)
        if loss_next > loss_w:  # adaptive restart: momentum overshot, drop it
            v, t = w.copy(), 1.0
            continue
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        v = w_next + ((t - 1.0) / t_next) * (w_next - w)
        w, t, loss_w = w_next, t_next, loss_next
    return LogisticRegression(mean, scale, w[:-1], w[-1], iterations, converged)


def _accuracy(pred: np.ndarray, y: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    clips = int(mask.sum())
    correct = int((pred[mask] == y[mask]).sum())
    return {"clips": clips, "correct": correct, "accuracy": correct / clips if clips else None}


def probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    devices_eval: Sequence[str],
    n_classes: int,
    l2: float = 1e-3,
) -> dict[str, Any]:
    """Fit on the training statistics; accuracy on the evaluation split per device group.

    `x_*` are per-clip feature vectors (`clip_statistics`); `devices_eval` names each
    evaluation clip's device. Returns the report's JSON-ready dict (groups, devices,
    training accuracy, chance, the fit's iterations).
    """
    model = fit_logistic(x_train, y_train, n_classes, l2=l2)
    y_eval = np.asarray(y_eval, dtype=np.int64)
    devices = np.asarray([str(d) for d in devices_eval])
    if len(devices) != len(y_eval):
        raise InputError(f"{len(devices)} devices for {len(y_eval)} evaluation clips")
    pred = model.predict(x_eval)
    groups = {
        name: {"devices": list(members), **_accuracy(pred, y_eval, np.isin(devices, members))}
        for name, members in DEVICE_GROUPS.items()
    }
    present = [d for d in DEVICES if d in set(devices)] + sorted(set(devices) - set(DEVICES))
    return {
        "format": FORMAT,
        "features": "mean and std over time of each band of channel 0",
        "dimensions": int(np.asarray(x_train).shape[1]),
        "classes": n_classes,
        "chance": 1.0 / n_classes,
        "l2": l2,
        "iterations": model.iterations,
        "converged": model.converged,
        "train": {
            "clips": len(y_train),
            "accuracy": float(np.mean(model.predict(x_train) == np.asarray(y_train))),
        },
        "groups": groups,
        "devices": {d: _accuracy(pred, y_eval, devices == d) for d in present},
    }


def probe_table(report: dict[str, Any]) -> str:
    """A small Markdown table of a probe report: one line per device group."""
    lines = [
        "| group | devices | clips | accuracy (%) |",
        "|:---|:---|---:|---:|",
    ]
    for name, g in report["groups"].items():
        acc = "n/a" if g["accuracy"] is None else f"{100 * g['accuracy']:.1f}"
        lines.append(f"| {name} | {', '.join(g['devices'])} | {g['clips']} | {acc} |")
    lines.append(
        f"\ntrain accuracy {100 * report['train']['accuracy']:.1f} % on "
        f"{report['train']['clips']} clips; chance {100 * report['chance']:.1f} %"
    )
    return "\n".join(lines)
