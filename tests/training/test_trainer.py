"""The trainer: outputs, determinism, masks that stay zero, kill-and-resume identity, KD."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from acoustic_lottery.errors import InputError
from acoustic_lottery.models.checkpoint import load_checkpoint
from acoustic_lottery.models.heads import HeadedModel
from acoustic_lottery.models.registry import build_model
from acoustic_lottery.training.spec import TrainSpec
from acoustic_lottery.training.trainer import train

SCENES = [
    "airport",
    "bus",
    "metro",
    "metro_station",
    "park",
    "public_square",
    "shopping_mall",
    "street_pedestrian",
    "street_traffic",
    "tram",
]
MAP3 = np.array([0, 2, 2, 0, 1, 1, 0, 1, 1, 2])

# Small and fast: the DCASE baseline on 1 x 40 x 50 clips, 8 clips per batch.
BASE = {
    "arch": "baseline",
    "feature_set": "baseline",
    "epochs": 3,
    "cycle_epochs": 1,
    "batch_size": 8,
    "specaug_freq": 6,
    "specaug_time": 8,
    "crop_frames": 40,
    "threads": 2,
}


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACOUSTIC_LOTTERY_PROGRESS", "0")


def write_features(
    path: Path, n: int, shape: tuple[int, int, int], *, seed: int = 0, feature_set: str = "baseline"
) -> Path:
    """A feature file written by hand after CONTRACTS "Feature files" (labelled clips)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = (rng.normal(size=(n, *shape)) + 0.3 * y[:, None, None, None]).astype(np.float32)
    s = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        f["features"] = x
        f["label10"] = y.astype(np.int64)
        f["label3"] = MAP3[y].astype(np.int64)
        f.create_dataset("filename", data=[f"audio/c{i}-a.wav" for i in range(n)], dtype=s)
        f.create_dataset("device", data=["a"] * n, dtype=s)
        f.create_dataset("city", data=["lyon"] * n, dtype=s)
        f.create_dataset("identifier", data=["lyon-1"] * n, dtype=s)
        f.attrs.update(
            {
                "feature_set": feature_set,
                "params": "{}",
                "split": "train",
                "copy": "orig",
                "scenes": json.dumps(SCENES),
                "super_classes": json.dumps(["indoor", "outdoor", "transportation"]),
                "code_version": "test",
                "librosa_version": "-",
                "torch_version": str(torch.__version__),
            }
        )
    return path


@pytest.fixture(scope="module")
def feats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_features(tmp_path_factory.mktemp("f") / "train.h5", 24, (1, 40, 50))


def spec_of(**kw: object) -> TrainSpec:
    return TrainSpec.from_dict({**BASE, **kw})


