"""`select-features`, `efficiency-system`, `efficiency-table` through the command line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acoustic_lottery import cli
from acoustic_lottery.cli.efficiency import parse_fraction_files
from acoustic_lottery.errors import InputError
from acoustic_lottery.features.store import read_features, write_features
from acoustic_lottery.labels import SCENES


@pytest.fixture(autouse=True)
def _groups(monkeypatch):
    monkeypatch.setattr(cli, "GROUPS", ("efficiency",))
    monkeypatch.setenv("ACOUSTIC_LOTTERY_PROGRESS", "0")


@pytest.fixture
def features(tmp_path):
    n = 6
    meta = pd.DataFrame(
        {
            "filename": [f"audio/c{i}.wav" for i in range(n)],
            "label10": [i % 10 for i in range(n)],
            "label3": [0] * n,
            "device": ["a"] * n,
            "city": ["lyon"] * n,
            "identifier": ["lyon-1"] * n,
        }
    )
    x = np.random.default_rng(0).normal(size=(n, 3, 4, 6)).astype(np.float32)
    path = tmp_path / "orig.h5"
    attrs = {"feature_set": "lmfb", "params": {}, "split": "train", "copy": "orig"}
    write_features(path, x, meta, attrs)
    return path, x


def test_select_features_writes_the_subset_file(features, tmp_path, capsys):
    src, x = features
    sub = tmp_path / "split50.csv"
    sub.write_text(f"filename\tscene_label\naudio/c4.wav\t{SCENES[4]}\naudio/c0.wav\t{SCENES[0]}\n")
    out = tmp_path / "subset50" / "orig.h5"
    argv = ["select-features", "--features", str(src), "--subset", str(sub), "--out", str(out)]
    assert cli.main(argv) == 0
    assert "2 of 2 clips" in capsys.readouterr().out
    got = read_features(out)
    np.testing.assert_array_equal(got.x, x[[0, 4]])


def test_select_features_reports_a_missing_clip_naming_the_file(features, tmp_path, capsys):
    src, _ = features
    sub = tmp_path / "split5.csv"
    sub.write_text("filename\naudio/c1.wav\naudio/zz.wav\n")
    out = tmp_path / "o.h5"
    argv = ["select-features", "--features", str(src), "--subset", str(sub), "--out", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "select-features: error:" in err and str(sub) in err and "audio/zz.wav" in err
    assert not out.exists()
    assert cli.main([*argv, "--missing", "skip"]) == 0
    assert "1 listed clips not in the file (skipped)" in capsys.readouterr().out


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def test_system_and_table_verbs(tmp_path, capsys):
    spec = {
        "name": "kd",
        "label": "Rep-Mobile + KD",
        "fractions": ["25", "100"],
        "dataset": "demo",
        "flags": {"kd": True, "pruned": False},
    }
    complexity = {
        "params": 21_560,
        "nonzero": 21_560,
        "param_bytes": 86_240,
        "param_kb": 86.24,
        "macs": 15_744_256,
        "max_bytes": 128_000,
        "max_macs": 30_000_000,
        "ok": True,
    }
    argv = ["efficiency-system", "--spec", json.dumps(spec), "--metrics"]
    for key, acc in (("25", 0.4), ("100", 0.5)):
        metrics = {
            "task": "scene",
            "n": 9,
            "accuracy": acc,
            "macro_class_accuracy": acc,
            "log_loss": 1.0,
        }
        argv.append(f"{key}={_write(tmp_path / f'm{key}.json', metrics)}")
    argv.append("--complexity")
    argv += [f"{k}={_write(tmp_path / f'c{k}.json', complexity)}" for k in ("25", "100.0")]
    system = tmp_path / "kd.json"
    assert cli.main([*argv, "--out", str(system)]) == 0
    assert "mean 45.0" in capsys.readouterr().out
    md, csv_path = tmp_path / "e.md", tmp_path / "e.csv"
    argv = ["efficiency-table", "--systems", str(system), "--out-md", str(md)]
    assert cli.main([*argv, "--out-csv", str(csv_path)]) == 0
    assert "| Rep-Mobile + KD | 40.0 | 50.0 | 45.0 |" in capsys.readouterr().out
    assert list(pd.read_csv(csv_path)["fraction"]) == [25.0, 100.0]


def test_system_verb_rejects_a_missing_subset(tmp_path, capsys):
    spec = {"name": "p", "label": "P", "fractions": ["5", "10"], "flags": {}}
    m = _write(tmp_path / "m.json", {})
    argv = ["efficiency-system", "--spec", json.dumps(spec), "--metrics", f"5={m}"]
    argv += ["--complexity", f"5={m}", "--out", str(tmp_path / "p.json")]
    assert cli.main(argv) == 2
    assert "--metrics: expected one file for each subset ['5', '10']" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["5"], "expected P=PATH"),
        (["five=a.json"], "is not a percentage"),
        (["0=a.json"], "expected a percentage in (0, 100]"),
        (["5=a.json", "5.0=b.json"], "subset 5 given twice"),
    ],
)
def test_fraction_file_pairs_are_checked(values, message):
    with pytest.raises(InputError, match=re.escape(message)):
        parse_fraction_files(values, "--metrics")
    assert parse_fraction_files(["2.5=x.json", "100=y.json"], "--m") == {
        "2.5": Path("x.json"),
        "100": Path("y.json"),
    }
