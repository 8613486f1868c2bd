"""Figures 2/3, device bars and confusion plots: the PNGs exist and the plotted data is right."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from torch import nn

from acoustic_lottery import cli, labels
from acoustic_lottery.errors import InputError
from acoustic_lottery.models.checkpoint import save_checkpoint
from acoustic_lottery.models.registry import build_model
from acoustic_lottery.reporting import (
    confusion_matrix_plot,
    device_bars,
    figure2,
    figure3,
    load_points,
    select_layers,
)
from acoustic_lottery.reporting.figures import DPI

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_w: int = 400, min_h: int = 300) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = mpimg.imread(path)
    h, w = img.shape[:2]
    assert w >= min_w and h >= min_h
    assert float(np.ptp(img[..., :3])) > 0.5  # something is drawn, not a blank canvas
    assert not list(path.parent.glob(f".{path.name}.*"))  # atomic: no temp file left
    return w, h


# ----------------------------------------------------------------------------- Figure 2

WR = [1.0, 0.5, 0.2, 0.05, 0.0067]


def make_points(tmp_path: Path) -> list[Path]:
    drops = {
        "small_weights": [0, 0.2, 0.5, 1.0, 3.0],
        "large_final": [0, 0.5, 1.5, 3.0, 7.0],
        "global_small_weights": [0, 0.3, 1.0, 4.0, 12.0],
        "random_mask": [0, 3, 8, 15, 28],
        "random_reinit": [0, 4, 10, 18, 33],
    }
    files = []
    # shuffled order on purpose: the plot must sort by weights remaining
    for strategy, drop in drops.items():
        for i in (3, 0, 4, 1, 2):
            point = {
                "strategy": strategy,
                "weights_remaining": WR[i],
                "accuracy": 68.0 - drop[i],
                "log_loss": 0.9 + 0.03 * drop[i],
                "size_kb": 503.0 * WR[i],
                "round": 0 if i == 0 else 1,
                "model": "sic",
            }
            f = tmp_path / f"{strategy}_{i}.json"
            f.write_text(json.dumps(point))
            files.append(f)
    return files


def test_figure2_png_and_series(tmp_path: Path) -> None:
    files = make_points(tmp_path)
    # a second seed of one point: averaged, n = 2
    extra = tmp_path / "small_weights_seed2.json"
    extra.write_text(
        json.dumps(
            {
                "strategy": "small_weights",
                "weights_remaining": 0.0067,
                "accuracy": 66.0,
                "log_loss": 1.1,
                "size_kb": 3.4,
                "round": 1,
                "model": "sic",
            }
        )
    )
    out = tmp_path / "fig" / "fig2.png"
    result = figure2([*files, extra], out, title="Figure 2")
    w, h = assert_png(out)
    assert (w, h) == (round(12.5 * DPI), round(5.0 * DPI))

    series = result["series"]
    assert set(series) == {
        "small weights",
        "large final",
        "global small weights",
        "random mask (control)",
        "random re-init (control)",
    }
    for s in series.values():
        assert s["weights_remaining"] == sorted(WR, reverse=True)
        assert s["x_percent"] == pytest.approx([100 * x for x in sorted(WR, reverse=True)])
        assert s["linestyle"] == ("--" if s["strategy"].startswith("random") else "-")
    sw = series["small weights"]
    assert sw["accuracy"] == pytest.approx([68.0, 67.8, 67.5, 67.0, (65.0 + 66.0) / 2])
    assert sw["n"] == [1, 1, 1, 1, 2]
    assert sw["accuracy_min"][-1] == 65.0 and sw["accuracy_max"][-1] == 66.0
    assert series["large final"]["log_loss"][-1] == pytest.approx(0.9 + 0.03 * 7.0)
    # dense reference = mean of every point at 100 % weights (all five strategies: 68)
    assert result["dense"]["sic"]["accuracy"] == pytest.approx(68.0)
    # the five strategies' 100 % points are one dense base (no seed given): n counts bases
    assert result["dense"]["sic"]["n"] == 1
    left, right = result["xlim"]
    assert left > 100 and right < 0.67  # inverted log axis: 100 % on the left


def test_figure2_averages_seeds_bands_the_dense_bases_and_keeps_scope_all_apart(
    tmp_path: Path,
) -> None:
    """Three seeds of two rounds: one line, mean and range per round, though the
    reachability repair left one seed a few more weights; the three dense bases a band;
    a scope-"all" chain's points a series of their own, not part of the weights line."""
    points = []
    for seed, base in ((0, 60.0), (1, 62.0), (2, 64.0)):
        for rnd, wr, drop in ((0, 1.0, 0.0), (1, 0.1, 1.0), (2, 0.0067 + 1e-5 * seed, 5.0)):
            for strategy in ("small_weights", "random_mask"):
                extra = 0.0 if strategy == "small_weights" else 10.0 * rnd
                points.append(
                    {"strategy": strategy, "weights_remaining": wr, "round": rnd,
                     "accuracy": base - drop - extra, "log_loss": 1.0 + drop / 10,
                     "model": "sic", "seed": seed, "scope": "weights"}
                )  # fmt: skip
    points += [
        {"strategy": "small_weights", "weights_remaining": w, "round": r, "accuracy": a,
         "log_loss": 2.3, "model": "sic", "seed": 0, "scope": "all"}
        for r, w, a in ((0, 1.0, 60.0), (1, 0.08, 30.0), (2, 0.0067, 10.0))
    ]  # fmt: skip
    result = figure2(points, tmp_path / "f.png")
    series = result["series"]
    assert set(series) == {
        "small weights",
        "random mask (control)",
        "small weights, all values (size-matched)",
    }
    sw = series["small weights"]
    assert sw["n"] == [3, 3, 3]
    assert sw["accuracy"] == pytest.approx([62.0, 61.0, 57.0])
    assert (sw["accuracy_min"][-1], sw["accuracy_max"][-1]) == (55.0, 59.0)
    assert sw["weights_remaining"][-1] == pytest.approx(0.0067 + 1e-5)
    rm = series["random mask (control)"]
    assert rm["accuracy"] == pytest.approx([62.0, 51.0, 37.0]) and rm["linestyle"] == "--"
    scope_all = series["small weights, all values (size-matched)"]
    assert scope_all["weights_remaining"] == [0.08, 0.0067]  # its dense point is the base's
    assert scope_all["accuracy"] == [30.0, 10.0] and scope_all["linestyle"] == "none"
    dense = result["dense"]["sic"]
    assert dense["n"] == 3 and dense["accuracy"] == pytest.approx(62.0)
    assert (dense["accuracy_min"], dense["accuracy_max"]) == (60.0, 64.0)
    assert result["seeds"] == [0, 1, 2]
    assert_png(tmp_path / "f.png")
    with pytest.raises(InputError, match="'scope'"):
        figure2([{**points[0], "scope": "bn"}], tmp_path / "g.png")
    with pytest.raises(InputError, match="'seed'"):
        figure2([{**points[0], "seed": -1}], tmp_path / "g.png")


