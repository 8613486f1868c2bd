"""Spectrum correction (Nguyen et al. 2020; report §2.1, D20).

Devices b, c, s1–s3 recorded the same scenes as device a at the same time. For each
device d ≠ a, a per-STFT-bin coefficient c_d(f) ≈ |X_d(f)| / |X_a(f)| is estimated from
up to `max_pairs` time-aligned pairs of training clips (same identifier and segment,
plus the subsegment of TAU22: the file name without its device suffix). Device-a
training clips then get their STFT multiplied by the average coefficient of the other
training devices, which makes them sound like "an average other device"; the extractor
computes mel/log/min–max from the corrected STFT as usual.

D20's script averaged the coefficients of only the last device (s3) because of an
indexing bug; `correction_gain` averages all of them, as the method describes.

The coefficients are their own artifact (`save_coefficients`, an .npz readable with
`allow_pickle=False`), so the correction can be inspected and reused.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from acoustic_lottery.errors import InputError
from acoustic_lottery.io import progress, write_npz
from acoustic_lottery.labels import DEVICES

log = logging.getLogger(__name__)

#: Devices whose coefficients are averaged for the correction of device-a clips.
CORRECTION_DEVICES: tuple[str, ...] = ("b", "c", "s1", "s2", "s3")
REFERENCE_DEVICE = "a"
METHODS: tuple[str, ...] = ("ratio_of_means", "mean_of_ratios")
FORMAT = "acoustic-lottery/speccorr/1"

Loader = Callable[[str, int, "float | None"], np.ndarray]


def recording_key(filename: str, device: str) -> str:
    """Name of the recording a clip belongs to: its file stem without '-<device>'.

    Equal keys mean the same identifier, segment (and TAU22 subsegment): the clips
    were recorded simultaneously by different devices.
    """
    stem = Path(str(filename)).stem
    suffix = f"-{device}"
    if not stem.endswith(suffix):
        raise InputError(
            f"spectrum correction: file name {filename!r} does not end with its device "
            f"suffix {suffix!r}"
        )
    return stem[: -len(suffix)]


def _device_order(devices: Iterable[str]) -> list[str]:
    known = {d: i for i, d in enumerate(DEVICES)}
    return sorted(set(devices), key=lambda d: (known.get(d, len(known)), d))


def find_pairs(
    meta: Any, *, reference: str = REFERENCE_DEVICE, devices: Sequence[str] | None = None
) -> dict[str, list[tuple[str, str, str]]]:
    """All time-aligned (key, reference path, device path) pairs per device, sorted by key.

    `meta` is a split table with columns filename, path, device. `devices` defaults to
    every device in the table other than the reference that has at least one pair (a
    device without any is skipped with a warning); a requested device without pairs is
    an error.
    """
    for col in ("filename", "path", "device"):
        if col not in meta.columns:
            raise InputError(f"spectrum correction: split table lacks column {col!r}")
    by_device: dict[str, dict[str, str]] = {}
    for filename, path, device in zip(meta["filename"], meta["path"], meta["device"]):
        key = recording_key(filename, device)
        by_device.setdefault(str(device), {})[key] = str(path)
    if reference not in by_device:
        raise InputError(
            f"spectrum correction: no clip of reference device {reference!r} in the split "
            f"(devices found: {_device_order(by_device)})"
        )
    wanted = (
        [d for d in _device_order(by_device) if d != reference]
        if devices is None
        else list(devices)
    )
    ref = by_device[reference]
    pairs: dict[str, list[tuple[str, str, str]]] = {}
    for device in wanted:
        other = by_device.get(device, {})
        keys = sorted(set(ref) & set(other))
        if not keys and devices is None:
            log.warning(
                "spectrum correction: device %s has no clip time-aligned with a device-%s "
                "clip; it gets no coefficient",
                device,
                reference,
            )
            continue
        if not keys:
            raise InputError(
                f"spectrum correction: no time-aligned pair of devices {reference!r} and "
                f"{device!r} (same identifier and segment) in the split"
            )
        pairs[device] = [(k, ref[k], other[k]) for k in keys]
    if not pairs:
        raise InputError(
            f"spectrum correction: no clip of another device is time-aligned with a "
            f"device-{reference!r} clip (same identifier and segment) in the split"
        )
    return pairs


def select_pairs(
    pairs: Mapping[str, Sequence[tuple[str, str, str]]], *, max_pairs: int, seed: int
) -> dict[str, list[tuple[str, str, str]]]:
    """Up to `max_pairs` pairs per device, drawn without replacement under `seed`.

    Each device draws from its own generator (seed, device), so adding a device does not
    change the pairs of the others.
    """
    if max_pairs < 1:
        raise InputError(f"spectrum correction: max_pairs must be >= 1, found {max_pairs}")
    out: dict[str, list[tuple[str, str, str]]] = {}
    for device, items in pairs.items():
        items = list(items)
        if len(items) <= max_pairs:
            out[device] = items
            continue
        code = int.from_bytes(device.encode("utf-8"), "little")
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), code]))
        chosen = np.sort(rng.choice(len(items), size=max_pairs, replace=False))
        out[device] = [items[i] for i in chosen]
    return out


def stft_magnitude(y: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """|STFT| (n_fft//2+1, frames), Hann window, centred with reflect padding (D20)."""
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if y.size <= n_fft // 2:
        raise InputError(
            f"spectrum correction: clip of {y.size} samples is too short for n_fft={n_fft}"
        )
    return np.abs(
        librosa.stft(y, n_fft=n_fft, hop_length=hop, window="hann", center=True, pad_mode="reflect")
    )


def _default_loader(path: str, sample_rate: int, seconds: float | None) -> np.ndarray:
    from acoustic_lottery.data.audio import load_audio

    return load_audio(path, sample_rate=sample_rate, seconds=seconds)


def estimate_from_pairs(
    pairs: Mapping[str, Sequence[tuple[str, str, str]]],
    *,
    n_fft: int = 2048,
    hop: int = 1024,
    sample_rate: int = 44100,
    seconds: float | None = None,
    method: str = "ratio_of_means",
    eps: float = 1e-8,
    loader: Loader | None = None,
) -> dict[str, np.ndarray]:
    """Coefficient c_d(f) of each device from its (key, path_a, path_d) pairs.

    method="ratio_of_means" (default):
        c_d(f) = Σ_pairs Σ_t |X_d(f,t)| / Σ_pairs Σ_t |X_a(f,t)|.
    method="mean_of_ratios" (D20's formula, with `eps` added to the denominator):
        c_d(f) = mean over pairs and frames of |X_d(f,t)| / (|X_a(f,t)| + eps).

    Why ratio of means: the per-frame ratio of two magnitudes is heavy-tailed. Where
    |X_a| is near zero (quiet frames, a bin between harmonics, zero padding) one frame
    can outweigh hundreds; the ratio of two independent Rayleigh magnitudes has an
    infinite variance (its mean never settles as pairs are added) and a mean of π/2
    for equal scales, i.e. it is biased upwards. The ratio of mean magnitudes is a
    ratio of two well-behaved averages, needs no frame alignment, and maps the average
    device-a magnitude spectrum of the pairs exactly onto the average device-d
    spectrum, which is what the correction is for. On synthetic pairs (a known FIR
    plus noise 60 dB down, 20 pairs of 1 s) it lands within 2 % of |H| in the pass
    band, where the mean of ratios is off by up to 4.6× to 300×
    (tests/augment/test_speccorr.py). Loud pairs weigh more: they are also the
    ones least affected by noise. Bins with no reference energy at all get 1 (no
    evidence, no correction).
    """
    if method not in METHODS:
        raise InputError(f"spectrum correction method: expected one of {METHODS}, found {method!r}")
    load = loader or _default_loader
    n_bins = n_fft // 2 + 1
    # Visit each reference clip once, with all the devices paired with it.
    jobs: dict[str, list[tuple[str, str]]] = {}
    for device, items in pairs.items():
        for _key, path_a, path_d in items:
            jobs.setdefault(path_a, []).append((device, path_d))
    num = {d: np.zeros(n_bins) for d in pairs}
    den = {d: np.zeros(n_bins) for d in pairs}
    ratio_sum = {d: np.zeros(n_bins) for d in pairs}
    n_frames = dict.fromkeys(pairs, 0)
    for path_a in progress(sorted(jobs), desc="speccorr pairs", total=len(jobs)):
        mag_a = stft_magnitude(load(path_a, sample_rate, seconds), n_fft, hop).astype(np.float64)
        for device, path_d in jobs[path_a]:
            mag_d = stft_magnitude(load(path_d, sample_rate, seconds), n_fft, hop)
            t = min(mag_a.shape[1], mag_d.shape[1])
            a, d = mag_a[:, :t], mag_d[:, :t].astype(np.float64)
            num[device] += d.sum(axis=1)
            den[device] += a.sum(axis=1)
            if method == "mean_of_ratios":
                ratio_sum[device] += (d / (a + eps)).sum(axis=1)
            n_frames[device] += t
    coeffs: dict[str, np.ndarray] = {}
    for device, items in pairs.items():
        if method == "ratio_of_means":
            coeffs[device] = np.divide(
                num[device], den[device], out=np.ones(n_bins), where=den[device] > 0
            )
        else:
            coeffs[device] = ratio_sum[device] / max(n_frames[device], 1)
        log.info("spectrum correction: device %s from %d pairs", device, len(items))
    return coeffs


def estimate_coefficients(
    meta: Any,
    *,
    n_fft: int = 2048,
    hop: int = 1024,
    seconds: float | None,
    sample_rate: int = 44100,
    max_pairs: int = 150,
    seed: int,
    reference: str = REFERENCE_DEVICE,
    devices: Sequence[str] | None = None,
    method: str = "ratio_of_means",
    loader: Loader | None = None,
) -> dict[str, np.ndarray]:
    """Per-device coefficients (n_fft//2+1,) from the time-aligned pairs of a split."""
    pairs = select_pairs(
        find_pairs(meta, reference=reference, devices=devices), max_pairs=max_pairs, seed=seed
    )
    return estimate_from_pairs(
        pairs,
        n_fft=n_fft,
        hop=hop,
        sample_rate=sample_rate,
        seconds=seconds,
        method=method,
        loader=loader,
    )


def correction_gain(
    coeffs: Mapping[str, np.ndarray], devices: Sequence[str] = CORRECTION_DEVICES
) -> np.ndarray:
    """Average coefficient of `devices`: the gain applied to device-a STFTs."""
    if not devices:
        raise InputError("spectrum correction: no device to average")
    missing = [d for d in devices if d not in coeffs]
    if missing:
        raise InputError(
            f"spectrum correction: coefficients lack devices {missing} "
            f"(have {_device_order(coeffs)})"
        )
    arrays = [np.asarray(coeffs[d], dtype=np.float64) for d in devices]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 1:
        raise InputError(f"spectrum correction: coefficient shapes differ or are not 1-D: {shapes}")
    return np.mean(arrays, axis=0)


def resample_gain(gain: np.ndarray, n_bins: int) -> np.ndarray:
    """The gain on another STFT grid (n_bins = n_fft//2+1), linear in frequency.

    Lets coefficients estimated with one n_fft correct features computed with another
    (both grids span 0..sample_rate/2).
    """
    gain = np.asarray(gain, dtype=np.float64)
    if gain.size == n_bins:
        return gain.copy()
    src = np.linspace(0.0, 1.0, gain.size)
    dst = np.linspace(0.0, 1.0, n_bins)
    return np.interp(dst, src, gain)


def save_coefficients(
    path: str | os.PathLike[str], coeffs: Mapping[str, np.ndarray], meta_info: Mapping[str, Any]
) -> None:
    """Write coefficients to an .npz (atomic; no pickled objects).

    Keys: `devices` (unicode array), `coefficients` (devices × bins, float64),
    `meta` (JSON string: estimation parameters, pair counts, ...), `format`.
    """
    devices = _device_order(coeffs)
    if not devices:
        raise InputError(f"{path}: no coefficients to save")
    matrix = np.stack([np.asarray(coeffs[d], dtype=np.float64) for d in devices])
    info = json.dumps(dict(meta_info), sort_keys=True, default=str)
    write_npz(
        path,
        devices=np.array(devices, dtype=str),
        coefficients=matrix,
        meta=np.array(info),
        format=np.array(FORMAT),
    )


def load_coefficients(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read `save_coefficients` output: (device -> coefficients, meta_info)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: spectrum-correction coefficient file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("devices", "coefficients", "meta", "format") if k not in data]
            if missing:
                raise InputError(f"{path}: not a coefficient file, lacks keys {missing}")
            fmt = str(data["format"])
            if fmt != FORMAT:
                raise InputError(f"{path}: format {fmt!r}, expected {FORMAT!r}")
            devices = [str(d) for d in data["devices"]]
            matrix = np.asarray(data["coefficients"], dtype=np.float64)
            info = json.loads(str(data["meta"]))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read coefficients ({exc})") from exc
    if matrix.shape[0] != len(devices):
        raise InputError(f"{path}: {len(devices)} devices but {matrix.shape[0]} coefficient rows")
    return {d: matrix[i] for i, d in enumerate(devices)}, info
