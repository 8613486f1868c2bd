"""The invariant of every pruning round: every class of every head can still be predicted
(no class logit is a constant function of the input) and no layer is emptied.

Masks are built the way the rounds build them (lottery rounds: `build_scoped_mask` from
the previous round's weights; progressive pruning: `step_mask`), at the presets' own
sparsity, for every shipped preset in both scopes on SIC, LIC and the DCASE baseline."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from acoustic_lottery.models.registry import build_model
from acoustic_lottery.pruning.progressive import plan_progressive, step_mask
from acoustic_lottery.pruning.reachability import (
    UnreachableClassError,
    check_reachable,
    emptied_tensors,
    probe_shape,
    restore_reachability,
    unreachable_classes,
    unreachable_report,
)
from acoustic_lottery.pruning.rewind import rewind_state
from acoustic_lottery.pruning.schedule import PRESET_NAMES, PRESETS, preset, rate_per_round
from acoustic_lottery.pruning.scope import SCOPES, build_scoped_mask, prunable_groups

ARCHS = ("baseline", "sic", "lic")


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Every stored value random and non-zero (as trained weights: no ties, BN too)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                new = torch.randn(v.shape, generator=g)
                v.copy_(new.abs() + 0.01 if k.endswith("running_var") else new)
    return model


def assert_invariant(model: nn.Module, mask: dict, where: str) -> None:
    rep = unreachable_report(model, mask)
    assert rep["emptied"] == [] == emptied_tensors(mask), where
    assert not any(rep["unreachable"].values()), (where, rep["why"])


def lottery_masks(model: nn.Module, p: dict, scope: str, skip: int = 0, **kw) -> list[dict]:
    """The masks of a lottery chain under preset ``p``: one per round, each built from
    "trained" weights (re-randomised survivors; no training here). ``skip`` rounds are
    fast-forwarded as one prune to their sparsity (for long chains on big models)."""
    masks, mask = [], None
    rates = [float(p["rate"])] * int(p["rounds"])
    if skip:
        rates = [1 - (1 - rates[0]) ** skip] + rates[skip:]
    for t, rate in enumerate(rates):
        mask = build_scoped_mask(
            p["strategy"],
            model,
            model.state_dict(),
            mask,
            rate,
            scope=scope,
            min_keep=int(p["min_keep"]),
            **kw,
        )
        masks.append(mask)
        model.load_state_dict(rewind_state(randomize(model, 100 + t).state_dict(), mask))
    return masks


#: Every shipped lottery preset in both scopes (acoustic_lottery in scope "all" is its
#: size-matched variant).
PRESET_SCOPES = [
    ("acoustic_lottery", "weights"),
    ("acoustic_lottery_size_matched", "all"),
    ("audio_lottery", "weights"),
    ("audio_lottery", "all"),
]


def test_the_matrix_covers_every_lottery_preset_and_scope() -> None:
    covered = {(n, s) for n, s in PRESET_SCOPES}
    covered |= {("acoustic_lottery", "all"), ("acoustic_lottery_size_matched", "weights")}
    assert covered == {(n, s) for n in PRESET_NAMES if n != "progressive" for s in SCOPES}
    assert PRESETS["acoustic_lottery_size_matched"] == {
        **PRESETS["acoustic_lottery"],
        "scope": "all",
        "name": "acoustic_lottery_size_matched",
        "description": PRESETS["acoustic_lottery_size_matched"]["description"],
    }


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("name", "scope"), PRESET_SCOPES)
def test_every_lottery_preset_keeps_every_class_reachable(name: str, scope: str, arch: str):
    """audio_lottery has 23 rounds (~2 s of sorting each on LIC): all but the last two,
    where classes are at risk, are fast-forwarded as one prune to their sparsity."""
    p = PRESETS[name]
    assert p["target_sparsity"] == pytest.approx(0.9933)
    model = randomize(build_model(arch, seed=0), 1)
    skip = 0 if name != "audio_lottery" else int(p["rounds"]) - 2
    masks = lottery_masks(model, p, scope, skip=skip)
    prev = None
    for t, mask in enumerate(masks, 1):
        assert_invariant(model, mask, f"{name} {scope} {arch} round {t}")
        if prev is not None:
            assert all(not (mask[k] & ~prev[k]).any() for k in mask)  # nested
        prev = mask
    # The preset's sparsity is reached up to the few units given back.
    leaders = prunable_groups(model, scope)
    kept = sum(int(mask[k].sum()) for k in leaders)
    total = sum(mask[k].numel() for k in leaders)
    assert 1 - kept / total == pytest.approx(p["final_sparsity"], abs=2e-3)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("scope", SCOPES)
def test_progressive_pruning_keeps_every_class_reachable(scope: str, arch: str):
    settings = preset("progressive")
    plan = plan_progressive({**settings, "start_fraction": 0.0, "end_fraction": 0.5}, 40)
    assert plan["targets"][-1] == pytest.approx(0.9933)
    model = randomize(build_model(arch, seed=0), 2)
    mask = None
    # the early, mild steps fast-forwarded into the third-last one (suite time)
    for k, target in enumerate(plan["targets"][-3:]):
        mask = step_mask(settings["strategy"], model, model.state_dict(), mask, target, scope=scope)
        assert_invariant(model, mask, f"progressive {scope} {arch} step {k}")
        with torch.no_grad():  # training continues from the pruned weights
            model.load_state_dict(rewind_state(randomize(model, 200 + k).state_dict(), mask))


def test_two_heads_each_keep_every_class() -> None:
    model = randomize(build_model("sic", task="mtl", seed=0), 3)
    for mask in lottery_masks(model, PRESETS["acoustic_lottery"], "weights"):
        bad = unreachable_classes(model, mask)
        assert set(bad) == {"scene", "super"} and not any(bad.values())


# ------------------------------------------------------- the checker catches emptied heads


def literal_all_scope_ticket(arch: str = "sic") -> tuple[nn.Module, dict]:
    """The old default: 99.33 % of every stored value per tensor, BN included, no guard."""
    model = randomize(build_model(arch, seed=0), 1)
    p = PRESETS["acoustic_lottery_size_matched"]
    mask = lottery_masks(model, p, "all", keep_reachable=False)[-1]
    return model, mask


def test_the_old_all_scope_ticket_is_caught() -> None:
    model, mask = literal_all_scope_ticket()
    assert int(mask["head.scene.bn.weight"].sum()) == 1  # 1 of 10 head BN channels
    bad = unreachable_classes(model, mask)["scene"]
    assert len(bad) >= 9  # at most one logit varies: argmax reaches at most 2 classes
    with pytest.raises(UnreachableClassError) as err:
        check_reachable(model, mask, "round 2")
    text = str(err.value)
    assert "head 'scene'" in text and str(bad) in text and "head.scene." in text


def test_the_checker_agrees_with_the_real_model() -> None:
    """Sound: a class it calls unreachable has a logit constant over random inputs, with
    any weights. And a class it calls reachable varies once no ReLU is dead for every
    input (BN shifts made large: only then is variation a matter of the mask alone)."""
    model, mask = literal_all_scope_ticket()
    guarded = build_scoped_mask(
        "small_weights", model, model.state_dict(), None, 0.9933, scope="all"
    )
    x = torch.randn((16, *probe_shape(model)), generator=torch.Generator().manual_seed(0))
    for m in (mask, guarded):
        bad = set(unreachable_classes(model, m)["scene"])
        for live in (False, True):
            net = randomize(build_model("sic", seed=0), 5)
            if live:
                with torch.no_grad():
                    for mod in net.modules():
                        if isinstance(mod, nn.BatchNorm2d):
                            mod.bias.fill_(50.0)
            net.load_state_dict(rewind_state(net.state_dict(), m))
            with torch.no_grad():  # float64: a tiny variation on top of 50 still shows
                spread = net.double().eval()(x.double()).std(dim=0)
            for c in range(10):
                if c in bad:
                    assert spread[c] == 0, (c, spread[c])
                elif live:
                    assert spread[c] > 0, c
    assert len(unreachable_classes(model, mask)["scene"]) >= 9
    assert not unreachable_classes(model, guarded)["scene"]


def test_a_path_cut_inside_the_trunk_is_caught_and_repaired() -> None:
    """Row c keeps a weight, but it reads a hidden unit no surviving weight feeds."""
    model = randomize(build_model("baseline", seed=0), 4)
    mask = {k: torch.ones_like(v, dtype=torch.bool) for k, v in model.state_dict().items()
            if k in prunable_groups(model, "weights")}  # fmt: skip
    mask["trunk.14.weight"][5] = False  # hidden unit 5 has no input any more
    mask["head.scene.weight"][3] = False
    mask["head.scene.weight"][3, 5] = True  # class 3 reads only hidden unit 5
    rep = unreachable_report(model, mask)
    assert rep["unreachable"] == {"scene": [3]}
    assert "row 3 of head.scene.weight" in rep["why"]["scene"][3]
    pool = {k: v.clone() for k, v in mask.items()}
    pool["head.scene.weight"][3, 7] = True  # one more weight of row 3 may come back
    fixed, restored = restore_reachability(model, model.state_dict(), mask, pool)
    assert restored == {"head.scene.weight": 1} and bool(fixed["head.scene.weight"][3, 7])
    assert not any(unreachable_classes(model, fixed).values())
    with pytest.raises(UnreachableClassError, match="no path of the previous mask"):
        restore_reachability(model, model.state_dict(), mask, mask)


def test_a_cut_stem_leaves_every_class_constant_and_names_the_layer() -> None:
    model = build_model("sic", seed=0)
    mask = {k: torch.ones_like(v, dtype=torch.bool) for k, v in model.state_dict().items()
            if k in prunable_groups(model, "weights")}  # fmt: skip
    mask["trunk.0.0.weight"][:] = False
    rep = unreachable_report(model, mask)
    assert rep["unreachable"]["scene"] == list(range(10))
    assert rep["emptied"] == ["trunk.0.0.weight"]
    assert "trunk.0.0" in rep["why"]["scene"][0]
    with pytest.raises(UnreachableClassError, match="emptied layer"):
        check_reachable(model, mask)


@pytest.mark.parametrize(
    ("arch", "width"),
    [("baseline", 1.0), ("sic", 1.0), ("lic", 1.0), ("fcnn", 0.25), ("resnet", 0.25),
     ("repmobile", 1.0), ("repmobile_deploy", 1.0)],
)  # fmt: skip
def test_every_dense_model_of_the_zoo_reaches_every_class(arch: str, width: float) -> None:
    model = build_model(arch, task="mtl", width=width, seed=0)
    bad = unreachable_classes(model, None)
    assert set(bad) == {"scene", "super"} and not any(bad.values())


def test_the_literal_reading_needs_the_guard_on_every_architecture() -> None:
    """Without the guard the preset's 99.33 % masks leave classes constant in every
    scope: the guard is what keeps the invariant (rate from the preset: 2 rounds)."""
    rate = rate_per_round(0.9933, 2)
    for arch in ARCHS:
        model = build_model(arch, seed=0)
        mask = None
        for _ in range(2):
            mask = build_scoped_mask(
                "small_weights", model, model.state_dict(), mask, rate, keep_reachable=False
            )
        assert any(unreachable_classes(model, mask).values()), arch
