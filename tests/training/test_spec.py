"""TrainSpec: defaults of the published recipe, strict validation, JSON round trip."""

from __future__ import annotations

import json

import pytest

from acoustic_lottery.errors import InputError
from acoustic_lottery.training.spec import KDSpec, TrainSpec


def test_defaults_follow_the_reference_recipe() -> None:
    spec = TrainSpec.from_dict({"arch": "sic"})
    assert spec.epochs == 14 and spec.cycle_epochs == 2 and spec.cycle_mult == 2
    assert (spec.lr_max, spec.lr_min, spec.momentum, spec.batch_size) == (0.1, 1e-5, 0.9, 32)
    assert (spec.mixup_alpha, spec.specaug_freq, spec.specaug_time) == (0.4, 12, 39)
    assert spec.crop_frames is None and spec.kd is None and spec.device == "cpu"
    assert spec.mtl_weights == {"scene": 1.0, "super": 1.0}
    assert spec.heads == ("scene",)
    assert TrainSpec.from_dict({"arch": "sic", "task": "mtl"}).heads == ("scene", "super")


def test_round_trip_through_json() -> None:
    d = {
        "arch": "baseline",
        "task": "super",
        "epochs": 6,
        "crop_frames": 400,
        "kd": {"temperature": 2, "hard_weight": 0.5, "soft_weight": 1, "t2_scaling": False},
        "mtl_weights": {"scene": 1, "super": 0.5},
        "rewind_step": 10,
    }
    spec = TrainSpec.from_dict(d)
    assert spec.kd == KDSpec(temperature=2.0, hard_weight=0.5, soft_weight=1.0, t2_scaling=False)
    again = TrainSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and hash(again) == hash(spec)
    assert spec.replace(threads=1).threads == 1 and spec.threads == 2


@pytest.mark.parametrize(
    ("d", "words"),
    [
        ({"arch": "sic", "epochz": 3}, ["epochz", "did you mean 'epochs'"]),
        ({"task": "scene"}, ["arch"]),
        ({"arch": "sic", "epochs": 2.0}, ["epochs", "integer", "2.0"]),
        ({"arch": "sic", "epochs": True}, ["epochs", "integer"]),
        ({"arch": "sic", "epochs": 0}, ["epochs", ">= 1"]),
        ({"arch": "sic", "lr_max": "0.1"}, ["lr_max", "number"]),
        ({"arch": "sic", "lr_min": 1.0}, ["lr_min", "lr_max"]),
        ({"arch": "sic", "momentum": 1.0}, ["momentum", "< 1"]),
        ({"arch": "sic", "task": "both"}, ["task", "mtl", "both"]),
        ({"arch": "sic", "feature_set": "mfcc"}, ["feature_set", "mfcc"]),
        ({"arch": "sic", "device": "gpu"}, ["device", "gpu"]),
        ({"arch": "sic", "crop_frames": 0}, ["crop_frames", ">= 1"]),
        ({"arch": "sic", "width": 0}, ["width", "> 0"]),
        ({"arch": "sic", "kd": {"temperature": 0}}, ["kd.temperature", "> 0"]),
        ({"arch": "sic", "kd": {"temprature": 2}}, ["kd.temprature", "temperature"]),
        ({"arch": "sic", "kd": {"t2_scaling": 1}}, ["kd.t2_scaling", "boolean"]),
        ({"arch": "sic", "kd": {"hard_weight": 0, "soft_weight": 0}}, ["kd", "both 0"]),
        ({"arch": "sic", "kd": 3}, ["kd", "mapping"]),
        ({"arch": "sic", "mtl_weights": {"scene": 1}}, ["mtl_weights", "super"]),
        ({"arch": "sic", "mtl_weights": {"scene": 1, "super": -1}}, ["mtl_weights.super"]),
        ({"arch": "sic", "rewind_step": -1}, ["rewind_step", ">= 0"]),
        ("sic", ["mapping"]),
    ],
)
def test_bad_specs_name_the_key(d: object, words: list[str]) -> None:
    with pytest.raises(InputError) as err:
        TrainSpec.from_dict(d)
    for w in words:
        assert w in str(err.value)


def test_nullable_fields_accept_null() -> None:
    spec = TrainSpec.from_dict(
        {"arch": "sic", "crop_frames": None, "kd": None, "rewind_step": None, "bn_momentum": None}
    )
    assert spec.crop_frames is None and spec.rewind_step is None and spec.bn_momentum is None
    with pytest.raises(InputError, match="'epochs'.*null"):
        TrainSpec.from_dict({"arch": "sic", "epochs": None})
