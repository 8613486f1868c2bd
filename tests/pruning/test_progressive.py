"""Progressive pruning (Rep-Mobile style): the plan, exact per-step masks, a run on tiny
features (zeros, sparsity, nesting, no rewinding, KD, determinism, restart), the CLI."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from acoustic_lottery import cli
from acoustic_lottery.errors import InputError
from acoustic_lottery.models.checkpoint import load_checkpoint
from acoustic_lottery.models.registry import build_model
from acoustic_lottery.pruning import progressive as prog
from acoustic_lottery.pruning.masks import load_mask
from acoustic_lottery.pruning.progressive import (
    plan_progressive,
    progressive_settings,
    run_progressive,
    step_mask,
)
from acoustic_lottery.pruning.reachability import unreachable_classes
from acoustic_lottery.pruning.schedule import preset
from acoustic_lottery.pruning.scope import prunable_groups
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

# The DCASE baseline (conv biases, BN, linear layers) on 1 x 40 x 20 clips; 16 clips /
# batch 8 = 2 steps per epoch.
BASE: dict[str, Any] = {
    "arch": "baseline",
    "feature_set": "baseline",
    "batch_size": 8,
    "specaug_freq": 4,
    "specaug_time": 4,
    "threads": 1,
    "momentum": 0.9,
    "weight_decay": 1e-3,
    "lr_max": 0.05,
}
DENSE = {**BASE, "epochs": 1, "cycle_epochs": 1}
KD = {"temperature": 2.0, "hard_weight": 0.5, "soft_weight": 0.5}
FINETUNE = {**BASE, "epochs": 4, "cycle_epochs": 4, "seed": 5, "kd": KD}
# 3 prunes at the ends of epochs 1, 2, 3; epoch 4 recovers.
SETTINGS = {"target_sparsity": 0.9, "n_steps": 3, "start_fraction": 0.0, "end_fraction": 0.75}
TARGET = SETTINGS["target_sparsity"]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACOUSTIC_LOTTERY_PROGRESS", "0")


def write_features(path: Path, n: int = 16, shape: tuple[int, int, int] = (1, 40, 20)) -> Path:
    """A labelled feature file written by hand after CONTRACTS "Feature files"."""
    rng = np.random.default_rng(0)
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
                "feature_set": "baseline",
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


def same(a: Any, b: Any) -> bool:
    """Deep equality with tensors compared bit for bit (dtype, shape and every bit)."""
    if isinstance(a, torch.Tensor):
        if not isinstance(b, torch.Tensor) or a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.is_floating_point():
            ints = {8: torch.int64, 4: torch.int32, 2: torch.int16}[a.element_size()]
            return torch.equal(a.contiguous().view(ints), b.contiguous().view(ints))
        return torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    return a == b


def expected_kept(total: int, target: float, min_keep: int = 1) -> int:
    return max(min_keep, math.floor((1.0 - target) * total + 0.5))


# ------------------------------------------------------------------------- no training


def test_plan_of_the_preset_spreads_ten_prunes_over_the_window() -> None:
    plan = plan_progressive(preset("progressive"), 30)
    assert plan["prune_epochs"] == [5, 7, 8, 10, 12, 14, 16, 17, 19, 21]
    assert plan["targets"][-1] == preset("progressive")["target_sparsity"]
    assert all(a < b for a, b in zip(plan["targets"], plan["targets"][1:]))
    assert plan["phases"][0] == [0, 5] and plan["phases"][-1] == [21, 30]
    # Phases tile the run without gaps.
    assert all(p[1] == q[0] for p, q in zip(plan["phases"], plan["phases"][1:]))


def test_plan_refuses_what_cannot_be_scheduled() -> None:
    with pytest.raises(InputError, match="n_steps=10 prunes need at least 10 epochs"):
        plan_progressive(preset("progressive"), 14)
    with pytest.raises(InputError, match="no epoch to recover"):
        plan_progressive({"n_steps": 2, "start_fraction": 0.0, "end_fraction": 1.0}, 4)
    with pytest.raises(InputError, match="'rewind'"):
        progressive_settings({"rewind": "init"})
    with pytest.raises(InputError, match="unknown key"):
        progressive_settings({"rounds": 2})
    with pytest.raises(InputError, match="'name'"):
        progressive_settings(preset("acoustic_lottery"))
    with pytest.raises(InputError, match="start_fraction < end_fraction"):
        progressive_settings({"start_fraction": 0.5, "end_fraction": 0.5})
    with pytest.raises(InputError, match="n_steps"):
        progressive_settings({"n_steps": 0})


def test_step_masks_hit_cumulative_targets_exactly_and_nest() -> None:
    """Twenty small steps: each tensor sits on round_half_up((1 - s)·N) survivors (>= 1)
    every time, where the single-rate chain would drift by its accumulated rounding."""
    model = build_model("baseline", seed=0)
    gen = torch.Generator().manual_seed(1)
    state = {k: torch.randn(v.shape, generator=gen) for k, v in model.state_dict().items()}
    state = {k: v if v.is_floating_point() else model.state_dict()[k] for k, v in state.items()}
    groups = prunable_groups(model, "all")
    targets = preset("progressive", n_steps=20)
    plan = plan_progressive({**targets, "start_fraction": 0.0, "end_fraction": 0.5}, 40)
    mask = None
    leader_of = {m: leader for leader, ms in groups.items() for m in ms}
    for s in plan["targets"]:
        restored: dict[str, int] = {}
        new = step_mask("small_weights", model, state, mask, s, scope="all", restored=restored)
        assert set(new) == {m for ms in groups.values() for m in ms}
        assert not any(unreachable_classes(model, new).values())
        for name, m in new.items():
            # exact, plus the units given back to keep every class reachable
            extra = restored.get(leader_of[name], 0)
            assert int(m.sum()) == expected_kept(m.numel(), s) + extra, (name, s)
            if mask is not None:
                assert not (m & ~mask[name]).any()  # nested
        # Magnitude: no pruned leader outweighs a surviving one of its tensor.
        for leader in groups:
            w, m = state[leader].abs(), new[leader]
            if m.any() and (~m).any() and not restored.get(leader):
                assert w[~m].max() <= w[m].min()
        mask = new
    # Global strategy: the overall unit count is exact.
    g = step_mask("global_small_weights", model, state, None, 0.8, scope="weights")
    total = sum(m.numel() for m in g.values())
    assert sum(int(m.sum()) for m in g.values()) == math.floor(0.2 * total + 0.5)


# --------------------------------------------------------------------------- full runs


def run(root: Path, name: str, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "spec": FINETUNE,
        "train_files": [root / "train.h5"],
        "out_dir": root / name,
        "dense_checkpoint": root / "dense" / "final.pt",
        "preset_settings": SETTINGS,
        "teachers": {"scene": root / "dense" / "final.pt"},
        "scope": "all",
    }
    args.update(kw)
    return run_progressive(**args)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Dense model (also the KD teacher) and two identical progressive runs."""
    root = tmp_path_factory.mktemp("progressive")
    write_features(root / "train.h5")
    train(DENSE, [root / "train.h5"], root / "dense")
    a = run(root, "a", keep_phases=True)
    b = run(root, "b", keep_phases=True)
    plain = run(root, "plain")  # as the CLI runs it: the phases' resume state removed
    return {"root": root, "a": a, "b": b, "plain": plain}


