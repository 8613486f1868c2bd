"""Uncertainty of accuracy and log loss: a cluster bootstrap over recordings.

Why clusters: an evaluation clip is one recording (one scene segment) captured by one
device. TAU records the same segment simultaneously with several devices (the embedded
set: every one of its 40 evaluation recordings on all 9 devices), so the clips of one
recording share their acoustic content and their difficulty: if a model confuses the
recording, it tends to confuse it on every device. Treating the 360 clips as 360
independent draws would understate the variance; the independent unit is the recording.
The bootstrap therefore draws recordings with replacement and takes *all* clips of each
drawn recording (a cluster, or block, bootstrap), and reports percentile intervals.
A recording is `scene-city-location-segment` of the TAU file name: the device is
dropped, and in TAU 2022 also the sub-segment (its 1-s clips are cut from one 10-s
recording; `recording_ids`).

Paired differences (`paired_bootstrap`) resample the *same* recordings for both
systems, so the content shared by the two systems' errors cancels and the interval of
B − A can be much narrower than the two separate intervals suggest.

Resolution: the intervals are limited by the number of recordings C, not of clips N.
An accuracy p has a 95 % half-width between about 1.96·sqrt(p(1−p)/N) (the clips of a
recording independent) and 1.96·sqrt(p(1−p)/C) (the devices of a recording always
agree): for p = 0.5, ±5 points with N = 360 and ±15 points with C = 40. A paired
difference smaller than the half-width of its own interval is not distinguished from 0.
`comparisons` reports the median half-width of its paired intervals as the smallest
difference the table resolves.

All resampling uses `numpy.random.default_rng(seed)`; for a fixed seed, the same number
of recordings and `n_boot`, every statistic (accuracy, log loss, either side of a pair)
is computed on the same resampled recordings, and the result is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from acoustic_lottery.errors import InputError

__all__ = [
    "ClipScores",
    "bootstrap_settings",
    "clip_scores",
    "cluster_bootstrap",
    "group_gap_bootstrap",
    "paired_bootstrap",
    "recording_id",
    "recording_ids",
]

#: Defaults of the `statistics` config section (workflow/schemas/config.schema.yaml).
DEFAULTS: dict[str, Any] = {"n_boot": 2000, "seed": 0, "level": 0.95}


class ClipScores(NamedTuple):
    """Per-clip scores: `correct` (bool, top-1 hit) and `nll` (−log p[true], renormalised)."""

    correct: np.ndarray
    nll: np.ndarray


def recording_id(filename: str) -> str:
    """`scene-city-location-segment` of a TAU 2020 or 2022 clip name (directory ignored).

    `audio/airport-lisbon-1000-40000-a.wav` -> `airport-lisbon-1000-40000`;
    `airport-lisbon-1000-40000-3-s2.wav` (TAU 2022) -> `airport-lisbon-1000-40000`.
    ValueError if the name is not a TAU clip name.
    """
    from acoustic_lottery.data.tau import parse_clip_name

    c = parse_clip_name(str(filename))
    return f"{c.scene}-{c.city}-{c.location}-{c.segment}"


def recording_ids(filenames: Sequence[str] | np.ndarray, where: str = "predictions") -> np.ndarray:
    """The recording (cluster) of every clip, from its file name; InputError names a bad one."""
    out = []
    for i, name in enumerate(np.asarray(filenames, dtype=object).tolist()):
        try:
            out.append(recording_id(name))
        except ValueError as exc:
            raise InputError(
                f"{where}: row {i}: cannot derive the recording of the clip: {exc}"
            ) from exc
    return np.asarray(out, dtype=object)


def clip_scores(pred: Any) -> ClipScores:
    """Per-clip top-1 hit and −log p[true] of a labelled `Predictions` (as `evaluate`)."""
    from acoustic_lottery.evaluation.metrics import renormalise

    label = np.asarray(pred.label, dtype=np.int64)
    if (label < 0).any():
        raise InputError("bootstrap: predictions have unlabelled rows (label -1)")
    p = renormalise(pred.probs)
    correct = np.argmax(pred.probs, axis=1) == label
    nll = -np.log(p[np.arange(len(label)), label])
    return ClipScores(correct, nll)


def bootstrap_settings(settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """`{n_boot, seed, level}` with defaults filled and checked."""
    s = {**DEFAULTS, **(settings or {})}
    unknown = sorted(set(s) - set(DEFAULTS))
    if unknown:
        raise InputError(f"statistics: unknown key(s) {unknown} (allowed: {sorted(DEFAULTS)})")
    n_boot, seed, level = s["n_boot"], s["seed"], s["level"]
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise InputError(f"statistics.n_boot: expected an integer >= 1, found {n_boot!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"statistics.seed: expected an integer >= 0, found {seed!r}")
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise InputError(f"statistics.level: expected a number in (0, 1), found {level!r}")
    return {"n_boot": n_boot, "seed": seed, "level": float(level)}


def _codes(clusters: Sequence[Any] | np.ndarray, n: int) -> tuple[np.ndarray, int]:
    clusters = np.asarray(clusters)
    if clusters.shape != (n,):
        raise InputError(f"bootstrap: {clusters.shape} cluster ids for {n} clips")
    if n == 0:
        raise InputError("bootstrap: no clips")
    _, codes = np.unique(clusters.astype(str), return_inverse=True)
    return codes.reshape(-1), int(codes.max()) + 1


def _resampled_means(
    values: np.ndarray, codes: np.ndarray, n_clusters: int, n_boot: int, seed: int
) -> np.ndarray:
    """(n_boot, m) means of the (N, m) per-clip values over resampled clusters.

    Each replicate draws `n_clusters` clusters with replacement; a cluster drawn k times
    contributes all its clips k times. Vectorised: per-cluster sums and counts, and a
    (n_boot, C) matrix of draw counts.
    """
    sums = np.zeros((n_clusters, values.shape[1]))
    np.add.at(sums, codes, values)
    sizes = np.bincount(codes, minlength=n_clusters).astype(np.float64)
    counts = _draw_counts(n_clusters, n_boot, seed)
    return (counts @ sums) / (counts @ sizes)[:, None]


def _draw_counts(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, C) times each cluster is drawn in each replicate (C draws with replacement)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    flat = draws + n_clusters * np.arange(n_boot)[:, None]
    return (
        np.bincount(flat.ravel(), minlength=n_boot * n_clusters)
        .reshape(n_boot, n_clusters)
        .astype(np.float64)
    )


def _interval(samples: np.ndarray, level: float) -> np.ndarray:
    """(2, m) percentile interval of (n_boot, m) replicates."""
    alpha = (1.0 - level) / 2.0
    return np.quantile(samples, [alpha, 1.0 - alpha], axis=0)


def _check_scores(scores: ClipScores, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    correct = np.asarray(scores[0], dtype=np.float64).reshape(-1)
    nll = np.asarray(scores[1], dtype=np.float64).reshape(-1)
    if correct.shape != nll.shape or (n is not None and correct.shape != (n,)):
        raise InputError(
            f"bootstrap: {correct.shape[0]} correct flags and {nll.shape[0]} log losses"
            + (f" for {n} clips" if n is not None else "")
        )
    if not np.isfinite(nll).all():
        raise InputError("bootstrap: non-finite per-clip log loss")
    return correct, nll


def cluster_bootstrap(
    scores: ClipScores | tuple[np.ndarray, np.ndarray],
    clusters: Sequence[Any] | np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Accuracy (%) and log loss with percentile intervals over resampled recordings.

    scores: per-clip (correct, nll); clusters: the recording of each clip (any hashable
    ids, e.g. `recording_ids(pred.filename)`). Returns a JSON-able dict: accuracy,
    accuracy_ci [lo, hi] (percent), log_loss, log_loss_ci, n_clips, n_recordings and
    bootstrap {n_boot, seed, level, unit: "recording"}.
    """
    s = bootstrap_settings({"n_boot": n_boot, "seed": seed, "level": level})
    correct, nll = _check_scores(scores)
    codes, n_clusters = _codes(clusters, correct.shape[0])
    values = np.stack([100.0 * correct, nll], axis=1)
    reps = _resampled_means(values, codes, n_clusters, s["n_boot"], s["seed"])
    lo_hi = _interval(reps, s["level"])
    point = values.mean(axis=0)
    return {
        "accuracy": float(point[0]),
        "accuracy_ci": [float(lo_hi[0, 0]), float(lo_hi[1, 0])],
        "log_loss": float(point[1]),
        "log_loss_ci": [float(lo_hi[0, 1]), float(lo_hi[1, 1])],
        "n_clips": int(correct.shape[0]),
        "n_recordings": n_clusters,
        "bootstrap": {**s, "unit": "recording"},
    }