def test_figure2_paper_points_and_models(tmp_path: Path) -> None:
    points = [
        {
            "strategy": "small_weights",
            "weights_remaining": w,
            "accuracy": 60 + 10 * w,
            "log_loss": 1.0,
            "model": m,
        }
        for m in ("sic", "lic")
        for w in (1.0, 0.1)
    ]
    paper = [{"strategy": "small_weights", "weights_remaining": 0.0067, "accuracy": 67.4}]
    result = figure2(points, tmp_path / "f.png", paper_points=paper)
    assert set(result["series"]) == {"lic: small weights", "sic: small weights"}
    assert result["paper"]["report: small weights"]["accuracy"] == [67.4]
    assert set(result["dense"]) == {"sic", "lic"}
    assert_png(tmp_path / "f.png")


@pytest.mark.parametrize(
    ("key", "value", "expect"),
    [
        ("strategy", "magnitude", "strategy"),
        ("weights_remaining", 0.0, "weights_remaining"),
        ("weights_remaining", 1.5, "weights_remaining"),
        ("accuracy", 0.68e3, "accuracy"),
    ],
)
def test_figure2_rejects_bad_point_naming_file(
    tmp_path: Path, key: str, value: object, expect: str
) -> None:
    good = {
        "strategy": "small_weights",
        "weights_remaining": 0.5,
        "accuracy": 60.0,
        "log_loss": 1.0,
    }
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(good))
    bad = tmp_path / "round3.json"
    bad.write_text(json.dumps({**good, key: value}))
    out = tmp_path / "f.png"
    with pytest.raises(InputError) as err:
        figure2([ok, bad], out)
    assert "round3.json" in str(err.value) and expect in str(err.value)
    assert not out.exists()