def read_history(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tiny_sic_run_writes_init_final_history(tmp_path: Path) -> None:
    f = write_features(tmp_path / "lmfb.h5", 16, (3, 128, 36), feature_set="lmfb")
    spec = TrainSpec.from_dict(
        {
            "arch": "sic",
            "width": 0.25,
            "epochs": 2,
            "batch_size": 8,
            "crop_frames": 30,
            "specaug_time": 10,
            "seed": 3,
        }
    )
    summary = train(spec, [f], tmp_path / "run")
    out = tmp_path / "run"
    assert summary["steps"] == 4 and summary["epochs"] == 2
    init, final = load_checkpoint(out / "init.pt"), load_checkpoint(out / "final.pt")
    assert init["global_step"] == 0 and final["global_step"] == 4 and final["epoch"] == 2
    assert final["spec"] == spec.to_dict() and final["feature_set"] == "lmfb"
    # Θ0 is the seeded initialisation, saved before any optimizer step.
    torch.manual_seed(3)
    theta0 = build_model("sic", task="scene", width=0.25, in_channels=3).state_dict()
    assert same_state(init["state_dict"], theta0)
    assert not torch.equal(
        init["state_dict"]["trunk.0.0.weight"], final["state_dict"]["trunk.0.0.weight"]
    )
    hist = read_history(out / "history.csv")
    assert [r["epoch"] for r in hist] == ["1", "2"] and [r["step"] for r in hist] == ["2", "4"]
    assert list(hist[0]) == ["epoch", "step", "lr_end", "loss", "train_acc"]  # no clock time
    assert not (out / "checkpoint.pt").exists()  # resume state removed when done
    assert float(hist[-1]["lr_end"]) == pytest.approx(1e-5)  # taken at the LR minimum
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_same_seed_same_weights_other_seed_differs(tmp_path: Path, feats: Path) -> None:
    a = train(spec_of(epochs=1), [feats], tmp_path / "a")
    train(spec_of(epochs=1), [feats], tmp_path / "b")
    train(spec_of(epochs=1, seed=1), [feats], tmp_path / "c")
    sa, sb, sc = (load_checkpoint(tmp_path / d / "final.pt")["state_dict"] for d in "abc")
    assert same_state(sa, sb)
    assert not same_state(sa, sc)
    assert a["resumed_from_epoch"] is None
    assert (
        read_history(tmp_path / "a" / "history.csv")[0]["loss"]
        == read_history(tmp_path / "b" / "history.csv")[0]["loss"]
    )


def test_masked_weights_stay_exactly_zero(tmp_path: Path, feats: Path) -> None:
    torch.manual_seed(0)
    model = build_model("baseline", in_channels=1)
    gen = torch.Generator().manual_seed(5)
    masks = {
        n: torch.rand(p.shape, generator=gen) > 0.7
        for n, p in model.named_parameters()
        if n.endswith("weight") and p.dim() > 1
    }
    spec = spec_of(weight_decay=1e-3, momentum=0.9)
    train(spec, [feats], tmp_path / "m", masks=masks, keep_checkpoint=True)
    for name in ("init.pt", "checkpoint.pt", "final.pt"):
        ck = load_checkpoint(tmp_path / "m" / name)
        assert set(ck["mask"]) == set(masks)
        for n, m in masks.items():
            w = ck["state_dict"][n]
            assert torch.equal(ck["mask"][n], m)
            assert (w[~m] == 0).all(), f"{name}: pruned weights of {n} revived"
            if name == "final.pt":
                assert (w[m] != 0).all()
    ck = load_checkpoint(tmp_path / "m" / "checkpoint.pt")
    state = ck["optimizer"]["state"]
    assert all(len(s) for s in state.values())  # momentum buffers exist


def test_mask_names_must_be_parameters(tmp_path: Path, feats: Path) -> None:
    bad = {
        "trunk.99.weight": torch.ones(3, dtype=torch.bool),
        "nope": torch.ones(1, dtype=torch.bool),
    }
    with pytest.raises(InputError, match=r"nope.*trunk\.99\.weight|trunk\.99\.weight.*nope"):
        train(spec_of(epochs=1), [feats], tmp_path / "x", masks=bad)
    with pytest.raises(InputError, match="bool"):
        train(
            spec_of(epochs=1),
            [feats],
            tmp_path / "x",
            masks={"trunk.0.weight": torch.ones(16, 1, 7, 7)},
        )


CHILD = r"""
import json, os, sys, time
from pathlib import Path
os.environ["ACOUSTIC_LOTTERY_PROGRESS"] = "0"
import acoustic_lottery.training.trainer as tr
from acoustic_lottery.training.spec import TrainSpec
out, markers = Path(sys.argv[1]), Path(sys.argv[2])
def slow(items, desc, total=None, **kw):
    for i in items:
        (markers / f"{desc.split()[1].replace('/', 'of')}_b{i}").touch()
        time.sleep(0.4)
        yield i
tr.progress = slow
tr.train(TrainSpec.from_dict(json.loads(sys.argv[3])), [sys.argv[4]], out)
"""


def test_killed_run_resumes_to_identical_result(tmp_path: Path, feats: Path) -> None:
    spec = spec_of()  # 3 epochs of 3 steps, crop + SpecAugment + mixup + dropout
    out, markers = tmp_path / "killed", tmp_path / "markers"
    markers.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(out),
            str(markers),
            json.dumps(spec.to_dict()),
            str(feats),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    try:
        while not ((out / "checkpoint.pt").exists() and (markers / "2of3_b1").exists()):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "child never reached epoch 2"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "final.pt").exists()
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1  # killed during epoch 2
    # What Snakemake's rerun-incomplete does before rerunning the job: delete its outputs.
    (out / "init.pt").unlink()

    resumed = train(spec, [feats], out)
    assert resumed["resumed_from_epoch"] == 1
    straight = train(spec, [feats], tmp_path / "straight")
    assert straight["resumed_from_epoch"] is None
    # byte for byte: no clock time, path or file time in any output
    for name in ("init.pt", "final.pt", "history.csv"):
        assert (out / name).read_bytes() == (tmp_path / "straight" / name).read_bytes(), name
    assert sorted(p.name for p in out.iterdir()) == ["final.pt", "history.csv", "init.pt"]


