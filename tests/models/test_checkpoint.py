"""Checkpoints: round trip, weights_only loading, clear errors."""

from __future__ import annotations

import argparse
import random

import numpy as np
import pytest
import torch

from acoustic_lottery.errors import InputError
from acoustic_lottery.models import build_model
from acoustic_lottery.models.checkpoint import (
    FORMAT,
    load_checkpoint,
    load_model,
    save_checkpoint,
)


def _trained_like(arch: str, **kw) -> torch.nn.Module:
    model = build_model(arch, seed=0, **kw)
    model.train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        channels = model.spec["in_channels"]
        model(torch.randn(4, channels, 40 if arch == "baseline" else 128, 36))
    return model.eval()


@pytest.mark.parametrize(
    "arch,kw", [("sic", {"task": "mtl"}), ("baseline", {}), ("resnet", {"width": 0.125})]
)
def test_round_trip_gives_identical_outputs(tmp_path, arch: str, kw: dict) -> None:
    model = _trained_like(arch, **kw)
    path = tmp_path / "m" / "final.pt"
    save_checkpoint(path, model, {"feature_set": "lmfb", "epoch": 4, "global_step": 100})
    loaded, meta = load_model(path)
    assert not loaded.training
    assert meta["epoch"] == 4 and meta["global_step"] == 100 and meta["format"] == FORMAT
    assert {k: meta[k] for k in model.spec} == model.spec
    assert "state_dict" not in meta
    assert loaded.heads == model.heads
    x = torch.randn(3, model.spec["in_channels"], 40 if arch == "baseline" else 128, 50)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert list(tmp_path.joinpath("m").iterdir()) == [path]  # no temporary left behind


def test_extras_load_with_weights_only(tmp_path) -> None:
    model = build_model("sic", task="super", seed=0)
    mask = {"trunk.0.0.weight": torch.ones(40, 3, 5, 5, dtype=torch.bool)}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.default_rng(1).bit_generator.state,
        "python": random.Random(1).getstate(),
    }
    path = tmp_path / "c.pt"
    save_checkpoint(
        path,
        model,
        {"feature_set": "lmfb", "spec": {"arch": "sic", "lr_max": 0.1}},
        optimizer=optimizer.state_dict(),
        mask=mask,
        rng=rng,
    )
    raw = torch.load(path, weights_only=True)
    assert raw["task"] == "super" and raw["n_classes"] == 3
    assert torch.equal(raw["mask"]["trunk.0.0.weight"], mask["trunk.0.0.weight"])
    assert raw["rng"]["numpy"] == rng["numpy"]
    assert raw["spec"]["lr_max"] == 0.1
    ckpt = load_checkpoint(path)
    assert ckpt["optimizer"]["param_groups"][0]["momentum"] == 0.9


def test_save_rejects_non_plain_values_and_bad_meta(tmp_path) -> None:
    model = build_model("baseline")
    path = tmp_path / "x.pt"
    with pytest.raises(InputError, match=r"extra\['rng'\]\['np'\] is a numpy.ndarray"):
        save_checkpoint(path, model, {"feature_set": "baseline"}, rng={"np": np.zeros(2)})
    with pytest.raises(InputError, match="feature_set"):
        save_checkpoint(path, model, {"epoch": 1})
    with pytest.raises(InputError, match="disagrees"):
        save_checkpoint(path, model, {"feature_set": "baseline", "arch": "sic"})
    with pytest.raises(InputError, match="spec"):
        save_checkpoint(path, torch.nn.Linear(2, 2), {"feature_set": "baseline"})
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_load_errors_name_the_path_and_key(tmp_path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(InputError, match="nope.pt: no such file"):
        load_checkpoint(missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="garbage.pt: not a readable"):
        load_checkpoint(garbage)

    good = tmp_path / "good.pt"
    save_checkpoint(good, build_model("sic"), {"feature_set": "lmfb"})
    tampered = torch.load(good, weights_only=True)
    del tampered["arch"]
    bad = tmp_path / "tampered.pt"
    torch.save(tampered, bad)
    with pytest.raises(InputError, match=r"tampered.pt: missing key 'arch'"):
        load_model(bad)

    wrong = torch.load(good, weights_only=True)
    wrong["arch"] = "lic"
    torch.save(wrong, bad)
    with pytest.raises(InputError, match="does not fit 'lic'"):
        load_model(bad)

    torch.save([1, 2, 3], bad)
    with pytest.raises(InputError, match="expected a dict"):
        load_checkpoint(bad)

    torch.save({"x": argparse.Namespace(a=1)}, bad)  # arbitrary pickled objects are refused
    with pytest.raises(InputError, match="not a readable"):
        load_checkpoint(bad)
