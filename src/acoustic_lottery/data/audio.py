"""Audio in and out, in the one form every feature extractor expects.

`load_audio` returns mono float32 at a fixed sample rate and length so that feature
shapes never depend on how a recording was stored; `write_wav` writes the TAU format
(24-bit PCM) atomically.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from pathlib import Path

import numpy as np
import soundfile as sf

from acoustic_lottery.errors import InputError
from acoustic_lottery.io import atomic_path

log = logging.getLogger(__name__)

#: (source rate, target rate) pairs already warned about in this process.
_WARNED_RATES: set[tuple[int, int]] = set()
_WARN_LOCK = threading.Lock()

_PCM24_MAX = 2**23 - 1


def _warn_resample(path: Path, source: int, target: int) -> None:
    with _WARN_LOCK:
        if (source, target) in _WARNED_RATES:
            return
        _WARNED_RATES.add((source, target))
    log.warning(
        "%s: sample rate %d Hz differs from the configured %d Hz; resampling (soxr_hq). "
        "Further files at %d Hz are resampled without this warning.",
        path,
        source,
        target,
        source,
    )


def fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Cut `y` to `n` samples or zero-pad it at the end, so batches stack."""
    if len(y) >= n:
        return y[:n]
    return np.pad(y, (0, n - len(y)))


def load_audio(
    path: str | os.PathLike[str], sample_rate: int = 44100, seconds: float | None = None
) -> np.ndarray:
    """Read a clip as mono float32 at `sample_rate`, cut or zero-padded to `seconds`.

    Channels are averaged; another sample rate is resampled with soxr_hq (logged once
    per rate) so that a stray 48 kHz file does not silently change the feature grid.
    """
    path = Path(path)
    if sample_rate <= 0:
        raise InputError(f"{path}: sample rate must be positive, got {sample_rate}")
    try:
        data, source_rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as exc:
        raise InputError(f"{path}: cannot read audio file: {exc}") from exc
    if data.shape[0] == 0:
        raise InputError(f"{path}: audio file contains no samples")
    y = data.mean(axis=1, dtype=np.float64) if data.shape[1] > 1 else data[:, 0]
    if source_rate != sample_rate:
        import librosa  # deferred: its import and first call are slow

        _warn_resample(path, int(source_rate), int(sample_rate))
        y = librosa.resample(
            np.asarray(y, dtype=np.float64),
            orig_sr=source_rate,
            target_sr=sample_rate,
            res_type="soxr_hq",
        )
    if seconds is not None:
        if seconds <= 0:
            raise InputError(f"{path}: clip length must be positive, got {seconds} s")
        y = fit_length(y, int(round(seconds * sample_rate)))
    return np.ascontiguousarray(y, dtype=np.float32)


def to_pcm24(y: np.ndarray) -> np.ndarray:
    """Quantise float samples in [-1, 1] to 24-bit integers (held in int32, left-aligned).

    Done here rather than by libsndfile so the stored value is exactly round(y * 2^23)
    (clipped), which makes a write/read round trip accurate to 2^-24.
    """
    y = np.asarray(y)
    # float32 is exact here (scaling by 2^23 only shifts the exponent) and twice as fast.
    dtype = np.float32 if y.dtype == np.float32 else np.float64
    q = np.clip(y.astype(dtype, copy=False), -1.0, 1.0) * dtype(2**23)
    q = np.clip(np.rint(q), -(2**23), _PCM24_MAX).astype(np.int32)
    return q << 8


def write_wav(path: str | os.PathLike[str], y: np.ndarray, sample_rate: int) -> None:
    """Write `y` (samples, or samples x channels) as 24-bit PCM WAV, atomically.

    Values outside [-1, 1] are clipped; non-finite values are refused because they
    would turn into full-scale clicks.
    """
    path = Path(path)
    y = np.asarray(y)
    if y.ndim not in (1, 2):
        raise InputError(f"{path}: audio must be 1-D or (samples, channels), got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise InputError(f"{path}: audio contains NaN or infinite samples")
    # Encode in memory and write the bytes once: libsndfile's close() fsyncs, which
    # costs about a millisecond per file and dominates writing thousands of short clips.
    buf = io.BytesIO()
    sf.write(buf, to_pcm24(y), int(sample_rate), subtype="PCM_24", format="WAV")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
