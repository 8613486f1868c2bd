"""The DCASE 2021 size rule, combining reports, the int8 estimate and the `size` verb."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from torch import nn

from acoustic_lottery import cli
from acoustic_lottery.cli import models as cli_models
from acoustic_lottery.errors import InputError
from acoustic_lottery.models import build_model
from acoustic_lottery.models.checkpoint import save_checkpoint
from acoustic_lottery.models.size import (
    bn_folded_size,
    combine_reports,
    int8_estimate,
    size_report,
)


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 3))


def test_counts_every_stored_value_but_not_num_batches_tracked() -> None:
    report = size_report(_tiny())
    # conv 2*4*9 + 4, BN 4 x 4, linear 4*3 + 3
    assert report["params"] == 76 + 16 + 15
    names = [layer["name"] for layer in report["layers"]]
    assert names == ["0", "1", "3"]
    bn = report["layers"][1]
    assert bn["params"] == 16 and bn["dtype"] == "float32"
    assert report["dense_bytes"] == 4 * report["params"]
    assert report["dense_kb"] == report["dense_bytes"] / 1024


def test_zeros_are_skipped() -> None:
    model = _tiny()
    with torch.no_grad():
        model[1].bias.fill_(0.5)
        model[1].running_mean.fill_(0.1)
        model[0].bias.fill_(0.2)
        model[3].bias.fill_(0.3)
    full = size_report(model)
    assert full["nonzero"] == full["params"]
    with torch.no_grad():
        model[0].weight.view(-1)[:36] = 0  # half of the conv kernel
    pruned = size_report(model)
    assert pruned["params"] == full["params"]
    assert pruned["nonzero"] == full["nonzero"] - 36
    assert pruned["bytes"] == full["bytes"] - 36 * 4
    assert pruned["layers"][0]["nonzero"] == 40
    assert pruned["sparsity"] == pytest.approx(36 / full["params"])


def test_dtype_by_tensor_and_override() -> None:
    model = _tiny()
    with torch.no_grad():
        model[1].running_mean.fill_(0.1)
        model[1].bias.fill_(0.1)
    dense = size_report(model)
    half = size_report(model.half())
    assert half["bytes"] == dense["bytes"] // 2
    assert half["layers"][0]["dtype"] == "float16"
    as16 = size_report(model.float(), dtype_bytes={"*": 2})
    assert as16["bytes"] == dense["bytes"] // 2
    # First matching pattern wins: BN kept in float32, the rest int8.
    mixed = size_report(model, dtype_bytes={"1.*": 4, "*": 1})
    assert mixed["bytes"] == 16 * 4 + (76 + 15)
    int8 = {k: torch.ones(3, dtype=torch.int8) for k in ("a.weight", "a.bias")}
    assert size_report(int8)["bytes"] == 6
    with pytest.raises(InputError, match="positive integer"):
        size_report(model, dtype_bytes={"*": 0})


def test_baseline_float16_is_90_3_kb_and_bn_float32_is_90_82() -> None:
    model = build_model("baseline")
    assert round(size_report(model, dtype_bytes={"*": 2})["dense_kb"], 2) == 90.32
    bn = {"trunk.1.*": 4, "trunk.4.*": 4, "trunk.9.*": 4, "*": 2}
    assert round(size_report(model, dtype_bytes=bn)["dense_kb"], 2) == 90.82


def test_state_dict_masks_exclude_and_prune_pairs() -> None:
    state = dict(_tiny().state_dict())
    state["extra_mask_tensor"] = torch.ones(5, dtype=torch.bool)
    report = size_report(state, exclude=["3.*"])
    assert report["params"] == 76 + 16
    assert "extra_mask_tensor" in report["skipped"] and "3.weight" in report["skipped"]
    pruned = {"w_orig": torch.ones(4), "w_mask": torch.tensor([1.0, 0.0, 1.0, 0.0])}
    pr = size_report(pruned)
    assert pr["params"] == 4 and pr["nonzero"] == 2
    with pytest.raises(InputError, match="state dict"):
        size_report([1, 2])  # type: ignore[arg-type]


def test_combine_reports_sums_members() -> None:
    ten = size_report(build_model("sic"))
    three = size_report(build_model("sic", task="super"))
    both = combine_reports([ten, three], names=["sic10", "sic3"])
    for key in ("params", "nonzero", "bytes", "dense_bytes"):
        assert both[key] == ten[key] + three[key]
    assert [m["name"] for m in both["members"]] == ["sic10", "sic3"]
    assert both["layers"][0]["name"].startswith("sic10/")
    with pytest.raises(InputError, match="at least one"):
        combine_reports([])


def test_int8_estimate_folds_bn_into_one_bias_per_channel() -> None:
    est = int8_estimate(_tiny())
    # conv: 72 int8 + 4 float32 biases; linear: 12 int8 + 3 biases.
    assert est["bytes"] == 72 + 4 * 4 + 12 + 3 * 4
    assert est["biases"] == 7


def _trained(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every stored value random and non-zero, as after training (variances positive)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                new = torch.randn(v.shape, generator=g)
                v.copy_(new.abs() + 0.01 if k.endswith("running_var") else new)
    return model


def test_bn_folded_size_charges_one_bias_per_channel_instead_of_four_bn_values() -> None:
    model = _trained(_tiny())
    folded = bn_folded_size(model)
    # conv 72 weights + 4 biases (BN folded in); linear 12 weights + 3 biases; no BN left
    assert folded["nonzero"] == 72 + 4 + 12 + 3 and folded["folded_bn"] == 1
    assert folded["bytes"] == 4 * folded["nonzero"]
    assert size_report(model)["nonzero"] == 72 + 4 + 16 + 12 + 3  # the honest size keeps BN
    with torch.no_grad():
        model[0].weight[:2] = 0  # two output channels pruned: zeros stay zeros
    assert bn_folded_size(model)["nonzero"] == 36 + 4 + 12 + 3
    assert model[1].running_var.abs().min() > 0  # the input model is left as it was


def test_weights_only_sic_ticket_sizes_honest_folded_and_paper() -> None:
    """99.33 % of SIC's conv weights pruned, BN kept: honest ≈ 11.0 KB, BN folded ≈ 5.3 KB
    (conv weights + one bias per channel), the report's 3.4 KB = 503 KB × 0.0067."""
    model = _trained(build_model("sic", seed=0))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                flat = m.weight.view(-1)
                keep = max(1, round(0.0067 * flat.numel()))
                flat[flat.abs().argsort()[:-keep]] = 0
    honest, folded = size_report(model)["kb"], bn_folded_size(model)["kb"]
    assert honest == pytest.approx(11.0, abs=0.1)
    assert folded == pytest.approx(5.3, abs=0.1) and folded < honest
    assert pytest.approx(3.37, abs=0.01) == 503.0 * 0.0067


