"""probe: the linear probe of a data set's difficulty per device group."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acoustic_lottery import cli
from acoustic_lottery.errors import InputError
from acoustic_lottery.features.store import write_features
from acoustic_lottery.labels import DEVICES, SCENE_TO_SUPER, SCENES, SUPER_CLASSES, TRAIN_DEVICES
from acoustic_lottery.probe import (
    DEVICE_GROUPS,
    clip_statistics,
    fit_logistic,
    probe,
    probe_table,
)

N_BANDS, N_FRAMES = 16, 12


def _features(
    rng: np.random.Generator, labels: np.ndarray, devices: list[str], separation: float
) -> np.ndarray:
    """(N, 3, F, T) log-mel-like features: each scene raises its own band by `separation`.

    Device s4 adds a large offset to half of the bands, so a model that leans on those
    bands meets a shift it never saw in training.
    """
    n = len(labels)
    x = rng.normal(0.0, 1.0, size=(n, 3, N_BANDS, N_FRAMES)).astype(np.float32)
    x[np.arange(n), 0, labels, :] += separation
    for i, device in enumerate(devices):
        if device == "s4":
            x[i, 0, N_BANDS // 2 :, :] += 3.0
    return x


def _split(rng, n_per_class: int, devices: tuple[str, ...], separation: float):
    labels = np.repeat(np.arange(len(SCENES)), n_per_class * len(devices))
    devs = [devices[i % len(devices)] for i in range(len(labels))]
    return _features(rng, labels, devs, separation), labels, devs


def test_clip_statistics_are_band_means_then_stds() -> None:
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    stats = clip_statistics(x)
    assert stats.shape == (2, 8)
    np.testing.assert_allclose(stats[:, :4], x[:, 0].mean(axis=2))
    np.testing.assert_allclose(stats[:, 4:], x[:, 0].std(axis=2))
    with pytest.raises(InputError, match="4-D"):
        clip_statistics(x[0])
    with pytest.raises(InputError, match="channel 3"):
        clip_statistics(x, channel=3)


def test_separable_data_is_learned_per_device_group() -> None:
    rng = np.random.default_rng(0)
    x_tr, y_tr, _ = _split(rng, 4, TRAIN_DEVICES, separation=2.0)
    x_ev, y_ev, d_ev = _split(rng, 2, DEVICES, separation=2.0)
    report = probe(clip_statistics(x_tr), y_tr, clip_statistics(x_ev), y_ev, d_ev, 10)
    groups = report["groups"]
    assert list(groups) == ["a", "seen", "unseen", "all"]
    assert groups["seen"]["devices"] == ["b", "c", "s1", "s2", "s3"]
    assert groups["unseen"]["devices"] == ["s4", "s5", "s6"]
    assert groups["all"]["clips"] == len(y_ev) == 180
    assert groups["a"]["clips"] == 20 and groups["seen"]["clips"] == 100
    assert groups["unseen"]["clips"] == 60
    assert sum(report["devices"][d]["clips"] for d in DEVICES) == 180
    assert report["converged"] and report["train"]["accuracy"] == 1.0
    assert groups["a"]["accuracy"] >= 0.95 and groups["seen"]["accuracy"] >= 0.95
    # s4's offset, unseen in training, costs accuracy: the groups are told apart
    assert report["devices"]["s4"]["accuracy"] < groups["seen"]["accuracy"]
    assert report["devices"]["s5"]["accuracy"] >= 0.95
    table = probe_table(report)
    assert "| unseen | s4, s5, s6 | 60 |" in table and "| all |" in table
    json.dumps(report, allow_nan=False)


def test_shuffled_labels_give_chance() -> None:
    rng = np.random.default_rng(1)
    x_tr, y_tr, _ = _split(rng, 6, TRAIN_DEVICES, separation=2.0)
    x_ev, y_ev, d_ev = _split(rng, 6, DEVICES, separation=2.0)
    shuffled = rng.permutation(y_tr)
    report = probe(clip_statistics(x_tr), shuffled, clip_statistics(x_ev), y_ev, d_ev, 10)
    assert 0.03 <= report["groups"]["all"]["accuracy"] <= 0.2  # chance is 0.1 (540 clips)


def test_fit_is_deterministic_and_regularised() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 5))
    y = (x[:, 0] > 0).astype(int)
    one, two = fit_logistic(x, y, 2), fit_logistic(x, y, 2)
    np.testing.assert_array_equal(one.weights, two.weights)
    np.testing.assert_array_equal(one.bias, two.bias)
    strong = fit_logistic(x, y, 2, l2=10.0)
    assert np.abs(strong.weights).sum() < np.abs(one.weights).sum()
    assert np.mean(one.predict(x) == y) > 0.95
    with pytest.raises(InputError, match="labels must lie"):
        fit_logistic(x, y + 1, 2)
    with pytest.raises(InputError, match="l2 must be positive"):
        fit_logistic(x, y, 2, l2=0.0)


def _write(path: Path, x: np.ndarray, labels: np.ndarray, devices: list[str]) -> None:
    super_of = [list(SUPER_CLASSES).index(SCENE_TO_SUPER[s]) for s in SCENES]
    meta = pd.DataFrame({
        "label10": labels,
        "label3": np.asarray(super_of)[labels],
        "filename": [f"audio/clip{i}-{d}.wav" for i, d in enumerate(devices)],
        "device": devices,
        "city": ["lyon"] * len(labels),
        "identifier": [f"lyon-{i}" for i in range(len(labels))],
    })  # fmt: skip
    attrs = {"feature_set": "lmfb", "params": {}, "split": "train", "copy": "orig"}
    write_features(path, x, meta, attrs)


def test_cli_probe_prints_a_table_and_writes_json(tmp_path: Path, monkeypatch, capsys) -> None:
    rng = np.random.default_rng(3)
    _write(tmp_path / "train.h5", *_split(rng, 3, TRAIN_DEVICES, separation=2.0))
    _write(tmp_path / "evaluate.h5", *_split(rng, 1, DEVICES, separation=2.0))
    monkeypatch.setattr(cli, "GROUPS", ("probe",))
    parser = cli.build_parser()
    out = tmp_path / "probe.json"
    args = parser.parse_args(
        ["probe", "--train", str(tmp_path / "train.h5"), "--evaluate",
         str(tmp_path / "evaluate.h5"), "--out", str(out)]
    )  # fmt: skip
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "| group | devices | clips | accuracy (%) |" in printed and "| seen |" in printed
    report = json.loads(out.read_text())
    assert report["task"] == "scene" and report["groups"]["all"]["clips"] == 90
    assert set(report["groups"]) == set(DEVICE_GROUPS)
    args = parser.parse_args(
        ["probe", "--train", str(tmp_path / "train.h5"), "--evaluate",
         str(tmp_path / "evaluate.h5"), "--task", "super"]
    )  # fmt: skip
    assert args.func(args) == 0
    assert "chance 33.3 %" in capsys.readouterr().out
    assert cli.main(["probe", "--train", str(tmp_path / "nope.h5"), "--evaluate", str(out)]) == 2
