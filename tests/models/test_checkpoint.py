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
    with pytest.raises(InputError, match="garbage.pt: not a checkpoint or int8 artifact"):
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
    with pytest.raises(InputError, match="objects other than tensors.*argparse.Namespace"):
        load_checkpoint(bad)


def _flip_tensor_byte(path) -> None:
    """Damage one byte inside the largest tensor record of a checkpoint's zip archive."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    data[start + info.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("wav", "it is a WAV audio file"),
        ("text", "it is a text file"),
        ("random", "not a torch file of tensors"),
        ("empty", "the file is empty"),
        ("truncated", "damaged or truncated torch zip archive"),
        ("crc", "fails its CRC check"),
        ("directory", "it is a directory"),
        ("npy", "numpy"),
        ("no_format", "without key 'format'"),
    ],
)
def test_a_file_that_is_no_checkpoint_is_one_clear_input_error(tmp_path, kind, reason) -> None:
    import soundfile as sf

    good = tmp_path / "good.pt"
    save_checkpoint(good, build_model("sic", 10, seed=0), {"feature_set": "lmfb"})
    path = tmp_path / f"{kind}.pt"
    if kind == "wav":
        sf.write(path, np.zeros(800, dtype=np.float32), 16000, format="WAV")
    elif kind == "text":
        path.write_text("arch: sic\nnot a model\n", encoding="utf-8")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(1).bytes(2048))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "crc":
        path.write_bytes(good.read_bytes())
        _flip_tensor_byte(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "npy":
        np.save(path.with_suffix(".npy"), np.zeros(3))
        path = path.with_suffix(".npy")
    elif kind == "no_format":
        torch.save({"conv.weight": torch.ones(2, dtype=torch.bool)}, path)  # e.g. a mask file
    for load in (load_checkpoint, load_model):
        with pytest.raises(InputError) as info:
            load(path)
        message = str(info.value)
        assert message.startswith(f"checkpoint {path}: not a checkpoint or int8 artifact (")
        assert f"expected a torch checkpoint written by acoustic-lottery, format {FORMAT!r}" in (
            message
        )
        assert reason in message
        assert "\n" not in message


def test_an_int8_artifact_is_refused_where_a_float_checkpoint_is_needed(tmp_path) -> None:
    from acoustic_lottery.models.checkpoint import _ARTIFACT_MAGIC
    from acoustic_lottery.quantization.artifact import MAGIC

    assert _ARTIFACT_MAGIC == MAGIC
    path = tmp_path / "model.alot"
    path.write_bytes(MAGIC + bytes(100))
    with pytest.raises(InputError, match=r"model\.alot: is an int8 artifact .*not a float"):
        load_checkpoint(path)


def test_the_crc_check_passes_a_sound_checkpoint(tmp_path) -> None:
    path = tmp_path / "good.pt"
    model = build_model("sic", 10, seed=0)
    save_checkpoint(path, model, {"feature_set": "lmfb"})
    loaded, _ = load_model(path)
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values())
    )
