"""Two-stage fusion (report Section 2.4): 10-class scores re-weighted by a 3-class model.

P(scene | x) ∝ P10(scene | x) · P3(super(scene) | x), the D20 `eval_hybrid.py` product
P10 · P3[:, map] with the map of each scene to its super-class. D20 did not renormalise and
its log loss relied on sklearn's clipping; here every row is renormalised to sum to 1 so
the fused output is a probability distribution whose log loss means something. The
decision (argmax) is the same either way.

The core works on numpy arrays so it can be tested by hand and reused on any source of
probabilities; `fuse_predictions` is the thin wrapper on prediction files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from acoustic_lottery.errors import InputError
from acoustic_lottery.labels import super_index_map

if TYPE_CHECKING:
    from acoustic_lottery.evaluation.predict import Predictions

__all__ = ["check_same_clips", "check_probs", "fuse_predictions", "two_stage"]


def check_probs(p: np.ndarray, name: str) -> np.ndarray:
    """`p` as a float64 (N, K) array of finite non-negative scores, or InputError naming it."""
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 2:
        raise InputError(
            f"{name}: expected a 2-D (N, K) probability array, found shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        row = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise InputError(f"{name}: row {row} holds a non-finite value: {arr[row].tolist()}")
    if (arr < 0).any():
        row = int(np.flatnonzero((arr < 0).any(axis=1))[0])
        raise InputError(f"{name}: probabilities must be >= 0, row {row} is {arr[row].tolist()}")
    return arr


def _check_index_map(index_map: Sequence[int], k10: int, k3: int) -> np.ndarray:
    idx = np.asarray(list(index_map))
    if idx.ndim != 1 or idx.size != k10 or not np.issubdtype(idx.dtype, np.integer):
        raise InputError(
            f"two-stage fusion: index_map must list one integer super-class index per scene "
            f"({k10} scenes), found {list(index_map)!r}"
        )
    if idx.size and (idx.min() < 0 or idx.max() >= k3):
        raise InputError(
            f"two-stage fusion: index_map values must be in 0..{k3 - 1} (the 3-class columns), "
            f"found {idx.tolist()}"
        )
    return idx.astype(np.int64)


def two_stage(p10: np.ndarray, p3: np.ndarray, index_map: Sequence[int]) -> np.ndarray:
    """Fused (N, 10) float32 probabilities: p10 · p3[:, index_map], rows renormalised.

    index_map[j] is the super-class column of scene j (TAU: [0,2,2,0,1,1,0,1,1,2]).
    A row whose product is all zeros (the two models each give exactly 0 to the other's
    every candidate) has no defined fusion and raises InputError naming the row.
    """
    a = check_probs(p10, "two-stage fusion: 10-class probabilities")
    b = check_probs(p3, "two-stage fusion: 3-class probabilities")
    if a.shape[0] != b.shape[0]:
        raise InputError(
            f"two-stage fusion: the 10-class scores have {a.shape[0]} rows but the 3-class "
            f"scores {b.shape[0]}; both must score the same clips"
        )
    idx = _check_index_map(index_map, a.shape[1], b.shape[1])
    fused = a * b[:, idx]
    total = fused.sum(axis=1, keepdims=True)
    zero = total[:, 0] <= 0
    if zero.any():
        rows = np.flatnonzero(zero)
        raise InputError(
            f"two-stage fusion: {rows.size} row(s) have zero fused mass (first: row "
            f"{int(rows[0])}, 10-class {a[rows[0]].tolist()}, 3-class {b[rows[0]].tolist()}): "
            "the 3-class model gives probability 0 to the super-class of every scene the "
            "10-class model allows"
        )
    return (fused / total).astype(np.float32)


def check_same_clips(filenames: Sequence[np.ndarray], names: Sequence[str]) -> None:
    """Raise InputError unless every file lists the same clips in the same order.

    Fusion and ensembles combine rows position by position, so a different order would
    silently mix up clips; the message names the first differing row and both file names.
    """
    ref = np.asarray(filenames[0], dtype=object)
    for other, name in zip(filenames[1:], names[1:]):
        cur = np.asarray(other, dtype=object)
        if cur.shape != ref.shape:
            raise InputError(
                f"predictions {name}: {cur.shape[0]} clips, but {names[0]} has "
                f"{ref.shape[0]}; members must score the same clips in the same order"
            )
        diff = np.flatnonzero(cur != ref)
        if diff.size:
            i = int(diff[0])
            raise InputError(
                f"predictions {name}: clip order differs from {names[0]} at row {i}: "
                f"{cur[i]!r} vs {ref[i]!r}"
            )


def _name(pred: Predictions, default: str) -> str:
    src = pred.source or {}
    for key in ("path", "checkpoint", "name", "model"):
        if isinstance(src.get(key), str):
            return f"{default} ({src[key]})"
    return default


def fuse_predictions(
    pred10: Predictions, pred3: Predictions, index_map: Sequence[int] | None = None
) -> Predictions:
    """Two-stage fusion of a 10-class ("scene") and a 3-class ("super") prediction file.

    index_map None: derived from the class names (labels.SCENE_TO_SUPER), so a file with
    the classes in another order still fuses correctly. The result keeps the 10-class
    labels, devices and file names; it has no logits.
    """
    from acoustic_lottery.evaluation.predict import Predictions

    n10, n3 = _name(pred10, "10-class"), _name(pred3, "3-class")
    if pred10.task != "scene":
        raise InputError(f"two-stage fusion: {n10} has task {pred10.task!r}, expected 'scene'")
    if pred3.task != "super":
        raise InputError(f"two-stage fusion: {n3} has task {pred3.task!r}, expected 'super'")
    if index_map is None:
        try:
            index_map = super_index_map(pred10.class_names, pred3.class_names)
        except (KeyError, ValueError) as e:
            raise InputError(
                f"two-stage fusion: cannot map the scene classes {pred10.class_names} onto "
                f"the super-classes {pred3.class_names} ({e!r}); give index_map explicitly"
            ) from e
    elif len(index_map) != len(pred10.class_names):
        raise InputError(
            f"two-stage fusion: index_map has {len(index_map)} entries, {n10} has "
            f"{len(pred10.class_names)} classes {pred10.class_names}"
        )
    check_same_clips([pred10.filename, pred3.filename], [n10, n3])
    probs = two_stage(pred10.probs, pred3.probs, index_map)
    return Predictions(
        probs=probs,
        label=pred10.label.copy(),
        device=pred10.device.copy(),
        filename=pred10.filename.copy(),
        class_names=list(pred10.class_names),
        task="scene",
        source={
            "kind": "two_stage",
            "index_map": [int(i) for i in index_map],
            "scene": pred10.source,
            "super": pred3.source,
        },
        logits=None,
    )
