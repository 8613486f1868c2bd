"""Lottery rounds (Algorithm 1): a 2-round chain on tiny features, controls, late
rewinding, masked BN channels in the trainer, the round report, the CLI verbs."""

from __future__ import annotations

import json
import math
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
from acoustic_lottery.models.size import size_report
from acoustic_lottery.pruning import lottery
from acoustic_lottery.pruning.lottery import (
    MaskInvariantError,
    dense_round_report,
    masked_nonzero,
    resolve_rate,
    run_round,
)
from acoustic_lottery.pruning.masks import load_mask, save_mask
from acoustic_lottery.pruning.reachability import UnreachableClassError, unreachable_classes
from acoustic_lottery.pruning.schedule import rate_per_round, sparsity_after
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

# The DCASE baseline (conv biases, BN, linear layers: every kind of prunable tensor) on
# 1 x 40 x 50 clips; 24 clips / batch 8 = 3 steps per epoch.
SPEC: dict[str, Any] = {
    "arch": "baseline",
    "feature_set": "baseline",
    "epochs": 2,
    "cycle_epochs": 1,
    "batch_size": 8,
    "specaug_freq": 6,
    "specaug_time": 8,
    "crop_frames": 40,
    "threads": 2,
    "momentum": 0.9,
    "weight_decay": 1e-3,
    "lr_max": 0.05,
}
TARGET, ROUNDS = 0.9, 2
REWIND_STEP = 2


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACOUSTIC_LOTTERY_PROGRESS", "0")


def write_features(path: Path, n: int = 24, shape: tuple[int, int, int] = (1, 40, 50)) -> Path:
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


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32) if t.dtype == torch.float32 else t


