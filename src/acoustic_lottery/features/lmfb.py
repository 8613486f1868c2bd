"""Log-mel filter bank (LMFB) features of the DCASE 2020/2021 two-stage system.

The 2021 report only says "as in DCASE 2020": the settings below are those of the
group's 2020 extraction script (librosa 0.6.3 mel power spectrogram, reflect padding,
HTK mels without area normalisation, natural log, per-clip min-max, two delta
orders on valid frames only). A 10 s clip at 44.1 kHz gives 3 x 128 x 423.

Two implementations share one definition:

* `LogMelExtractor` — batched torch (one `torch.stft` over a (B, samples) batch, a
  librosa-built filter bank as a matrix product). This is what the pipeline runs.
* `logmel_librosa` — the plain librosa/numpy form, per clip. It is the reference the
  tests hold the torch code to (1e-4 after min-max) and the baseline of the benchmark.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import librosa
import numpy as np
import torch

from acoustic_lottery.errors import InputError

__all__ = [
    "DEFAULT_CHUNK",
    "LogMelConfig",
    "LogMelExtractor",
    "MelSpectrogram",
    "check_stft_params",
    "config_from_dict",
    "in_chunks",
    "deltas_numpy",
    "deltas_torch",
    "logmel_librosa",
    "minmax_numpy",
    "minmax_torch",
    "n_stft_frames",
    "stack_deltas_numpy",
    "stack_deltas_torch",
]

#: Frames lost at each end by delta (2) plus delta-delta (2).
DELTA_TRIM = 4

#: Clips per torch.stft call. Measured on 2 cores: 4 clips ran about 1.5-2x faster per clip
#: than 16, whose multi-MB temporaries are mmap-ed and page-faulted afresh on every call.
DEFAULT_CHUNK = 4


@dataclass(frozen=True)
class LogMelConfig:
    """Parameters of the LMFB features; stored as JSON in every feature file.

    `fmax=None` means sample_rate / 2 (so changing the sample rate alone stays consistent).
    The window is always a periodic Hann of `win_length` (librosa's default).
    """

    sample_rate: int = 44100
    n_fft: int = 2048
    win_length: int = 2048
    hop_length: int = 1024
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    htk: bool = True
    eps: float = 1e-8
    deltas: bool = True

    def __post_init__(self) -> None:
        check_stft_params(self, "LogMelConfig")
        if self.eps <= 0:
            raise InputError(f"LogMelConfig: eps must be > 0, found {self.eps!r}")

    @property
    def fmax_hz(self) -> float:
        return float(self.sample_rate) / 2.0 if self.fmax is None else float(self.fmax)

    @property
    def n_channels(self) -> int:
        return 3 if self.deltas else 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def n_output_frames(self, n_samples: int) -> int:
        """Frames of the final tensor for a clip of `n_samples` (431 -> 423 with deltas)."""
        t = n_stft_frames(n_samples, self.hop_length)
        return t - 2 * DELTA_TRIM if self.deltas else t


def check_stft_params(cfg: Any, name: str) -> None:
    """Reject settings that would silently give a wrong or empty spectrogram."""
    for key in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels"):
        value = getattr(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise InputError(f"{name}: {key} must be a positive integer, found {value!r}")
    if cfg.win_length > cfg.n_fft:
        raise InputError(
            f"{name}: win_length ({cfg.win_length}) must not exceed n_fft ({cfg.n_fft})"
        )
    fmax = cfg.sample_rate / 2.0 if cfg.fmax is None else cfg.fmax
    if not 0 <= cfg.fmin < fmax <= cfg.sample_rate / 2.0:
        raise InputError(
            f"{name}: expected 0 <= fmin < fmax <= sample_rate/2, found fmin={cfg.fmin!r}, "
            f"fmax={cfg.fmax!r}, sample_rate={cfg.sample_rate}"
        )


def config_from_dict(cls: type, values: Mapping[str, Any], source: str = "params") -> Any:
    """Build a config dataclass from a dict, naming any unknown field (e.g. a typo in --params)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise InputError(
            f"{source}: unknown {cls.__name__} field(s) {unknown}; "
            f"expected some of {sorted(fields)}"
        )
    try:
        return cls(**dict(values))
    except TypeError as exc:  # pragma: no cover - all fields have defaults
        raise InputError(f"{source}: cannot build {cls.__name__}: {exc}") from exc


def n_stft_frames(n_samples: int, hop_length: int) -> int:
    """Frames of a centred STFT: 1 + n // hop (441,000 samples, hop 1024 -> 431)."""
    return 1 + n_samples // hop_length


# --------------------------------------------------------------------------- torch


class MelSpectrogram:
    """Batched |STFT|^power projected on a mel filter bank, in torch.

    Shared by every feature set so they all pad, window and scale identically to
    `librosa.feature.melspectrogram(..., center=True, pad_mode="reflect")`.
    The window and filter bank come from librosa itself, so the only difference from
    the reference is FFT rounding: librosa multiplies float32 frames by a float64 window
    and so transforms in double precision, which `dtype=torch.float64` reproduces.
    """

    def __init__(
        self,
        *,
        n_fft: int,
        win_length: int,
        hop_length: int,
        window: np.ndarray,
        mel_basis: np.ndarray,
        power: float,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if window.shape != (win_length,):
            raise ValueError(f"window has shape {window.shape}, expected ({win_length},)")
        if mel_basis.shape[1] != n_fft // 2 + 1:
            raise ValueError(f"mel basis has {mel_basis.shape[1]} bins, expected {n_fft // 2 + 1}")
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.power = float(power)
        self.dtype = dtype
        self.window = torch.as_tensor(np.asarray(window, dtype=np.float64), dtype=dtype)
        self.mel_basis = torch.as_tensor(np.asarray(mel_basis, dtype=np.float64), dtype=dtype)
        self.n_bins = n_fft // 2 + 1
        # Mel filters are triangles: about 2 non-zeros per bin out of n_mels. A sparse
        # (CSR) product does ~60x fewer multiply-adds than the dense one and was ~2x faster
        # on 2 cores; the CSR structure is fixed, only its values change with a gain.
        rows, cols = np.nonzero(np.asarray(mel_basis))
        self._csr_crow = torch.as_tensor(
            np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=mel_basis.shape[0]))]),
            dtype=torch.int64,
        )
        self._csr_col = torch.as_tensor(cols, dtype=torch.int64)
        self._csr_values = self.mel_basis[torch.as_tensor(rows), self._csr_col].contiguous()

    def _gain_values(self, stft_gain: np.ndarray | torch.Tensor | None) -> torch.Tensor:
        """Filter-bank values with a per-bin magnitude gain folded in: M diag(|g|^power).

        Multiplying the complex STFT by a real g scales |X| by |g|, hence |X|^p by |g|^p;
        doing that inside the (mel x bin) matrix costs nothing per frame.
        """
        if stft_gain is None:
            return self._csr_values
        gain = torch.as_tensor(np.asarray(stft_gain, dtype=np.float64), dtype=self.dtype)
        if gain.shape != (self.n_bins,):
            raise InputError(
                f"stft_gain: expected shape ({self.n_bins},) for n_fft={self.n_fft}, "
                f"found {tuple(gain.shape)}"
            )
        if not torch.isfinite(gain).all():
            raise InputError("stft_gain: contains non-finite values")
        return self._csr_values * gain.abs().pow(self.power)[self._csr_col]

    def _project(self, mag: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """(B, frames, bins) -> (B, n_mels, frames) through the sparse filter bank."""
        b, t, f = mag.shape
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            # The structure comes from np.nonzero of the filter bank, so it is valid by
            # construction; checking it per call would only cost time.
            basis = torch.sparse_csr_tensor(
                self._csr_crow,
                self._csr_col,
                values,
                size=tuple(self.mel_basis.shape),
                check_invariants=False,
            )
            mel = torch.sparse.mm(basis, mag.reshape(b * t, f).T)  # (n_mels, B * frames)
        return mel.view(-1, b, t).permute(1, 0, 2).contiguous()

    def _check_wave(self, wave: torch.Tensor) -> None:
        if wave.ndim != 2:
            raise ValueError(f"expected a (batch, samples) tensor, found shape {tuple(wave.shape)}")
        if wave.shape[1] <= self.n_fft // 2:
            raise InputError(
                f"audio of {wave.shape[1]} samples is too short for reflect padding with "
                f"n_fft={self.n_fft} (need more than {self.n_fft // 2})"
            )

    def spectrum(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> complex STFT (B, frames, bins), centred with reflect padding."""
        self._check_wave(wave)
        spec = torch.stft(
            wave.to(self.dtype),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
        )
        # torch.stft hands back a transposed view of a (B, frames, bins) buffer; element-wise
        # work on that view is 2-3x slower than on the buffer itself, so work frames-major
        # and transpose the small mel result instead.
        return spec.transpose(1, 2)

    def power_spectrum(self, spec: torch.Tensor) -> torch.Tensor:
        """|X|^power of a (B, frames, bins) complex spectrum, real (B, frames, bins)."""
        ri = torch.view_as_real(spec)
        mag = ri[..., 0].square()
        mag.addcmul_(ri[..., 1], ri[..., 1])  # |X|^2 without complex abs (3-10x slower)
        if self.power == 1.0:
            mag.sqrt_()
        elif self.power != 2.0:
            mag.pow_(self.power / 2.0)
        return mag

    def project(
        self, mag: torch.Tensor, stft_gain: np.ndarray | torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, frames, bins) power spectrum -> (B, n_mels, frames) on the filter bank."""
        return self._project(mag, self._gain_values(stft_gain))

    def __call__(
        self, wave: torch.Tensor, stft_gain: np.ndarray | torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, samples) -> (B, n_mels, frames) mel spectrogram."""
        self._check_wave(wave)
        values = self._gain_values(stft_gain)  # a bad gain fails before the STFT is run
        return self._project(self.power_spectrum(self.spectrum(wave)), values)


def minmax_torch(x: torch.Tensor) -> torch.Tensor:
    """Per-clip min-max over all but the batch axis (D20's scaling into [0, 1]).

    A constant clip (e.g. digital silence) has no range: it maps to all zeros instead of
    the NaNs a plain division would give.
    """
    flat = x.reshape(x.shape[0], -1)
    lo = flat.amin(dim=1)
    hi = flat.amax(dim=1)
    rng = hi - lo
    shape = (-1,) + (1,) * (x.ndim - 1)
    safe = torch.where(rng > 0, rng, torch.ones_like(rng))
    out = (x - lo.view(shape)) / safe.view(shape)
    return torch.where((rng > 0).view(shape), out, torch.zeros_like(out))


def deltas_torch(x: torch.Tensor) -> torch.Tensor:
    """d[t] = ((x[t+1]-x[t-1]) + 2 (x[t+2]-x[t-2])) / 10 along the last axis, valid frames."""
    return ((x[..., 3:-1] - x[..., 1:-3]) + 2.0 * (x[..., 4:] - x[..., :-4])) / 10.0


def stack_deltas_torch(x: torch.Tensor) -> torch.Tensor:
    """(B, F, T) -> (B, 3, F, T-8): [x[4:-4], d[2:-2], dd] as in D20."""
    if x.shape[-1] <= 2 * DELTA_TRIM:
        raise InputError(
            f"clip too short for deltas: {x.shape[-1]} frames, need more than {2 * DELTA_TRIM}"
        )
    d = deltas_torch(x)
    dd = deltas_torch(d)
    return torch.stack(
        (x[..., DELTA_TRIM:-DELTA_TRIM], d[..., 2:-2], dd),
        dim=1,
    )


def lmfb_mel_basis(cfg: LogMelConfig) -> np.ndarray:
    """The (n_mels, n_fft/2+1) HTK filter bank without area normalisation (librosa)."""
    return librosa.filters.mel(
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax_hz,
        htk=cfg.htk,
        norm=None,
    )


def in_chunks(
    fn: Any, wave: torch.Tensor, stft_gain: np.ndarray | torch.Tensor | None, chunk: int
) -> torch.Tensor:
    """Apply `fn(wave_chunk, stft_gain)` to row chunks of `wave` and concatenate.

    Keeps temporaries small whatever batch the data loader delivers (see DEFAULT_CHUNK).
    """
    if wave.shape[0] <= chunk:
        return fn(wave, stft_gain)
    return torch.cat([fn(part, stft_gain) for part in torch.split(wave, chunk)], dim=0)


class LogMelExtractor:
    """Batched LMFB features: (B, samples) -> (B, 3, n_mels, frames-8) float32.

    `dtype=torch.float64` computes the STFT in double precision like librosa does
    internally (about half the speed); float32 agrees with librosa to ~1e-6 on noise-like
    audio and to ~1e-4 on extreme in-frame dynamic range (a loud pure tone over -60 dB noise).
    """

    feature_set = "lmfb"

    def __init__(
        self,
        cfg: LogMelConfig | None = None,
        dtype: torch.dtype = torch.float32,
        chunk: int = DEFAULT_CHUNK,
    ) -> None:
        self.cfg = cfg or LogMelConfig()
        self.chunk = int(chunk)
        self.mel = MelSpectrogram(
            n_fft=self.cfg.n_fft,
            win_length=self.cfg.win_length,
            hop_length=self.cfg.hop_length,
            window=librosa.filters.get_window("hann", self.cfg.win_length, fftbins=True),
            mel_basis=lmfb_mel_basis(self.cfg),
            power=2.0,
            dtype=dtype,
        )

    @property
    def n_channels(self) -> int:
        return self.cfg.n_channels

    @property
    def n_features(self) -> int:
        return self.cfg.n_mels

    def n_output_frames(self, n_samples: int) -> int:
        return self.cfg.n_output_frames(n_samples)

    def log_mel(
        self, wave: torch.Tensor, stft_gain: np.ndarray | torch.Tensor | None = None
    ) -> torch.Tensor:
        """log(mel power + eps) before scaling, (B, n_mels, frames).

        Exposed so that gains and device corrections can be checked in log units.
        """
        return torch.log(self.mel(wave, stft_gain) + self.cfg.eps)

    def _features(
        self, wave: torch.Tensor, stft_gain: np.ndarray | torch.Tensor | None
    ) -> torch.Tensor:
        x = minmax_torch(self.log_mel(wave, stft_gain))
        out = stack_deltas_torch(x) if self.cfg.deltas else x.unsqueeze(1)
        return out.to(torch.float32)

    def __call__(
        self, wave: torch.Tensor, stft_gain: np.ndarray | torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, samples) -> (B, C, n_mels, T') float32, computed `chunk` clips at a time."""
        return in_chunks(self._features, wave, stft_gain, self.chunk)


# --------------------------------------------------------------------------- numpy / librosa


def minmax_numpy(x: np.ndarray) -> np.ndarray:
    """Min-max of one clip over all its values; constant clips map to zeros."""
    lo = x.min()
    rng = x.max() - lo
    if not rng > 0:
        return np.zeros_like(x)
    return (x - lo) / rng


def deltas_numpy(x: np.ndarray) -> np.ndarray:
    """numpy twin of `deltas_torch` (last axis, valid frames only)."""
    return ((x[..., 3:-1] - x[..., 1:-3]) + 2.0 * (x[..., 4:] - x[..., :-4])) / 10.0


def stack_deltas_numpy(x: np.ndarray) -> np.ndarray:
    """(F, T) -> (3, F, T-8): [x[4:-4], d[2:-2], dd]."""
    if x.shape[-1] <= 2 * DELTA_TRIM:
        raise InputError(
            f"clip too short for deltas: {x.shape[-1]} frames, need more than {2 * DELTA_TRIM}"
        )
    d = deltas_numpy(x)
    dd = deltas_numpy(d)
    return np.stack((x[..., DELTA_TRIM:-DELTA_TRIM], d[..., 2:-2], dd), axis=0)


def logmel_librosa(
    y: np.ndarray,
    cfg: LogMelConfig | None = None,
    stft_gain: np.ndarray | None = None,
) -> np.ndarray:
    """Reference LMFB of one clip with plain librosa/numpy: (C, n_mels, T') float32.

    Written the way D20's script does it (librosa mel power spectrogram, reflect padding
    made explicit because librosa >= 0.10 pads with zeros by default), so the torch path
    can be checked against it.
    """
    cfg = cfg or LogMelConfig()
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected a mono 1-D signal, found shape {y.shape}")
    common = {
        "n_fft": cfg.n_fft,
        "hop_length": cfg.hop_length,
        "win_length": cfg.win_length,
        "window": "hann",
        "center": True,
        "pad_mode": "reflect",
    }
    if stft_gain is None:
        S = librosa.feature.melspectrogram(
            y=y,
            sr=cfg.sample_rate,
            power=2.0,
            n_mels=cfg.n_mels,
            fmin=cfg.fmin,
            fmax=cfg.fmax_hz,
            htk=cfg.htk,
            norm=None,
            **common,
        )
    else:
        X = librosa.stft(y, **common) * np.asarray(stft_gain, dtype=np.float32)[:, None]
        S = lmfb_mel_basis(cfg) @ (np.abs(X) ** 2)
    x = minmax_numpy(np.log(S + cfg.eps))
    out = stack_deltas_numpy(x) if cfg.deltas else x[None]
    return out.astype(np.float32)