def test_outputs_and_pruned_entries_exactly_zero(runs: dict[str, Any]) -> None:
    out = runs["root"] / "a"
    for name in ("final.pt", "mask.pt", "history.csv", "progressive.json"):
        assert (out / name).is_file()
    ck = load_checkpoint(out / "final.pt")
    mask = load_mask(out / "mask.pt")
    assert set(ck["mask"]) == set(mask)
    assert all(torch.equal(ck["mask"][k], mask[k]) for k in mask)
    for name, m in mask.items():
        t = ck["state_dict"][name]
        assert (t[~m] == 0).all(), name
        assert not torch.signbit(t[~m]).any(), name  # +0.0, never -0.0
    assert ck["epoch"] == FINETUNE["epochs"] and ck["global_step"] == 4 * 2
    assert ck["spec"]["kd"] is not None
    # BN channels were pruned as units (scope "all").
    assert any(k.endswith("running_var") for k in mask)
    report = json.loads((out / "progressive.json").read_text())
    assert report["size"]["nonzero"] == sum(
        int(torch.count_nonzero(v)) for k, v in ck["state_dict"].items() if "num_batches" not in k
    )


def test_achieved_sparsity_equals_target_within_one_weight_per_tensor(
    runs: dict[str, Any],
) -> None:
    report = runs["a"]
    layers = report["sparsity"]["layers"]
    assert layers
    for name, e in layers.items():
        assert abs(e["kept"] - (1.0 - TARGET) * e["total"]) <= 1.0, name
        assert e["kept"] >= 1
    total = report["sparsity"]["total"]
    assert abs(report["sparsity"]["kept"] - (1 - TARGET) * total) <= len(layers)
    assert report["sparsity"]["measured_sparsity"] >= report["sparsity"]["sparsity"]
    assert report["size"]["kb"] < 0.2 * report["size"]["dense_kb"]


