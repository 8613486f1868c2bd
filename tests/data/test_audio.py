"""data.audio: mono float32 at one rate and length; exact 24-bit writing."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from acoustic_lottery.data import audio
from acoustic_lottery.data.audio import load_audio, write_wav
from acoustic_lottery.errors import InputError

SR = 44100


def test_24bit_round_trip_is_within_one_lsb(tmp_path: Path) -> None:
    y = np.random.default_rng(0).uniform(-1.0, 1.0, SR)
    path = tmp_path / "x.wav"
    write_wav(path, y, SR)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype, info.format) == (
        SR,
        1,
        "PCM_24",
        "WAV",
    )
    back = load_audio(path, SR)
    assert back.dtype == np.float32 and back.shape == (SR,)
    assert np.max(np.abs(back - y)) <= 2.0**-23
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]  # no temp file left behind


def test_write_clips_out_of_range_and_refuses_nan(tmp_path: Path) -> None:
    write_wav(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.5]), SR)
    back = load_audio(tmp_path / "loud.wav", SR)
    np.testing.assert_allclose(back, [1.0 - 2.0**-23, -1.0, 0.5], atol=1e-7)
    with pytest.raises(InputError, match=r"nan\.wav: audio contains NaN"):
        write_wav(tmp_path / "nan.wav", np.array([0.0, np.nan]), SR)
    assert not (tmp_path / "nan.wav").exists()


def test_stereo_is_averaged(tmp_path: Path) -> None:
    t = np.arange(SR // 10) / SR
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.cos(2 * np.pi * 97 * t)
    write_wav(tmp_path / "st.wav", np.stack([left, right], axis=1), SR)
    y = load_audio(tmp_path / "st.wav", SR)
    assert y.ndim == 1
    np.testing.assert_allclose(y, (left + right) / 2, atol=2.0**-22)


def test_other_rate_is_resampled_with_a_warning(tmp_path: Path, caplog, monkeypatch) -> None:
    monkeypatch.setattr(audio, "_WARNED_RATES", set())
    sr_in = 22050
    t = np.arange(sr_in // 2) / sr_in
    write_wav(tmp_path / "low.wav", 0.5 * np.sin(2 * np.pi * 1000 * t), sr_in)
    with caplog.at_level(logging.WARNING, logger="acoustic_lottery.data.audio"):
        y = load_audio(tmp_path / "low.wav", SR)
        load_audio(tmp_path / "low.wav", SR)
    warnings = [r for r in caplog.records if "22050 Hz" in r.getMessage()]
    assert len(warnings) == 1  # once per rate, not once per file
    assert "low.wav" in warnings[0].getMessage() and "44100" in warnings[0].getMessage()
    assert y.dtype == np.float32 and len(y) == SR // 2
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert abs(np.argmax(spec) * SR / len(y) - 1000) < 5  # the tone stays at 1 kHz
    ref = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(len(y)) / SR)
    assert np.max(np.abs(y[1000:-1000] - ref[1000:-1000])) < 1e-3


def test_short_clip_is_zero_padded_and_long_clip_cut(tmp_path: Path) -> None:
    y = np.random.default_rng(1).uniform(-0.5, 0.5, SR // 2)
    write_wav(tmp_path / "half.wav", y, SR)
    padded = load_audio(tmp_path / "half.wav", SR, seconds=1.0)
    assert padded.shape == (SR,)
    np.testing.assert_allclose(padded[: SR // 2], y, atol=2.0**-23)
    assert not padded[SR // 2 :].any()
    cut = load_audio(tmp_path / "half.wav", SR, seconds=0.1)
    assert cut.shape == (round(0.1 * SR),)
    np.testing.assert_allclose(cut, y[: len(cut)], atol=2.0**-23)


def test_unreadable_file_names_path_and_reason(tmp_path: Path) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(InputError, match=r"broken\.wav: cannot read audio file: .+"):
        load_audio(bad)
    with pytest.raises(InputError, match=r"absent\.wav: cannot read audio file"):
        load_audio(tmp_path / "absent.wav")