def state(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


def round_kwargs(**kw: Any) -> dict[str, Any]:
    base = {
        "spec": SPEC,
        "strategy": "small_weights",
        "target_sparsity": TARGET,
        "rounds": ROUNDS,
        "scope": "all",
    }
    base.update(kw)
    return base


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Dense run (round 0, with a late-rewinding snapshot) and the winning rounds 1 and 2."""
    root = tmp_path_factory.mktemp("chain")
    feats = write_features(root / "train.h5")
    train({**SPEC, "rewind_step": REWIND_STEP}, [feats], root / "r0")
    r1 = run_round(
        round_index=1,
        train_files=[feats],
        out_dir=root / "r1",
        theta0=root / "r0" / "init.pt",
        previous=root / "r0" / "final.pt",
        previous_mask=None,
        **round_kwargs(),
    )
    r2 = run_round(
        round_index=2,
        train_files=[feats],
        out_dir=root / "r2",
        theta0=root / "r0" / "init.pt",
        previous=root / "r1" / "final.pt",
        previous_mask=root / "r1" / "mask.pt",
        **round_kwargs(),
    )
    return {"root": root, "feats": feats, "reports": {1: r1, 2: r2}}


def test_masked_entries_are_exactly_zero_after_every_round(chain: dict[str, Any]) -> None:
    root = chain["root"]
    for t in (1, 2):
        mask = load_mask(root / f"r{t}" / "mask.pt")
        assert any((~m).any() for m in mask.values())
        for name in ("init.pt", "final.pt"):
            st = state(root / f"r{t}" / name)
            for k, m in mask.items():
                assert (st[k][~m] == 0).all(), f"round {t} {name}: {k} revived"
                assert not torch.signbit(st[k][~m]).any(), f"round {t} {name}: -0.0 in {k}"
        ck = load_checkpoint(root / f"r{t}" / "final.pt")
        assert set(ck["mask"]) == set(mask)
        assert all(torch.equal(ck["mask"][k], mask[k]) for k in mask)


def test_each_round_starts_from_theta0_bit_for_bit(chain: dict[str, Any]) -> None:
    root = chain["root"]
    theta0 = state(root / "r0" / "init.pt")
    for t in (1, 2):
        mask = load_mask(root / f"r{t}" / "mask.pt")
        start = state(root / f"r{t}" / "init.pt")
        assert load_checkpoint(root / f"r{t}" / "init.pt")["global_step"] == 0
        for k, v in theta0.items():
            if k in mask:
                m = mask[k]
                assert torch.equal(bits(start[k][m]), bits(v[m])), k
            else:  # never-pruned tensors come from Θ0 too
                assert torch.equal(bits(start[k]), bits(v)), k


def test_masks_shrink_and_reach_the_target_within_one_weight(chain: dict[str, Any]) -> None:
    root = chain["root"]
    model = build_model("baseline", seed=0)
    groups = prunable_groups(model, "all")
    names = [n for members in groups.values() for n in members]
    rate = rate_per_round(TARGET, ROUNDS)
    leader_of = {n: leader for leader, members in groups.items() for n in members}
    prev = None
    given_back = {0: {}}  # units the reachability guard gave back, per round and leader
    for t in (1, 2):
        mask = load_mask(root / f"r{t}" / "mask.pt")
        assert list(mask) == names  # scope "all": weights, biases and BN channels
        given_back[t] = chain["reports"][t]["reachability"]["restored"]
        assert not any(unreachable_classes(model, mask).values())
        for k, m in mask.items():
            total, kept = m.numel(), int(m.sum())
            assert kept >= 1, f"{k} emptied"
            goal = (1 - sparsity_after(rate, t)) * total
            now, before = (given_back[i].get(leader_of[k], 0) for i in (t, t - 1))
            kept -= now  # exact up to the give-backs (and the share of round 1's kept)
            assert abs(kept - goal) <= 1 + before or (goal < 1 and kept == 1), (t, k, kept, goal)
            if prev is not None:
                assert not (m & ~prev[k]).any(), f"round {t} revived pruned entries of {k}"
        for leader, members in groups.items():  # a BN channel is pruned as a whole
            assert all(torch.equal(mask[n], mask[leader]) for n in members)
        prev = mask


def test_round_report_numbers(chain: dict[str, Any]) -> None:
    root = chain["root"]
    for t, rep in chain["reports"].items():
        on_disk = json.loads((root / f"r{t}" / "round.json").read_text())
        assert on_disk == json.loads(json.dumps(rep))
        mask = load_mask(root / f"r{t}" / "mask.pt")
        final = state(root / f"r{t}" / "final.pt")
        total = sum(m.numel() for m in mask.values())
        kept = sum(int(m.sum()) for m in mask.values())
        assert rep["round"] == t and rep["strategy"] == "small_weights" and rep["scope"] == "all"
        assert rep["rate"] == pytest.approx(1 - math.sqrt(1 - TARGET))
        assert rep["expected_sparsity"] == pytest.approx(1 - (1 - rep["rate"]) ** t)
        assert rep["weights_remaining"] == pytest.approx(kept / total)
        sm = rep["sparsity"]["mask"]
        assert (sm["total"], sm["kept"]) == (total, kept)
        for k, m in mask.items():
            layer = sm["layers"][k]
            assert (layer["total"], layer["kept"]) == (m.numel(), int(m.sum()))
            measured = rep["sparsity"]["measured"]["layers"][k]
            assert measured["kept"] == int(torch.count_nonzero(final[k]))
            assert measured["kept"] <= layer["kept"]
        sr = size_report(final)
        assert rep["size"]["kb"] == pytest.approx(sr["kb"])
        assert rep["size"]["nonzero"] == sr["nonzero"]
        assert rep["paths"]["mask"] == str(root / f"r{t}" / "mask.pt")
    assert chain["reports"][2]["size"]["kb"] < chain["reports"][1]["size"]["kb"]


def test_a_round_whose_mask_leaves_a_class_constant_stops_before_training(
    tmp_path: Path, chain: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the reachability guard, 99.33 % of the baseline's head (7 of 1,000 weights)
    leaves classes constant: the round names head, classes and layer, and trains nothing."""
    real = lottery.build_scoped_mask
    monkeypatch.setattr(
        lottery, "build_scoped_mask", lambda *a, **kw: real(*a, **{**kw, "keep_reachable": False})
    )
    root = chain["root"]
    with pytest.raises(UnreachableClassError, match=r"head 'scene': class\(es\) \[") as err:
        run_round(
            round_index=1,
            train_files=[chain["feats"]],
            out_dir=tmp_path / "r1",
            theta0=root / "r0" / "init.pt",
            previous=root / "r0" / "final.pt",
            previous_mask=None,
            **round_kwargs(target_sparsity=0.9933, rounds=1),
        )
    assert "head.scene." in str(err.value)
    assert not (tmp_path / "r1" / "mask.pt").exists()
    assert not (tmp_path / "r1" / "final.pt").exists()


def test_masked_bn_channel_stays_zero_in_training(tmp_path: Path, chain: dict[str, Any]) -> None:
    """The trainer zeroes γ, β AND the running statistics of a masked BN channel after every
    step (momentum 0.9, weight decay) and in every checkpoint."""
    model = build_model("baseline", seed=0)
    keep = torch.ones(16, dtype=torch.bool)
    keep[[1, 5, 11]] = False
    masks = {
        f"trunk.4.{n}": keep.clone() for n in ("weight", "bias", "running_mean", "running_var")
    }
    train(
        {**SPEC, "epochs": 1, "rewind_step": 1},
        [chain["feats"]],
        tmp_path / "bn",
        masks=masks,
        init_state=model.state_dict(),
        keep_checkpoint=True,
    )
    for name in ("init.pt", "rewind.pt", "checkpoint.pt", "final.pt"):
        st = state(tmp_path / "bn" / name)
        for k in masks:
            assert (st[k][~keep] == 0).all(), f"{name}: {k} revived"
    final = state(tmp_path / "bn" / "final.pt")
    for k in ("trunk.4.running_mean", "trunk.4.running_var", "trunk.4.weight"):
        assert (final[k][keep] != 0).all()  # survivors did train / track statistics
    # The silenced channel outputs exactly 0 in eval mode.
    model.load_state_dict(final)
    model.eval()
    captured = {}
    model.trunk[4].register_forward_hook(lambda m, i, o: captured.setdefault("y", o))
    with torch.no_grad():
        model(torch.randn(2, 1, 40, 50, generator=torch.Generator().manual_seed(0)))
    assert (captured["y"][:, ~keep] == 0).all()
    assert (captured["y"][:, keep] != 0).any()


def test_late_rewinding_starts_from_the_snapshot(tmp_path: Path, chain: dict[str, Any]) -> None:
    root = chain["root"]
    rep = run_round(
        round_index=1,
        train_files=[chain["feats"]],
        out_dir=tmp_path / "late",
        theta0=root / "r0" / "init.pt",
        previous=root / "r0" / "final.pt",
        previous_mask=None,
        rewind="step",
        rewind_checkpoint=root / "r0" / "rewind.pt",
        optimizer="rewind",
        **round_kwargs(),
    )
    snap = load_checkpoint(root / "r0" / "rewind.pt")
    assert snap["global_step"] == REWIND_STEP
    mask = load_mask(tmp_path / "late" / "mask.pt")
    # Same previous weights, same strategy: the same mask as the winning round 1.
    win = load_mask(root / "r1" / "mask.pt")
    assert all(torch.equal(mask[k], win[k]) for k in win)
    init = load_checkpoint(tmp_path / "late" / "init.pt")
    assert init["global_step"] == REWIND_STEP and rep["start_step"] == REWIND_STEP
    theta0 = state(root / "r0" / "init.pt")
    differs_from_theta0 = False
    for k, m in mask.items():
        assert torch.equal(bits(init["state_dict"][k][m]), bits(snap["state_dict"][k][m])), k
        assert (init["state_dict"][k][~m] == 0).all()
        differs_from_theta0 |= not torch.equal(init["state_dict"][k][m], theta0[k][m])
    assert differs_from_theta0
    assert rep["train"]["steps"] == 2 * 3  # the schedule continues from step k to the end


def test_random_mask_control_keeps_per_tensor_counts(tmp_path: Path, chain: dict[str, Any]) -> None:
    root = chain["root"]
    rep = run_round(
        round_index=2,
        train_files=[chain["feats"]],
        out_dir=tmp_path / "rm",
        theta0=root / "r0" / "init.pt",
        previous=root / "r1" / "final.pt",
        previous_mask=root / "r1" / "mask.pt",
        control="random_mask",
        control_seed=7,
        **round_kwargs(),
    )
    win = load_mask(root / "r2" / "mask.pt")
    ctl = load_mask(tmp_path / "rm" / "mask.pt")
    assert list(ctl) == list(win)
    for k in win:
        assert int(ctl[k].sum()) == int(win[k].sum()), k
    big = [k for k in win if 0 < int(win[k].sum()) < win[k].numel() // 2]
    assert any(not torch.equal(ctl[k], win[k]) for k in big)
    groups = prunable_groups(build_model("baseline", seed=0), "all")
    for leader, members in groups.items():
        assert all(torch.equal(ctl[n], ctl[leader]) for n in members)
    assert rep["control"] == "random_mask"
    assert rep["weights_remaining"] == pytest.approx(chain["reports"][2]["weights_remaining"])
    assert masked_nonzero(state(tmp_path / "rm" / "final.pt"), ctl) == {}


def test_random_reinit_control_same_mask_other_values(
    tmp_path: Path, chain: dict[str, Any]
) -> None:
    root = chain["root"]
    run_round(
        round_index=1,
        train_files=[chain["feats"]],
        out_dir=tmp_path / "ri",
        theta0=root / "r0" / "init.pt",
        previous=root / "r0" / "final.pt",
        previous_mask=None,
        control="random_reinit",
        control_seed=3,
        **round_kwargs(),
    )
    win = load_mask(root / "r1" / "mask.pt")
    ctl = load_mask(tmp_path / "ri" / "mask.pt")
    assert all(torch.equal(ctl[k], win[k]) for k in win)
    start = state(tmp_path / "ri" / "init.pt")
    theta0 = state(root / "r0" / "init.pt")
    for k in ("trunk.0.weight", "trunk.3.weight", "trunk.14.weight"):
        m = win[k]
        assert not torch.equal(start[k][m], theta0[k][m]), k
        assert (start[k][~m] == 0).all()


def test_round_rejects_wrong_inputs(tmp_path: Path, chain: dict[str, Any]) -> None:
    root = chain["root"]
    common = {
        "train_files": [chain["feats"]],
        "out_dir": tmp_path / "bad",
        "theta0": root / "r0" / "init.pt",
    }
    with pytest.raises(InputError, match="previous round's mask"):
        run_round(
            round_index=2, previous=root / "r1" / "final.pt", previous_mask=None,
            **common, **round_kwargs(),
        )  # fmt: skip
    with pytest.raises(InputError, match="differs from the mask"):
        run_round(
            round_index=2, previous=root / "r2" / "final.pt",
            previous_mask=root / "r1" / "mask.pt", **common, **round_kwargs(),
        )  # fmt: skip
    with pytest.raises(InputError, match="does not match the model"):
        run_round(
            round_index=2, previous=root / "r1" / "final.pt",
            previous_mask=root / "r1" / "mask.pt", **common, **round_kwargs(scope="weights"),
        )  # fmt: skip
    with pytest.raises(InputError, match="round 3 of a 2-round"):
        run_round(
            round_index=3, previous=root / "r2" / "final.pt",
            previous_mask=root / "r2" / "mask.pt", **common, **round_kwargs(),
        )  # fmt: skip
    with pytest.raises(InputError, match="rewind checkpoint"):
        run_round(
            round_index=1, previous=root / "r0" / "final.pt", previous_mask=None,
            rewind="step", **common, **round_kwargs(),
        )  # fmt: skip
    assert not (tmp_path / "bad").exists()  # nothing written before the inputs check out


def test_resolve_rate() -> None:
    assert resolve_rate(0.2, None, None, 5) == 0.2
    assert resolve_rate(None, 0.9933, 2, 2) == pytest.approx(1 - math.sqrt(0.0067))
    for args in [
        (None, None, None, 1),
        (0.2, 0.9, 2, 1),
        (None, 0.9, None, 1),
        (1.0, None, None, 1),
    ]:
        with pytest.raises(InputError):
            resolve_rate(*args)


def test_invariant_violation_is_detected(tmp_path: Path) -> None:
    from acoustic_lottery.pruning.lottery import _verify_zero

    mask = {"w": torch.tensor([True, False])}
    with pytest.raises(MaskInvariantError, match="w"):
        _verify_zero({"w": torch.tensor([1.0, 1e-30])}, mask, tmp_path / "final.pt")
    _verify_zero({"w": torch.tensor([1.0, 0.0])}, mask, tmp_path / "final.pt")


def run_cli(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> int:
    monkeypatch.setattr(cli, "GROUPS", ("lottery",))
    return cli.main(argv)


def test_cli_round_point_and_dense(
    tmp_path: Path, chain: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    root = chain["root"]
    out = tmp_path / "cli_r1"
    code = run_cli(
        monkeypatch,
        [
            "lottery-round", "--round", "1", "--spec", json.dumps(SPEC),
            "--train", str(chain["feats"]), "--out-dir", str(out),
            "--theta0", str(root / "r0" / "init.pt"), "--previous", str(root / "r0" / "final.pt"),
            "--strategy", "global_small_weights", "--rate", "0.5", "--threads", "1",
        ],
    )  # fmt: skip
    assert code == 0
    rep = json.loads((out / "round.json").read_text())
    assert rep["scope"] == "weights" and rep["strategy"] == "global_small_weights"
    assert set(load_mask(out / "mask.pt")) == set(
        prunable_groups(build_model("baseline"), "weights")
    )
    assert rep["sparsity"]["mask"]["sparsity"] == pytest.approx(0.5, abs=1e-4)

    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"accuracy": 0.625, "log_loss": 1.25}))
    code = run_cli(
        monkeypatch,
        ["lottery-point", "--round-report", str(out / "round.json"),
         "--metrics", str(metrics), "--out", str(tmp_path / "p.json")],
    )  # fmt: skip
    assert code == 0
    point = json.loads((tmp_path / "p.json").read_text())
    assert point == {
        "strategy": "global_small_weights",
        "weights_remaining": pytest.approx(rep["weights_remaining"]),
        "accuracy": 62.5,
        "log_loss": 1.25,
        "size_kb": pytest.approx(rep["size"]["kb"]),
        "round": 1,
        "model": "baseline",
        "scope": "weights",
        "seed": rep["spec"]["seed"],
    }
    from acoustic_lottery.reporting.figures import validate_point

    validate_point(point, "p.json")

    dense = tmp_path / "r0.json"
    assert run_cli(
        monkeypatch,
        ["lottery-dense", "--final", str(root / "r0" / "final.pt"), "--out", str(dense)],
    ) == 0  # fmt: skip
    assert json.loads(dense.read_text())["weights_remaining"] == 1.0
    point_args = ["lottery-point", "--round-report", str(dense), "--metrics", str(metrics)]
    assert run_cli(monkeypatch, [*point_args, "--out", str(tmp_path / "d.json")]) == 2
    assert "pass --strategy" in capsys.readouterr().err
    assert (
        run_cli(
            monkeypatch,
            [*point_args, "--out", str(tmp_path / "d.json"), "--strategy", "small_weights"],
        )
        == 0
    )
    assert json.loads((tmp_path / "d.json").read_text())["weights_remaining"] == 1.0


def test_cli_mask_model_mismatch_exits_2(
    tmp_path: Path, chain: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    root = chain["root"]
    other = build_model("baseline", width=0.5, seed=0)
    bad_mask = {
        n: torch.ones(p.shape, dtype=torch.bool)
        for n, p in other.named_parameters()
        if n.endswith("weight") and p.dim() > 1
    }
    save_mask(tmp_path / "other.pt", bad_mask)
    code = run_cli(
        monkeypatch,
        [
            "lottery-round", "--round", "2", "--spec", json.dumps(SPEC),
            "--train", str(chain["feats"]), "--out-dir", str(tmp_path / "x"),
            "--theta0", str(root / "r0" / "init.pt"), "--previous", str(root / "r1" / "final.pt"),
            "--previous-mask", str(tmp_path / "other.pt"), "--strategy", "small_weights",
            "--rate", "0.5",
        ],
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "lottery-round: error:" in err and "other.pt" in err and "shape" in err
    assert "Traceback" not in err


def test_dense_round_report_scope_all(tmp_path: Path, chain: dict[str, Any]) -> None:
    rep = dense_round_report(chain["root"] / "r0" / "final.pt", tmp_path / "d.json", scope="all")
    groups = prunable_groups(build_model("baseline", seed=0), "all")
    n = sum(
        state(chain["root"] / "r0" / "final.pt")[k].numel()
        for members in groups.values()
        for k in members
    )
    assert rep["sparsity"]["mask"]["total"] == n and rep["round"] == 0


def test_a_round_with_row_1s_fused_teacher_records_it(
    tmp_path: Path, chain: dict[str, Any]
) -> None:
    """The scene teacher (here the dense model) fused with a 3-class model, as the
    10-class TSL chains of Table 1 learn (teacher_fusion)."""
    root, feats = chain["root"], chain["feats"]
    train({**SPEC, "task": "super", "seed": 3}, [feats], tmp_path / "t3")
    kd = {"temperature": 1.0, "hard_weight": 0.0, "soft_weight": 1.0}
    kw = round_kwargs(spec={**SPEC, "kd": kd})
    common = {
        "round_index": 1,
        "train_files": [feats],
        "theta0": root / "r0" / "init.pt",
        "previous": root / "r0" / "final.pt",
        "previous_mask": None,
        "teachers": {"scene": root / "r0" / "final.pt"},
        **kw,
    }
    fused = run_round(out_dir=tmp_path / "fused", teacher_fusion=tmp_path / "t3/final.pt", **common)
    plain = run_round(out_dir=tmp_path / "plain", **common)
    assert fused["paths"]["teacher_fusion"] == str(tmp_path / "t3/final.pt")
    assert "teacher_fusion" not in plain["paths"]
    assert fused["train"]["final_loss"] != plain["train"]["final_loss"]
    assert json.loads((tmp_path / "fused" / "round.json").read_text())["paths"] == fused["paths"]
