"""Audio in and out, in the one form every feature extractor expects.

`load_audio` returns mono float32 at a fixed sample rate and length so that feature
shapes never depend on how a recording was stored; `write_wav` writes the TAU format
(24-bit PCM) atomically.
"""

from __future__ import annotations

import io
import logging
import os
import struct
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

#: WAVE format tags whose block_align is one frame: PCM, IEEE float, A-law, mu-law.
_FRAME_TAGS = {0x0001, 0x0003, 0x0006, 0x0007}
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
#: Chunks walked before giving up on finding 'data' (real files have a handful).
_MAX_CHUNKS = 1024
#: SubFormat GUID of integer PCM in a WAVE_FORMAT_EXTENSIBLE fmt chunk.
_PCM_GUID = bytes.fromhex("0100000000001000800000aa00389b71")


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


def _check_wav_complete(path: Path) -> None:
    """InputError if a RIFF/RF64 WAV file holds less audio data than its header promises.

    libsndfile (1.2) silently clamps the frame count of a truncated WAV to the bytes that
    are present, so a cut-off download would be read short and zero-padded. This walks
    the chunk headers up to 'data' (a few small reads, no audio decoded) and compares
    the data chunk size with the bytes left in the file. Other formats are not checked;
    a WAV this cannot parse is left to libsndfile.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX", b"RF64"):
            return
        endian = ">" if head[:4] == b"RIFX" else "<"
        ds64_data_size: int | None = None
        block_align = 0
        frames_known = False
        offset = 12
        for _ in range(_MAX_CHUNKS):
            f.seek(offset)
            chunk = f.read(8)
            if len(chunk) < 8:
                return
            chunk_id, chunk_size = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
            if chunk_id == b"ds64":
                body = f.read(16)
                if len(body) == 16:
                    ds64_data_size = struct.unpack("<Q", body[8:16])[0]
            elif chunk_id == b"fmt ":
                body = f.read(min(chunk_size, 40))
                if len(body) >= 14:
                    tag = struct.unpack(endian + "H", body[:2])[0]
                    block_align = struct.unpack(endian + "H", body[12:14])[0]
                    if tag == _WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:
                        tag = struct.unpack(endian + "H", body[24:26])[0]  # SubFormat GUID
                    frames_known = tag in _FRAME_TAGS and block_align > 0
            elif chunk_id == b"data":
                promised = chunk_size
                if chunk_size == 0xFFFFFFFF:
                    if ds64_data_size is None:
                        return  # unknown length (a streamed file): nothing to compare
                    promised = ds64_data_size
                held = size - (offset + 8)
                if held >= promised:
                    return
                if frames_known:
                    what = (
                        f"the header promises {promised // block_align} frames, "
                        f"the file holds {held // block_align}"
                    )
                else:
                    what = f"the header promises {promised} bytes of audio, the file holds {held}"
                raise InputError(
                    f"{path}: truncated audio file: {what} (re-copy or re-download it)"
                )
            offset += 8 + chunk_size + (chunk_size & 1)
            if offset >= size:
                return


def _pcm_to_float32(raw: np.ndarray, n_bytes: int, width: int) -> np.ndarray:
    """Little-endian integer PCM bytes -> float32 exactly as libsndfile converts them.

    libsndfile left-aligns each sample in an int32 and multiplies by 2^-31 (16 bit: the
    int16 by 2^-15), both in float32; the same operations here give the same bits.
    `raw` holds one byte more than `n_bytes` so that a 24-bit sample can be read as the
    low three bytes of a 4-byte word (the fourth is shifted out).
    """
    n = n_bytes // width
    if width == 2:
        ints = np.frombuffer(raw, dtype="<i2", count=n)
        return np.multiply(ints, np.float32(2.0**-15), dtype=np.float32)
    if width == 3:
        words = np.ndarray((n,), dtype="<u4", buffer=raw, strides=(3,))
        ints = np.left_shift(words, 8).view(np.int32)
    else:
        ints = np.frombuffer(raw, dtype="<i4", count=n)
    return np.multiply(ints, np.float32(2.0**-31), dtype=np.float32)


def _read_pcm_wav(path: Path) -> tuple[np.ndarray, int] | None:
    """A RIFF WAV of 16-, 24- or 32-bit integer PCM as (frames, channels) float32, or None.

    The same array as `sf.read(path, dtype="float32", always_2d=True)`, bit for bit
    (`_pcm_to_float32`), in half the time for TAU's 24-bit files: libsndfile's sample
    conversion is most of the cost of decoding. Anything else (RIFX, RF64, float or
    compressed data, unusual block alignment, a data chunk shorter than its header
    says, no data) gives None and is left to libsndfile and `_check_wav_complete`.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        layout: tuple[int, int, int, int] | None = None
        offset = 12
        for _ in range(_MAX_CHUNKS):
            f.seek(offset)
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"fmt ":
                body = f.read(min(chunk_size, 40))
                if len(body) < 16:
                    return None
                tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", body[:16])
                if tag == _WAVE_FORMAT_EXTENSIBLE:
                    if len(body) < 40 or body[24:40] != _PCM_GUID:
                        return None
                    if struct.unpack("<H", body[18:20])[0] != bits:  # valid bits per sample
                        return None
                elif tag != 0x0001:
                    return None
                layout = (channels, rate, block_align, bits)
            elif chunk_id == b"data":
                if layout is None:
                    return None
                channels, rate, block_align, bits = layout
                width = bits // 8
                if (
                    bits not in (16, 24, 32)
                    or channels < 1
                    or rate < 1
                    or block_align != channels * width
                    or chunk_size == 0
                    or chunk_size % block_align
                    or size - (offset + 8) < chunk_size
                ):
                    return None
                raw = np.empty(chunk_size + 1, dtype=np.uint8)
                if f.readinto(memoryview(raw)[:chunk_size]) != chunk_size:
                    return None
                y = _pcm_to_float32(raw, chunk_size, width)
                return y.reshape(-1, channels), rate
            offset += 8 + chunk_size + (chunk_size & 1)
            if offset >= size:
                return None
    return None


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
    A truncated WAV file (less data than its header promises) and NaN or infinite
    samples are InputErrors naming the file rather than silent zeros.
    """
    path = Path(path)
    if sample_rate <= 0:
        raise InputError(f"{path}: sample rate must be positive, got {sample_rate}")
    try:
        pcm = _read_pcm_wav(path)
        data, source_rate = (
            pcm if pcm is not None else sf.read(path, dtype="float32", always_2d=True)
        )
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as exc:
        raise InputError(f"{path}: cannot read audio file: {exc}") from exc
    try:
        _check_wav_complete(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read audio file: {exc}") from exc
    if data.shape[0] == 0:
        raise InputError(f"{path}: audio file contains no samples")
    finite = np.isfinite(data) if pcm is None else None  # integer PCM is always finite
    if finite is not None and not finite.all():
        raise InputError(
            f"{path}: audio contains NaN or infinite samples "
            f"({finite.size - int(np.count_nonzero(finite))} of {finite.size})"
        )
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
    # No scan for a killed writer's leftovers: thousands of clips go into one directory
    # (the generator writes into a fresh one, so there are none).
    with atomic_path(path, clean_stale=False) as tmp:
        tmp.write_bytes(buf.getvalue())
