"""extract_split end to end on tiny WAV files: order, labels, gains, transforms, CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from acoustic_lottery import cli
from acoustic_lottery.errors import InputError
from acoustic_lottery.features.extract import build_extractor, extract_split, make_config
from acoustic_lottery.features.lmfb import LogMelConfig, logmel_librosa
from acoustic_lottery.features.store import read_features

SR = 44100
SECONDS = 0.5
N = int(SECONDS * SR)
DEVICES = ["a", "b", "c", "s1", "s2", "s3"]
SCENES = ["airport", "bus", "metro", "park", "tram", "airport"]


def _write_clips(root: Path, n_clips: int = 6) -> pd.DataFrame:
    """Six 0.5 s 24-bit WAVs in the TAU naming scheme, and their split table."""
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    rows = []
    labels10 = {"airport": 0, "bus": 1, "metro": 2, "park": 4, "tram": 9}
    labels3 = {"airport": 0, "bus": 2, "metro": 2, "park": 1, "tram": 2}
    for i in range(n_clips):
        scene, device = SCENES[i], DEVICES[i]
        name = f"{scene}-lyon-{100 + i}-{i}-{device}.wav"
        t = np.arange(N) / SR
        y = 0.05 * rng.standard_normal(N) + 0.2 * np.sin(2 * np.pi * (200 + 150 * i) * t)
        sf.write(audio / name, y, SR, subtype="PCM_24")
        rows.append(
            {
                "filename": f"audio/{name}",
                "path": (audio / name).resolve(),
                "scene": scene,
                "label10": labels10[scene],
                "label3": labels3[scene],
                "device": device,
                "city": "lyon",
                "identifier": f"lyon-{100 + i}",
                "segment": str(i),
            }
        )
    return pd.DataFrame(rows)


def _read_waves(meta: pd.DataFrame) -> np.ndarray:
    return np.stack([sf.read(p, dtype="float32")[0] for p in meta["path"]])


@dataclasses.dataclass(frozen=True)
class HalfMute:
    """Picklable test transform: mutes the first half of even rows, second half of odd."""

    factor: float = 0.01

    def __call__(self, y: np.ndarray, index: int) -> np.ndarray:
        out = y.copy()
        half = len(y) // 2
        if index % 2 == 0:
            out[:half] *= self.factor
        else:
            out[half:] *= self.factor
        return out


def _shorten(y: np.ndarray, index: int) -> np.ndarray:
    return y[: len(y) // 2]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> pd.DataFrame:
    return _write_clips(tmp_path_factory.mktemp("tau"))


def test_end_to_end_with_two_workers(clips, tmp_path):
    out = tmp_path / "features" / "train.h5"
    n = extract_split(clips, out, "lmfb", None, seconds=SECONDS, batch_size=4, workers=2)
    assert n == 6
    fs = read_features(out)
    frames = 1 + N // 1024 - 8
    assert fs.x.shape == (6, 3, 128, frames)
    waves = _read_waves(clips)
    expected = build_extractor("lmfb")(torch.from_numpy(waves)).numpy()
    np.testing.assert_array_equal(fs.x, expected)  # same rows, same order
    for i in (0, 5):
        assert np.abs(fs.x[i] - logmel_librosa(waves[i])).max() < 1e-4
    assert list(fs.filename) == list(clips["filename"])
    assert list(fs.device) == DEVICES
    np.testing.assert_array_equal(fs.label10, clips["label10"].to_numpy())
    np.testing.assert_array_equal(fs.label3, clips["label3"].to_numpy())
    a = fs.attrs
    assert a["feature_set"] == "lmfb" and a["split"] == "train" and a["copy"] == "orig"
    assert a["params"] == LogMelConfig().to_dict()
    assert a["torch_version"] == torch.__version__
    assert a["code_version"]
    assert not list(out.parent.glob(".*"))  # no temporary left behind


def test_stft_gain_ones_equals_no_gain_and_gain_changes_features(clips, tmp_path):
    plain, ones, tilt = tmp_path / "p.h5", tmp_path / "o.h5", tmp_path / "t.h5"
    kw = {"seconds": SECONDS, "batch_size": 3, "workers": 0}
    extract_split(clips, plain, "lmfb", None, **kw)
    extract_split(clips, ones, "lmfb", None, stft_gain=np.ones(1025), copy="speccorr", **kw)
    gain = np.linspace(0.2, 4.0, 1025)
    extract_split(clips, tilt, "lmfb", None, stft_gain=gain, copy="speccorr", **kw)
    x_plain, x_ones = read_features(plain).x, read_features(ones).x
    np.testing.assert_array_equal(x_ones, x_plain)
    t = read_features(tilt)
    assert np.abs(t.x - x_plain).max() > 1e-2
    assert t.attrs["copy"] == "speccorr"
    waves = _read_waves(clips)
    assert np.abs(t.x[2] - logmel_librosa(waves[2], stft_gain=gain)).max() < 1e-4
    with pytest.raises(InputError, match=r"stft_gain must have shape \(1025,\)"):
        extract_split(clips, tmp_path / "bad.h5", "lmfb", None, stft_gain=np.ones(10), **kw)


def test_wave_transform_is_applied_with_row_positions(clips, tmp_path):
    out = tmp_path / "aug.h5"
    extract_split(
        clips,
        out,
        "lmfb",
        None,
        seconds=SECONDS,
        batch_size=4,
        workers=2,
        wave_transform=HalfMute(),
        copy="noise",
        attrs_extra={"seed": 11},
    )
    fs = read_features(out)
    waves = _read_waves(clips)
    muted = np.stack([HalfMute()(y, i) for i, y in enumerate(waves)])
    expected = build_extractor("lmfb")(torch.from_numpy(muted)).numpy()
    np.testing.assert_array_equal(fs.x, expected)
    plain = build_extractor("lmfb")(torch.from_numpy(waves)).numpy()
    assert np.abs(fs.x - plain).max() > 0.1
    assert fs.attrs["copy"] == "noise" and fs.attrs["seed"] == 11


def test_transform_changing_length_is_an_error(clips, tmp_path):
    out = tmp_path / "short.h5"
    with pytest.raises(InputError, match="keep the clip length"):
        extract_split(clips, out, "lmfb", None, seconds=SECONDS, workers=0, wave_transform=_shorten)
    assert not out.exists()


def test_baseline_feature_set_and_missing_file(clips, tmp_path):
    cfg = make_config("baseline", {"frames": None})
    out = tmp_path / "bl.h5"
    extract_split(clips, out, "baseline", cfg, seconds=SECONDS, batch_size=4, workers=0)
    fs = read_features(out)
    assert fs.x.shape == (6, 1, 40, 1 + N // 882)
    assert fs.attrs["feature_set"] == "baseline" and fs.attrs["params"]["frames"] is None
    broken = clips.copy()
    broken.loc[3, "path"] = Path(str(broken.loc[3, "path"]) + ".missing")
    with pytest.raises(InputError, match=r"\.missing"):
        extract_split(broken, tmp_path / "x.h5", "lmfb", None, seconds=SECONDS, workers=2)
    assert not (tmp_path / "x.h5").exists()
    with pytest.raises(InputError, match="feature set must be one of"):
        extract_split(clips, tmp_path / "y.h5", "mfcc", None, seconds=SECONDS)


def test_cli_features_verb(tmp_path, monkeypatch, capsys):
    root = tmp_path / "tau"
    meta = _write_clips(root, n_clips=4)
    setup = root / "evaluation_setup"
    setup.mkdir()
    lines = ["filename\tscene_label"] + [f"{f}\t{s}" for f, s in zip(meta.filename, meta.scene)]
    (setup / "fold1_train.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(cli, "GROUPS", ("features",))
    out = tmp_path / "f.h5"
    args = ["features", "--dataset-root", str(root), "--split", "train", "--feature-set"]
    args += ["lmfb", "--out", str(out), "--workers", "0", "--params", '{"n_mels": 64}']
    assert cli.main(args) == 0
    fs = read_features(out)
    assert fs.x.shape == (4, 3, 64, 1 + N // 1024 - 8)
    assert fs.attrs["params"]["n_mels"] == 64
    assert sorted(fs.filename) == sorted(meta.filename)

    bad = ["features", "--dataset-root", str(root), "--split", "train", "--feature-set"]
    bad += ["lmfb", "--out", str(tmp_path / "g.h5"), "--params", '{"n_mel": 64}']
    assert cli.main(bad) == 2
    err = capsys.readouterr().err
    assert "n_mel" in err and "--params" in err
    assert not (tmp_path / "g.h5").exists()


def test_unequal_lengths_without_seconds_name_the_files(tmp_path):
    meta = _write_clips(tmp_path / "tau", n_clips=3)
    sf.write(meta.loc[1, "path"], np.zeros(N // 2), SR, subtype="PCM_24")
    with pytest.raises(InputError, match=r"same length.*bus-lyon-101-1-b\.wav: 11025"):
        extract_split(meta, tmp_path / "u.h5", "lmfb", None, seconds=None, workers=0)
    # Equal lengths need no seconds=.
    ok = meta.drop(index=1).reset_index(drop=True)
    assert extract_split(ok, tmp_path / "ok.h5", "lmfb", None, seconds=None, workers=0) == 2
    assert read_features(tmp_path / "ok.h5").attrs["seconds"] is None


def test_corrupt_clip_is_an_error_naming_it_even_with_missing_skip(tmp_path, monkeypatch, capsys):
    root = tmp_path / "tau"
    meta = _write_clips(root, n_clips=4)
    setup = root / "evaluation_setup"
    setup.mkdir()
    listed = [*zip(meta.filename, meta.scene), ("audio/park-lyon-9-9-a.wav", "park")]
    lines = ["filename\tscene_label"] + [f"{f}\t{s}" for f, s in listed]
    (setup / "fold1_train.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(cli, "GROUPS", ("features",))
    args = ["features", "--dataset-root", str(root), "--split", "train", "--feature-set"]
    args += ["lmfb", "--seconds", str(SECONDS), "--missing", "skip", "--batch-size", "2"]
    # The absent 5th file is skipped; a present but cut-off one is not.
    assert cli.main([*args, "--out", str(tmp_path / "ok.h5"), "--workers", "0"]) == 0
    assert read_features(tmp_path / "ok.h5").x.shape[0] == 4
    cut = Path(meta.loc[2, "path"])
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    out = tmp_path / "f.h5"
    assert cli.main([*args, "--out", str(out), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert f"{cut}: truncated audio file: the header promises {N} frames" in err
    assert not out.exists()
    # NaN samples, through extract_split's worker processes.
    y = np.zeros(N)
    y[100] = np.nan
    sf.write(cut, y, SR, subtype="FLOAT")
    with pytest.raises(InputError, match=rf"{cut.name}: audio contains NaN or infinite samples"):
        extract_split(meta, tmp_path / "n.h5", "lmfb", None, seconds=SECONDS, workers=2)
    assert not (tmp_path / "n.h5").exists()
