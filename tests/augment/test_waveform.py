"""Each waveform augmentation changes the signal the way D20 intends, deterministically."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from acoustic_lottery.augment import waveform as wf
from acoustic_lottery.data.audio import write_wav
from acoustic_lottery.errors import InputError

SR = 44100


def tone(freq: float, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(y: np.ndarray, n_fft: int = 2**20) -> float:
    """Peak of a Hann-windowed, zero-padded FFT (0.04 Hz grid, so the grid adds no error)."""
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size), n_fft))
    return float(np.argmax(spec) * SR / n_fft)


def burst_edges(y: np.ndarray, frame_s: float = 0.005) -> tuple[float, float]:
    """Onset and offset (s) of the region whose 5-ms RMS exceeds half its maximum."""
    frame = int(frame_s * SR)
    n = y.size // frame
    rms = np.sqrt((y[: n * frame].reshape(n, frame).astype(np.float64) ** 2).mean(axis=1))
    active = np.flatnonzero(rms > 0.5 * rms.max())
    return active[0] * frame / SR, (active[-1] + 1) * frame / SR


# ----------------------------------------------------------------------------- pitch


@pytest.mark.parametrize("k", [-4.0, -2.5, 1.0, 3.0, 4.0])
def test_pitch_shift_moves_a_tone_by_two_to_the_k_over_12(k: float) -> None:
    f0 = 1000.0
    y = tone(f0, 1.0)
    out = wf.pitch_shift(y, SR, k)
    assert out.shape == y.shape and out.dtype == np.float32
    # Measure on the middle (edges carry the resampler's and vocoder's transients).
    mid = out[4096:-4096]
    # Tolerance: two bins of the unpadded FFT of the analysed segment (SR/N ≈ 1.2 Hz),
    # i.e. ±2.5 Hz. A 0.1-semitone error at 1 kHz is ≥ 5.9 Hz and a wrong sign tens of
    # Hz, so both fail; measured errors are < 0.02 Hz (the vocoder keeps a stationary
    # tone's frequency exactly).
    tol = 2 * SR / mid.size
    assert abs(peak_frequency(mid) - f0 * 2 ** (k / 12)) < tol


def test_pitch_sampler_covers_the_range_and_stays_in_it() -> None:
    rng = np.random.default_rng(0)
    draws = np.array([wf.sample_pitch_steps(rng, 4.0) for _ in range(2000)])
    assert draws.min() >= -4 and draws.max() <= 4
    assert draws.min() < -3.9 and draws.max() > 3.9  # uniform over the whole range
    assert abs(draws.mean()) < 0.2  # sd of the mean of 2000 U(-4,4) draws: 0.05


# ----------------------------------------------------------------------------- speed


def _burst() -> tuple[np.ndarray, float, float]:
    y = np.zeros(3 * SR, dtype=np.float32)
    on, off = int(0.5 * SR), int(1.5 * SR)
    y[on:off] = tone(1000.0, 1.0)
    return y, 0.5, 1.0


@pytest.mark.parametrize("method", ["stretch", "resample"])
@pytest.mark.parametrize("rate", [0.5, 0.7, 1.3, 2.0])
def test_speed_change_scales_a_bursts_timing_by_one_over_rate(method: str, rate: float) -> None:
    y, onset, duration = _burst()
    out = wf.change_speed(y, rate, sample_rate=SR, method=method)
    assert abs(out.size - y.size / rate) <= 2
    on, off = burst_edges(out)
    # Tolerance 55 ms: the phase vocoder (n_fft 2048) smears an edge by up to one window
    # (46 ms), plus the 5-ms RMS frame; resampling is exact to a frame. Measured worst
    # case: 43 ms (stretch, rate 0.5), 3 ms (resample). The durations tested differ by
    # ≥ 230 ms from the unchanged 1 s, so a missing or inverted change fails.
    tol = 0.055 if method == "stretch" else 0.006
    assert abs((off - on) - duration / rate) < tol
    assert abs(on - onset / rate) < tol


def test_stretch_keeps_pitch_and_resample_moves_it() -> None:
    y = tone(1000.0, 1.0)
    stretched = wf.change_speed(y, 1.5, sample_rate=SR, method="stretch")
    resampled = wf.change_speed(y, 1.5, sample_rate=SR, method="resample")
    tol = 2 * SR / (stretched.size - 4096)
    assert abs(peak_frequency(stretched[2048:-2048]) - 1000.0) < tol
    assert abs(peak_frequency(resampled[2048:-2048]) - 1500.0) < tol


def test_speed_change_tiles_short_output_and_cuts_long_output() -> None:
    rng = np.random.default_rng(1)
    y = (0.1 * rng.standard_normal(SR)).astype(np.float32)
    fast = wf.speed_change(y, 2.0, sample_rate=SR, method="resample")
    pre = wf.change_speed(y, 2.0, sample_rate=SR, method="resample")
    assert fast.shape == y.shape
    np.testing.assert_array_equal(fast[: pre.size], pre)
    np.testing.assert_array_equal(fast[pre.size :], pre[: y.size - pre.size])
    slow = wf.speed_change(y, 0.5, sample_rate=SR, method="stretch")
    assert slow.shape == y.shape
    np.testing.assert_array_equal(slow, wf.change_speed(y, 0.5, sample_rate=SR)[: y.size])


def test_tile_to_length_repeats_many_times() -> None:
    out = wf.tile_to_length(np.array([1.0, 2.0, 3.0], dtype=np.float32), 8)
    np.testing.assert_array_equal(out, [1, 2, 3, 1, 2, 3, 1, 2])


# ----------------------------------------------------------------------------- noise


def test_noise_has_the_intended_std_and_leaves_the_signal_and_zeros_alone() -> None:
    y = np.concatenate([tone(440.0, 1.0), np.zeros(SR // 2, dtype=np.float32)])
    out = wf.add_noise(y, np.random.default_rng(3), 0.01)
    residual = (out.astype(np.float64) - y)[:SR]
    # std of a 44,100-sample estimate: 0.01/sqrt(2N) ≈ 0.34 %; ±3 % is ~9 sd.
    assert residual.std() == pytest.approx(0.01, rel=0.03)
    assert abs(residual.mean()) < 5 * 0.01 / np.sqrt(SR)
    # the noise is independent of the signal: the signal passes through unchanged
    assert abs(np.corrcoef(residual, y[:SR])[0, 1]) < 5 / np.sqrt(SR)
    assert np.all(out[SR:] == 0.0)  # D20 keeps exact zeros (padding) silent
    noisy_pad = wf.add_noise(y, np.random.default_rng(3), 0.01, keep_zeros=False)
    assert noisy_pad[SR:].std() == pytest.approx(0.01, rel=0.05)


# ----------------------------------------------------------------------------- mix

_FREQS: dict[str, float] = {}


def fake_loader(path: str, sample_rate: int, seconds: float | None) -> np.ndarray:
    """Each path is a tone of its own frequency (module level: picklable)."""
    return tone(_FREQS[path], 0.2, amp=0.3)


def _mix_meta() -> pd.DataFrame:
    scenes = ["bus"] * 4 + ["park"] * 3 + ["tram"] * 2
    paths = [f"/clips/{s}-{i}.wav" for i, s in enumerate(scenes)]
    for i, p in enumerate(paths):
        _FREQS[p] = 200.0 + 50.0 * i
    return pd.DataFrame({"scene": scenes, "path": paths})


def test_mix_uses_a_same_scene_partner_and_gains_in_range() -> None:
    meta = _mix_meta()
    t = wf.WaveTransform.for_split("mix", meta, seed=5, seconds=0.2)
    t.loader = fake_loader
    used: dict[int, set[str]] = {i: set() for i in range(len(meta))}
    for seed in range(40):
        t.seed = seed
        for i, (scene, path) in enumerate(zip(meta["scene"], meta["path"])):
            y = fake_loader(path, SR, 0.2)
            out = t(y, i)
            partner = t.last_draw["partner"]
            assert partner != path
            assert meta.loc[meta["path"] == partner, "scene"].item() == scene
            used[i].add(partner)
            # recover the gains from the output by least squares on (y, y2)
            y2 = fake_loader(partner, SR, 0.2)
            basis = np.stack([y, y2], axis=1).astype(np.float64)
            gains, *_ = np.linalg.lstsq(basis, out.astype(np.float64), rcond=None)
            assert np.allclose(gains, [t.last_draw["gain1"], t.last_draw["gain2"]], atol=1e-5)
            assert np.all((gains >= 0.5 - 1e-5) & (gains <= 1.0 + 1e-5))
    # over 40 seeds every other member of the group gets drawn
    for i, scene in enumerate(meta["scene"]):
        assert len(used[i]) == (meta["scene"] == scene).sum() - 1


def test_mix_with_real_files_and_after_pickling(tmp_path) -> None:
    meta = _mix_meta()
    paths = []
    for i, _ in enumerate(meta["path"]):
        p = tmp_path / f"clip{i}.wav"
        write_wav(p, tone(300.0 + 40 * i, 0.2, amp=0.25), SR)
        paths.append(str(p))
    meta["path"] = paths
    t = wf.WaveTransform.for_split("mix", meta, seed=11, seconds=0.2)
    clone = pickle.loads(pickle.dumps(t))
    y = tone(1000.0, 0.2)
    out = t(y, 2)
    np.testing.assert_array_equal(clone(y, 2), out)
    partner = t.last_draw["partner"]
    y2 = sf.read(partner, dtype="float32")[0].astype(np.float64)
    expected = t.last_draw["gain1"] * y + t.last_draw["gain2"] * y2
    assert np.max(np.abs(out - expected)) < 1e-6


def test_mix_refuses_a_scene_with_one_clip() -> None:
    meta = pd.DataFrame({"scene": ["bus", "bus", "park"], "path": ["a", "b", "c"]})
    with pytest.raises(InputError, match="park"):
        wf.WaveTransform.for_split("mix", meta, seed=0)


def test_choose_partner_never_returns_self() -> None:
    rng = np.random.default_rng(0)
    picks = [wf.choose_partner(rng, 3, 1) for _ in range(300)]
    assert set(picks) == {0, 2}


# ----------------------------------------------------------------------------- reverb


def schroeder_rt60(h: np.ndarray, sample_rate: int = SR) -> float:
    """RT60 from the energy decay curve (Schroeder backward integration) of a response.

    The -5 to -25 dB range of the curve (T20) fitted by least squares, extrapolated to
    60 dB: the standard measurement of a room's reverberation time (ISO 3382).
    """
    tail = np.asarray(h, dtype=np.float64)[1:]  # the reverberant part, without the direct path
    edc = np.cumsum(tail[::-1] ** 2)[::-1]
    db = 10 * np.log10(edc / edc[0])
    sel = np.flatnonzero((db <= -5) & (db >= -25))
    slope, _ = np.polyfit(sel / sample_rate, db[sel], 1)
    return -60.0 / slope


@pytest.mark.parametrize("rt60", [0.3, 0.6, 1.0])
def test_room_response_decays_60_db_per_rt60(rt60: float) -> None:
    h = wf.room_impulse_response(rt60, SR, np.random.default_rng(1), wet=0.5)
    assert h[0] == 1.0  # direct path at t = 0
    assert h.size == round(rt60 * SR)
    # the tail's energy relative to the direct path is wet² (0.5² here)
    assert np.sum(h[1:] ** 2) == pytest.approx(0.25, rel=1e-9)
    # measured decay within 5 % of the drawn RT60 (noise of one response: ~1 %)
    assert schroeder_rt60(h) == pytest.approx(rt60, rel=0.05)


def test_a_longer_rt60_gives_more_late_energy_in_the_output() -> None:
    """Late energy of a reverberated click: after 0.2 s, more with a longer RT60."""
    click = np.zeros(SR, dtype=np.float32)
    click[100] = 1.0
    late = []
    for rt60 in (0.3, 0.6, 1.0):
        h = wf.room_impulse_response(rt60, SR, np.random.default_rng(2), wet=0.7)
        out = wf.reverberate(click, h, match="peak").astype(np.float64)
        late.append(np.sum(out[100 + SR // 5 :] ** 2) / np.sum(out**2))
    assert late[0] < late[1] < late[2]


def test_reverb_keeps_the_length_and_the_level() -> None:
    y = tone(500.0, 0.5, amp=0.4) * np.hanning(SR // 2).astype(np.float32)
    h = wf.room_impulse_response(0.8, SR, np.random.default_rng(3), wet=0.8)
    rms = wf.reverberate(y, h)
    peak = wf.reverberate(y, h, match="peak")
    assert rms.shape == y.shape == peak.shape and rms.dtype == np.float32
    assert np.sqrt(np.mean(rms.astype(np.float64) ** 2)) == pytest.approx(
        np.sqrt(np.mean(y.astype(np.float64) ** 2)), rel=1e-5
    )
    assert np.max(np.abs(peak)) == pytest.approx(np.max(np.abs(y)), rel=1e-5)
    assert not np.allclose(rms, y, atol=1e-3)  # it did change the clip
    silent = np.zeros(1000, dtype=np.float32)
    np.testing.assert_array_equal(wf.reverberate(silent, h), silent)


def test_wet_gain_zero_is_the_dry_clip() -> None:
    y = (0.1 * np.random.default_rng(4).standard_normal(SR // 4)).astype(np.float32)
    t = wf.WaveTransform("reverb", seed=0, params={"wet_min": 0.0, "wet_max": 0.0})
    out = t(y, 3)
    assert t.last_draw["wet"] == 0.0 and 0.3 <= t.last_draw["rt60"] <= 1.0
    np.testing.assert_allclose(out, y, atol=1e-6)


def test_reverb_draws_stay_in_the_configured_ranges() -> None:
    t = wf.WaveTransform(
        "reverb", seed=9, params={"rt60_min": 0.2, "rt60_max": 0.4, "wet_max": 0.5}
    )
    y = (0.1 * np.random.default_rng(5).standard_normal(SR // 10)).astype(np.float32)
    draws = []
    for i in range(60):
        t(y, i)
        draws.append((t.last_draw["rt60"], t.last_draw["wet"]))
    rt60s, wets = np.array(draws).T
    assert rt60s.min() >= 0.2 and rt60s.max() <= 0.4 and rt60s.max() - rt60s.min() > 0.1
    assert wets.min() >= 0.3 and wets.max() <= 0.5


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"rt60_min": 0.0}, "rt60_min <= rt60_max"),
        ({"rt60_min": 1.5}, "rt60_min <= rt60_max"),
        ({"wet_min": -0.1}, "wet_min <= wet_max"),
        ({"wet_min": 0.9}, "wet_min <= wet_max"),
        ({"rt60_max": "long"}, "rt60_max: expected a number"),
        ({"match": "loudness"}, "match: expected one of"),
        ({"rt60": 0.5}, "unknown key 'rt60'"),
    ],
)
def test_bad_reverb_params_are_named(params: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        wf.resolve_params("reverb", params)
    with pytest.raises(InputError, match="rt60 must be > 0"):
        wf.room_impulse_response(0.0, SR, np.random.default_rng(0))


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("kind", ["pitch", "speed", "noise", "mix", "reverb"])
def test_same_seed_and_index_give_identical_output_in_any_order(kind: str) -> None:
    meta = _mix_meta()
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(SR // 5)).astype(np.float32) for _ in range(len(meta))]
    first = wf.WaveTransform.for_split(kind, meta, seed=123, seconds=0.2)
    second = pickle.loads(pickle.dumps(first))  # as a DataLoader worker gets it
    first.loader = second.loader = fake_loader
    order = list(range(len(meta)))
    forward = {i: first(clips[i], i) for i in order}
    backward = {i: second(clips[i], i) for i in reversed(order)}
    for i in order:
        np.testing.assert_array_equal(forward[i], backward[i])
        assert forward[i].shape == clips[i].shape and forward[i].dtype == np.float32
    other = wf.WaveTransform.for_split(kind, meta, seed=124, seconds=0.2)
    other.loader = fake_loader
    assert not np.array_equal(other(clips[0], 0), forward[0])
    assert not np.array_equal(first(clips[0], 1), forward[0])


def test_clip_rng_depends_on_seed_kind_and_index_only() -> None:
    a = wf.clip_rng(7, 3, "noise").standard_normal(4)
    np.testing.assert_array_equal(a, wf.clip_rng(7, 3, "noise").standard_normal(4))
    assert not np.array_equal(a, wf.clip_rng(7, 3, "pitch").standard_normal(4))
    assert not np.array_equal(a, wf.clip_rng(7, 4, "noise").standard_normal(4))
    with pytest.raises(InputError):
        wf.clip_rng(-1, 0)


def test_params_are_checked() -> None:
    with pytest.raises(InputError, match="unknown key 'steps'"):
        wf.resolve_params("pitch", {"steps": 3})
    with pytest.raises(InputError, match="rate_min"):
        wf.resolve_params("speed", {"rate_min": 3.0})
    with pytest.raises(InputError, match="method"):
        wf.resolve_params("speed", {"method": "tape"})
    with pytest.raises(InputError, match="kind"):
        wf.resolve_params("chorus", {})
    assert wf.resolve_params("noise", {"std": 0.02}) == {"std": 0.02, "keep_zeros": True}
