"""`quantize`, `artifact-info` and `predict` on int8 artifacts (features and wav clips)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from acoustic_lottery import cli
from acoustic_lottery.data.audio import write_wav
from acoustic_lottery.errors import InputError
from acoustic_lottery.evaluation.predict import read_predictions
from acoustic_lottery.features.extract import extract_split
from acoustic_lottery.io import read_json
from acoustic_lottery.labels import SCENE_TO_SUPER, SCENES, SUPER_CLASSES
from acoustic_lottery.models.checkpoint import save_checkpoint
from acoustic_lottery.models.registry import build_model
from acoustic_lottery.quantization.artifact import (
    HEADER_BYTES,
    inspect_artifact,
    load_artifact,
    save_artifact,
)
from acoustic_lottery.quantization.deploy import (
    is_artifact,
    predict_artifact,
    predict_clips,
    quantize_checkpoint,
)
from acoustic_lottery.quantization.int8 import dequantize, quantize_model

RATE = 44100
SECONDS = 0.5
MAP3 = [SUPER_CLASSES.index(SCENE_TO_SUPER[s]) for s in SCENES]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACOUSTIC_LOTTERY_PROGRESS", "0")


def run_cli(monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    monkeypatch.setattr(cli, "GROUPS", ("evaluate", "quantize"))
    return cli.main([str(a) for a in argv])


def randomise_bn(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Trained-looking BN statistics, so folding changes the weights and biases are non-zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 0.3, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.3, generator=g)
    return model.eval()


def make_checkpoint(
    path: Path,
    *,
    arch: str = "sic",
    task: str = "scene",
    width: float = 0.25,
    sparsity: float = 0.0,
    dirty: bool = False,
) -> tuple[Path, torch.nn.Module, dict[str, torch.Tensor] | None]:
    """A checkpoint as the trainer writes it; `sparsity` adds a random mask of conv/linear
    weights, `dirty` leaves the pruned weights non-zero (the mask must still win)."""
    model = randomise_bn(build_model(arch, task=task, width=width, seed=3), 4)
    mask = None
    if sparsity:
        g = torch.Generator().manual_seed(5)
        mask = {
            f"{name}.weight": torch.rand(m.weight.shape, generator=g) >= sparsity
            for name, m in model.named_modules()
            if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
        }
        if not dirty:
            params = dict(model.named_parameters())
            with torch.no_grad():
                for name, keep in mask.items():
                    params[name].masked_fill_(~keep, 0.0)
    fset = "baseline" if arch == "baseline" else "lmfb"
    save_checkpoint(path, model, {"feature_set": fset}, **({"mask": mask} if mask else {}))
    return path, model, mask


def tone_wav(path: Path, scene_index: int, rate: int = RATE, seconds: float = SECONDS) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    rng = np.random.default_rng(scene_index)
    y = 0.3 * np.sin(2 * np.pi * (200 + 150 * scene_index) * t) + 0.05 * rng.normal(size=t.size)
    write_wav(path, y.astype(np.float32), rate)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Four wav clips and their lmfb feature file (the pipeline's own extraction)."""
    root = tmp_path_factory.mktemp("clips")
    paths = [tone_wav(root / f"{SCENES[i]}-lyon-1-{i}-a.wav", i) for i in (0, 3, 4, 9)]
    labels = [0, 3, 4, 9]
    meta = pd.DataFrame(
        {
            "path": paths,
            "filename": [f"audio/{p.name}" for p in paths],
            "label10": labels,
            "label3": [MAP3[i] for i in labels],
            "device": ["a", "b", "s4", "s6"],
            "city": ["lyon"] * 4,
            "identifier": ["lyon-1"] * 4,
        }
    )
    features = root / "eval.h5"
    extract_split(
        meta, features, "lmfb", seconds=SECONDS, workers=0, split="evaluate", batch_size=2
    )
    return {"paths": paths, "features": features, "labels": labels}


def test_quantize_pruned_checkpoint_round_trips_and_keeps_zeros(tmp_path, monkeypatch, capsys):
    ckpt, model, mask = make_checkpoint(tmp_path / "m.pt", sparsity=0.9, dirty=True)
    art = tmp_path / "m.alot"
    report_path = tmp_path / "r.json"
    assert (
        run_cli(monkeypatch, "quantize", "--model", ckpt, "--out", art, "--report", report_path)
        == 0
    )
    out = capsys.readouterr().out
    assert "DCASE size (int8 model)" in out and "artifact on disk" in out
    report = read_json(report_path)
    assert report["mask"]["present"] and report["mask"]["violations"] > 0
    assert report["size"]["file_bytes"] == art.stat().st_size
    assert is_artifact(art) and not is_artifact(ckpt)
    # the mask wins: every pruned weight is exactly 0 in the artifact
    loaded = load_artifact(art)
    state = loaded.states["sic"]
    for name, keep in mask.items():
        assert not np.any(state.weights[name].q[~keep.numpy()])
    # the loaded model is the int8 model of the masked float model, bit for bit
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, keep in mask.items():
            params[name].masked_fill_(~keep, 0.0)
    qmodel = dequantize(quantize_model(model), model=model)
    x = torch.rand(3, 3, 64, 30, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.models["sic"](x), qmodel(x))
    assert report["int8"]["sparsity"] > 0.85
    assert state.meta["features"]["feature_set"] == "lmfb"
    assert state.meta["features"]["source"] == "defaults"


