"""Per-device accuracy bars and confusion matrices from evaluation metrics JSON.

DCASE 2021 Task 1a is about device robustness: three of the nine devices (s4–s6) are
never seen in training. These plots keep that split visible — seen devices on the left,
unseen on a shaded background on the right — so a model that only fits device A shows
it at once. Input is the metrics JSON of `evaluation.metrics.evaluate_predictions`
(accuracy as a fraction in [0, 1]; drawn as percent).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from acoustic_lottery import labels
from acoustic_lottery.errors import InputError
from acoustic_lottery.io import atomic_path, read_json
from acoustic_lottery.reporting.figures import new_figure, save_figure

__all__ = ["confusion_matrix_plot", "device_bars", "read_confusion", "read_metrics"]

_MODEL_COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
)


def read_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a metrics JSON file; InputError naming the file if it is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"metrics file {path}: no such file")
    try:
        obj = read_json(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"metrics file {path}: not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise InputError(f"metrics file {path}: expected a JSON object, found {type(obj).__name__}")
    return obj


def _fraction(value: Any, where: str) -> float:
    """An accuracy of the metrics JSON (fraction) as percent; None/absent -> NaN."""
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InputError(
            f"{where}: accuracy is {value!r}; expected a fraction in [0, 1] "
            "(evaluation metrics JSON)"
        )
    return 100.0 * float(value)


def _per_device(metrics: Mapping[str, Any], where: str) -> dict[str, float]:
    per = metrics.get("per_device")
    if not isinstance(per, Mapping) or not per:
        raise InputError(f"{where}: missing or empty key 'per_device' (device -> metrics)")
    out = {}
    for device, entry in per.items():
        if not isinstance(entry, Mapping) or "accuracy" not in entry:
            raise InputError(f"{where}: key per_device[{device!r}] lacks 'accuracy'")
        out[str(device)] = _fraction(entry["accuracy"], f"{where} per_device[{device!r}]")
    return out


def device_bars(
    metrics_json_paths: Mapping[str, str | os.PathLike[str]],
    out_png: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> dict[str, Any]:
    """Accuracy per device, one bar per model within each device group, seen | unseen.

    metrics_json_paths: display name -> metrics JSON. Devices are ordered a, b, c, s1–s3
    (seen), then s4–s6 (unseen), then any others, then an "all" group with the overall
    accuracy. Returns {"models", "devices", "groups" (device or "all"), "accuracy":
    {model: [percent per group]}, "seen", "unseen", "out"}.
    """
    if not metrics_json_paths:
        raise InputError("device_bars: no metrics files given")
    per_model: dict[str, dict[str, float]] = {}
    overall: dict[str, float] = {}
    for name, path in metrics_json_paths.items():
        metrics = read_metrics(path)
        where = f"metrics file {path}"
        per_model[name] = _per_device(metrics, where)
        overall[name] = _fraction(metrics.get("accuracy"), f"{where} key 'accuracy'")

    present = {d for acc in per_model.values() for d in acc}
    unseen_set = set(labels.UNSEEN_DEVICES)
    seen = [d for d in labels.TRAIN_DEVICES if d in present]
    unseen = [d for d in labels.UNSEEN_DEVICES if d in present]
    other = sorted(present - set(labels.DEVICES))
    devices = seen + unseen + other
    groups = [*devices, "all"]
    models = list(per_model)
    accuracy = {
        m: [per_model[m].get(d, float("nan")) for d in devices] + [overall[m]] for m in models
    }

    # x positions: a gap between seen | unseen | other | all
    positions: list[float] = []
    x = 0.0
    prev_block = None
    for g in groups:
        block = (
            "seen" if g in seen else "unseen" if g in unseen_set else "all" if g == "all" else "o"
        )
        if prev_block is not None and block != prev_block:
            x += 0.6
        positions.append(x)
        x += 1.0
        prev_block = block

    n = len(models)
    width = min(0.8 / n, 0.3)
    fig = new_figure(max(7.0, 0.75 * len(groups) * max(1.0, n / 2.5) + 2.0), 4.6)
    ax = fig.subplots()
    if unseen:
        lo = positions[groups.index(unseen[0])] - 0.5
        hi = positions[groups.index(unseen[-1])] + 0.5
        ax.axvspan(lo, hi, color="0.9", zorder=0)
    for i, m in enumerate(models):
        offs = [p + (i - (n - 1) / 2) * width for p in positions]
        vals = accuracy[m]
        bars = ax.bar(
            offs,
            vals,
            width=width * 0.95,
            color=_MODEL_COLORS[i % len(_MODEL_COLORS)],
            label=m,
            zorder=2,
        )
        if n <= 4:
            for b, v in zip(bars, vals):
                if not np.isnan(v):
                    ax.text(
                        b.get_x() + b.get_width() / 2,
                        v + 1,
                        f"{v:.1f}",
                        ha="center",
                        va="bottom",
                        fontsize=6.5,
                        rotation=90,
                    )
    ax.set_xticks(positions)
    ax.set_xticklabels(groups)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 112)
    ax.set_yticks(range(0, 101, 20))
    ax.grid(True, axis="y", alpha=0.3, zorder=0)
    ax.set_xlim(positions[0] - 0.7, positions[-1] + 0.7)
    for block, devs in (("seen devices", seen), ("unseen devices", unseen)):
        if devs:
            mid = (positions[groups.index(devs[0])] + positions[groups.index(devs[-1])]) / 2
            ax.text(mid, 108, block, ha="center", va="center", fontsize=9, color="0.3")
    ax.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=min(n, 4), fontsize=8.5, frameon=False
    )
    ax.set_title(title or "Accuracy per recording device", fontsize=12)
    fig.tight_layout()
    out = save_figure(fig, out_png)
    return {
        "models": models,
        "devices": devices,
        "groups": groups,
        "positions": positions,
        "accuracy": accuracy,
        "seen": seen,
        "unseen": unseen,
        "out": str(out),
    }


def read_confusion(metrics: Mapping[str, Any], where: str) -> tuple[np.ndarray, list[str]]:
    """(matrix rows=true, cols=predicted; class names) from either layout of the JSON.

    evaluate_predictions writes {"confusion_matrix": {"matrix", "class_names", "rows":
    "true", ...}}; a flat {"confusion_matrix": [[...]], "class_names": [...]} is accepted.
    """
    cm = metrics.get("confusion_matrix")
    if isinstance(cm, Mapping):
        if cm.get("rows", "true") != "true":
            raise InputError(
                f"{where}: confusion_matrix.rows is {cm.get('rows')!r}; expected 'true'"
            )
        matrix, names = cm.get("matrix"), cm.get("class_names")
        key = "confusion_matrix.matrix"
    else:
        matrix, names = cm, metrics.get("class_names")
        key = "confusion_matrix"
    if matrix is None:
        raise InputError(f"{where}: missing key 'confusion_matrix'")
    try:
        m = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: key {key!r} is not a numeric matrix ({exc})") from exc
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise InputError(f"{where}: key {key!r} has shape {m.shape}; expected square (K, K)")
    if not np.isfinite(m).all() or (m < 0).any():
        raise InputError(f"{where}: key {key!r} has negative or non-finite counts")
    if names is None:
        names = [str(i) for i in range(m.shape[0])]
    if not isinstance(names, list) or len(names) != m.shape[0]:
        raise InputError(
            f"{where}: class_names {names!r} do not match the {m.shape[0]}×{m.shape[0]} matrix"
        )
    return m, [str(c) for c in names]


def write_confusion_records(
    metrics_json: str | os.PathLike[str], out_csv: str | os.PathLike[str]
) -> int:
    """The confusion matrix as one (actual, predicted) line per clip, the data layout of
    DVC's `confusion` plot template (`dvc plots show`); returns the number of lines."""
    counts, names = read_confusion(read_metrics(metrics_json), f"metrics file {metrics_json}")
    lines = ["actual,predicted"]
    for i, j in zip(*np.nonzero(counts)):
        lines += [f"{names[i]},{names[j]}"] * int(counts[i, j])
    with atomic_path(Path(out_csv), suffix=".csv") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines) - 1


