"""The augmented copies end to end: a tiny TAU layout -> coefficients -> HDF5 copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.signal as ss

from acoustic_lottery import cli
from acoustic_lottery.augment import speccorr
from acoustic_lottery.augment.copies import make_copy
from acoustic_lottery.augment.waveform import DEFAULT_PARAMS, WaveTransform
from acoustic_lottery.data.audio import load_audio, write_wav
from acoustic_lottery.data.tau import read_split
from acoustic_lottery.errors import InputError
from acoustic_lottery.features.extract import extract_split, make_config
from acoustic_lottery.features.lmfb import logmel_librosa
from acoustic_lottery.features.store import read_features

SR = 44100
SECONDS = 1.0
#: Device b hears device a through this band-pass FIR.
FIR_B = ss.firwin2(129, [0, 300, 600, 5000, 10000, 22050], [0.1, 0.4, 1.0, 1.0, 0.3, 0.1], fs=SR)
#: Torch STFT vs the librosa reference after min-max and deltas (lmfb tests: 1e-4;
#: measured here: <= 7e-6). A wrong transform or clip index gives > 0.02.
REF_TOL = 1e-4


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """2 scenes × 3 segments, each recorded by devices a and b, plus one s1 clip."""
    root = tmp_path_factory.mktemp("tau")
    rng = np.random.default_rng(7)
    lines = ["filename\tscene_label"]
    for scene, city in (("bus", "lisbon"), ("park", "milan")):
        for seg in range(3):
            x = ss.lfilter([1.0], [1.0, -0.8], rng.standard_normal(int(SR * SECONDS)))
            a = 0.05 * x / np.abs(x).max() * rng.uniform(1, 4)
            b = np.convolve(a, FIR_B)[: a.size] + 1e-5 * rng.standard_normal(a.size)
            for device, y in (("a", a), ("b", b)):
                name = f"audio/{scene}-{city}-1-{seg}-{device}.wav"
                write_wav(root / name, y, SR)
                lines.append(f"{name}\t{scene}")
    name = "audio/bus-lisbon-2-9-s1.wav"  # no device-a partner: not paired
    write_wav(root / name, 0.01 * rng.standard_normal(SR), SR)
    lines.append(f"{name}\tbus")
    (root / "evaluation_setup").mkdir()
    (root / "evaluation_setup" / "fold1_train.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def orig(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("orig") / "orig.h5"
    extract_split(read_split(root, "train"), out, "lmfb", seconds=SECONDS, workers=0)
    return read_features(out)


def _parser(monkeypatch):
    monkeypatch.setattr(cli, "GROUPS", ("augment",))
    return cli.build_parser()


@pytest.mark.parametrize(
    ("kind", "workers"), [("pitch", 0), ("speed", 0), ("noise", 0), ("mix", 2), ("reverb", 0)]
)
def test_waveform_copy_holds_every_clip_transformed_with_its_own_seed(
    root, orig, tmp_path, kind, workers
) -> None:
    out = tmp_path / f"{kind}.h5"
    n = make_copy(kind, root, out, seconds=SECONDS, seed=3, workers=workers, batch_size=4)
    fs = read_features(out)
    assert n == len(fs) == len(orig) == 13
    assert fs.attrs["copy"] == kind and fs.attrs["split"] == "train"
    assert fs.attrs["augment"] == {
        "kind": kind,
        "seed": 3,
        "params": DEFAULT_PARAMS[kind],
    }
    np.testing.assert_array_equal(fs.filename, orig.filename)
    np.testing.assert_array_equal(fs.label10, orig.label10)
    assert fs.x.shape == orig.x.shape
    # every clip changed (a copy of the original would be useless)
    diff = np.abs(fs.x - orig.x).reshape(len(fs), -1).max(axis=1)
    assert np.all(diff > 0.02)
    # rows are the transform of their own clip with their own row index
    meta = read_split(root, "train")
    transform = WaveTransform.for_split(kind, meta, seed=3, seconds=SECONDS)
    cfg = make_config("lmfb")
    for i in (0, 7, 12):
        y = load_audio(meta["path"][i], sample_rate=SR, seconds=SECONDS)
        expected = logmel_librosa(transform(y, i), cfg)
        assert np.max(np.abs(fs.x[i] - expected)) < REF_TOL
        if kind == "mix":
            partner = transform.last_draw["partner"]
            assert Path(partner).name.split("-")[0] == meta["scene"][i]
            assert partner != str(meta["path"][i])


def test_copies_are_deterministic_whatever_the_workers(root, tmp_path) -> None:
    kw = dict(seconds=SECONDS, batch_size=3)
    make_copy("noise", root, tmp_path / "w0.h5", seed=5, workers=0, **kw)
    make_copy("noise", root, tmp_path / "w2.h5", seed=5, workers=2, **kw)
    make_copy("noise", root, tmp_path / "s6.h5", seed=6, workers=0, **kw)
    x0, x2, x6 = (read_features(tmp_path / f).x for f in ("w0.h5", "w2.h5", "s6.h5"))
    np.testing.assert_array_equal(x0, x2)
    assert not np.array_equal(x0, x6)


def test_speccorr_cli_estimates_coefficients_and_corrects_device_a_only(
    root, tmp_path, monkeypatch
) -> None:
    parser = _parser(monkeypatch)
    coeffs_path = tmp_path / "coeffs.npz"
    args = parser.parse_args(
        [
            "speccorr-coefficients",
            "--dataset-root",
            str(root),
            "--out",
            str(coeffs_path),
            "--seconds",
            "1",
            "--max-pairs",
            "4",
            "--seed",
            "1",
        ]
    )
    assert args.func(args) == 0
    coeffs, info = speccorr.load_coefficients(coeffs_path)
    assert sorted(coeffs) == ["b"]  # s1 has no time-aligned device-a clip: skipped
    assert info["n_pairs"] == {"b": 4} and info["n_fft"] == 2048 and info["seed"] == 1
    # 4 pairs of 1-s clips (176 frames): the coefficient follows the FIR's response
    freqs = np.arange(1025) * SR / 2048
    h = np.abs(ss.freqz(FIR_B, worN=freqs, fs=SR)[1])
    band = h > 0.3
    assert np.median(np.abs(coeffs["b"][band] - h[band]) / h[band]) < 0.05

    out = tmp_path / "speccorr.h5"
    args = parser.parse_args(
        [
            "augment",
            "--kind",
            "speccorr",
            "--dataset-root",
            str(root),
            "--out",
            str(out),
            "--coefficients",
            str(coeffs_path),
            "--seconds",
            "1",
            "--workers",
            "0",
        ]
    )
    assert args.func(args) == 0
    fs = read_features(out)
    assert fs.attrs["copy"] == "speccorr"
    assert list(fs.device) == ["a"] * 6  # device-a training clips only
    prov = fs.attrs["augment"]
    assert prov["gain_devices"] == ["b"] and prov["coefficients_meta"]["seed"] == 1
    cfg = make_config("lmfb")
    meta = read_split(root, "train")
    meta = meta[meta["device"] == "a"].reset_index(drop=True)
    for i in range(len(meta)):
        y = load_audio(meta["path"][i], sample_rate=SR, seconds=SECONDS)
        expected = logmel_librosa(y, cfg, stft_gain=coeffs["b"])
        assert np.max(np.abs(fs.x[i] - expected)) < REF_TOL
        assert np.max(np.abs(fs.x[i] - logmel_librosa(y, cfg))) > 0.02  # it did change


def test_augment_cli_reports_bad_input_as_exit_code_2(root, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli, "GROUPS", ("augment",))
    out = str(tmp_path / "x.h5")
    base = ["--dataset-root", str(root), "--out", out, "--seconds", "1", "--workers", "0"]
    assert cli.main(["augment", "--kind", "speccorr", *base]) == 2
    assert "--coefficients" in capsys.readouterr().err
    assert cli.main(["augment", "--kind", "pitch", "--aug-params", '{"steps": 1}', *base]) == 2
    assert "steps" in capsys.readouterr().err
    assert cli.main(["augment", "--kind", "noise", "--params", '{"n_mel": 64}', *base]) == 2
    assert "n_mel" in capsys.readouterr().err
    assert not Path(out).exists()


def test_speccorr_copy_needs_every_requested_device(root, tmp_path) -> None:
    with pytest.raises(InputError, match="lack devices"):
        make_copy(
            "speccorr",
            root,
            tmp_path / "x.h5",
            seconds=SECONDS,
            seed=0,
            workers=0,
            coefficients={"b": np.ones(1025)},
            gain_devices=["b", "c"],
        )