@pytest.mark.parametrize("arch", ["sic", "baseline"])
def test_dense_artifact_is_within_the_size_bound(tmp_path, arch):
    ckpt, _, _ = make_checkpoint(tmp_path / "m.pt", arch=arch, width=1.0)
    report = quantize_checkpoint(ckpt, tmp_path / "m.alot")
    size = report["size"]
    assert size["file_bytes"] == (tmp_path / "m.alot").stat().st_size
    assert size["fixed_bytes"] < 2048
    assert size["file_bytes"] <= 1.10 * size["dcase_bytes"] + 2048
    assert size["within_bound"]
    # one byte per int8 weight: the int8 model is about a quarter of the float one
    assert size["dcase_kb"] < 0.3 * report["float_dcase_kb"]
    # the artifact is BN-folded: its DCASE size is the report's size_kb_bn_folded
    assert report["size_kb_bn_folded"] == pytest.approx(report["int8"]["kb"])


def test_sparse_artifact_reports_its_overhead_honestly(tmp_path):
    ckpt, _, _ = make_checkpoint(tmp_path / "m.pt", width=1.0, sparsity=0.993)
    report = quantize_checkpoint(ckpt, tmp_path / "m.alot")
    size = report["size"]
    info = inspect_artifact(tmp_path / "m.alot")
    assert info["breakdown"] == size["breakdown"]
    assert size["fixed_bytes"] == HEADER_BYTES + info["manifest_bytes"]
    # positions (masks) and per-channel scales are not DCASE parameters: at 99.3 % they
    # cost about as much as the weights, and the report says the bound is exceeded
    assert size["breakdown"]["masks"] > 0.5 * report["int8"]["nonzero"]
    assert size["within_bound"] == (size["payload_bytes"] <= 1.10 * size["dcase_bytes"])


def test_predict_features_with_artifact_matches_the_int8_model(
    tmp_path, monkeypatch, clips, capsys
):
    ckpt, model, _ = make_checkpoint(tmp_path / "m.pt", sparsity=0.5)
    art = tmp_path / "m.alot"
    report = quantize_checkpoint(ckpt, art, calibration=clips["features"])
    assert report["features"]["seconds"] == SECONDS
    assert report["calibration"]["n"] == 4
    head = report["calibration"]["heads"]["scene"]
    assert 0.0 <= head["agreement"] <= 1.0 and "int8_accuracy" in head
    out = tmp_path / "p.h5"
    assert (
        run_cli(
            monkeypatch, "predict", "--model", art, "--features", clips["features"], "--out", out
        )
        == 0
    )
    pred = read_predictions(out)
    assert pred.task == "scene" and pred.class_names == list(SCENES)
    assert pred.source["kind"] == "int8_artifact"
    assert list(pred.label) == clips["labels"]
    from acoustic_lottery.features.store import read_features

    x = torch.from_numpy(read_features(clips["features"]).x)
    with torch.no_grad():
        z = dequantize(quantize_model(model), model=model)(x)
    np.testing.assert_array_equal(pred.logits, z.numpy())
    np.testing.assert_allclose(pred.probs, torch.softmax(z.double(), 1).numpy(), atol=1e-6)
    # evaluate scores the int8 predictions like any other
    metrics = tmp_path / "m.json"
    assert run_cli(monkeypatch, "evaluate", "--predictions", out, "--out", metrics) == 0
    assert read_json(metrics)["n"] == 4


def test_predict_mtl_artifact_writes_both_heads(tmp_path, monkeypatch, clips):
    ckpt, _, _ = make_checkpoint(tmp_path / "m.pt", task="mtl")
    art = tmp_path / "m.alot"
    quantize_checkpoint(ckpt, art, calibration=clips["features"])
    p10, p3 = tmp_path / "p10.h5", tmp_path / "p3.h5"
    argv = ["predict", "--model", art, "--features", clips["features"]]
    assert run_cli(monkeypatch, *argv, "--out", p10, "--out-super", p3) == 0
    assert read_predictions(p10).probs.shape == (4, 10)
    sup = read_predictions(p3)
    assert (
        sup.probs.shape == (4, 3) and sup.task == "super" and sup.class_names == list(SUPER_CLASSES)
    )
    with pytest.raises(InputError, match="heads"):
        predict_artifact(art, clips["features"], tmp_path / "x.h5")