def confusion_matrix_plot(
    metrics_json: str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> dict[str, Any]:
    """Row-normalised confusion matrix (recall per true class, percent), counts kept.

    Returns {"class_names", "counts", "percent" (row-normalised), "accuracy", "out"}.
    """
    metrics = read_metrics(metrics_json)
    where = f"metrics file {metrics_json}"
    counts, names = read_confusion(metrics, where)
    sums = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        percent = np.where(sums > 0, 100.0 * counts / np.where(sums > 0, sums, 1), np.nan)
    total = counts.sum()
    accuracy = float(np.trace(counts) / total * 100) if total else float("nan")

    k = len(names)
    side = max(4.5, 0.62 * k + 2.6)
    fig = new_figure(side + 1.0, side)
    ax = fig.subplots()
    im = ax.imshow(np.nan_to_num(percent), cmap="Blues", vmin=0, vmax=100)
    fontsize = 8 if k <= 10 else 6
    for i in range(k):
        for j in range(k):
            if np.isnan(percent[i, j]):
                continue
            v = percent[i, j]
            ax.text(
                j,
                i,
                f"{v:.0f}",
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if v > 55 else "black",
            )
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(names, rotation=45, ha="right", rotation_mode="anchor", fontsize=8.5)
    ax.set_yticklabels(names, fontsize=8.5)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("% of the true class", fontsize=8.5)
    cbar.ax.tick_params(labelsize=7.5)
    heading = title or f"Confusion matrix ({metrics.get('task', 'scene')})"
    ax.set_title(f"{heading}\naccuracy {accuracy:.1f} %, n = {int(total)}", fontsize=11)
    fig.tight_layout()
    out = save_figure(fig, out_png)
    return {
        "class_names": names,
        "counts": counts,
        "percent": percent,
        "accuracy": accuracy,
        "out": str(out),
    }
