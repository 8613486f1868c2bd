"""The DCASE 2021 Task 1a baseline's own features: 40 log-mel bands, 40 ms / 20 ms.

REFERENCE_NOTES only fixes bands, window, hop and the 500-frame input, so the rest is
taken from the baseline's configuration (`task1a.yaml`, `mel` extractor) and dcase_util's
`MelExtractor`, which it calls:

* window `hamming_asymmetric` (periodic Hamming) of int(0.04 * fs) = 1764 samples,
  zero-padded to n_fft 2048; hop int(0.02 * fs) = 882;
* `spectrogram_type: magnitude` — mel energies of |STFT| (power 1), not |STFT|^2;
* librosa's default Slaney mel scale and area normalisation (`htk: false`), fmin 0,
  fmax 22050;
* natural log of (mel + eps) with eps = numpy.spacing(1) (2.2e-16);
* centred frames. The baseline ran on librosa 0.8, whose `stft` padded by reflection;
  librosa >= 0.10 pads with zeros, so reflection is explicit here.

A 10 s clip gives 1 + 441000 // 882 = 501 frames; the baseline's sequencer cut one
500-frame sequence from the start, so `frames=500` keeps frames 0..499 (None keeps all).
dcase_util also adds eps to the waveform before the STFT; for float32 audio that is a
no-op except on exact digital zeros, and it is left out. The per-band mean/std
normalisation the baseline applies later is a training-time step, not part of the file.
Every one of these choices is a config field, so the Hann/power variant is one override away.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import librosa
import numpy as np
import torch

from acoustic_lottery.errors import InputError
from acoustic_lottery.features.lmfb import (
    DEFAULT_CHUNK,
    MelSpectrogram,
    check_stft_params,
    in_chunks,
    n_stft_frames,
)

__all__ = [
    "BaselineExtractor",
    "BaselineFeatureConfig",
    "baseline_features_librosa",
    "baseline_mel_basis",
]

_WINDOWS = ("hamming", "hann")
_MEL_NORMS = ("slaney", "none")


@dataclass(frozen=True)
class BaselineFeatureConfig:
    """Parameters of the baseline features; stored as JSON in every feature file."""

    sample_rate: int = 44100
    n_fft: int = 2048
    win_length: int = 1764
    hop_length: int = 882
    n_mels: int = 40
    fmin: float = 0.0
    fmax: float | None = None
    htk: bool = False
    mel_norm: str = "slaney"
    window: str = "hamming"
    power: float = 1.0
    eps: float = float(np.spacing(1))
    frames: int | None = 500

    def __post_init__(self) -> None:
        check_stft_params(self, "BaselineFeatureConfig")
        if self.window not in _WINDOWS:
            raise InputError(
                f"BaselineFeatureConfig: window must be one of {_WINDOWS}, found {self.window!r}"
            )
        if self.mel_norm not in _MEL_NORMS:
            raise InputError(
                f"BaselineFeatureConfig: mel_norm must be one of {_MEL_NORMS}, "
                f"found {self.mel_norm!r}"
            )
        if self.power not in (1.0, 2.0):
            raise InputError(f"BaselineFeatureConfig: power must be 1 or 2, found {self.power!r}")
        if self.eps <= 0:
            raise InputError(f"BaselineFeatureConfig: eps must be > 0, found {self.eps!r}")
        if self.frames is not None and (
            not isinstance(self.frames, int) or isinstance(self.frames, bool) or self.frames <= 0
        ):
            raise InputError(
                f"BaselineFeatureConfig: frames must be a positive integer or null, "
                f"found {self.frames!r}"
            )

    @property
    def fmax_hz(self) -> float:
        return float(self.sample_rate) / 2.0 if self.fmax is None else float(self.fmax)

    @property
    def n_channels(self) -> int:
        return 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def n_output_frames(self, n_samples: int) -> int:
        """Frames kept for a clip of `n_samples`; InputError when it is shorter than `frames`."""
        t = n_stft_frames(n_samples, self.hop_length)
        if self.frames is None:
            return t
        if t < self.frames:
            raise InputError(
                f"baseline features: a clip of {n_samples} samples gives {t} frames, fewer than "
                f"the {self.frames} requested (set frames=null or use longer clips)"
            )
        return self.frames


def baseline_mel_basis(cfg: BaselineFeatureConfig) -> np.ndarray:
    """The (n_mels, n_fft/2+1) filter bank the baseline builds with librosa."""
    return librosa.filters.mel(
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax_hz,
        htk=cfg.htk,
        norm="slaney" if cfg.mel_norm == "slaney" else None,
    )


def _window(cfg: BaselineFeatureConfig) -> np.ndarray:
    # fftbins=True gives the periodic ("asymmetric") window dcase_util uses.
    return librosa.filters.get_window(cfg.window, cfg.win_length, fftbins=True)


class BaselineExtractor:
    """Batched baseline features: (B, samples) -> (B, 1, 40, frames) float32."""

    feature_set = "baseline"

    def __init__(
        self,
        cfg: BaselineFeatureConfig | None = None,
        dtype: torch.dtype = torch.float32,
        chunk: int = DEFAULT_CHUNK,
    ) -> None:
        self.cfg = cfg or BaselineFeatureConfig()
        self.chunk = int(chunk)
        self.mel = MelSpectrogram(
            n_fft=self.cfg.n_fft,
            win_length=self.cfg.win_length,
            hop_length=self.cfg.hop_length,
            window=_window(self.cfg),
            mel_basis=baseline_mel_basis(self.cfg),
            power=self.cfg.power,
            dtype=dtype,
        )

    @property
    def n_channels(self) -> int:
        return 1

    @property
    def n_features(self) -> int:
        return self.cfg.n_mels

    def n_output_frames(self, n_samples: int) -> int:
        return self.cfg.n_output_frames(n_samples)

    def log_mel(
        self, wave: torch.Tensor, stft_gain: np.ndarray | torch.Tensor | None = None
    ) -> torch.Tensor:
        """log(mel + eps) of all centred frames, (B, n_mels, 1 + samples // hop)."""
        return torch.log(self.mel(wave, stft_gain) + self.cfg.eps)

    def _features(
        self, wave: torch.Tensor, stft_gain: np.ndarray | torch.Tensor | None
    ) -> torch.Tensor:
        keep = self.cfg.n_output_frames(int(wave.shape[-1]))
        x = self.log_mel(wave, stft_gain)[..., :keep]
        return x.unsqueeze(1).to(torch.float32)

    def __call__(
        self, wave: torch.Tensor, stft_gain: np.ndarray | torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, samples) -> (B, 1, n_mels, frames) float32, `chunk` clips at a time."""
        return in_chunks(self._features, wave, stft_gain, self.chunk)


def baseline_features_librosa(
    y: np.ndarray,
    cfg: BaselineFeatureConfig | None = None,
    stft_gain: np.ndarray | None = None,
) -> np.ndarray:
    """Reference baseline features of one clip with plain librosa/numpy: (1, n_mels, T)."""
    cfg = cfg or BaselineFeatureConfig()
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"expected a mono 1-D signal, found shape {y.shape}")
    X = librosa.stft(
        y,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window=_window(cfg),
        center=True,
        pad_mode="reflect",
    )
    if stft_gain is not None:
        X = X * np.asarray(stft_gain, dtype=np.float32)[:, None]
    S = np.abs(X) ** cfg.power
    mel = np.dot(baseline_mel_basis(cfg), S)
    x = np.log(mel + cfg.eps)[:, : cfg.n_output_frames(len(y))]
    return x[None].astype(np.float32)