def test_wav_clips_give_the_same_probabilities_as_the_feature_path(
    tmp_path, monkeypatch, clips, capsys
):
    ckpt, _, _ = make_checkpoint(tmp_path / "m.pt")
    art = tmp_path / "m.alot"
    quantize_checkpoint(ckpt, art, calibration=clips["features"])
    preds = predict_artifact(art, clips["features"], tmp_path / "p.h5")["scene"]
    results = predict_clips(art, clips["paths"])
    np.testing.assert_allclose(np.stack([r.probs for r in results]), preds.probs, atol=1e-5)
    for r in results:
        assert r.scene in SCENES and r.group == SCENE_TO_SUPER[r.scene]
    capsys.readouterr()
    report = tmp_path / "clips.json"
    assert run_cli(monkeypatch, "predict", "--model", art, *clips["paths"], "--json", report) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split("\t") == ["clip", "scene", "group", *SCENES]
    assert len(lines) == 5
    for line, r in zip(lines[1:], results):
        cells = line.split("\t")
        assert cells[1] == r.scene and cells[2] == SCENE_TO_SUPER[r.scene]
        assert abs(sum(float(c) for c in cells[3:]) - 1.0) < 1e-3
    saved = json.loads(report.read_text())
    assert [c["scene"] for c in saved["clips"]] == [r.scene for r in results]


def test_wav_errors_are_one_clear_line(tmp_path, monkeypatch, capsys, clips):
    ckpt, _, _ = make_checkpoint(tmp_path / "m.pt")
    art = tmp_path / "m.alot"
    quantize_checkpoint(ckpt, art, calibration=clips["features"])
    slow = tone_wav(tmp_path / "slow.wav", 1, rate=22050)
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    good = clips["paths"][0]
    capsys.readouterr()
    assert run_cli(monkeypatch, "predict", "--model", art, good, slow) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "slow.wav" in err and "22050 Hz" in err and "expects 44100 Hz" in err
    assert captured.out == ""  # every clip is checked before any is classified
    assert run_cli(monkeypatch, "predict", "--model", art, text) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "notes.wav" in err and "not a readable audio" in err
    assert run_cli(monkeypatch, "predict", "--model", art, tmp_path / "missing.wav") == 2
    assert "no such file" in capsys.readouterr().err
    # an artifact stores its feature settings; clips and --features do not mix
    argv = ["predict", "--model", art, good, "--feature-settings", clips["features"]]
    assert run_cli(monkeypatch, *argv) == 2
    assert "stores its own" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert run_cli(monkeypatch, "predict", "--model", art, tmp_path / "empty") == 2
    assert "holds no .wav files" in capsys.readouterr().err
    argv = ["predict", "--model", art, good, "--features", clips["features"]]
    assert run_cli(monkeypatch, *argv) == 2
    assert run_cli(monkeypatch, "predict", "--model", art) == 2
    assert "--features and --out are required" in capsys.readouterr().err


def test_tampered_or_cut_artifact_is_refused_by_predict(tmp_path, monkeypatch, capsys, clips):
    ckpt, _, _ = make_checkpoint(tmp_path / "m.pt")
    art = tmp_path / "m.alot"
    quantize_checkpoint(ckpt, art, calibration=clips["features"])
    data = art.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2 + HEADER_BYTES // 2] ^= 0x10
    argv = ["predict", "--model", art, clips["paths"][0]]
    for bad, message in ((bytes(flipped), "SHA-256 mismatch"), (data[:-100], "truncated")):
        art.write_bytes(bad)
        capsys.readouterr()
        assert run_cli(monkeypatch, *argv) == 2
        captured = capsys.readouterr()
        assert message in captured.err and captured.out == ""
    art.write_bytes(data)
    assert run_cli(monkeypatch, *argv) == 0


