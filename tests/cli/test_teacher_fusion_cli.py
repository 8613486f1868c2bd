"""`--teacher-fusion CKPT` of train, lottery-round and prune-progressive: wrong uses are
one-line errors naming the file, before any training data is read."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from acoustic_lottery import cli
from acoustic_lottery.models import build_model
from acoustic_lottery.models.checkpoint import save_checkpoint

KD = {"temperature": 1.0, "hard_weight": 0.0, "soft_weight": 1.0}
SCENE_SPEC = json.dumps({"arch": "sic", "epochs": 2, "kd": KD})
SUPER_SPEC = json.dumps({"arch": "sic", "task": "super", "epochs": 2, "kd": KD})


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fusion")
    out = {"root": root}
    for name, task in (("t10", "scene"), ("t3", "super"), ("mtl", "mtl")):
        out[name] = root / f"{name}.pt"
        save_checkpoint(out[name], build_model("sic", task=task, seed=0), {"feature_set": "lmfb"})
    out["train"] = root / "train.h5"  # only has to exist: the model files are read first
    out["train"].write_bytes(b"")
    return out


Argv = Callable[[dict[str, Path], Path, str], list[str]]
#: verb -> argv without the teacher options, from (files, scratch dir, spec)
VERBS: dict[str, Argv] = {
    "train": lambda f, t, spec: [
        "train", "--spec", spec, "--train", f["train"], "--out-dir", t / "out",
    ],
    "lottery-round": lambda f, t, spec: [
        "lottery-round", "--round", "1", "--spec", spec, "--train", f["train"],
        "--out-dir", t / "out", "--theta0", f["t10"], "--previous", f["t10"],
        "--strategy", "small_weights", "--rate", "0.5",
    ],
    "prune-progressive": lambda f, t, spec: [
        "prune-progressive", "--spec", spec, "--train", f["train"], "--dense", f["t10"],
        "--out-dir", t / "out",
    ],
}  # fmt: skip


def run(argv: list, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("verb", list(VERBS))
def test_a_fusion_teacher_without_a_3_class_head_is_named(verb, files, tmp_path, capsys):
    argv = VERBS[verb](files, tmp_path, SCENE_SPEC)
    teachers = ["--teacher", f"scene={files['t10']}", "--teacher-fusion", files["t10"]]
    code, err = run(argv + teachers, capsys)
    assert code == 2
    assert f"--teacher-fusion {files['t10']}" in err and "'super' head" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing was trained


@pytest.mark.parametrize("verb", list(VERBS))
def test_a_fusion_teacher_needs_a_scene_teacher(verb, files, tmp_path, capsys):
    # a 3-class student taught on its super head: nothing to fuse into
    argv = VERBS[verb](files, tmp_path, SUPER_SPEC)
    teachers = ["--teacher", f"super={files['t3']}", "--teacher-fusion", files["t3"]]
    code, err = run(argv + teachers, capsys)
    assert code == 2
    assert f"--teacher-fusion {files['t3']}" in err and "no scene teacher" in err
    # and with no teacher at all
    code, err = run(VERBS[verb](files, tmp_path, SCENE_SPEC) + ["--teacher-fusion", files["t3"]],
                    capsys)  # fmt: skip
    assert code == 2 and "no scene teacher" in err


def test_a_missing_or_foreign_fusion_file_is_named(files, tmp_path, capsys):
    argv = VERBS["train"](files, tmp_path, SCENE_SPEC) + ["--teacher", f"scene={files['t10']}"]
    code, err = run(argv + ["--teacher-fusion", tmp_path / "none.pt"], capsys)
    assert code == 2 and f"--teacher-fusion {tmp_path / 'none.pt'}: no such file" in err
    code, err = run(argv + ["--teacher-fusion", files["train"]], capsys)
    assert code == 2 and f"--teacher-fusion {files['train']}" in err and "checkpoint" in err


def test_a_multi_task_model_is_a_valid_fusion_teacher(files):
    from acoustic_lottery.cli.train import parse_teacher_fusion

    teachers = {"scene": files["t10"]}
    assert parse_teacher_fusion(files["mtl"], teachers) == files["mtl"]
    assert parse_teacher_fusion(files["t3"], teachers) == files["t3"]
    assert parse_teacher_fusion(None, teachers) is None