def _args(**kw) -> argparse.Namespace:
    base = dict(
        checkpoint=None,
        arch=None,
        task=None,
        classes=None,
        width=None,
        in_channels=None,
        dtype=None,
        frames=None,
        bands=None,
        no_layers=False,
        output=None,
    )
    base.update(kw)
    return argparse.Namespace(**base)


def test_size_verb_fresh_model(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(cli, "GROUPS", ("models",))
    out = tmp_path / "size.json"
    code = cli.main(["size", "--arch", "baseline", "--dtype", "float16", "-o", str(out)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["params"] == 46_246
    assert round(printed["dense_kb"], 2) == 90.32
    assert printed["input_shape"] == [1, 40, 500]
    assert printed["macs"] > 0 and printed["layers"] and printed["macs_layers"]

    mtl = cli_models.build_report(_args(arch="sic", task="mtl", frames=36, no_layers=True))
    assert mtl["heads"] == [["scene", 10], ["super", 3]]
    assert mtl["input_shape"] == [3, 128, 36] and "layers" not in mtl
    three = cli_models.build_report(_args(arch="sic", classes=3, no_layers=True))
    assert three["task"] == "super"


def test_size_verb_checkpoint_counts_pruned_zeros(tmp_path, monkeypatch, capsys) -> None:
    model = build_model("sic", seed=0)
    with torch.no_grad():
        w = model.trunk[0][0].weight
        w.view(-1)[: w.numel() // 2] = 0
    path = tmp_path / "final.pt"
    save_checkpoint(path, model, {"feature_set": "lmfb"})
    report = cli_models.build_report(_args(checkpoint=str(path), no_layers=True))
    fresh = cli_models.build_report(_args(arch="sic", no_layers=True))
    assert report["params"] == fresh["params"]
    assert report["nonzero"] == fresh["nonzero"] - w.numel() // 2
    assert report["checkpoint"] == str(path)
    # beside the honest size, the same rule with BN folded into the conv biases
    assert report["size_kb_bn_folded"] == pytest.approx(bn_folded_size(model)["kb"])
    assert report["bn_folded"]["folded_bn"] == 14 and "size_kb_bn_folded" in fresh

    monkeypatch.setattr(cli, "GROUPS", ("models",))
    assert cli.main(["size", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert cli.main(["size"]) == 2
    assert cli.main(["size", str(path), "--task", "mtl"]) == 2
    assert cli.main(["size", str(path), "--width", "0.5"]) == 2
