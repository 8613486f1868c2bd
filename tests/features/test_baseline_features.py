"""DCASE 2021 baseline features: shape, conventions checked by hand, librosa agreement."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from acoustic_lottery.errors import InputError
from acoustic_lottery.features.baseline import (
    BaselineExtractor,
    BaselineFeatureConfig,
    baseline_features_librosa,
)
from acoustic_lottery.features.lmfb import config_from_dict

SR = 44100
TEN_S = 441_000


def _clips(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(99)
    t = np.arange(n) / SR
    brown = np.cumsum(rng.standard_normal(n)) * 1e-3
    return {
        "white": (0.1 * rng.standard_normal(n)).astype(np.float32),
        "brown": (brown - brown.mean()).astype(np.float32),
        "tone": (0.3 * np.sin(2 * np.pi * 1000.0 * t) + 0.01 * rng.standard_normal(n)).astype(
            np.float32
        ),
    }


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    return _clips(TEN_S)


def test_defaults_are_the_baseline_settings():
    cfg = BaselineFeatureConfig()
    # task1a.yaml: 40 ms / 20 ms at 44.1 kHz -> int(1764.0), int(882.0) samples.
    assert (cfg.win_length, cfg.hop_length) == (int(SR * 0.04), int(SR * 0.02))
    assert (cfg.n_fft, cfg.n_mels, cfg.frames) == (2048, 40, 500)
    assert (cfg.window, cfg.power, cfg.htk, cfg.mel_norm) == ("hamming", 1.0, False, "slaney")
    assert cfg.eps == np.spacing(1)


def test_ten_seconds_gives_1x40x500_or_501_uncropped(clips):
    y = clips["white"]
    out = BaselineExtractor()(torch.from_numpy(y)[None])
    assert tuple(out.shape) == (1, 1, 40, 500)
    full = BaselineExtractor(BaselineFeatureConfig(frames=None))(torch.from_numpy(y)[None])
    assert tuple(full.shape) == (1, 1, 40, 501)
    # The crop keeps the first 500 frames.
    assert torch.equal(full[..., :500], out)


def test_torch_agrees_with_librosa(clips):
    ex = BaselineExtractor()
    names = list(clips)
    out = ex(torch.from_numpy(np.stack([clips[k] for k in names]))).numpy()
    for i, name in enumerate(names):
        ref = baseline_features_librosa(clips[name])
        assert ref.shape == (1, 40, 500)
        err = np.abs(out[i] - ref).max()
        assert err < 1e-4, f"{name}: {err:.2e}"


def test_one_frame_by_hand_magnitude_hamming_slaney():
    # Frame k of a centred STFT covers samples [k*hop - n_fft/2, k*hop + n_fft/2); the
    # 1764-sample periodic Hamming window sits in the middle of the 2048-point frame.
    y = _clips(2 * SR)["white"]
    k = 40
    seg = y[k * 882 - 1024 : k * 882 + 1024].astype(np.float64)
    window = np.zeros(2048)
    window[142 : 142 + 1764] = np.hamming(1765)[:-1]
    mag = np.abs(np.fft.rfft(seg * window))
    basis = librosa.filters.mel(sr=SR, n_fft=2048, n_mels=40, fmin=0, fmax=SR / 2)
    expected = np.log(basis @ mag + np.spacing(1))
    out = BaselineExtractor(BaselineFeatureConfig(frames=None))(torch.from_numpy(y)[None])
    np.testing.assert_allclose(out[0, 0, :, k].numpy(), expected, atol=1e-4)
    # The power-spectrogram variant is a different feature (about twice the log).
    power = BaselineExtractor(BaselineFeatureConfig(frames=None, power=2.0))(
        torch.from_numpy(y)[None]
    )
    assert np.abs(power[0, 0, :, k].numpy() - expected).max() > 0.5


def test_gain_scales_magnitude_mel_by_the_gain():
    y = _clips(SR)["white"]
    ex = BaselineExtractor(BaselineFeatureConfig(frames=None))
    wave = torch.from_numpy(y)[None]
    diff = ex.log_mel(wave, np.full(1025, 2.0)) - ex.log_mel(wave)
    np.testing.assert_allclose(diff.numpy(), np.log(2.0), atol=1e-4)  # power 1: log 2


def test_short_clip_needs_frames_none():
    y = _clips(SR)["white"]
    with pytest.raises(InputError, match="fewer than the 500"):
        BaselineExtractor()(torch.from_numpy(y)[None])
    out = BaselineExtractor(BaselineFeatureConfig(frames=None))(torch.from_numpy(y)[None])
    assert tuple(out.shape) == (1, 1, 40, 1 + SR // 882)
    ref = baseline_features_librosa(y, BaselineFeatureConfig(frames=None))
    assert np.abs(out[0].numpy() - ref).max() < 1e-4


def test_config_validation():
    with pytest.raises(InputError, match="window"):
        BaselineFeatureConfig(window="blackman")
    with pytest.raises(InputError, match="power"):
        BaselineFeatureConfig(power=3.0)
    with pytest.raises(InputError, match="frames"):
        BaselineFeatureConfig(frames=0)
    with pytest.raises(InputError, match="hop"):
        config_from_dict(BaselineFeatureConfig, {"hop": 441})
    cfg = config_from_dict(BaselineFeatureConfig, {"window": "hann", "power": 2.0})
    assert cfg.to_dict()["window"] == "hann"