def test_checkpoint_of_another_spec_is_not_resumed(
    tmp_path: Path, feats: Path, caplog: pytest.LogCaptureFixture
) -> None:
    train(spec_of(epochs=1), [feats], tmp_path / "r", keep_checkpoint=True)
    with caplog.at_level(logging.WARNING):
        summary = train(spec_of(epochs=1, lr_max=0.05), [feats], tmp_path / "r")
    assert summary["resumed_from_epoch"] is None
    assert "different run" in caplog.text and "spec" in caplog.text
    train(spec_of(epochs=1, lr_max=0.05), [feats], tmp_path / "r", keep_checkpoint=True)
    again = train(spec_of(epochs=1, lr_max=0.05), [feats], tmp_path / "r")
    assert again["resumed_from_epoch"] == 1


def test_late_rewinding_snapshot_replays_the_rest_of_the_run(tmp_path: Path, feats: Path) -> None:
    spec = spec_of(rewind_step=4)  # mid-epoch 2
    train(spec, [feats], tmp_path / "full")
    snap = load_checkpoint(tmp_path / "full" / "rewind.pt")
    assert snap["global_step"] == 4 and snap["optimizer"]["state"]
    train(
        spec_of(),
        [feats],
        tmp_path / "replay",
        init_state=snap["state_dict"],
        start_step=snap["global_step"],
        optimizer_state=snap["optimizer"],
    )
    a = load_checkpoint(tmp_path / "full" / "final.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "replay" / "final.pt")["state_dict"]
    assert same_state(a, b)
    assert load_checkpoint(tmp_path / "replay" / "init.pt")["global_step"] == 4


def test_mtl_run_logs_both_heads(tmp_path: Path, feats: Path) -> None:
    train(
        spec_of(task="mtl", epochs=1, mtl_weights={"scene": 1.0, "super": 0.5}),
        [feats],
        tmp_path / "mtl",
    )
    row = read_history(tmp_path / "mtl" / "history.csv")[0]
    total = float(row["loss_scene"]) + 0.5 * float(row["loss_super"])
    assert float(row["loss"]) == pytest.approx(total, rel=1e-5)
    assert load_checkpoint(tmp_path / "mtl" / "final.pt")["task"] == "mtl"


def test_kd_teacher_sees_the_student_batch(tmp_path: Path, feats: Path) -> None:
    train(spec_of(epochs=1, seed=7), [feats], tmp_path / "teacher")
    teacher = tmp_path / "teacher" / "final.pt"
    inputs: list[tuple[bool, torch.Tensor]] = []

    def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        if isinstance(module, HeadedModel):
            inputs.append((module.training, args[0].detach().clone()))

    kd = {"temperature": 2.0, "hard_weight": 0.5, "soft_weight": 0.5}
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        train(spec_of(epochs=1, kd=kd), [feats], tmp_path / "kd", teachers={"scene": teacher})
    finally:
        handle.remove()
    assert len(inputs) == 6  # 3 steps x (student, teacher)
    for (s_train, xs), (t_train, xt) in zip(inputs[0::2], inputs[1::2]):
        assert s_train and not t_train and torch.equal(xs, xt)
    train(spec_of(epochs=1), [feats], tmp_path / "plain")
    kd_loss_ = read_history(tmp_path / "kd" / "history.csv")[0]["loss"]
    plain_loss = read_history(tmp_path / "plain" / "history.csv")[0]["loss"]
    assert kd_loss_ != plain_loss
    with pytest.raises(InputError, match="no teacher"):
        train(spec_of(epochs=1, kd=kd), [feats], tmp_path / "x")
    with pytest.raises(InputError, match="no 'kd'"):
        train(spec_of(epochs=1), [feats], tmp_path / "x", teachers={"scene": teacher})


def test_bad_inputs_name_the_file(tmp_path: Path, feats: Path) -> None:
    lmfb = write_features(tmp_path / "lmfb.h5", 16, (1, 40, 50), feature_set="lmfb")
    with pytest.raises(InputError, match=r"lmfb\.h5.*feature_set"):
        train(spec_of(), [feats, lmfb], tmp_path / "x")
    short = write_features(tmp_path / "short.h5", 16, (1, 40, 30))
    with pytest.raises(InputError, match=r"short\.h5.*30 frames.*crop_frames"):
        train(spec_of(), [feats, short], tmp_path / "x")
    with pytest.raises(InputError, match=r"short\.h5.*frames"):
        train(spec_of(crop_frames=None), [feats, short], tmp_path / "x")
    with pytest.raises(InputError, match="fewer than batch_size=32"):
        train(spec_of(batch_size=32), [feats], tmp_path / "x")
    with pytest.raises(InputError, match="rewind_step"):
        train(spec_of(rewind_step=100), [feats], tmp_path / "x")
    nan = write_features(tmp_path / "nan.h5", 16, (1, 40, 50))
    with h5py.File(nan, "r+") as f:
        f["features"][3, 0, 5, 5] = np.nan
    with pytest.raises(InputError, match="loss became nan.*lower lr_max"):
        train(spec_of(mixup_alpha=0.0, crop_frames=None), [nan], tmp_path / "x")


def test_fused_teacher_trains_is_recorded_and_never_resumed_without(
    tmp_path: Path, feats: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Row 1's two-stage teacher: a 10-class teacher fused with a 3-class one."""
    train(spec_of(epochs=1, seed=7), [feats], tmp_path / "t10")
    train(spec_of(epochs=1, seed=8, task="super"), [feats], tmp_path / "t3")
    t10, t3 = tmp_path / "t10" / "final.pt", tmp_path / "t3" / "final.pt"
    kd = {"temperature": 1.0, "hard_weight": 0.0, "soft_weight": 1.0}
    spec = spec_of(epochs=1, kd=kd)
    fused = train(
        spec, [feats], tmp_path / "fused", teachers={"scene": t10}, teacher_fusion=t3,
        keep_checkpoint=True,
    )  # fmt: skip
    assert fused["resumed_from_epoch"] is None
    ck = load_checkpoint(tmp_path / "fused" / "checkpoint.pt")
    fp = ck["fingerprint"]
    assert fp["teacher_fusion"]["path"] == str(t3.resolve())
    assert fp["teacher_fusion"]["size"] == t3.stat().st_size
    assert fp["teachers"]["scene"]["path"] == str(t10.resolve())
    # the 3-class model did enter the soft targets: another loss than t10 alone
    train(spec, [feats], tmp_path / "plain", teachers={"scene": t10})
    fused_loss = read_history(tmp_path / "fused" / "history.csv")[0]["loss"]
    plain_loss = read_history(tmp_path / "plain" / "history.csv")[0]["loss"]
    assert fused_loss != plain_loss
    # the same run resumes; the run without the fusion teacher starts over
    again = train(
        spec, [feats], tmp_path / "fused", teachers={"scene": t10}, teacher_fusion=t3,
        keep_checkpoint=True,
    )  # fmt: skip
    assert again["resumed_from_epoch"] == 1
    with caplog.at_level(logging.WARNING):
        without = train(
            spec, [feats], tmp_path / "fused", teachers={"scene": t10}, keep_checkpoint=True
        )
    assert without["resumed_from_epoch"] is None
    assert "different run" in caplog.text and "teacher_fusion" in caplog.text


def test_fused_teacher_needs_a_scene_teacher_and_a_3_class_model(
    tmp_path: Path, feats: Path
) -> None:
    train(spec_of(epochs=1, seed=7), [feats], tmp_path / "t10")
    t10 = tmp_path / "t10" / "final.pt"
    kd = {"temperature": 1.0, "hard_weight": 0.0, "soft_weight": 1.0}
    with pytest.raises(InputError, match=r"t10/final\.pt.*'super' with 3 classes"):
        train(
            spec_of(epochs=1, kd=kd), [feats], tmp_path / "x",
            teachers={"scene": t10}, teacher_fusion=t10,
        )  # fmt: skip
    with pytest.raises(InputError, match="no scene teacher"):
        train(
            spec_of(epochs=1, kd=kd, task="super"), [feats], tmp_path / "y",
            teachers={"super": t10}, teacher_fusion=t10,
        )  # fmt: skip