def test_sparsity_grows_masks_nest_and_nothing_is_rewound(runs: dict[str, Any]) -> None:
    out = runs["root"] / "a"
    report = runs["a"]
    steps = report["steps"]
    assert [s["epoch"] for s in steps] == [1, 2, 3]
    assert [s["global_step"] for s in steps] == [2, 4, 6]
    achieved = [s["achieved"]["sparsity"] for s in steps]
    assert achieved == sorted(achieved) and achieved[0] > 0
    assert steps[-1]["target_sparsity"] == TARGET
    for s in steps:
        assert abs(s["achieved"]["sparsity"] - s["target_sparsity"]) < 0.01
    phases = sorted((out / "phases").iterdir())
    assert [p.name for p in phases] == ["phase_00", "phase_01", "phase_02", "phase_03"]
    prev_final, prev_mask = None, None
    for k, p in enumerate(phases):
        init = load_checkpoint(p / "init.pt")
        final = load_checkpoint(p / "final.pt")
        mask = final.get("mask")
        if k == 0:
            assert not mask
            dense = load_checkpoint(runs["root"] / "dense" / "final.pt")["state_dict"]
            start = dense
        else:
            assert init["global_step"] == 2 * k
            if prev_mask is not None:
                for name in mask:  # a weight once pruned stays pruned
                    assert not (mask[name] & ~prev_mask[name]).any(), (k, name)
            # No rewinding: the phase starts from the previous phase's end, newly masked.
            start = {
                n: t.masked_fill(~mask[n], 0.0) if n in mask else t for n, t in prev_final.items()
            }
        for n, t in init["state_dict"].items():
            assert torch.equal(t, start[n]), (k, n)
        prev_final, prev_mask = final["state_dict"], mask


def assert_same_outputs(x: Path, y: Path) -> None:
    """Byte for byte; the report only after its output paths (other directories here)."""
    for name in prog.OUTPUTS:
        if name == "progressive.json":
            rx, ry = (json.loads((d / name).read_text()) for d in (x, y))
            assert {**rx, "paths": None} == {**ry, "paths": None}
        else:
            assert (x / name).read_bytes() == (y / name).read_bytes(), name


def test_same_seed_gives_identical_checkpoints(runs: dict[str, Any]) -> None:
    """Every output byte for byte, and every entry of final.pt / mask.pt bit for bit."""
    a, b = runs["root"] / "a", runs["root"] / "b"
    plain = runs["root"] / "plain"
    assert sorted(p.name for p in plain.iterdir()) == sorted(prog.OUTPUTS)  # no phases/
    assert_same_outputs(plain, a)
    ck_a, ck_b = load_checkpoint(a / "final.pt"), load_checkpoint(b / "final.pt")
    assert same(ck_a, ck_b)
    assert same(load_mask(a / "mask.pt"), load_mask(b / "mask.pt"))
    assert (a / "history.csv").read_text().count("\n") == 4 + 1
    # `same` does tell weights apart: fine-tuning changed the dense model's.
    assert not same(
        ck_a["state_dict"], load_checkpoint(runs["root"] / "dense" / "final.pt")["state_dict"]
    )


