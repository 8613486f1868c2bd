"""Table 1 rows and the table: the intervals of accuracy and log loss over recordings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from acoustic_lottery.cli import main
from acoustic_lottery.evaluation.predict import Predictions, read_predictions, write_predictions
from acoustic_lottery.io import read_json, write_json
from acoustic_lottery.labels import DEVICES, SCENES
from acoustic_lottery.table1 import build_row, table_frame, write_row, write_table

N_REC = 20


def eval_predictions(seed: int = 0, skill: float = 0.6) -> Predictions:
    """N_REC recordings (2 per scene) on all 9 devices, named like the TAU evaluation set."""
    rng = np.random.default_rng(seed)
    names, labels, devices = [], [], []
    for r in range(N_REC):
        scene = SCENES[r % 10]
        for d in DEVICES:
            names.append(f"audio/{scene}-lisbon-{100 + r}-{4000 + r}-{d}.wav")
            labels.append(r % 10)
            devices.append(d)
    label = np.array(labels)
    probs = rng.random((len(label), 10))
    hit = rng.random(len(label)) < skill
    probs[hit, label[hit]] += 5.0
    return Predictions(
        probs=(probs / probs.sum(1, keepdims=True)).astype(np.float32),
        label=label,
        device=devices,
        filename=names,
        class_names=list(SCENES),
        task="scene",
        source={"kind": "test"},
    )


def spec(index: int = 3) -> dict:
    return {
        "name": f"row{index}",
        "index": index,
        "system": None,
        "members": [{"model": "sic", "head": "scene", "weight": 1.0, "quantized": False}],
        "fusion": "none",
        "size_dtype": "float32",
        "flags": {"tsl": False, "lth": False, "two_stage": False, "mtl": False},
        "dataset": "test",
    }


@pytest.fixture
def files(tmp_path):
    pred = tmp_path / "sic.h5"
    write_predictions(pred, eval_predictions())
    size = tmp_path / "sic.json"
    write_json(size, {"params": 1000, "nonzero": 1000, "bytes": 4000, "macs": 5e6})
    return pred, size


def test_the_row_has_intervals_over_recordings(files, tmp_path):
    pred, size = files
    row = build_row(spec(), [pred], [size], tmp_path / "row3.h5", {"n_boot": 300, "seed": 1})
    o = row["ours"]
    for key in ("accuracy_ci", "log_loss_ci", "unseen_accuracy_ci"):
        lo, hi = o[key]
        assert lo < hi, key
    assert o["accuracy_ci"][0] <= o["accuracy"] <= o["accuracy_ci"][1]
    assert o["log_loss_ci"][0] <= o["log_loss"] <= o["log_loss_ci"][1]
    assert o["unseen_accuracy_ci"][0] <= o["unseen_accuracy"] <= o["unseen_accuracy_ci"][1]
    assert (o["n_clips"], o["n_recordings"]) == (N_REC * 9, N_REC)
    assert o["bootstrap"] == {"n_boot": 300, "seed": 1, "level": 0.95, "unit": "recording"}
    # the fused predictions keep the file names the clusters come from
    assert list(read_predictions(tmp_path / "row3.h5").filename[:2]) == [
        "audio/airport-lisbon-100-4000-a.wav",
        "audio/airport-lisbon-100-4000-b.wav",
    ]


def test_the_row_verb_takes_the_bootstrap_settings(files, tmp_path, capsys):
    pred, size = files
    out = tmp_path / "row3.json"
    args = ["row", "--spec", json.dumps(spec()), "--predictions", str(pred)]
    args += ["--sizes", str(size), "--out", str(out)]
    assert main([*args, "--statistics", json.dumps({"n_boot": 200, "seed": 4})]) == 0
    assert "of 20 recordings" in capsys.readouterr().out
    first = read_json(out)["ours"]
    assert first["bootstrap"]["n_boot"] == 200
    assert main(args) == 0  # defaults: 2000 resamples, seed 0
    assert read_json(out)["ours"]["bootstrap"] == {
        "n_boot": 2000,
        "seed": 0,
        "level": 0.95,
        "unit": "recording",
    }
    assert main([*args, "--statistics", '{"n_boot": 0}']) == 2


def test_the_table_shows_the_intervals_beside_the_values(files, tmp_path):
    pred, size = files
    rows = []
    for i, skill in ((3, 0.6), (4, 0.3)):
        write_predictions(pred, eval_predictions(seed=i, skill=skill))
        rows.append(tmp_path / f"row{i}.json")
        write_row(spec(i), [pred], [size], rows[-1], statistics={"n_boot": 200})
    frame = write_table(rows, tmp_path / "t.md", tmp_path / "t.csv")
    assert list(frame.columns) == [
        "idx", "system", "tsl", "lth", "two_stage", "mtl", "quant", "aug", "size_kb",
        "bn_folded_kb", "macs_M", "acc", "acc_ci", "log_loss", "log_loss_ci", "unseen_acc",
        "paper_size", "paper_acc", "paper_log_loss",
    ]  # fmt: skip
    row3 = read_json(rows[0])["ours"]
    lo, hi = row3["accuracy_ci"]
    assert frame.loc[0, "acc_ci"] == f"{lo:.1f}–{hi:.1f}"
    lo, hi = row3["log_loss_ci"]
    assert frame.loc[0, "log_loss_ci"] == f"{lo:.3f}–{hi:.3f}"
    md = (tmp_path / "t.md").read_text()
    assert "95 % cluster-bootstrap percentile intervals over recordings" in md
    assert "200 resamples of the 20 evaluation recordings" in md and "180 clips" in md
    assert "| acc_ci " in md


def test_rows_written_before_the_intervals_still_make_a_table(files, tmp_path):
    pred, size = files
    row = build_row(spec(), [pred], [size], statistics={"n_boot": 50})
    for key in ("accuracy_ci", "log_loss_ci", "unseen_accuracy_ci", "bootstrap"):
        del row["ours"][key]
    frame = table_frame([row])
    assert frame.loc[0, "acc_ci"] is None and frame.loc[0, "acc"] == round(
        row["ours"]["accuracy"], 1
    )


def test_a_variant_row_follows_its_report_row_without_paper_figures(files, tmp_path):
    """Row 5m (our 90 % ticket beside the report's row 5): after 5, before 6, no paper
    size or accuracy, the report's system name."""
    from acoustic_lottery import pipeline

    pred, size = files
    rows = []
    for name in ("row6", "row5m", "row5"):
        s = {**spec(pipeline.row_index(name)), "name": name, "variant": pipeline.row_variant(name)}
        rows.append(tmp_path / f"{name}.json")
        write_row(s, [pred], [size], rows[-1], statistics={"n_boot": 50})
    variant = read_json(rows[1])
    assert (variant["row"], variant["variant"]) == (5, "m")
    assert variant["paper"]["accuracy"] is None and variant["paper"]["size_text"] is None
    assert variant["system"] == "SIC"
    frame = write_table(rows, tmp_path / "t.md", tmp_path / "t.csv")
    assert list(frame["idx"]) == ["5", "5m", "6"]
    assert frame["paper_acc"].isna().tolist() == [False, True, False]
    assert frame.loc[0, "paper_acc"] == 68.2


def test_the_summary_is_the_rows_few_headline_figures(files, tmp_path):
    """The DVC metrics file: flat, rounded, the intervals as _lo/_hi (fits a screen)."""
    pred, size = files
    row = write_row(
        spec(),
        [pred],
        [size],
        tmp_path / "row3.json",
        tmp_path / "row3.h5",
        {"n_boot": 200, "seed": 1},
        out_summary=tmp_path / "summary/row3.json",
    )
    summary = read_json(tmp_path / "summary/row3.json")
    o = row["ours"]
    assert set(summary) == {
        "acc", "acc_lo", "acc_hi", "log_loss", "log_loss_lo", "log_loss_hi",
        "unseen_acc", "unseen_acc_lo", "unseen_acc_hi", "size_kb", "macs_M",
    }  # fmt: skip
    assert summary["acc"] == round(o["accuracy"], 2)
    assert [summary["acc_lo"], summary["acc_hi"]] == [round(v, 2) for v in o["accuracy_ci"]]
    assert summary["log_loss_hi"] == round(o["log_loss_ci"][1], 4)
    assert summary["macs_M"] == 5.0 and summary["size_kb"] == round(o["size_kb"], 1)
    assert all(isinstance(v, float) for v in summary.values())
