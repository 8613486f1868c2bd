"""Offline augmented copies of the training split, one HDF5 feature file each.

D20 (and the report, §2.1) add one full extra copy of the training set per waveform
augmentation — pitch shift, speed change, random noise, mix audios — and a copy of the
device-a clips with spectrum correction; the teachers of rows 1-2 also had reverberation
(§3.3), one more full copy. Each copy is written by the same streaming
extractor as the original features, with the augmentation plugged in as a
`wave_transform` (run in the extraction workers, seeded per clip) or as an `stft_gain`,
so a copy differs from `orig.h5` only by the augmentation.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from acoustic_lottery.augment import AUGMENT_KINDS
from acoustic_lottery.augment.speccorr import (
    REFERENCE_DEVICE,
    correction_gain,
    load_coefficients,
    resample_gain,
)
from acoustic_lottery.augment.waveform import WAVE_KINDS, WaveTransform
from acoustic_lottery.errors import InputError
from acoustic_lottery.labels import DEVICES

log = logging.getLogger(__name__)

Coefficients = str | os.PathLike[str] | Mapping[str, np.ndarray]


def _gain_for_config(
    coefficients: Coefficients | None,
    cfg: Any,
    gain_devices: Sequence[str] | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The correction gain on the feature config's STFT grid, and its provenance."""
    if coefficients is None:
        raise InputError(
            "augment speccorr: needs spectrum-correction coefficients (--coefficients)"
        )
    if isinstance(coefficients, Mapping):
        coeffs, info, source = dict(coefficients), {}, None
    else:
        coeffs, info = load_coefficients(coefficients)
        source = str(coefficients)
    est_rate = info.get("sample_rate")
    if est_rate is not None and int(est_rate) != int(cfg.sample_rate):
        raise InputError(
            f"{source}: coefficients were estimated at {est_rate} Hz but the features use "
            f"{cfg.sample_rate} Hz; estimate them again with --sample-rate {cfg.sample_rate}"
        )
    devices = list(gain_devices) if gain_devices else sorted(coeffs, key=_device_rank)
    devices = [d for d in devices if d != REFERENCE_DEVICE]
    gain = correction_gain(coeffs, devices)
    n_bins = cfg.n_fft // 2 + 1
    if gain.size != n_bins:
        log.info("speccorr: gain of %d bins interpolated onto %d bins", gain.size, n_bins)
        gain = resample_gain(gain, n_bins)
    provenance = {
        "kind": "speccorr",
        "rows": "device-a training clips only",
        "gain_devices": devices,
        "coefficients_file": source,
        "coefficients_meta": info,
        "gain_sha256": hashlib.sha256(np.ascontiguousarray(gain).tobytes()).hexdigest(),
    }
    return gain, provenance


def _device_rank(device: str) -> tuple[int, str]:
    return (DEVICES.index(device) if device in DEVICES else len(DEVICES), device)


def make_copy(
    kind: str,
    dataset_root: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    feature_set: str = "lmfb",
    feature_cfg: Any = None,
    seconds: float | None,
    seed: int,
    missing: str = "error",
    coefficients: Coefficients | None = None,
    gain_devices: Sequence[str] | None = None,
    aug_params: Mapping[str, Any] | None = None,
    batch_size: int = 16,
    workers: int = 2,
    threads: int | None = None,
    precision: str = "float32",
) -> int:
    """Write the `kind` copy of the training split to `out_path`; returns its clip count.

    kind "pitch", "speed", "noise", "mix", "reverb": every training clip, transformed in
    the waveform domain with per-clip random draws from (seed, kind, row). "mix" partners
    are drawn among the training clips of the same scene; "reverb" convolves each clip
    with its own synthetic room response (the teachers' copy, report §3.3).

    kind "speccorr": the copy holds the corrected **device-a training clips only** (the
    other devices have no correction to receive): their STFT is multiplied by the
    average coefficient of `gain_devices` (default: every device in the coefficients,
    i.e. the other training devices) before mel/log/min–max. `coefficients` is the .npz
    of `speccorr.save_coefficients` or a device -> coefficient mapping.

    The file's `copy` attribute is `kind`; `augment` records the kind, seed and
    parameters (or the coefficient provenance). Same seed and data: same file contents.
    """
    from acoustic_lottery.data.tau import read_split
    from acoustic_lottery.features.extract import extract_split, make_config

    if kind not in AUGMENT_KINDS:
        raise InputError(f"augmentation kind: expected one of {AUGMENT_KINDS}, found {kind!r}")
    if seed < 0:
        raise InputError(f"augment: seed must be >= 0, found {seed}")
    cfg = make_config(feature_set) if feature_cfg is None else feature_cfg
    root = Path(dataset_root)
    meta = read_split(root, "train", missing=missing)
    extra: dict[str, Any] = {"dataset_root": str(root)}  # as given: no host paths
    transform: WaveTransform | None = None
    gain: np.ndarray | None = None
    if kind in WAVE_KINDS:
        if coefficients is not None:
            log.warning("augment %s: --coefficients is only used by speccorr; ignored", kind)
        transform = WaveTransform.for_split(
            kind,
            meta,
            seed=seed,
            sample_rate=cfg.sample_rate,
            seconds=seconds,
            params=aug_params,
        )
        extra["augment"] = transform.describe()
    else:
        if aug_params:
            raise InputError(
                f"augment speccorr takes no augmentation params, found {dict(aug_params)}"
            )
        gain, provenance = _gain_for_config(coefficients, cfg, gain_devices)
        meta = meta[meta["device"] == REFERENCE_DEVICE].reset_index(drop=True)
        if meta.empty:
            raise InputError(f"{root}: the training split has no device-a clip to correct")
        extra["augment"] = provenance
    log.info("augment %s: %d training clips -> %s", kind, len(meta), out_path)
    return extract_split(
        meta,
        Path(out_path),
        feature_set,
        cfg,
        seconds=seconds,
        sample_rate=cfg.sample_rate,
        batch_size=batch_size,
        workers=workers,
        wave_transform=transform,
        stft_gain=gain,
        copy=kind,
        split="train",
        attrs_extra=extra,
        precision=precision,
        threads=threads,
    )
