"""LMFB features: shapes, agreement with plain librosa, padding, scaling, deltas, gains."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from acoustic_lottery.errors import InputError
from acoustic_lottery.features.lmfb import (
    LogMelConfig,
    LogMelExtractor,
    config_from_dict,
    deltas_numpy,
    deltas_torch,
    logmel_librosa,
    minmax_numpy,
    minmax_torch,
    stack_deltas_numpy,
    stack_deltas_torch,
)

SR = 44100
TEN_S = 441_000


def _signals(n: int) -> dict[str, np.ndarray]:
    """Noise-like test clips with different spectral shapes (deterministic)."""
    rng = np.random.default_rng(1234)
    t = np.arange(n) / SR
    white = 0.1 * rng.standard_normal(n)
    brown = np.cumsum(rng.standard_normal(n)) * 1e-3
    brown -= brown.mean()
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.01 * rng.standard_normal(n)
    lowpass = np.convolve(rng.standard_normal(n), np.ones(32) / 32, mode="same")
    return {
        k: v.astype(np.float32)
        for k, v in {"white": white, "brown": brown, "tone": tone, "lowpass": lowpass}.items()
    }


@pytest.fixture(scope="module")
def ten_second_clips() -> dict[str, np.ndarray]:
    return _signals(TEN_S)


@pytest.fixture(scope="module")
def extractor() -> LogMelExtractor:
    return LogMelExtractor(LogMelConfig())


def _torch_features(ex: LogMelExtractor, y: np.ndarray, gain: np.ndarray | None = None):
    return ex(torch.from_numpy(y)[None], gain)[0].numpy()


def test_ten_second_clip_gives_3x128x423(extractor, ten_second_clips):
    y = ten_second_clips["white"]
    out = _torch_features(extractor, y)
    assert out.shape == (3, 128, 423)
    assert out.dtype == np.float32
    assert logmel_librosa(y).shape == (3, 128, 423)
    assert LogMelConfig().n_output_frames(TEN_S) == 423


@pytest.mark.parametrize("n", [9000, 44100, 100_000])
def test_shape_is_frames_minus_eight(extractor, n):
    y = _signals(n)["white"]
    t = 1 + n // 1024
    assert _torch_features(extractor, y).shape == (3, 128, t - 8)
    assert logmel_librosa(y).shape == (3, 128, t - 8)
    no_delta = LogMelExtractor(LogMelConfig(deltas=False))
    assert _torch_features(no_delta, y).shape == (1, 128, t)


def test_batched_torch_agrees_with_librosa_to_1e4(extractor, ten_second_clips):
    names = list(ten_second_clips)
    batch = torch.from_numpy(np.stack([ten_second_clips[k] for k in names]))
    out = extractor(batch).numpy()  # 4 clips in one batch, chunked internally
    worst = 0.0
    for i, name in enumerate(names):
        ref = logmel_librosa(ten_second_clips[name])
        err = float(np.abs(out[i] - ref).max())
        worst = max(worst, err)
        assert err < 1e-4, f"{name}: max abs difference {err:.2e}"
    assert worst > 0  # two different implementations, not the same code path twice


def test_float64_stft_matches_librosa_on_extreme_dynamic_range():
    # A loud pure tone over noise 70 dB down: float32 FFT rounding shows in the quiet
    # bins here, double precision (what librosa computes internally) does not.
    n = 4 * SR
    t = np.arange(n) / SR
    rng = np.random.default_rng(7)
    y = (0.5 * np.sin(2 * np.pi * 440.0 * t) + 3e-4 * rng.standard_normal(n)).astype(np.float32)
    ex64 = LogMelExtractor(LogMelConfig(), dtype=torch.float64)
    assert np.abs(_torch_features(ex64, y) - logmel_librosa(y)).max() < 1e-5


def test_reflect_padding_decides_the_edge_frames(extractor):
    # A strong low-frequency cosine starting at a peak: zero padding would put a step into
    # the first and last frames (broadband splatter), reflection does not.
    n = 2 * SR
    t = np.arange(n) / SR
    noise = 1e-2 * np.random.default_rng(3).standard_normal(n)
    y = (0.8 * np.cos(2 * np.pi * 50.0 * t) + noise).astype(np.float32)
    cfg = LogMelConfig()
    ours = extractor.log_mel(torch.from_numpy(y)[None])[0].numpy()
    common = dict(
        y=y, sr=SR, n_fft=2048, hop_length=1024, n_mels=128, htk=True, norm=None, fmax=SR / 2
    )
    reflect = np.log(librosa.feature.melspectrogram(pad_mode="reflect", **common) + cfg.eps)
    constant = np.log(librosa.feature.melspectrogram(pad_mode="constant", **common) + cfg.eps)
    assert np.abs(ours[:, 0] - reflect[:, 0]).max() < 1e-3
    assert np.abs(ours[:, 0] - constant[:, 0]).max() > 1.0
    # Interior frames do not depend on the padding at all.
    assert np.abs(reflect[:, 5:-5] - constant[:, 5:-5]).max() < 1e-5
    # And the final features see it too: the first delta-delta column comes from frames 0..8.
    feats = _torch_features(extractor, y)
    x_const = stack_deltas_numpy(minmax_numpy(constant)).astype(np.float32)
    assert np.abs(feats[2][:, 0] - logmel_librosa(y)[2][:, 0]).max() < 1e-4
    assert np.abs(feats[2][:, 0] - x_const[2][:, 0]).max() > 5e-3


def test_minmax_range_is_exactly_zero_to_one(ten_second_clips):
    ex = LogMelExtractor(LogMelConfig(deltas=False))
    batch = torch.from_numpy(np.stack([ten_second_clips["white"], ten_second_clips["tone"]]))
    out = ex(batch).numpy()
    for clip in out:
        assert clip.min() == 0.0
        assert clip.max() == 1.0
    ref = logmel_librosa(ten_second_clips["tone"], LogMelConfig(deltas=False))
    assert ref.min() == 0.0 and ref.max() == 1.0
    with_deltas = LogMelExtractor()(batch[:1]).numpy()[0, 0]
    assert with_deltas.min() >= 0.0 and with_deltas.max() <= 1.0


def test_minmax_of_constant_clip_is_zeros_not_nan():
    x = torch.full((2, 4, 10), -18.42)
    assert torch.equal(minmax_torch(x), torch.zeros_like(x))
    assert np.array_equal(minmax_numpy(np.full((4, 10), 3.0)), np.zeros((4, 10)))
    silent = np.zeros(SR, dtype=np.float32)
    out = LogMelExtractor()(torch.from_numpy(silent)[None]).numpy()
    assert np.isfinite(out).all() and not out.any()


def test_deltas_by_hand_on_ramp_and_square():
    t = np.arange(12, dtype=np.float64)
    # Linear ramp: every delta is the slope, every delta-delta 0.
    d = deltas_numpy(3.0 * t)
    assert d.shape == (8,)
    np.testing.assert_allclose(d, 3.0)
    np.testing.assert_allclose(deltas_numpy(d), 0.0, atol=1e-12)
    # x = t^2: d[t] = ((t+1)^2-(t-1)^2 + 2((t+2)^2-(t-2)^2))/10 = 2t on frames 2..9.
    d2 = deltas_numpy(t**2)
    np.testing.assert_allclose(d2, 2.0 * t[2:-2])
    np.testing.assert_allclose(deltas_numpy(d2), 2.0)
    # One value by hand: x = [0, 1, 4, 9, 16] -> d[2] = ((9 - 1) + 2 * (16 - 0)) / 10 = 4.
    assert deltas_numpy(np.array([0.0, 1, 4, 9, 16]))[0] == pytest.approx(4.0)
    # torch twin is identical.
    tt = torch.from_numpy(t**2)
    np.testing.assert_allclose(deltas_torch(tt).numpy(), d2)


def test_stacked_channels_are_aligned_in_time():
    t = np.arange(20, dtype=np.float64)
    x = np.stack([t, t**2])  # (F=2, T=20)
    s = stack_deltas_numpy(x)
    assert s.shape == (3, 2, 12)
    np.testing.assert_allclose(s[0], x[:, 4:-4])
    np.testing.assert_allclose(s[1, 1], 2.0 * t[4:-4])  # delta of t^2 at the same frames
    np.testing.assert_allclose(s[2, 1], 2.0)
    np.testing.assert_allclose(s[1, 0], 1.0)
    st = stack_deltas_torch(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(st, s)
    with pytest.raises(InputError, match="too short for deltas"):
        stack_deltas_numpy(np.zeros((2, 8)))


def test_stft_gain_of_two_adds_log4_before_scaling(extractor):
    y = _signals(2 * SR)["white"]
    wave = torch.from_numpy(y)[None]
    bins = 2048 // 2 + 1
    base = extractor.log_mel(wave)
    doubled = extractor.log_mel(wave, np.full(bins, 2.0))
    np.testing.assert_allclose((doubled - base).numpy(), np.log(4.0), atol=1e-4)
    same = extractor.log_mel(wave, np.ones(bins))
    assert torch.equal(same, base)


def test_frequency_dependent_gain_matches_librosa_reference(extractor):
    y = _signals(2 * SR)["brown"]
    gain = np.linspace(0.5, 3.0, 1025)
    ours = _torch_features(extractor, y, gain)
    ref = logmel_librosa(y, stft_gain=gain)
    assert np.abs(ours - ref).max() < 1e-4
    assert np.abs(ours - logmel_librosa(y)).max() > 1e-2  # the gain did something


def test_bad_gain_and_short_audio_are_input_errors(extractor):
    wave = torch.zeros(1, SR)
    with pytest.raises(InputError, match=r"stft_gain.*\(1025,\)"):
        extractor(wave, np.ones(513))
    with pytest.raises(InputError, match="too short"):
        extractor(torch.zeros(1, 900))


def test_config_round_trip_and_validation():
    cfg = LogMelConfig(n_mels=64, deltas=False)
    d = cfg.to_dict()
    assert d["n_mels"] == 64 and d["fmax"] is None and d["eps"] == 1e-8
    assert config_from_dict(LogMelConfig, d) == cfg
    assert cfg.fmax_hz == 22050.0
    with pytest.raises(InputError, match="n_melz"):
        config_from_dict(LogMelConfig, {"n_melz": 64})
    with pytest.raises(InputError, match="win_length"):
        LogMelConfig(win_length=4096)
    with pytest.raises(InputError, match="fmax"):
        LogMelConfig(fmax=30000.0)
