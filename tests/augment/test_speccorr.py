"""Spectrum correction: coefficients recover a known device response and correct device a."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.signal as ss

from acoustic_lottery.augment import speccorr as sc
from acoustic_lottery.errors import InputError

SR = 44100
N_FFT = 2048
HOP = 1024
FREQS = np.arange(N_FFT // 2 + 1) * SR / N_FFT

#: Known device responses (linear-phase FIRs): a band-pass and a tilted low-pass.
FILTERS = {
    "b": ss.firwin2(
        129, [0, 200, 400, 4000, 8000, 16000, 22050], [0.05, 0.3, 1.0, 1.0, 0.5, 0.1, 0.05], fs=SR
    ),
    "c": ss.firwin2(129, [0, 1000, 6000, 12000, 22050], [1.2, 1.0, 0.6, 0.2, 0.1], fs=SR),
}
RESPONSE = {d: np.abs(ss.freqz(h, worN=FREQS, fs=SR)[1]) for d, h in FILTERS.items()}


def scene_clip(rng: np.random.Generator, seconds: float = 1.0) -> np.ndarray:
    """Coloured noise with a slow random envelope and level, like a scene recording."""
    n = int(seconds * SR)
    x = ss.lfilter([1.0], [1.0, -0.9], rng.standard_normal(n + 2000))[2000:]
    env = 0.2 + np.abs(np.sin(np.linspace(0, rng.uniform(2, 12), n)))
    return (x * env * rng.uniform(0.01, 0.1)).astype(np.float32)


def record(a: np.ndarray, device: str, rng: np.random.Generator) -> np.ndarray:
    """Device `device` hears `a` through its filter plus noise 60 dB below the signal."""
    d = np.convolve(a, FILTERS[device])[: a.size]
    return (d + 1e-3 * a.std() * rng.standard_normal(a.size)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus() -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """21 recordings heard by a, b, c (the last one held out) + unpaired clips."""
    rng = np.random.default_rng(2020)
    audio: dict[str, np.ndarray] = {}
    rows = []
    for seg in range(21):
        a = scene_clip(rng)
        for device, y in (("a", a), ("b", record(a, "b", rng)), ("c", record(a, "c", rng))):
            name = f"audio/bus-lisbon-1-{seg}-{device}.wav"
            audio[f"/data/{name}"] = y
            if seg < 20:
                rows.append((name, f"/data/{name}", device))
    # unpaired: a device-a clip without partners and a b clip without its a clip
    for name in ("audio/park-milan-2-0-a.wav", "audio/park-milan-3-5-b.wav"):
        audio[f"/data/{name}"] = scene_clip(rng)
        rows.append((name, f"/data/{name}", name[-5]))
    meta = pd.DataFrame(rows, columns=["filename", "path", "device"])
    return meta, audio


def test_coefficients_recover_the_device_response_and_correct_a_held_out_clip(corpus) -> None:
    meta, audio = corpus
    coeffs = sc.estimate_coefficients(
        meta,
        n_fft=N_FFT,
        hop=HOP,
        seconds=1.0,
        max_pairs=150,
        seed=0,
        loader=lambda p, sr, s: audio[p],
    )
    assert sorted(coeffs) == ["b", "c"]
    held_a = sc.stft_magnitude(audio["/data/audio/bus-lisbon-1-20-a.wav"], N_FFT, HOP)
    for device in ("b", "c"):
        h = RESPONSE[device]
        band = h > 0.3  # pass band: away from the stop band where the 60-dB noise dominates
        coef = coeffs[device]
        assert coef.shape == (N_FFT // 2 + 1,)
        # 20 pairs × 44 frames: the estimate sits on |H| (measured: median 0.4 %, max 2.0 %)
        assert np.max(np.abs(coef[band] - h[band]) / h[band]) < 0.03

        held_d = sc.stft_magnitude(audio[f"/data/audio/bus-lisbon-1-20-{device}.wav"], N_FFT, HOP)
        target = held_d.mean(axis=1)
        corrected = coef * held_a.mean(axis=1)
        err = np.abs(corrected - target) / target
        uncorrected = np.abs(held_a.mean(axis=1) - target) / target
        oracle = np.abs(h * held_a.mean(axis=1) - target) / target

        # The tolerance is set by frame averaging: one held-out clip has T = 44 frames;
        # the delta-method sd of its ratio of mean magnitudes, per bin, is
        # sd(|X_d| - r|H X_a|) / (sqrt(T) mean|H X_a|) — computed here (median ≈ 2.0 %). The
        # median |error| of a normal error is 0.67 sd ≈ 1.4 %, so 5 % is 2.5 sd of the
        # median bin. Measured: 1.5 % (b and c); oracle correction with the true |H|: 1.5 %.
        t = held_a.shape[1]
        x, y = held_d[band], (h[:, None] * held_a)[band]
        r = x.mean(axis=1) / y.mean(axis=1)
        sd = np.sqrt(np.var(x - r[:, None] * y, axis=1, ddof=1) / t) / y.mean(axis=1)
        assert np.median(sd) < 0.025
        assert np.median(err[band]) < 0.05
        assert np.median(err[band]) < np.median(oracle[band]) + 0.01
        assert np.median(uncorrected[band]) > 0.2  # the correction did something


def test_ratio_of_means_is_more_stable_than_mean_of_ratios(corpus) -> None:
    meta, audio = corpus
    kw = dict(n_fft=N_FFT, hop=HOP, seconds=1.0, seed=0, loader=lambda p, sr, s: audio[p])
    robust = sc.estimate_coefficients(meta, devices=["b"], **kw)["b"]
    d20 = sc.estimate_coefficients(meta, devices=["b"], method="mean_of_ratios", **kw)["b"]
    h = RESPONSE["b"]
    band = h > 0.3
    err_robust = np.abs(robust[band] - h[band]) / h[band]
    err_d20 = np.abs(d20[band] - h[band]) / h[band]
    # frames where |X_a| is small blow up the per-frame ratio: measured max relative
    # error 300 (b) and 4.6 (c) against 0.02 for the ratio of means
    assert np.max(err_d20) > 5 * np.max(err_robust)
    assert np.median(err_d20) > np.median(err_robust)


def test_correction_gain_averages_the_other_devices() -> None:
    coeffs = {d: np.full(5, float(i + 1)) for i, d in enumerate(["b", "c", "s1", "s2", "s3"])}
    coeffs["b"][0] = 11.0
    gain = sc.correction_gain(coeffs)
    np.testing.assert_allclose(gain, [5.0, 3.0, 3.0, 3.0, 3.0])
    np.testing.assert_allclose(sc.correction_gain(coeffs, ["c", "s3"]), np.full(5, 3.5))
    with pytest.raises(InputError, match="s2"):
        sc.correction_gain({"b": np.ones(5), "c": np.ones(5)}, ["b", "s2"])
    with pytest.raises(InputError, match="shapes"):
        sc.correction_gain({"b": np.ones(5), "c": np.ones(6)}, ["b", "c"])


def test_pairs_need_the_same_identifier_segment_and_subsegment() -> None:
    names = [
        "audio/bus-lisbon-1-10-a.wav",
        "audio/bus-lisbon-1-10-b.wav",
        "audio/bus-lisbon-1-11-b.wav",  # other segment: no partner
        "audio/bus-lisbon-2-10-b.wav",  # other location: no partner
        "audio/tram-paris-3-7-0-a.wav",  # TAU22 names carry a subsegment
        "audio/tram-paris-3-7-0-s1.wav",
        "audio/tram-paris-3-7-1-s1.wav",  # other subsegment: no partner
    ]
    meta = pd.DataFrame(
        {
            "filename": names,
            "path": [f"/r/{n}" for n in names],
            "device": [n.rsplit("-", 1)[1][:-4] for n in names],
        }
    )
    pairs = sc.find_pairs(meta)
    assert pairs == {
        "b": [
            ("bus-lisbon-1-10", "/r/audio/bus-lisbon-1-10-a.wav", "/r/audio/bus-lisbon-1-10-b.wav")
        ],
        "s1": [
            (
                "tram-paris-3-7-0",
                "/r/audio/tram-paris-3-7-0-a.wav",
                "/r/audio/tram-paris-3-7-0-s1.wav",
            )
        ],
    }
    with pytest.raises(InputError, match="'c'"):
        sc.find_pairs(meta, devices=["b", "c"])
    with pytest.raises(InputError, match="reference device"):
        sc.find_pairs(meta[meta["device"] != "a"])
    bad = meta.copy()
    bad.loc[0, "device"] = "b"
    with pytest.raises(InputError, match="device suffix"):
        sc.find_pairs(bad)


def test_select_pairs_caps_the_count_deterministically() -> None:
    pairs = {"b": [(str(i), f"a{i}", f"b{i}") for i in range(300)], "c": [("0", "a0", "c0")]}
    first = sc.select_pairs(pairs, max_pairs=150, seed=1)
    assert len(first["b"]) == 150 and len(set(first["b"])) == 150
    assert set(first["b"]) <= set(pairs["b"])
    assert first["c"] == pairs["c"]
    assert sc.select_pairs(pairs, max_pairs=150, seed=1) == first
    assert sc.select_pairs(pairs, max_pairs=150, seed=2)["b"] != first["b"]
    # a device's selection does not depend on which other devices are estimated
    assert sc.select_pairs({"b": pairs["b"]}, max_pairs=150, seed=1)["b"] == first["b"]
    with pytest.raises(InputError, match="max_pairs"):
        sc.select_pairs(pairs, max_pairs=0, seed=1)


def test_coefficients_round_trip_without_pickle(tmp_path) -> None:
    coeffs = {"s1": np.linspace(0.5, 2, 7), "b": np.arange(7.0)}
    info = {"n_fft": 12, "pairs": {"b": 3, "s1": 2}}
    path = tmp_path / "coeffs.npz"
    sc.save_coefficients(path, coeffs, info)
    assert [p.name for p in tmp_path.iterdir()] == ["coeffs.npz"]  # no temp file left
    with np.load(path, allow_pickle=False) as data:
        assert list(data["devices"]) == ["b", "s1"]  # device order of labels.DEVICES
    loaded, loaded_info = sc.load_coefficients(path)
    assert loaded_info == info
    assert sorted(loaded) == ["b", "s1"]
    for d in coeffs:
        np.testing.assert_array_equal(loaded[d], coeffs[d])
    (tmp_path / "other.npz").write_bytes(b"not an npz")
    with pytest.raises(InputError, match="other.npz"):
        sc.load_coefficients(tmp_path / "other.npz")
    with pytest.raises(InputError, match="not found"):
        sc.load_coefficients(tmp_path / "absent.npz")


def test_resample_gain_keeps_the_frequency_axis() -> None:
    gain = np.linspace(1.0, 3.0, 1025)  # n_fft 2048
    out = sc.resample_gain(gain, 513)  # n_fft 1024: bin k here is bin 2k there
    np.testing.assert_allclose(out, gain[::2])
