"""ONNX export, onnxruntime static int8 quantization, OnnxClassifier and the onnx CLI verbs."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import torch

from acoustic_lottery import cli
from acoustic_lottery.errors import InputError
from acoustic_lottery.evaluation.predict import read_predictions
from acoustic_lottery.features.store import write_features
from acoustic_lottery.io import read_json
from acoustic_lottery.labels import SCENES, SUPER_CLASSES, super_index_map
from acoustic_lottery.models.checkpoint import save_checkpoint
from acoustic_lottery.models.registry import build_model
from acoustic_lottery.quantization.onnx_export import (
    OnnxClassifier,
    compare_with_torch_int8,
    export_onnx,
    quantize_onnx_static,
    read_feature_rows,
    read_onnx_metadata,
)

F, T, K = 32, 24, 10


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACOUSTIC_LOTTERY_PROGRESS", "0")


def structured(n: int, seed: int, amplitude: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Class c = a spectral bump at band ~c (with a class-dependent modulation) in noise.

    The amplitude makes the task learnable but not trivial (~75 % for the tiny model
    below), so that some clips sit near a decision boundary where int8 errors show.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    f = np.arange(F)[:, None]
    t = np.arange(T)[None, :]
    x = 0.5 * rng.standard_normal((n, 3, F, T))
    for i, c in enumerate(y):
        centre = 1.5 + c * (F - 3) / (K - 1)
        phase = rng.uniform(0, 2 * np.pi)
        bump = np.exp(-0.5 * ((f - centre) / 1.5) ** 2) * (
            1 + 0.5 * np.sin(2 * np.pi * t * (1 + c % 3) / T + phase)
        )
        x[i, 0] += amplitude * bump
        x[i, 1] += np.gradient(bump, axis=1)
    return x.astype(np.float32), y


def set_bn_statistics(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """Running BN statistics = the statistics of `x` (cumulative average), then eval mode."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for chunk in x.split(8):
            model(chunk)
    for bn in bns:
        bn.momentum = 0.01
    return model.eval()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small SIC trained briefly on `structured` data, exported and quantized."""
    torch.manual_seed(0)
    model = build_model("sic", task="scene", width=0.25, seed=0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1  # the Keras default 0.01 would not settle in 100 steps
    xtr, ytr = structured(512, 1)
    xte, yte = structured(256, 2)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(100):
        idx = torch.randint(0, len(xtr), (32,), generator=g).numpy()
        loss = torch.nn.functional.cross_entropy(
            model(torch.from_numpy(xtr[idx])), torch.from_numpy(ytr[idx])
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    d = tmp_path_factory.mktemp("trained")
    export_onnx(model, d / "m.onnx", input_shape=(3, F, T))
    quantize_onnx_static(d / "m.onnx", d / "m.int8.onnx", xtr[:64])
    return {"model": model, "dir": d, "xtr": xtr, "ytr": ytr, "xte": xte, "yte": yte}


# ------------------------------------------------------------------------ export


@pytest.mark.parametrize(("arch", "shape"), [("sic", (3, 64, 40)), ("baseline", (1, 40, 60))])
def test_export_matches_torch_in_one_file(tmp_path: Path, arch: str, shape: tuple) -> None:
    model = build_model(arch, task="scene", seed=1)
    set_bn_statistics(model, torch.randn(16, *shape, generator=torch.Generator().manual_seed(0)))
    report = export_onnx(model, tmp_path / "m.onnx", input_shape=shape)
    assert report.max_abs_diff < 1e-4
    assert len(report.checks) == 2  # the traced shape and a longer time axis at batch 2
    # one self-contained file: no .onnx.data, no temp leftovers, weights inline
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {17}
    # a time length and batch never seen at export (dynamic axes), against torch
    x = np.random.default_rng(5).standard_normal((3, *shape[:2], shape[2] + 17))
    x = x.astype(np.float32)
    got = OnnxClassifier(tmp_path / "m.onnx").logits(x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() < 1e-4


def test_export_leaves_model_mode_and_rejects_bad_shape(tmp_path: Path) -> None:
    model = build_model("sic", task="scene", width=0.25, seed=0).train()
    export_onnx(model, tmp_path / "m.onnx", input_shape=(3, 32, 16))
    assert model.training  # the caller's model is not switched to eval
    with pytest.raises(InputError, match="input_shape"):
        export_onnx(model, tmp_path / "x.onnx", input_shape=(3, 32))
    assert not (tmp_path / "x.onnx").exists()


def test_metadata_round_trip_and_per_head_softmax(tmp_path: Path) -> None:
    model = build_model("sic", task="mtl", width=0.25, seed=3).eval()
    export_onnx(
        model,
        tmp_path / "m.onnx",
        input_shape=(3, F, T),
        feature_set="lmfb",
        source={"checkpoint": "x.pt"},
    )
    meta = read_onnx_metadata(tmp_path / "m.onnx")
    assert meta["heads"] == [("scene", 10), ("super", 3)]
    assert meta["spec"] == {
        "arch": "sic",
        "task": "mtl",
        "n_classes": 10,
        "width": 0.25,
        "in_channels": 3,
    }
    assert meta["class_names"] == {"scene": list(SCENES), "super": list(SUPER_CLASSES)}
    assert meta["feature_set"] == "lmfb"
    assert meta["input"]["shape"] == [3, F, T]
    assert meta["source"] == {"checkpoint": "x.pt"}
    clf = OnnxClassifier(tmp_path / "m.onnx", threads=1, batch_size=3)
    x = np.random.default_rng(0).standard_normal((7, 3, F, T)).astype(np.float32)
    proba = clf.predict_proba(x)
    assert proba.shape == (7, 13)
    with torch.no_grad():
        z = model(torch.from_numpy(x))
    want = torch.cat([z[:, :10].softmax(1), z[:, 10:].softmax(1)], dim=1).numpy()
    np.testing.assert_allclose(proba, want, atol=1e-5)
    np.testing.assert_allclose(proba[:, :10].sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(proba[:, 10:].sum(1), 1, atol=1e-5)
    with pytest.raises(InputError, match="does not fit"):
        clf.predict_proba(x[:, :, :20])


def test_reading_a_foreign_onnx_file_fails_clearly(tmp_path: Path) -> None:
    model = build_model("sic", task="scene", width=0.25, seed=0).eval()
    export_onnx(model, tmp_path / "m.onnx", input_shape=(3, F, T))
    proto = onnx.load(str(tmp_path / "m.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(InputError, match="bare.onnx.*format"):
        OnnxClassifier(tmp_path / "bare.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(InputError, match="junk.onnx"):
        read_onnx_metadata(tmp_path / "junk.onnx")


# --------------------------------------------------------------------- quantization


def test_static_int8_agrees_with_float_on_a_learnt_task(trained: dict) -> None:
    d, xte, yte = trained["dir"], trained["xte"], trained["yte"]
    f32 = OnnxClassifier(d / "m.onnx").predict_proba(xte).argmax(1)
    i8 = OnnxClassifier(d / "m.int8.onnx").predict_proba(xte).argmax(1)
    acc32, acc8 = float(np.mean(f32 == yte)), float(np.mean(i8 == yte))
    assert acc32 > 0.5  # the task was learnt, so the comparison means something
    assert np.mean(f32 == i8) >= 0.9
    assert abs(acc8 - acc32) <= 0.03
    meta = read_onnx_metadata(d / "m.int8.onnx")
    q = meta["quantization"]
    assert (q["format"], q["per_channel"], q["weight_symmetric"]) == ("QDQ", True, True)
    assert q["n_calibration"] == 64
    assert meta["heads"] == [("scene", 10)]  # the float file's metadata carried over


def test_broken_calibration_is_caught_by_the_agreement_check(trained: dict, tmp_path: Path) -> None:
    """Negative control: ranges from inputs 50x too small clip every activation."""
    d, xte = trained["dir"], trained["xte"]
    quantize_onnx_static(d / "m.onnx", tmp_path / "bad.onnx", trained["xtr"][:64] * 0.02)
    f32 = OnnxClassifier(d / "m.onnx").predict_proba(xte).argmax(1)
    bad = OnnxClassifier(tmp_path / "bad.onnx").predict_proba(xte).argmax(1)
    assert np.mean(f32 == bad) < 0.9


def test_sic_int8_file_is_small_and_fully_quantized(tmp_path: Path) -> None:
    model = build_model("sic", task="scene", seed=0)
    x, _ = structured(24, 3)
    set_bn_statistics(model, torch.from_numpy(x))
    export_onnx(model, tmp_path / "sic.onnx", input_shape=(3, F, T))
    report = quantize_onnx_static(tmp_path / "sic.onnx", tmp_path / "sic.int8.onnx", x[:16])
    float_bytes = (tmp_path / "sic.onnx").stat().st_size
    int8_bytes = (tmp_path / "sic.int8.onnx").stat().st_size
    assert (report.float_bytes, report.file_bytes) == (float_bytes, int8_bytes)
    assert int8_bytes < 0.35 * float_bytes
    proto = onnx.load(str(tmp_path / "sic.int8.onnx"))
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert len(convs) == 14
    init = {t.name: t for t in proto.graph.initializer}
    producers = {o: n for n in proto.graph.node for o in n.output}
    for conv in convs:  # every conv weight is an int8 tensor dequantized per channel
        dq = producers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear"
        assert init[dq.input[0]].data_type == onnx.TensorProto.INT8
        assert len(onnx.numpy_helper.to_array(init[dq.input[1]])) == init[dq.input[0]].dims[0]


def test_quantize_rejects_bad_calibration(trained: dict, tmp_path: Path) -> None:
    d = trained["dir"]
    with pytest.raises(InputError, match="axis 2"):
        quantize_onnx_static(d / "m.onnx", tmp_path / "q.onnx", trained["xtr"][:4, :, :16])
    bad = trained["xtr"][:4].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        quantize_onnx_static(d / "m.onnx", tmp_path / "q.onnx", bad)
    with pytest.raises(InputError, match="already quantized"):
        quantize_onnx_static(d / "m.int8.onnx", tmp_path / "q.onnx", trained["xtr"][:4])
    assert not (tmp_path / "q.onnx").exists()


# --------------------------------------------------------------------------- CLI


def feature_file(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    n = len(x)
    meta = pd.DataFrame(
        {
            "label10": y,
            "label3": np.asarray(super_index_map())[y],
            "filename": [f"audio/c{i}.wav" for i in range(n)],
            "device": [("a", "b", "s4")[i % 3] for i in range(n)],
            "city": ["lyon"] * n,
            "identifier": [f"lyon-{i}" for i in range(n)],
        }
    )
    write_features(
        path, x, meta, {"feature_set": "lmfb", "params": {}, "split": "x", "copy": "orig"}
    )
    return path


def run_cli(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> int:
    monkeypatch.setattr(cli, "GROUPS", ("onnx",))
    return cli.main(argv)


def test_cli_export_quantize_predict(
    trained: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, trained["model"], {"feature_set": "lmfb", "epoch": 3})
    train_h5 = feature_file(tmp_path / "train.h5", trained["xtr"][:40], trained["ytr"][:40])
    eval_h5 = feature_file(tmp_path / "eval.h5", trained["xte"][:30], trained["yte"][:30])
    f32, i8 = tmp_path / "m.onnx", tmp_path / "m.int8.onnx"
    rc = run_cli(
        monkeypatch,
        [
            "export-onnx",
            "--model",
            str(ckpt),
            "--out",
            str(f32),
            "--bands",
            str(F),
            "--frames",
            str(T),
            "--report",
            str(tmp_path / "export.json"),
        ],
    )
    assert rc == 0
    assert read_json(tmp_path / "export.json")["max_abs_diff"] < 1e-4
    assert read_onnx_metadata(f32)["source"]["epoch"] == 3
    rc = run_cli(
        monkeypatch,
        [
            "quantize-onnx",
            "--model",
            str(f32),
            "--calibration",
            str(train_h5),
            "--out",
            str(i8),
            "--max-clips",
            "16",
        ],
    )
    assert rc == 0
    q = read_onnx_metadata(i8)["quantization"]
    assert q["n_calibration"] == 16 and q["source"]["calibration"] == str(train_h5)
    out = tmp_path / "p.h5"
    assert (
        run_cli(
            monkeypatch,
            ["predict-onnx", "--model", str(i8), "--features", str(eval_h5), "--out", str(out)],
        )
        == 0
    )
    pred = read_predictions(out)
    want = OnnxClassifier(i8).predict_proba(trained["xte"][:30])
    np.testing.assert_allclose(pred.probs, want, atol=1e-6)
    np.testing.assert_array_equal(pred.label, trained["yte"][:30])
    assert pred.class_names == list(SCENES) and pred.task == "scene"
    assert list(pred.device[:3]) == ["a", "b", "s4"]
    assert pred.source["kind"] == "onnx-int8" and pred.source["split"] == "x"

    # the acceptance check against the PyTorch int8 evaluation
    res = compare_with_torch_int8(ckpt, i8, eval_h5)
    r = res["heads"]["scene"]
    assert r["n"] == 30 and r["argmax_agreement"] >= 0.9
    assert abs(r["difference_points"]) == pytest.approx(
        abs(r["onnx_int8_accuracy"] - r["torch_int8_accuracy"])
    )
    rc = run_cli(
        monkeypatch,
        [
            "compare-onnx",
            "--model",
            str(ckpt),
            "--onnx",
            str(i8),
            "--features",
            str(eval_h5),
            "--out",
            str(tmp_path / "c.json"),
            "--tolerance",
            "100",
        ],
    )
    assert rc == 0 and read_json(tmp_path / "c.json")["within_tolerance"] is True


def test_cli_predict_mtl_heads_and_mismatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    model = build_model("sic", task="mtl", width=0.25, seed=0).eval()
    export_onnx(model, tmp_path / "mtl.onnx", input_shape=(3, F, T), feature_set="lmfb")
    x, y = structured(10, 4)
    h5 = feature_file(tmp_path / "f.h5", x, y)
    rc = run_cli(
        monkeypatch,
        [
            "predict-onnx",
            "--model",
            str(tmp_path / "mtl.onnx"),
            "--features",
            str(h5),
            "--out",
            str(tmp_path / "s.h5"),
            "--out-super",
            str(tmp_path / "u.h5"),
        ],
    )
    assert rc == 0
    sup = read_predictions(tmp_path / "u.h5")
    assert sup.task == "super" and sup.probs.shape == (10, 3)
    np.testing.assert_array_equal(sup.label, np.asarray(super_index_map())[y])
    # without naming heads an MTL model is an error (exit 2, one line, no file)
    rc = run_cli(
        monkeypatch,
        [
            "predict-onnx",
            "--model",
            str(tmp_path / "mtl.onnx"),
            "--features",
            str(h5),
            "--out",
            str(tmp_path / "z.h5"),
        ],
    )
    assert rc == 2 and "heads" in capsys.readouterr().err
    assert not (tmp_path / "z.h5").exists()
    # features of another input size
    small = feature_file(tmp_path / "small.h5", x[:, :, :16], y)
    rc = run_cli(
        monkeypatch,
        [
            "predict-onnx",
            "--model",
            str(tmp_path / "mtl.onnx"),
            "--features",
            str(small),
            "--head",
            "scene",
            "--out",
            str(tmp_path / "z.h5"),
        ],
    )
    assert rc == 2 and "does not fit" in capsys.readouterr().err


def test_read_feature_rows_draws_a_seeded_subset(trained: dict, tmp_path: Path) -> None:
    h5 = feature_file(tmp_path / "f.h5", trained["xtr"][:50], trained["ytr"][:50])
    a = read_feature_rows(h5, max_clips=12, seed=7)
    b = read_feature_rows(h5, max_clips=12, seed=7)
    np.testing.assert_array_equal(a.index, b.index)
    assert len(a.index) == 12 and np.all(np.diff(a.index) > 0)
    np.testing.assert_array_equal(a.x, trained["xtr"][a.index])
    np.testing.assert_array_equal(a.label10, trained["ytr"][a.index])
    assert len(read_feature_rows(h5, max_clips=500).index) == 50
    with pytest.raises(InputError, match="max_clips"):
        read_feature_rows(h5, max_clips=0)


def test_register_adds_the_verbs() -> None:
    parser = argparse.ArgumentParser()
    from acoustic_lottery.cli import onnx as onnx_cli

    onnx_cli.register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["quantize-onnx", "--model", "a", "--calibration", "b", "--out", "c"])
    assert args.max_clips == 256 and args.activation_type == "quint8" and not args.per_tensor
