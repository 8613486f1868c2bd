"""Prediction files (write/read), `predict` on real checkpoints, and the CLI verbs."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from acoustic_lottery import cli
from acoustic_lottery.errors import InputError
from acoustic_lottery.evaluation.predict import (
    Predictions,
    predict,
    read_predictions,
    write_predictions,
)
from acoustic_lottery.io import read_json
from acoustic_lottery.labels import SCENES, SUPER_CLASSES
from acoustic_lottery.models.checkpoint import save_checkpoint
from acoustic_lottery.models.registry import build_model

MAP3 = np.array([0, 2, 2, 0, 1, 1, 0, 1, 1, 2])
DEVICES = ["a", "b", "c", "s1", "s4", "s5", "s6", "a", "b", "s6", "a", "s2"]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACOUSTIC_LOTTERY_PROGRESS", "0")


def write_features(
    path: Path, n: int = 12, shape=(1, 40, 50), feature_set="baseline", labelled: bool = True
) -> Path:
    """A feature file written by hand after CONTRACTS "Feature files"."""
    rng = np.random.default_rng(1)
    y = np.arange(n) % 10
    x = (rng.normal(size=(n, *shape)) + 0.3 * y[:, None, None, None]).astype(np.float32)
    s = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        f["features"] = x
        f["label10"] = (y if labelled else np.full(n, -1)).astype(np.int64)
        f["label3"] = (MAP3[y] if labelled else np.full(n, -1)).astype(np.int64)
        f.create_dataset("filename", data=[f"audio/c{i}.wav" for i in range(n)], dtype=s)
        f.create_dataset("device", data=[DEVICES[i % len(DEVICES)] for i in range(n)], dtype=s)
        f.create_dataset("city", data=["lyon"] * n, dtype=s)
        f.create_dataset("identifier", data=["lyon-1"] * n, dtype=s)
        f.attrs.update(
            {
                "feature_set": feature_set,
                "params": "{}",
                "split": "evaluate",
                "copy": "orig",
                "scenes": json.dumps(list(SCENES)),
                "super_classes": json.dumps(list(SUPER_CLASSES)),
                "code_version": "test",
                "librosa_version": "-",
                "torch_version": "-",
            }
        )
    return path


def checkpoint(path: Path, task: str = "scene") -> tuple[Path, torch.nn.Module]:
    model = build_model("baseline", task=task, in_channels=1, seed=4)
    save_checkpoint(path, model, {"feature_set": "baseline"})
    return path, model.eval()


def test_write_read_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=5).astype(np.float32)
    pred = Predictions(
        probs=p,
        label=[0, 1, 2, -1, 0],
        device=["a", "b", "c", "s4", "s5"],
        filename=[f"f{i}" for i in range(5)],
        class_names=list(SUPER_CLASSES),
        task="super",
        source={"kind": "fusion", "members": ["x", "y"]},
    )
    write_predictions(tmp_path / "p.h5", pred)
    back = read_predictions(tmp_path / "p.h5")
    assert np.array_equal(back.probs, p) and back.logits is None
    assert back.label.tolist() == [0, 1, 2, -1, 0] and back.device.tolist()[3] == "s4"
    assert back.class_names == list(SUPER_CLASSES) and back.task == "super"
    assert back.source == {"kind": "fusion", "members": ["x", "y"]}
    assert [q.name for q in tmp_path.iterdir()] == ["p.h5"]  # nothing temporary left
    with pytest.raises(InputError, match="class_names"):
        Predictions(
            probs=p,
            label=[0] * 5,
            device=["a"] * 5,
            filename=["f"] * 5,
            class_names=["x", "y"],
            task="super",
        )
    with pytest.raises(InputError, match="label.*row 0 is 3"):
        Predictions(
            probs=p,
            label=[3] * 5,
            device=["a"] * 5,
            filename=["f"] * 5,
            class_names=list(SUPER_CLASSES),
            task="super",
        )


def test_read_rejects_incomplete_files(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["probs"] = np.ones((2, 3), np.float32)
    with pytest.raises(InputError, match=r"bad\.h5.*missing dataset 'label'"):
        read_predictions(tmp_path / "bad.h5")
    with pytest.raises(InputError, match="no such file"):
        read_predictions(tmp_path / "none.h5")


def test_predict_matches_the_model_in_eval_mode(tmp_path: Path) -> None:
    feats = write_features(tmp_path / "eval.h5")
    ckpt, model = checkpoint(tmp_path / "m.pt")
    res = predict(ckpt, feats, tmp_path / "p.h5", batch_size=5)
    pred = read_predictions(tmp_path / "p.h5")
    with h5py.File(feats) as f:
        x = torch.from_numpy(f["features"][()])
    with torch.no_grad():
        expect = torch.softmax(model(x).double(), 1).numpy()
    np.testing.assert_allclose(pred.probs, expect, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pred.probs.sum(1), 1.0, atol=1e-6)
    assert pred.label.tolist() == (np.arange(12) % 10).tolist()
    assert pred.class_names == list(SCENES) and pred.task == "scene"
    assert pred.source["checkpoint"] == str(ckpt) and pred.source["features"] == str(feats)
    assert pred.filename[3] == "audio/c3.wav" and pred.device[4] == "s4"
    assert np.array_equal(res["scene"].probs, pred.probs)


def test_predict_mtl_writes_one_file_per_head(tmp_path: Path) -> None:
    feats = write_features(tmp_path / "eval.h5")
    ckpt, _ = checkpoint(tmp_path / "mtl.pt", task="mtl")
    predict(ckpt, feats, {"scene": tmp_path / "p10.h5", "super": tmp_path / "p3.h5"})
    p10, p3 = read_predictions(tmp_path / "p10.h5"), read_predictions(tmp_path / "p3.h5")
    assert p10.probs.shape == (12, 10) and p3.probs.shape == (12, 3)
    assert p3.task == "super" and p3.class_names == list(SUPER_CLASSES)
    assert p3.label.tolist() == MAP3[np.arange(12) % 10].tolist()
    with pytest.raises(InputError, match="heads"):
        predict(ckpt, feats, tmp_path / "p.h5")
    with pytest.raises(InputError, match="not heads"):
        predict(ckpt, feats, {"tram": tmp_path / "p.h5"})


def test_predict_rejects_other_features(tmp_path: Path) -> None:
    ckpt, _ = checkpoint(tmp_path / "m.pt")
    lmfb = write_features(tmp_path / "lmfb.h5", shape=(1, 40, 50), feature_set="lmfb")
    with pytest.raises(InputError, match="feature_set 'lmfb'"):
        predict(ckpt, lmfb, tmp_path / "p.h5")
    three = write_features(tmp_path / "three.h5", shape=(3, 40, 50))
    with pytest.raises(InputError, match=r"\(N, 1, F, T\)"):
        predict(ckpt, three, tmp_path / "p.h5")


def run_cli(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> int:
    monkeypatch.setattr(cli, "GROUPS", ("train", "evaluate"))
    return cli.main(argv)


def test_cli_train_predict_evaluate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    feats = write_features(tmp_path / "f.h5", n=16)
    spec = {
        "arch": "baseline",
        "feature_set": "baseline",
        "task": "mtl",
        "epochs": 1,
        "cycle_epochs": 1,
        "batch_size": 8,
    }
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    assert (
        run_cli(
            monkeypatch,
            [
                "train",
                "--spec",
                str(spec_file),
                "--train",
                str(feats),
                "--out-dir",
                str(tmp_path / "m"),
                "--threads",
                "1",
            ],
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 2 and Path(summary["paths"]["final"]).is_file()
    model = str(tmp_path / "m" / "final.pt")
    assert (
        run_cli(
            monkeypatch,
            [
                "predict",
                "--model",
                model,
                "--features",
                str(feats),
                "--out",
                str(tmp_path / "p10.h5"),
                "--out-super",
                str(tmp_path / "p3.h5"),
            ],
        )
        == 0
    )
    assert (
        run_cli(
            monkeypatch,
            [
                "evaluate",
                "--predictions",
                str(tmp_path / "p3.h5"),
                "--out",
                str(tmp_path / "m3.json"),
            ],
        )
        == 0
    )
    metrics = read_json(tmp_path / "m3.json")
    assert metrics["n"] == 16 and metrics["task"] == "super"
    assert len(metrics["confusion_matrix"]["matrix"]) == 3
    assert metrics["predictions"] == str(tmp_path / "p3.h5")
    # Errors become one line and exit code 2.
    capsys.readouterr()
    assert (
        run_cli(
            monkeypatch,
            [
                "predict",
                "--model",
                model,
                "--features",
                str(feats),
                "--out",
                str(tmp_path / "p.h5"),
            ],
        )
        == 2
    )
    assert "heads" in capsys.readouterr().err
    bad = tmp_path / "mask.pt"
    torch.save({"trunk.77.weight": torch.ones(2, dtype=torch.bool)}, bad)
    assert (
        run_cli(
            monkeypatch,
            [
                "train",
                "--spec",
                json.dumps(spec),
                "--train",
                str(feats),
                "--out-dir",
                str(tmp_path / "x"),
                "--mask",
                str(bad),
            ],
        )
        == 2
    )
    assert "trunk.77.weight" in capsys.readouterr().err
    assert (
        run_cli(
            monkeypatch,
            [
                "train",
                "--spec",
                '{"arch": "baseline", "epochz": 1}',
                "--train",
                str(feats),
                "--out-dir",
                str(tmp_path / "x"),
            ],
        )
        == 2
    )
    assert "epochz" in capsys.readouterr().err
    unl = write_features(tmp_path / "test.h5", labelled=False)
    predict(model, unl, {"scene": tmp_path / "t.h5"})
    assert (
        run_cli(
            monkeypatch,
            [
                "evaluate",
                "--predictions",
                str(tmp_path / "t.h5"),
                "--out",
                str(tmp_path / "t.json"),
            ],
        )
        == 2
    )
    assert "unlabelled" in capsys.readouterr().err