def test_feature_settings_must_match(tmp_path, clips):
    ckpt, model, _ = make_checkpoint(tmp_path / "m.pt")
    art = tmp_path / "m.alot"
    quantize_checkpoint(ckpt, art)  # published defaults: 10 s clips are not assumed
    predict_artifact(art, clips["features"], tmp_path / "p.h5")  # same LogMelConfig
    # an artifact whose features differ from the file's is refused, naming the field
    qs = quantize_model(model)
    qs.meta["features"] = {
        "feature_set": "lmfb",
        "params": {**load_artifact(art).states["sic"].meta["features"]["params"], "n_mels": 64},
        "sample_rate": RATE,
        "seconds": None,
        "source": "test",
    }
    other = tmp_path / "other.alot"
    save_artifact(other, qs, name="sic")
    with pytest.raises(InputError, match="n_mels"):
        predict_artifact(other, clips["features"], tmp_path / "p2.h5")
    # an artifact without feature settings can score features but not audio
    bare = tmp_path / "bare.alot"
    save_artifact(bare, quantize_model(model), name="sic")
    predict_artifact(bare, clips["features"], tmp_path / "p3.h5")
    with pytest.raises(InputError, match="no feature configuration"):
        predict_clips(bare, clips["paths"][:1])
    # a baseline checkpoint cannot take lmfb calibration features
    bckpt, _, _ = make_checkpoint(tmp_path / "b.pt", arch="baseline", width=1.0)
    with pytest.raises(InputError, match="feature_set 'lmfb'.*'baseline'"):
        quantize_checkpoint(bckpt, tmp_path / "b.alot", calibration=clips["features"])


def test_artifact_info_verb(tmp_path, monkeypatch, capsys):
    ckpt, _, _ = make_checkpoint(tmp_path / "m.pt", sparsity=0.5)
    art = tmp_path / "m.alot"
    quantize_checkpoint(ckpt, art)
    out = tmp_path / "info.json"
    assert run_cli(monkeypatch, "artifact-info", "--model", art, "--out", out) == 0
    printed = capsys.readouterr().out
    assert "model sic: arch sic" in printed and "44100 Hz" in printed
    info = read_json(out)
    assert info["size"]["file_bytes"] == art.stat().st_size
    art.write_bytes(art.read_bytes()[:-1])
    assert run_cli(monkeypatch, "artifact-info", "--model", art) == 2
    assert "truncated" in capsys.readouterr().err


def test_two_stage_system_artifact_predicts_its_fused_output(tmp_path, clips):
    from acoustic_lottery.quantization.artifact import DeployableSystem
    from acoustic_lottery.quantization.deploy import feature_spec_from_file
    from acoustic_lottery.quantization.int8 import float_state
    from acoustic_lottery.systems.ensemble import SystemSpec

    features = feature_spec_from_file(clips["features"])
    scene = randomise_bn(build_model("sic", task="scene", width=0.25, seed=1), 2)
    sup = randomise_bn(build_model("sic", task="super", width=0.25, seed=3), 4)
    states = {"scene_q": quantize_model(scene), "super_f": float_state(sup)}
    for state in states.values():
        state.meta["features"] = features
    spec = SystemSpec.from_dict(
        {
            "name": "two-stage",
            "members": [
                {"model": "scene_q", "task": "scene", "quantized": True},
                {"model": "super_f", "task": "super"},
            ],
        }
    )
    art = tmp_path / "sys.alot"
    save_artifact(art, DeployableSystem(spec=spec, states=states))
    pred = predict_artifact(art, clips["features"], tmp_path / "p.h5")["scene"]
    assert pred.logits is None and pred.source["kind"] == "artifact"
    from acoustic_lottery.features.store import read_features

    x = torch.from_numpy(read_features(clips["features"]).x)
    np.testing.assert_array_equal(pred.probs, load_artifact(art).predict(x))
    results = predict_clips(art, clips["paths"])
    np.testing.assert_allclose(np.stack([r.probs for r in results]), pred.probs, atol=1e-5)


def test_a_float_checkpoint_classifies_a_folder_of_clips_as_from_their_features(
    tmp_path, monkeypatch, capsys, clips
):
    """`predict --model final.pt FOLDER --json`: every .wav under the folder, sorted, and
    the probabilities the model gives the same clips' feature file (same settings)."""
    import json

    from acoustic_lottery.evaluation.predict import read_predictions

    ckpt, _, _ = make_checkpoint(tmp_path / "m.pt")
    folder = Path(clips["paths"][0]).parent
    report = tmp_path / "r.json"
    argv = ["predict", "--model", ckpt, folder, "--json", report]
    assert run_cli(monkeypatch, *argv, "--feature-settings", clips["features"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split("\t")[:3] == ["clip", "scene", "group"] and len(out) == 5
    got = json.loads(report.read_text())["clips"]
    assert [Path(c["path"]).name for c in got] == sorted(Path(p).name for p in clips["paths"])
    assert run_cli(monkeypatch, "predict", "--model", ckpt, "--features", clips["features"],
                   "--out", tmp_path / "p.h5") == 0  # fmt: skip
    pred = read_predictions(tmp_path / "p.h5")
    by_name = {Path(f).name: row for f, row in zip(pred.filename, pred.probs)}
    for c in got:
        probs = np.array(list(c["probs"].values()))
        np.testing.assert_allclose(probs, by_name[Path(c["path"]).name], atol=1e-5)