def test_load_points_list_file_names_index(tmp_path: Path) -> None:
    f = tmp_path / "rounds.json"
    good = {"strategy": "large_final", "weights_remaining": 0.2, "accuracy": 60, "log_loss": 1}
    f.write_text(json.dumps([good, {**good, "weights_remaining": -1}]))
    with pytest.raises(InputError, match=r"rounds\.json \[1\].*weights_remaining"):
        load_points([f])
    with pytest.raises(InputError, match="missing key 'log_loss'"):
        load_points([{k: v for k, v in good.items() if k != "log_loss"}])


# ----------------------------------------------------------------------------- Figure 3


def _perturb_bn(model: nn.Module, gen: torch.Generator) -> None:
    """Trained-looking BN parameters (fresh ones are all 1 / 0)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))


def _prune_convs(model: nn.Module, fraction: float) -> dict[str, int]:
    """Zero the `fraction` smallest |w| of every conv; return kept counts per module."""
    kept = {}
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d):
                w = m.weight.flatten()
                n_zero = round(fraction * w.numel())
                order = torch.argsort(w.abs(), stable=True)
                w[order[:n_zero]] = 0.0
                kept[name] = w.numel() - n_zero
    return kept


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("fig3")
    gen = torch.Generator().manual_seed(3)
    dense = build_model("sic", seed=1)
    _perturb_bn(dense, gen)
    pruned = build_model("sic", seed=1)
    pruned.load_state_dict(dense.state_dict())
    kept = _prune_convs(pruned, 0.99)
    save_checkpoint(d / "dense.pt", dense, {"feature_set": "lmfb"})
    save_checkpoint(d / "pruned.pt", pruned, {"feature_set": "lmfb"})
    return {
        "dir": d,
        "dense": d / "dense.pt",
        "pruned": d / "pruned.pt",
        "kept": kept,
        "model": pruned,
    }


def test_figure3_non_conv(checkpoints: dict) -> None:
    out = checkpoints["dir"] / "fig3.png"
    result = figure3(checkpoints["dense"], checkpoints["pruned"], out, bins=30)
    assert_png(out, 1000, 1000)
    layers = result["layers"]
    kinds = [r["kind"] for r in layers]
    # SIC: 14 BN layers and, having no Linear, its 1x1 head conv
    assert kinds.count("bn") == 14 and kinds.count("conv") == 1
    assert [r["name"] for r in layers if r["kind"] == "conv"] == ["head.scene.conv"]
    model = checkpoints["model"]
    for r in layers:
        assert r["bin_edges"].shape == (31,)
        lo, hi = r["xlim"]
        assert r["bin_edges"][0] == lo and r["bin_edges"][-1] == hi
        # every dense value and every pruned non-zero falls into the shared bins
        assert sum(int(c.sum()) for c in r["dense_counts"].values()) == r["n_values"]
        assert sum(int(c.sum()) for c in r["pruned_counts"].values()) == r["n_nonzero"]
        if r["kind"] == "bn":
            assert set(r["tensors"]) == {"weight", "bias"}
            assert r["zero_fraction"] == 0.0
            assert r["label"].startswith("BN of conv")
        else:
            w = dict(model.named_modules())[r["name"]].weight
            expected = 1 - checkpoints["kept"][r["name"]] / w.numel()
            assert r["zero_fraction"] == pytest.approx(expected)
            assert r["n_nonzero"] == checkpoints["kept"][r["name"]]
            assert r["zero_fraction"] == pytest.approx(0.99, abs=0.002)
    # overall sparsity by the DCASE rule: zeros among all stored values
    state = {k: v for k, v in model.state_dict().items() if "num_batches" not in k}
    total = sum(v.numel() for v in state.values())
    nonzero = sum(int((v != 0).sum()) for v in state.values())
    assert result["pruned"]["sparsity"] == pytest.approx(1 - nonzero / total)
    assert result["pruned"]["sparsity"] > 0.95
    assert result["dense"]["sparsity"] < 0.01
    assert result["pruned"]["short"] == "SIC"


def test_figure3_all_layers(checkpoints: dict) -> None:
    out = checkpoints["dir"] / "fig3_all.png"
    result = figure3(checkpoints["dense"], checkpoints["pruned"], out, layers="all")
    assert_png(out, 1000, 1000)
    convs = [r for r in result["layers"] if r["kind"] == "conv"]
    assert len(convs) == 14 and len(result["layers"]) == 28
    for r in convs:
        assert r["n_nonzero"] == checkpoints["kept"][r["name"]]
        assert r["zero_fraction"] > 0.98


def test_select_layers_with_linear_excludes_convs() -> None:
    model = build_model("baseline", seed=0)
    chosen = select_layers(model, "non_conv")
    kinds = {r["kind"] for r in chosen}
    assert kinds == {"bn", "linear"}
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert sum(r["kind"] == "linear" for r in chosen) == n_linear
    assert all(set(r["tensors"]) == {"weight"} for r in chosen if r["kind"] == "linear")
    with pytest.raises(InputError, match="layers"):
        select_layers(model, "conv_only")


def test_figure3_rejects_different_architectures(checkpoints: dict, tmp_path: Path) -> None:
    other = tmp_path / "baseline.pt"
    save_checkpoint(other, build_model("baseline", seed=0), {"feature_set": "baseline"})
    with pytest.raises(InputError, match="not the same architecture"):
        figure3(checkpoints["dense"], other, tmp_path / "x.png")
    with pytest.raises(InputError, match="no such file"):
        figure3(tmp_path / "missing.pt", other, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------- device bars, confusion


def write_metrics(path: Path, shift: float, *, nested: bool = True) -> dict:
    per = {
        d: {
            "n": 330,
            "accuracy": 0.7 - shift - (0.1 if d in labels.UNSEEN_DEVICES else 0.0),
            "log_loss": 1.0,
        }
        for d in reversed(labels.DEVICES)  # out of order on purpose
    }
    cm = np.full((10, 10), 3) + np.diag(np.arange(10) * 10 + 20)
    metrics: dict = {"accuracy": 0.65 - shift, "per_device": per, "task": "scene"}
    if nested:
        metrics["confusion_matrix"] = {
            "class_names": list(labels.SCENES),
            "rows": "true",
            "cols": "predicted",
            "matrix": cm.tolist(),
        }
    else:
        metrics["confusion_matrix"] = cm.tolist()
        metrics["class_names"] = list(labels.SCENES)
    path.write_text(json.dumps(metrics))
    return metrics


def test_device_bars(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_metrics(a, 0.0)
    write_metrics(b, 0.05)
    out = tmp_path / "bars.png"
    result = device_bars({"dense": a, "pruned": b}, out)
    assert_png(out)
    assert result["devices"] == list(labels.DEVICES)
    assert result["seen"] == list(labels.TRAIN_DEVICES)
    assert result["unseen"] == list(labels.UNSEEN_DEVICES)
    assert result["groups"][-1] == "all"
    assert result["accuracy"]["dense"][0] == pytest.approx(70.0)  # device a, percent
    assert result["accuracy"]["pruned"][6] == pytest.approx(55.0)  # s4
    assert result["accuracy"]["pruned"][-1] == pytest.approx(60.0)  # overall
    pos = result["positions"]
    assert pos[6] - pos[5] > 1.0  # gap between seen s3 and unseen s4


def test_device_bars_rejects_bad_metrics(tmp_path: Path) -> None:
    f = tmp_path / "m.json"
    f.write_text(json.dumps({"accuracy": 0.6, "per_device": {"a": {"n": 3, "accuracy": 60.0}}}))
    with pytest.raises(InputError, match=r"m\.json.*per_device\['a'\].*fraction"):
        device_bars({"x": f}, tmp_path / "o.png")
    f.write_text(json.dumps({"accuracy": 0.6}))
    with pytest.raises(InputError, match=r"m\.json.*per_device"):
        device_bars({"x": f}, tmp_path / "o.png")


@pytest.mark.parametrize("nested", [True, False])
def test_confusion_matrix_plot(tmp_path: Path, nested: bool) -> None:
    f = tmp_path / "m.json"
    write_metrics(f, 0.0, nested=nested)
    out = tmp_path / "cm.png"
    result = confusion_matrix_plot(f, out)
    assert_png(out)
    assert result["class_names"] == list(labels.SCENES)
    assert result["percent"].sum(axis=1) == pytest.approx(np.full(10, 100.0))
    counts = result["counts"]
    assert result["accuracy"] == pytest.approx(100 * np.trace(counts) / counts.sum())
    assert result["percent"][0, 0] == pytest.approx(100 * 23 / (23 + 27))
    # the same matrix as DVC confusion-template data: one (actual, predicted) per clip
    from acoustic_lottery.reporting.device_plots import write_confusion_records

    n = write_confusion_records(f, tmp_path / "cm.csv")
    rows = (tmp_path / "cm.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) - 1 == n == int(counts.sum())
    names = list(labels.SCENES)
    rebuilt = np.zeros_like(counts)
    for line in rows[1:]:
        a, p = line.split(",")
        rebuilt[names.index(a), names.index(p)] += 1
    assert (rebuilt == counts).all()


def test_confusion_rejects_non_square(tmp_path: Path) -> None:
    f = tmp_path / "m.json"
    f.write_text(json.dumps({"confusion_matrix": [[1, 2, 3], [4, 5, 6]], "class_names": ["a"]}))
    with pytest.raises(InputError, match=r"m\.json.*square"):
        confusion_matrix_plot(f, tmp_path / "cm.png")


# ----------------------------------------------------------------------------- CLI


def test_cli_verbs(
    tmp_path: Path,
    checkpoints: dict,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setattr(cli, "GROUPS", ("figures",))
    files = make_points(tmp_path)
    assert (
        cli.main(
            [
                "figure2",
                "--points",
                *map(str, files),
                "--out",
                str(tmp_path / "2.png"),
                "--title",
                "T",
            ]
        )
        == 0
    )
    assert (
        cli.main(
            [
                "figure3",
                "--dense",
                str(checkpoints["dense"]),
                "--pruned",
                str(checkpoints["pruned"]),
                "--out",
                str(tmp_path / "3.png"),
            ]
        )
        == 0
    )
    m = tmp_path / "m.json"
    write_metrics(m, 0.0)
    assert (
        cli.main(
            ["device-bars", "--metrics", f"SIC={m}", f"LTH={m}", "--out", str(tmp_path / "d.png")]
        )
        == 0
    )
    assert cli.main(["confusion", "--metrics", str(m), "--out", str(tmp_path / "c.png")]) == 0
    for name in ("2.png", "3.png", "d.png", "c.png"):
        assert_png(tmp_path / name)
    assert "pruned" in capsys.readouterr().out
    # bad inputs: one-line error, exit 2, no traceback
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"strategy": "nope", "weights_remaining": 0.5, "accuracy": 1, "log_loss": 1})
    )
    assert cli.main(["figure2", "--points", str(bad), "--out", str(tmp_path / "x.png")]) == 2
    assert "bad.json" in capsys.readouterr().err
    assert cli.main(["device-bars", "--metrics", str(m), "--out", str(tmp_path / "x.png")]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_figure3_panels_say_where_each_layer_sits(checkpoints: dict) -> None:
    result = figure3(checkpoints["dense"], checkpoints["pruned"], checkpoints["dir"] / "f.png")
    titles = {r["name"]: r["title"] for r in result["layers"]}
    assert titles["trunk.0.1"] == "layer 1"
    assert titles["trunk.2.branch3.0.1"] == "Inception block 1 › 3×3 branch › layer 1"
    assert titles["trunk.4.branch_pool.1.1"] == "Inception block 2 › pool branch › layer 2"
    assert titles["head.scene.conv"] == "head › scene"
    assert not any(t[0].isdigit() or "trunk" in t for t in titles.values())


@pytest.mark.parametrize(
    "suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")]
)
def test_figures_are_written_in_the_format_their_extension_names(
    checkpoints: dict, suffix: str, magic: bytes
) -> None:
    out = checkpoints["dir"] / f"figure3{suffix}"
    figure3(checkpoints["dense"], checkpoints["pruned"], out)
    first = out.read_bytes()
    assert first.startswith(magic)
    figure3(checkpoints["dense"], checkpoints["pruned"], out)  # no date in PDF or SVG
    assert out.read_bytes() == first


def test_an_unknown_figure_extension_is_an_error_before_anything_is_written(
    checkpoints: dict,
) -> None:
    out = checkpoints["dir"] / "figure3.jpeg"
    with pytest.raises(InputError, match=r"figure3\.jpeg: a figure is written as .png, .pdf"):
        figure3(checkpoints["dense"], checkpoints["pruned"], out)
    assert not out.exists()
