"""The deployable artifact: exact round trips, compact masks, size bounds, refusal of bad files."""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import struct
import zlib

import numpy as np
import pytest
import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.models.registry import build_model
from acoustic_lottery.quantization.artifact import (
    HEADER_BYTES,
    MAGIC,
    DeployableSystem,
    decode_mask,
    encode_mask,
    inspect_artifact,
    load_artifact,
    pack_container,
    save_artifact,
    unpack_container,
)
from acoustic_lottery.quantization.int8 import (
    dequantize,
    float_state,
    quantize_model,
    quantized_size_report,
)
from acoustic_lottery.systems.ensemble import SystemSpec


class Net(nn.Module):
    """Stand-in: conv-BN-ReLU-pool, conv-BN-ReLU, global pool, linear."""

    def __init__(self, n_classes: int = 4, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
        )
        self.fc = nn.Linear(2 * width, n_classes)
        self.spec = {
            "arch": "standin",
            "task": "scene",
            "n_classes": n_classes,
            "width": float(width),
            "in_channels": 3,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def build_standin(arch):
    assert arch["arch"] == "standin"
    return Net(arch["n_classes"], int(arch["width"]))


def randomise(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.weight.normal_(0, 0.2, generator=g)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5, generator=g)
                m.running_var.uniform_(0.3, 3.0, generator=g)
                if m.affine:
                    m.weight.uniform_(0.5, 2.0, generator=g)
                    m.bias.normal_(0, 0.5, generator=g)
    return model.eval()


def prune(model: nn.Module, sparsity: float) -> nn.Module:
    """Small-weights pruning per layer: the smallest |w| of each conv / linear set to 0."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                k = int(round(m.weight.numel() * sparsity))
                if k:
                    order = m.weight.abs().flatten().argsort()
                    m.weight.view(-1)[order[:k]] = 0.0
    return model


def mask_floor_bytes(qs) -> float:
    """Information-theoretic minimum of the masks: log2 C(n, nnz) bits per weight tensor."""
    total = 0.0
    for qt in qs.weights.values():
        n, k = qt.q.size, int(np.count_nonzero(qt.q))
        total += (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)
    return total / 8


def nonempty_channels(qs) -> int:
    return sum(
        int((qt.q.reshape(qt.q.shape[0], -1) != 0).any(axis=1).sum()) for qt in qs.weights.values()
    )


X = torch.rand(3, 3, 16, 12, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("density", [0.0, 1.0, 0.5, 0.05, 0.007, 0.0005])
def test_masks_round_trip_and_pick_the_smaller_encoding(density):
    rng = np.random.default_rng(int(density * 1e4))
    n = 20_000
    mask = rng.random(n) < density
    desc, data = encode_mask(mask)
    assert np.array_equal(decode_mask(desc, data, n, int(mask.sum())), mask)
    bitmap = (n + 7) // 8
    assert len(data) <= bitmap
    if 0 < density < 0.05:
        assert desc["kind"] == "rice"
        k = int(mask.sum())
        floor = (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)
        assert len(data) <= 1.1 * floor / 8 + 2  # near the entropy of random positions
    elif density == 0.5:
        assert desc["kind"] == "bitmap"
    with pytest.raises(ValueError):
        decode_mask(desc, data, n, int(mask.sum()) + 1)


@pytest.mark.parametrize("sparsity", [0.0, 0.99])
def test_round_trip_gives_identical_predictions_and_size_bound(tmp_path, sparsity):
    net = prune(randomise(Net(width=32), 1), sparsity)
    qs = quantize_model(net)
    qmodel = dequantize(qs, model=net)
    info = save_artifact(tmp_path / "m.alot", qs, name="net")
    loaded = load_artifact(tmp_path / "m.alot", builder=build_standin)
    with torch.no_grad():
        assert torch.equal(loaded.models["net"](X), qmodel(X))
    state = loaded.states["net"]
    for name, qt in qs.weights.items():
        assert np.array_equal(state.weights[name].q, qt.q)
        assert np.array_equal(state.weights[name].scale, qt.scale)
    for name, arr in qs.floats.items():
        assert state.floats[name].dtype == arr.dtype and np.array_equal(state.floats[name], arr)
    file_bytes = (tmp_path / "m.alot").stat().st_size
    dcase = quantized_size_report(qs)["bytes"]
    assert info["file_bytes"] == file_bytes and info["dcase_bytes"] == dcase
    fixed = HEADER_BYTES + info["manifest_bytes"]
    assert fixed < 2048
    if sparsity == 0.0:
        assert file_bytes <= 1.10 * dcase + 2048
    else:
        # The DCASE rule charges 1 byte per non-zero int8 weight; the file must also say
        # where the non-zeros are (>= log2 C(n, nnz) bits, about 1 byte per non-zero at
        # 99 % sparsity) and store a scale per non-empty channel. Beyond those, the file
        # is within 10 % plus the fixed header.
        floor = mask_floor_bytes(qs)
        assert info["breakdown"]["masks"] <= 1.10 * floor + 2 * len(qs.weights)
        assert info["breakdown"]["scales"] == 4 * nonempty_channels(qs)
        assert file_bytes <= 1.10 * (dcase + floor) + 4 * nonempty_channels(qs) + 2048


def test_two_stage_system_with_float_and_int8_members(tmp_path):
    scene = randomise(Net(10), 2)
    scene_q = quantize_model(prune(randomise(Net(10), 3), 0.9))
    sup = randomise(Net(3), 4)
    sup.spec["task"] = "super"
    spec = SystemSpec.from_dict(
        {
            "name": "d-like",
            "members": [
                {"model": "scene_f", "task": "scene", "weight": 4.0},
                {"model": "scene_q", "task": "scene", "quantized": True},
                {"model": "super_f", "task": "super"},
            ],
        }
    )
    system = DeployableSystem(
        spec=spec,
        states={"scene_f": float_state(scene), "scene_q": scene_q, "super_f": float_state(sup)},
    )
    save_artifact(tmp_path / "sys.alot", system)
    loaded = load_artifact(tmp_path / "sys.alot", builder=build_standin)
    assert loaded.spec == spec and loaded.index_map == [0, 2, 2, 0, 1, 1, 0, 1, 1, 2]
    with torch.no_grad():
        members = [scene(X), dequantize(scene_q, model=scene)(X), sup(X)]
    probs = [torch.softmax(z.double(), 1).float().numpy() for z in members]
    np.testing.assert_array_equal(loaded.predict(X), spec.combine_probs(probs))
    bad = DeployableSystem(spec=spec, states={**system.states, "scene_q": float_state(scene)})
    with pytest.raises(InputError, match="quantized=True"):
        save_artifact(tmp_path / "bad.alot", bad)
    wrong = DeployableSystem(
        spec=spec, states=system.states, class_names={"scene": ["a", "b"], "super": ["x"] * 3}
    )
    with pytest.raises(InputError, match="10-class 'scene' head but 2 class names"):
        save_artifact(tmp_path / "bad.alot", wrong)
    assert not (tmp_path / "bad.alot").exists()


def test_reading_never_unpickles(tmp_path, monkeypatch):
    save_artifact(tmp_path / "m.alot", quantize_model(randomise(Net(), 5)), name="net")

    def forbidden(*args, **kwargs):
        raise AssertionError("the artifact reader must not unpickle")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    load_artifact(tmp_path / "m.alot", builder=build_standin)


@pytest.fixture
def artifact(tmp_path):
    path = tmp_path / "m.alot"
    save_artifact(path, quantize_model(prune(randomise(Net(), 6), 0.5)), name="net")
    return path


def _repack(path, edit):
    """Rewrite an artifact with an edited manifest but consistent checksums."""
    manifest, payload, _ = unpack_container(path.read_bytes(), path)
    edit(manifest)
    path.write_bytes(pack_container(manifest, payload))


@pytest.mark.parametrize("cut", [0, 10, HEADER_BYTES, HEADER_BYTES + 40, -1])
def test_truncated_files_are_refused(artifact, cut):
    data = artifact.read_bytes()
    artifact.write_bytes(data[:cut] if cut >= 0 else data[:-1])
    with pytest.raises(InputError, match=rf"{artifact.name}.*truncated"):
        load_artifact(artifact, builder=build_standin)


def test_wrong_magic_and_trailing_bytes_are_refused(artifact):
    data = artifact.read_bytes()
    artifact.write_bytes(b"NOTLOTTO" + data[8:])
    with pytest.raises(InputError, match=r"m\.alot.*magic"):
        load_artifact(artifact)
    artifact.write_bytes(data + b"\0")
    with pytest.raises(InputError, match="unexpected bytes"):
        load_artifact(artifact)
    artifact.write_bytes(MAGIC + data[8:])
    load_artifact(artifact, builder=build_standin)


def test_manifest_that_is_not_json_is_refused(artifact):
    _, payload, _ = unpack_container(artifact.read_bytes(), artifact)
    stored = zlib.compress(b'{"format": "acoustic-lottery-artifact", "models": [', 9)
    header = struct.pack(
        "<8sHHIQ32s", MAGIC, 1, 1, len(stored), len(payload), hashlib.sha256(stored).digest()
    )
    artifact.write_bytes(header + stored + payload)
    with pytest.raises(InputError, match=r"m\.alot.*not valid JSON"):
        load_artifact(artifact)


def test_edited_manifest_without_its_checksum_is_refused(artifact):
    data = bytearray(artifact.read_bytes())
    data[HEADER_BYTES + 5] ^= 0xFF
    artifact.write_bytes(bytes(data))
    with pytest.raises(InputError, match="manifest SHA-256 mismatch"):
        load_artifact(artifact)


def test_tensor_table_outside_the_payload_is_refused(artifact):
    def edit(manifest):
        manifest["models"]["net"]["tensors"][1]["offset"] = manifest["payload_bytes"] - 2

    _repack(artifact, edit)
    with pytest.raises(InputError, match=r"m\.alot.*outside the payload"):
        load_artifact(artifact, builder=build_standin)


def test_inconsistent_lengths_are_refused(artifact):
    def edit(manifest):
        entry = next(t for t in manifest["models"]["net"]["tensors"] if t["encoding"] != "dense")
        entry["nnz"] += 1

    _repack(artifact, edit)
    with pytest.raises(InputError, match=r"m\.alot.*tensor table entry"):
        load_artifact(artifact, builder=build_standin)


def test_tampered_payload_fails_the_sha256(artifact):
    data = bytearray(artifact.read_bytes())
    data[-3] ^= 0x01
    artifact.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"m\.alot.*payload SHA-256 mismatch"):
        load_artifact(artifact, builder=build_standin)


def test_inspect_reports_the_breakdown(artifact):
    info = inspect_artifact(artifact)
    assert info["file_bytes"] == artifact.stat().st_size
    parts = info["breakdown"]
    assert sum(parts.values()) == info["payload_bytes"]
    assert info["manifest"]["models"]["net"]["arch"]["arch"] == "standin"
    assert json.dumps(info["manifest"])  # plain JSON


def test_pruned_sic_round_trip_and_size(tmp_path):
    """SIC at its real size, 99.3 % of its conv weights pruned (the report's LTH model)."""
    sic = prune(randomise(build_model("sic", seed=0), 7), 0.993)
    qs = quantize_model(sic)
    qmodel = dequantize(qs, model=sic)
    info = save_artifact(tmp_path / "sic.alot", qs, name="sic")
    loaded = load_artifact(tmp_path / "sic.alot")  # rebuilt from the registry spec alone
    x = torch.rand(2, 3, 64, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded.models["sic"](x), qmodel(x))
        assert np.array_equal(
            loaded.predict(x), torch.softmax(qmodel(x).double(), 1).float().numpy()
        )
    dcase = quantized_size_report(qs)["bytes"]
    floor = mask_floor_bytes(qs)
    assert HEADER_BYTES + info["manifest_bytes"] < 2048
    assert info["breakdown"]["masks"] <= 1.10 * floor + 2 * len(qs.weights)
    assert info["file_bytes"] <= 1.10 * (dcase + floor) + 4 * nonempty_channels(qs) + 2048


def test_unbuildable_arch_spec_is_refused(artifact):
    def edit(manifest):
        manifest["models"]["net"]["arch"] = {"arch": ["not", "a", "name"], "task": "scene"}

    _repack(artifact, edit)
    with pytest.raises(InputError, match=r"m\.alot.*cannot be rebuilt"):
        load_artifact(artifact)


def test_float16_members_and_plain_manifest_round_trip(tmp_path):
    net = randomise(Net(), 8)
    state = float_state(net, float_dtype="float16")
    path = tmp_path / "f16.alot"
    save_artifact(path, state, name="half", compress_manifest=False)
    assert b'"format":"acoustic-lottery-artifact"' in path.read_bytes()  # readable JSON
    loaded = load_artifact(path, builder=build_standin)
    for name, arr in state.floats.items():
        got = loaded.states["half"].floats[name]
        assert got.dtype == arr.dtype and np.array_equal(got, arr)
    with torch.no_grad():
        assert torch.equal(loaded.models["half"](X), dequantize(state, model=net)(X))
    assert quantized_size_report(state)["bytes"] < quantized_size_report(float_state(net))["bytes"]


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("wav", "WAV audio"),
        ("text", "text file"),
        ("random", "magic bytes"),
        ("empty", "the file is empty"),
        ("checkpoint", "looks like a torch checkpoint"),
        ("directory", "it is a directory"),
    ],
)
def test_a_file_that_is_no_artifact_is_one_clear_input_error(tmp_path, kind, reason):
    import soundfile as sf

    from acoustic_lottery.models.checkpoint import save_checkpoint

    path = tmp_path / f"{kind}.alot"
    if kind == "wav":
        sf.write(path, np.zeros(800, dtype=np.float32), 16000, format="WAV")
    elif kind == "text":
        path.write_text("not an artifact\n", encoding="utf-8")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(2).bytes(2048))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "checkpoint":
        save_checkpoint(path, build_model("sic", 10, seed=0), {"feature_set": "lmfb"})
    elif kind == "directory":
        path.mkdir()
    for load in (load_artifact, inspect_artifact):
        with pytest.raises(InputError) as info:
            load(path)
        message = str(info.value)
        assert message.startswith(f"artifact {path}: not an int8 artifact (expected an int8 ")
        assert reason in message and "\n" not in message


def test_malformed_manifest_entries_are_input_errors(artifact):
    def edit(manifest):
        manifest["models"]["net"]["meta"] = [1, 2, 3]

    _repack(artifact, edit)
    with pytest.raises(InputError, match=r"m\.alot: manifest models\['net'\] is malformed"):
        load_artifact(artifact, builder=build_standin)

    def edit_folded(manifest):
        manifest["models"]["net"]["meta"] = {}
        manifest["models"]["net"]["folded"] = [["no.such.conv", "no.such.bn"]]

    _repack(artifact, edit_folded)
    with pytest.raises(InputError, match=r"m\.alot.*cannot be rebuilt"):
        load_artifact(artifact, builder=build_standin)

    def edit_models(manifest):
        manifest["models"] = ["net"]

    _repack(artifact, edit_models)
    with pytest.raises(InputError, match=r"m\.alot: malformed manifest"):
        inspect_artifact(artifact)
