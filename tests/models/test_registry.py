"""build_model: every arch and task, the head layout, spec, validation, seeding."""

from __future__ import annotations

import pytest
import torch

from acoustic_lottery.errors import InputError
from acoustic_lottery.models import ARCHS, build_model, split_heads
from acoustic_lottery.models.heads import resolve_heads

# Small widths for the big teachers keep this file fast.
WIDTH = {
    "baseline": 1.0, "sic": 1.0, "lic": 1.0, "fcnn": 0.125, "resnet": 0.125,
    "repmobile": 1.0, "repmobile_deploy": 1.0,
}  # fmt: skip
BANDS = {"baseline": 40}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(
    "task,heads",
    [
        ("scene", [("scene", 10)]),
        ("super", [("super", 3)]),
        ("mtl", [("scene", 10), ("super", 3)]),
    ],
)
def test_every_arch_forward_any_length(arch: str, task: str, heads: list) -> None:
    model = build_model(arch, task=task, width=WIDTH[arch], seed=0).eval()
    assert model.heads == heads
    channels = model.spec["in_channels"]
    bands = BANDS.get(arch, 128)
    with torch.no_grad():
        for frames in (36, 101):
            y = model(torch.randn(2, channels, bands, frames))
            assert y.shape == (2, sum(n for _, n in heads))
            assert torch.isfinite(y).all()


def test_spec_records_the_build_arguments() -> None:
    model = build_model("fcnn", task="mtl", width=0.25, in_channels=2)
    assert model.spec == {
        "arch": "fcnn",
        "task": "mtl",
        "n_classes": 10,
        "width": 0.25,
        "in_channels": 2,
    }
    assert build_model("baseline").spec["in_channels"] == 1
    assert build_model("sic", task="super").spec["n_classes"] == 3


def test_mtl_shares_the_trunk_and_splits_heads() -> None:
    model = build_model("sic", task="mtl", seed=0).eval()
    x = torch.randn(3, 3, 128, 40)
    with torch.no_grad():
        logits = model(x)
        feats = model.trunk(x)
        scene = model.head["scene"](feats)
        sup = model.head["super"](feats)
    parts = split_heads(logits, model.heads)
    assert list(parts) == ["scene", "super"]
    torch.testing.assert_close(parts["scene"], scene)
    torch.testing.assert_close(parts["super"], sup)
    names = list(model.state_dict())
    assert any(n.startswith("head.scene.") for n in names)
    assert any(n.startswith("head.super.") for n in names)
    # The trunk parameters are the same names as in the single-task model.
    single = {n for n in build_model("sic").state_dict() if n.startswith("trunk.")}
    assert single == {n for n in names if n.startswith("trunk.")}


def test_split_heads_rejects_wrong_width() -> None:
    with pytest.raises(InputError, match="expected last dimension 13"):
        split_heads(torch.zeros(2, 10), [("scene", 10), ("super", 3)])


def test_n_classes_generality_and_consistency() -> None:
    assert build_model("sic", 5).heads == [("scene", 5)]
    assert build_model("baseline", 10, task="scene").heads == [("scene", 10)]
    assert build_model("lic", 3, task="super").heads == [("super", 3)]
    assert resolve_heads("mtl", 7) == [("scene", 7), ("super", 3)]
    with pytest.raises(InputError, match="task 'super' has 3 classes"):
        build_model("sic", 10, task="super")
    with pytest.raises(InputError, match="n_classes"):
        build_model("sic", 1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"arch": "vgg"}, "arch"),
        ({"arch": "sic", "task": "both"}, "task"),
        ({"arch": "sic", "width": 0.0}, "width"),
        ({"arch": "sic", "width": float("nan")}, "width"),
        ({"arch": "sic", "in_channels": 0}, "in_channels"),
    ],
)
def test_bad_arguments_are_input_errors(kwargs: dict, match: str) -> None:
    arch = kwargs.pop("arch")
    with pytest.raises(InputError, match=match):
        build_model(arch, **kwargs)


def test_wrong_input_channels_is_an_input_error() -> None:
    model = build_model("sic").eval()
    with pytest.raises(InputError, match=r"expected \(batch, 3, freq, time\)"):
        model(torch.zeros(1, 1, 128, 36))


def test_init_is_deterministic_and_seed_leaves_global_rng_alone() -> None:
    a = build_model("sic", seed=7).state_dict()
    before = torch.get_rng_state()
    b = build_model("sic", seed=7).state_dict()
    assert torch.equal(before, torch.get_rng_state())
    c = build_model("sic", seed=8).state_dict()
    for name in a:
        assert torch.equal(a[name], b[name])
    w = "trunk.0.0.weight"
    assert not torch.equal(a[w], c[w])
    torch.manual_seed(3)
    d = build_model("lic", task="mtl").state_dict()
    torch.manual_seed(3)
    e = build_model("lic", task="mtl").state_dict()
    assert all(torch.equal(d[n], e[n]) for n in d)


def test_batch_norm_uses_keras_defaults() -> None:
    for arch in ARCHS:
        bns = [
            m
            for m in build_model(arch, width=WIDTH[arch]).modules()
            if isinstance(m, torch.nn.BatchNorm2d)
        ]
        assert bns, arch
        assert all(m.eps == 1e-3 and m.momentum == 0.01 for m in bns), arch