def test_restart_reuses_finished_phases_and_failure_leaves_no_final(
    runs: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = runs["root"]
    work = tmp_path / "c"
    shutil.copytree(root / "b", work)
    shutil.rmtree(work / "phases" / "phase_03")

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed")

    monkeypatch.setattr(prog, "train", boom)
    with pytest.raises(RuntimeError, match="killed"):
        run(root, "c", out_dir=work)
    # The stale result of the earlier run is gone, nothing looks finished.
    assert not (work / "final.pt").exists() and not (work / "progressive.json").exists()
    monkeypatch.undo()
    monkeypatch.setenv("ACOUSTIC_LOTTERY_PROGRESS", "0")
    with caplog.at_level(logging.INFO, logger=prog.__name__):
        run(root, "c", out_dir=work)
    assert caplog.text.count("already done: reusing") == 3  # phase 3 trained again
    assert_same_outputs(work, root / "a")  # the restarted run is the uninterrupted one


def test_distillation_changes_training_and_errors_name_the_problem(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    root = runs["root"]
    assert runs["a"]["distillation"] is True
    no_kd = {**FINETUNE, "kd": None}
    with pytest.raises(InputError, match="no 'kd' settings"):
        run(root, "x", out_dir=tmp_path / "x", spec=no_kd)
    with pytest.raises(InputError, match="trained under a mask"):
        run(root, "x", out_dir=tmp_path / "x", dense_checkpoint=root / "a" / "final.pt")
    with pytest.raises(InputError, match="'arch'"):
        run(root, "x", out_dir=tmp_path / "x", spec={**FINETUNE, "arch": "sic"})
    # Label-only fine-tuning of the same dense model: phase 0 (dense, identical batches)
    # has another loss, so the teacher did enter the KD run's loss.
    plain = run(
        root,
        "plain",
        out_dir=tmp_path / "plain",
        spec=no_kd,
        teachers=None,
        preset_settings={**SETTINGS, "n_steps": 1, "end_fraction": 0.25, "distillation": False},
    )
    assert plain["distillation"] is False
    assert plain["phases"][0]["final_loss"] != runs["a"]["phases"][0]["final_loss"]


def test_cli_prune_progressive(
    runs: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    root = runs["root"]
    monkeypatch.setattr(cli, "GROUPS", ("progressive",))
    spec = {**FINETUNE, "epochs": 2, "cycle_epochs": 2, "kd": None}
    out = tmp_path / "cli"
    argv = [
        "prune-progressive",
        "--spec",
        json.dumps(spec),
        "--train",
        str(root / "train.h5"),
        "--dense",
        str(root / "dense" / "final.pt"),
        "--out-dir",
        str(out),
        "--target-sparsity",
        "0.8",
        "--steps",
        "1",
        "--start-fraction",
        "0",
        "--end-fraction",
        "0.5",
        "--strategy",
        "global_small_weights",
        "--scope",
        "weights",
        "--exclude-first",
        "--threads",
        "1",
    ]
    assert cli.main(argv) == 0
    assert "prune-progressive:" in capsys.readouterr().out
    report = json.loads((out / "progressive.json").read_text())
    assert report["settings"]["strategy"] == "global_small_weights"
    assert report["plan"]["prune_epochs"] == [1]
    mask = load_mask(out / "mask.pt")
    model = build_model("baseline", seed=0)
    first = next(iter(prunable_groups(model, "weights")))
    assert first not in mask  # --exclude-first kept the first layer dense
    assert list(mask) == list(prunable_groups(model, "weights", exclude_first=True))
    total = sum(m.numel() for m in mask.values())
    assert sum(int(m.sum()) for m in mask.values()) == math.floor(0.2 * total + 0.5)
    bad = list(argv)
    bad[bad.index("--dense") + 1] = str(tmp_path / "missing.pt")
    assert cli.main(bad) == 2
    assert "--dense" in capsys.readouterr().err


def test_a_fused_teacher_enters_the_loss_and_is_recorded(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    """teacher_fusion: the dense scene teacher fused two-stage with a 3-class model."""
    root = runs["root"]
    train({**DENSE, "task": "super", "seed": 3}, [root / "train.h5"], tmp_path / "t3")
    t3 = tmp_path / "t3" / "final.pt"
    fused = run(root, "fused", out_dir=tmp_path / "fused", teacher_fusion=t3)
    assert fused["paths"]["teacher_fusion"] == str(t3)
    assert runs["a"]["paths"]["teacher_fusion"] is None
    assert fused["phases"][0]["final_loss"] != runs["a"]["phases"][0]["final_loss"]
    with pytest.raises(InputError, match="no scene teacher"):
        run(root, "x", out_dir=tmp_path / "x", teachers={"super": t3}, teacher_fusion=t3)
