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


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_truncated_24bit_wav_names_file_and_frame_counts(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    write_wav(path, np.random.default_rng(2).uniform(-0.5, 0.5, 1000), SR)
    _truncate(path, 44 + 3 * 400 + 1)  # 44-byte header, 400 frames and a stray byte
    # libsndfile clamps the frame count to what is there, so the header is read directly.
    assert sf.info(path).frames == 400
    with pytest.raises(
        InputError,
        match=r"cut\.wav: truncated audio file: the header promises 1000 frames, "
        r"the file holds 400 \(re-copy or re-download it\)",
    ):
        load_audio(path, SR, seconds=1.0)
    _truncate(path, 44)  # nothing left after the header: still truncated, not "no samples"
    with pytest.raises(InputError, match=r"cut\.wav: truncated audio file: .* holds 0 "):
        load_audio(path, SR)


@pytest.mark.parametrize(
    ("fmt", "subtype"),
    [("WAV", "FLOAT"), ("WAVEX", "PCM_16"), ("RF64", "PCM_24"), ("WAV", "IMA_ADPCM")],
)
def test_truncation_is_found_in_other_wav_layouts(tmp_path: Path, fmt: str, subtype: str) -> None:
    path = tmp_path / "x.wav"
    sf.write(path, np.zeros((2000, 2)), SR, format=fmt, subtype=subtype)
    _truncate(path, path.stat().st_size - 100)
    with pytest.raises(InputError, match=r"x\.wav: truncated audio file: the header promises"):
        load_audio(path, SR)


@pytest.mark.parametrize(("bad", "what"), [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "ninf")])
@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_non_finite_samples_are_an_error(
    tmp_path: Path, bad: float, what: str, subtype: str
) -> None:
    y = np.zeros((100, 2), dtype=np.float64)
    y[[3, 50, 51], 1] = bad
    path = tmp_path / f"{what}.wav"
    sf.write(path, y, SR, subtype=subtype)
    with pytest.raises(
        InputError, match=rf"{what}\.wav: audio contains NaN or infinite samples \(3 of 200\)"
    ):
        load_audio(path, SR)


def _with_list_chunk(wav: bytes) -> bytes:
    """`wav` with a LIST/INFO chunk (odd-sized, so padded) after its data chunk."""
    info = b"INFO" + b"ISFT" + (5).to_bytes(4, "little") + b"tests"
    chunk = b"LIST" + len(info).to_bytes(4, "little") + info + b"\0" * (len(info) & 1)
    riff_size = int.from_bytes(wav[4:8], "little") + len(chunk)
    return wav[:4] + riff_size.to_bytes(4, "little") + wav[8:] + chunk


def test_complete_wavs_of_every_kind_still_load(tmp_path: Path) -> None:
    y = np.random.default_rng(3).uniform(-0.5, 0.5, 999)
    write_wav(tmp_path / "pcm24.wav", y, SR)
    sf.write(tmp_path / "pcm16.wav", y, SR, subtype="PCM_16")
    sf.write(tmp_path / "float.wav", y, SR, subtype="FLOAT")
    sf.write(tmp_path / "double.wav", np.stack([y, y], axis=1), SR, subtype="DOUBLE")
    sf.write(tmp_path / "rf64.wav", y, SR, format="RF64", subtype="PCM_24")
    sf.write(tmp_path / "big.wav", y, SR, subtype="PCM_16", endian="BIG")  # RIFX
    sf.write(tmp_path / "clip.flac", y, SR)  # not a WAV: not parsed
    (tmp_path / "list.wav").write_bytes(_with_list_chunk((tmp_path / "pcm24.wav").read_bytes()))
    assert sf.info(tmp_path / "list.wav").frames == 999
    tolerance = {"pcm16.wav": 2.0**-15, "big.wav": 2.0**-15, "clip.flac": 2.0**-15}
    for path in sorted(tmp_path.iterdir()):
        back = load_audio(path, SR)
        assert back.shape == (999,), path.name
        np.testing.assert_allclose(back, y, atol=tolerance.get(path.name, 2.0**-23))


@pytest.mark.parametrize("fmt", ["WAV", "WAVEX"])
@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32"])
@pytest.mark.parametrize("channels", [1, 2, 3])
def test_integer_pcm_wav_is_read_bit_for_bit_as_libsndfile(
    tmp_path: Path, fmt: str, subtype: str, channels: int
) -> None:
    y = np.random.default_rng(4).uniform(-1.0, 1.0, (999, channels))
    y[0], y[-1] = -1.0, 1.0
    path = tmp_path / "x.wav"
    sf.write(path, y, SR, format=fmt, subtype=subtype)
    ref, rate = sf.read(path, dtype="float32", always_2d=True)
    got = audio._read_pcm_wav(path)
    assert got is not None and got[1] == rate
    assert got[0].dtype == np.float32 and got[0].shape == ref.shape
    assert np.array_equal(got[0], ref)
    expected = ref.mean(axis=1, dtype=np.float64) if channels > 1 else ref[:, 0]
    assert np.array_equal(load_audio(path, SR), expected.astype(np.float32))


@pytest.mark.parametrize(
    ("fmt", "subtype", "endian"),
    [
        ("WAV", "FLOAT", "FILE"),
        ("WAV", "PCM_U8", "FILE"),
        ("RF64", "PCM_24", "FILE"),
        ("WAV", "PCM_16", "BIG"),
        ("FLAC", "PCM_16", "FILE"),
    ],
)
def test_other_layouts_are_left_to_libsndfile(
    tmp_path: Path, fmt: str, subtype: str, endian: str
) -> None:
    path = tmp_path / "x.wav"
    sf.write(path, np.zeros(100), SR, format=fmt, subtype=subtype, endian=endian)
    assert audio._read_pcm_wav(path) is None
    assert load_audio(path, SR).shape == (100,)