def paired_bootstrap(
    a: ClipScores | tuple[np.ndarray, np.ndarray],
    b: ClipScores | tuple[np.ndarray, np.ndarray],
    clusters: Sequence[Any] | np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """B − A in accuracy points and in log loss, each with its percentile interval.

    a, b: per-clip scores of two systems on the same clips in the same order; both are
    averaged over the *same* resampled recordings in every replicate. A negative log
    loss difference means B is better. `*_excludes_zero`: the interval lies entirely on
    one side of 0. `*_half_width`: half the interval's width, the smallest difference of
    this size that the pair resolves.
    """
    s = bootstrap_settings({"n_boot": n_boot, "seed": seed, "level": level})
    ca, la = _check_scores(a)
    cb, lb = _check_scores(b, ca.shape[0])
    codes, n_clusters = _codes(clusters, ca.shape[0])
    diff = np.stack([100.0 * (cb - ca), lb - la], axis=1)
    reps = _resampled_means(diff, codes, n_clusters, s["n_boot"], s["seed"])
    lo_hi = _interval(reps, s["level"])
    point = diff.mean(axis=0)
    out = _differences(point, lo_hi)
    out.update(
        a_accuracy=float(100.0 * ca.mean()),
        b_accuracy=float(100.0 * cb.mean()),
        a_log_loss=float(la.mean()),
        b_log_loss=float(lb.mean()),
        n_clips=int(ca.shape[0]),
        n_recordings=n_clusters,
        bootstrap={**s, "unit": "recording"},
    )
    return out


def _differences(point: Sequence[float], lo_hi: np.ndarray) -> dict[str, Any]:
    """accuracy_diff / log_loss_diff with their interval, whether it excludes 0, and its
    half-width (the smallest difference of this size the pair resolves)."""
    out: dict[str, Any] = {}
    for j, key in enumerate(("accuracy_diff", "log_loss_diff")):
        lo, hi = float(lo_hi[0, j]), float(lo_hi[1, j])
        out[key] = float(point[j])
        out[f"{key}_ci"] = [lo, hi]
        out[f"{key}_excludes_zero"] = bool(lo > 0 or hi < 0)
        out[f"{key}_half_width"] = (hi - lo) / 2.0
    return out


def group_gap_bootstrap(
    scores: ClipScores | tuple[np.ndarray, np.ndarray],
    clusters: Sequence[Any] | np.ndarray,
    in_a: np.ndarray,
    in_b: np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """One system's accuracy (and log loss) on clip group B minus group A, with intervals.

    Why: a device gap (unseen s4-s6 against the seen b, c, s1-s3) compares different
    clips of the *same* recordings, so it is paired by recording, not by clip. Every
    replicate draws recordings with replacement and takes the ratio of sums within each
    group over the drawn recordings (each group's mean over its own clips), then B − A.
    Keys as `paired_bootstrap` (accuracy_diff, its _ci, _excludes_zero, _half_width,
    a_accuracy, b_accuracy, ...); n_clips counts the clips of both groups.
    """
    s = bootstrap_settings({"n_boot": n_boot, "seed": seed, "level": level})
    correct, nll = _check_scores(scores)
    n = correct.shape[0]
    in_a = np.asarray(in_a, dtype=bool).reshape(-1)
    in_b = np.asarray(in_b, dtype=bool).reshape(-1)
    if in_a.shape != (n,) or in_b.shape != (n,):
        raise InputError(f"bootstrap: group masks of {in_a.shape} / {in_b.shape} for {n} clips")
    if not in_a.any() or not in_b.any():
        raise InputError("bootstrap: a device group has no clips")
    if (in_a & in_b).any():
        raise InputError("bootstrap: the two groups share clips")
    codes, n_clusters = _codes(clusters, n)
    values = np.stack(
        [
            in_a * 100.0 * correct,
            in_a * nll,
            in_a * 1.0,
            in_b * 100.0 * correct,
            in_b * nll,
            in_b * 1.0,
        ],
        axis=1,
    )
    sums = np.zeros((n_clusters, values.shape[1]))
    np.add.at(sums, codes, values)
    totals = _draw_counts(n_clusters, s["n_boot"], s["seed"]) @ sums  # (n_boot, 6)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc_a, ll_a = totals[:, 0] / totals[:, 2], totals[:, 1] / totals[:, 2]
        acc_b, ll_b = totals[:, 3] / totals[:, 5], totals[:, 4] / totals[:, 5]
    reps = np.stack([acc_b - acc_a, ll_b - ll_a], axis=1)
    reps = reps[np.isfinite(reps).all(axis=1)]  # a replicate that drew no clip of a group
    lo_hi = _interval(reps, s["level"])
    whole = sums.sum(axis=0)
    point = [
        whole[3] / whole[5] - whole[0] / whole[2],
        whole[4] / whole[5] - whole[1] / whole[2],
    ]
    out = _differences(point, lo_hi)
    out.update(
        a_accuracy=float(whole[0] / whole[2]),
        b_accuracy=float(whole[3] / whole[5]),
        a_log_loss=float(whole[1] / whole[2]),
        b_log_loss=float(whole[4] / whole[5]),
        n_clips=int(in_a.sum() + in_b.sum()),
        n_recordings=n_clusters,
        bootstrap={**s, "unit": "recording"},
    )
    return out
