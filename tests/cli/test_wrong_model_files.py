"""Every verb that reads a model file refuses a wrong file in one line, never a traceback.

A WAV, a text file, random bytes and a half-cut checkpoint are fed where each verb expects
a checkpoint (or an int8 artifact / ONNX file); the error must name the file and say what
was expected. The verbs run in-process (the model file is read before anything costly);
two cases also run as a real process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from acoustic_lottery import cli
from acoustic_lottery.models import build_model
from acoustic_lottery.models.checkpoint import save_checkpoint

KINDS = ("wav", "text", "random", "truncated")
CHECKPOINT = "expected a torch checkpoint written by acoustic-lottery"
ARTIFACT = "expected an int8 artifact written by `acoustic-lottery quantize`"
SPEC = json.dumps({"arch": "sic", "feature_set": "lmfb", "epochs": 2, "cycle_epochs": 2})


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wrong")
    good = root / "good.pt"
    save_checkpoint(good, build_model("sic", 10, seed=0), {"feature_set": "lmfb"})
    data = good.read_bytes()
    out = {"good": good, "root": root}
    out["truncated"] = root / "truncated.pt"
    out["truncated"].write_bytes(data[: len(data) // 2])
    out["wav"] = root / "clip.wav"
    sf.write(out["wav"], np.zeros(1600, dtype=np.float32), 16000)
    out["text"] = root / "notes.txt"
    out["text"].write_text("this is not a model\n", encoding="utf-8")
    out["random"] = root / "noise.bin"
    out["random"].write_bytes(np.random.default_rng(0).bytes(4096))
    out["train"] = root / "train.h5"  # only has to exist: the model file is read first
    out["train"].write_bytes(b"")
    return out


# verb -> (argv builder from (bad file, fixture files, scratch dir), what the error expects)
Argv = Callable[[Path, dict[str, Path], Path], list[str]]
VERBS: dict[str, tuple[Argv, str]] = {
    "predict": (
        lambda b, f, t: ["predict", "--model", b, "--features", t / "f.h5", "--out", t / "p.h5"],
        CHECKPOINT,
    ),
    "predict-clips": (
        lambda b, f, t: ["predict", "--model", b, f["wav"]],
        CHECKPOINT,  # not an artifact: read as a float checkpoint
    ),
    "size": (lambda b, f, t: ["size", b], CHECKPOINT),
    "quantize": (lambda b, f, t: ["quantize", "--model", b, "--out", t / "m.alot"], CHECKPOINT),
    "artifact-info": (lambda b, f, t: ["artifact-info", "--model", b], ARTIFACT),
    "export-onnx": (
        lambda b, f, t: ["export-onnx", "--model", b, "--out", t / "m.onnx"],
        CHECKPOINT,
    ),
    "compare-onnx": (
        lambda b, f, t: [
            "compare-onnx",
            "--model",
            b,
            "--onnx",
            t / "m.onnx",
            "--features",
            t / "f.h5",
            "--out",
            t / "c.json",
        ],  # fmt: skip
        CHECKPOINT,
    ),
    "quantize-onnx": (
        lambda b, f, t: [
            "quantize-onnx",
            "--model",
            b,
            "--calibration",
            t / "f.h5",
            "--out",
            t / "q.onnx",
        ],  # fmt: skip
        "ONNX",
    ),
    "predict-onnx": (
        lambda b, f, t: [
            "predict-onnx",
            "--model",
            b,
            "--features",
            t / "f.h5",
            "--out",
            t / "p.h5",
        ],  # fmt: skip
        "ONNX",
    ),
    "reparameterize": (
        lambda b, f, t: ["reparameterize", "--model", b, "--out", t / "deploy.pt"],
        CHECKPOINT,
    ),
    "complexity": (
        lambda b, f, t: ["complexity", "--model", b, "--out", t / "c.json"],
        CHECKPOINT,
    ),
    "figure3-dense": (
        lambda b, f, t: ["figure3", "--dense", b, "--pruned", f["good"], "--out", t / "f.png"],
        CHECKPOINT,
    ),
    "figure3-pruned": (
        lambda b, f, t: ["figure3", "--dense", f["good"], "--pruned", b, "--out", t / "f.png"],
        CHECKPOINT,
    ),
    "lottery-dense": (
        lambda b, f, t: ["lottery-dense", "--final", b, "--out", t / "round.json"],
        CHECKPOINT,
    ),
    "lottery-round-theta0": (
        lambda b, f, t: [
            "lottery-round",
            "--round",
            "1",
            "--spec",
            SPEC,
            "--train",
            f["train"],
            "--out-dir",
            t / "r1",
            "--theta0",
            b,
            "--previous",
            f["good"],
            "--strategy",
            "global_small_weights",
            "--rate",
            "0.5",
        ],  # fmt: skip
        CHECKPOINT,
    ),
    "lottery-round-previous": (
        lambda b, f, t: [
            "lottery-round",
            "--round",
            "1",
            "--spec",
            SPEC,
            "--train",
            f["train"],
            "--out-dir",
            t / "r1",
            "--theta0",
            f["good"],
            "--previous",
            b,
            "--strategy",
            "global_small_weights",
            "--rate",
            "0.5",
        ],  # fmt: skip
        CHECKPOINT,
    ),
    "prune-progressive": (
        lambda b, f, t: [
            "prune-progressive",
            "--spec",
            SPEC,
            "--train",
            f["train"],
            "--dense",
            b,
            "--out-dir",
            t / "pp",
            "--steps",
            "1",
        ],  # fmt: skip
        CHECKPOINT,
    ),
    "train-teacher": (
        lambda b, f, t: [
            "train",
            "--spec",
            SPEC,
            "--train",
            f["train"],
            "--out-dir",
            t / "tr",
            "--teacher",
            f"scene={b}",
        ],  # fmt: skip
        CHECKPOINT,
    ),
    "train-mask": (
        lambda b, f, t: [
            "train",
            "--spec",
            SPEC,
            "--train",
            f["train"],
            "--out-dir",
            t / "tr",
            "--mask",
            b,
        ],  # fmt: skip
        "expected a dict parameter name -> bool tensor",
    ),
    "train-init-state": (
        lambda b, f, t: [
            "train",
            "--spec",
            SPEC,
            "--train",
            f["train"],
            "--out-dir",
            t / "tr",
            "--init-state",
            b,
        ],  # fmt: skip
        CHECKPOINT,
    ),
}


def _verb(argv: list[str]) -> str:
    return argv[0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", sorted(VERBS))
def test_wrong_model_file_is_one_line_naming_file_and_expectation(
    case: str,
    kind: str,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACOUSTIC_LOTTERY_PROGRESS", "0")
    build, expected = VERBS[case]
    bad = files[kind]
    argv = [str(a) for a in build(bad, files, tmp_path)]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code != 0, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("acoustic-lottery ")]
    assert len(errors) == 1, err
    line = errors[0]
    assert line.startswith(f"acoustic-lottery {_verb(argv)}: error: ")
    assert str(bad) in line
    assert expected in line
    assert list(tmp_path.iterdir()) == []  # nothing written for a refused input


@pytest.mark.parametrize(
    ("case", "kind"), [("predict", "wav"), ("quantize", "truncated")], ids=["predict", "quantize"]
)
def test_no_traceback_at_process_level(
    case: str, kind: str, files: dict[str, Path], tmp_path: Path
) -> None:
    build, expected = VERBS[case]
    bad = files[kind]
    argv = [str(a) for a in build(bad, files, tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from acoustic_lottery import cli; "
         "sys.exit(cli.main(sys.argv[1:]))", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert str(bad) in proc.stderr and expected in proc.stderr
