"""Ensembles and system specs: weighted averages by hand, System (d) weights, validation."""

from __future__ import annotations

import numpy as np
import pytest

from acoustic_lottery.errors import InputError
from acoustic_lottery.evaluation.predict import Predictions
from acoustic_lottery.labels import SCENES, SUPER_CLASSES
from acoustic_lottery.systems.ensemble import (
    SystemSpec,
    average,
    ensemble_predictions,
    weights_by_quantization,
)
from acoustic_lottery.systems.fusion import two_stage

TAU_MAP = [0, 2, 2, 0, 1, 1, 0, 1, 1, 2]


def test_weighted_average_by_hand_and_weights_are_normalised():
    a = np.array([[0.2, 0.8], [1.0, 0.0]])
    b = np.array([[0.6, 0.4], [0.0, 1.0]])
    out = average([a, b], [3, 1])
    np.testing.assert_allclose(out, [[0.3, 0.7], [0.75, 0.25]], rtol=1e-6)
    np.testing.assert_allclose(average([a, b], [30, 10]), out)
    np.testing.assert_allclose(average([a, b]), (a + b) / 2, rtol=1e-6)
    assert out.dtype == np.float32


@pytest.mark.parametrize("weights", [[1.0], [1.0, -1.0], [0.0, 0.0], [1.0, float("nan")]])
def test_bad_weights_are_errors(weights):
    a = np.full((2, 2), 0.5)
    with pytest.raises(InputError, match="weight"):
        average([a, a], weights)


def test_shape_mismatch_is_an_error():
    with pytest.raises(InputError, match="member 1"):
        average([np.full((2, 2), 0.5), np.full((3, 2), 0.5)])


def _pred(probs, task, files, source):
    names = SCENES if task == "scene" else SUPER_CLASSES
    n = probs.shape[0]
    return Predictions(
        probs=probs,
        label=np.arange(n) % len(names),
        device=np.array(["a"] * n),
        filename=np.array(files),
        class_names=list(names),
        task=task,
        source=source,
    )


def test_ensemble_predictions_checks_order_and_task():
    rng = np.random.default_rng(0)
    files = [f"audio/c{i}.wav" for i in range(5)]
    p = [rng.dirichlet(np.ones(10), 5).astype(np.float32) for _ in range(3)]
    preds = [_pred(x, "scene", files, {"name": f"m{i}"}) for i, x in enumerate(p)]
    out = ensemble_predictions(preds, [1, 2, 1])
    np.testing.assert_allclose(out.probs, (p[0] + 2 * p[1] + p[2]) / 4, rtol=1e-6)
    assert out.source["weights"] == [0.25, 0.5, 0.25]
    other = _pred(p[0], "scene", files[::-1], {"name": "rev"})
    with pytest.raises(InputError, match=r"rev.*row 0"):
        ensemble_predictions([preds[0], other])
    sup = _pred(rng.dirichlet(np.ones(3), 5).astype(np.float32), "super", files, {})
    with pytest.raises(InputError, match="task"):
        ensemble_predictions([preds[0], sup])


def test_weights_by_quantization_gives_unquantized_four_times():
    members = [
        {"model": "a"},
        {"model": "b", "quantized": True},
        {"model": "c", "quantized": False},
    ]
    assert weights_by_quantization(members) == [4.0, 1.0, 4.0]
    assert weights_by_quantization(members, unquantized=2.0, quantized=0.5) == [2.0, 0.5, 2.0]


def system_d() -> SystemSpec:
    """System (d): 2 super LICs, 4 super int8 LICs, 1 scene LIC, 4 scene int8 LICs, 1 SIC."""
    members = (
        [{"model": f"lic3_{i}", "task": "super"} for i in range(2)]
        + [{"model": f"qlic3_{i}", "task": "super", "quantized": True} for i in range(4)]
        + [{"model": "lic10_0", "task": "scene"}]
        + [{"model": f"qlic10_{i}", "task": "scene", "quantized": True} for i in range(4)]
        + [{"model": "sic10_0", "task": "scene"}]
    )
    spec = SystemSpec.from_dict({"name": "d", "members": members})
    return spec.with_weights(weights_by_quantization(spec.members))


def test_system_d_combines_groups_then_fuses():
    spec = system_d()
    assert spec.fusion == "two_stage" and spec.task == "scene"
    assert [m.weight for m in spec.members] == [4, 4, 1, 1, 1, 1, 4, 1, 1, 1, 1, 4]
    rng = np.random.default_rng(3)
    files = [f"audio/c{i}.wav" for i in range(7)]
    probs = [
        rng.dirichlet(np.ones(10 if m.task == "scene" else 3), 7).astype(np.float32)
        for m in spec.members
    ]
    sup = (4 * probs[0] + 4 * probs[1] + sum(probs[2:6])) / 12
    scene = (4 * probs[6] + sum(probs[7:11]) + 4 * probs[11]) / 12
    expected = two_stage(scene, sup, TAU_MAP)
    np.testing.assert_allclose(spec.combine_probs(probs), expected, rtol=1e-5)
    preds = [_pred(p, m.task, files, {"name": m.model}) for p, m in zip(probs, spec.members)]
    out = spec.combine(preds)
    np.testing.assert_allclose(out.probs, expected, rtol=1e-5)
    assert out.task == "scene" and out.source["system"]["name"] == "d"
    with pytest.raises(InputError, match="member 0"):
        spec.combine([preds[6]] + preds[1:])


def test_from_dict_validation_names_the_key():
    ok = {"name": "s", "members": [{"model": "m", "head": "scene", "weight": 2}]}
    spec = SystemSpec.from_dict(ok)
    assert spec.members[0].task == "scene" and spec.members[0].weight == 2.0
    assert spec.fusion == "none" and spec.models == ["m"]
    assert SystemSpec.from_dict(spec.to_dict()) == spec
    cases = [
        ({"name": "s", "members": [], "fusion": "none"}, "members"),
        ({"name": "s", "members": [{"model": "m"}], "colour": 1}, "'colour'"),
        ({"name": "s", "members": [{"model": "m", "task": "genre"}]}, r"members\[0\]\.task"),
        ({"name": "s", "members": [{"model": "m", "weight": 0}]}, r"members\[0\]\.weight"),
        ({"name": "s", "members": [{"model": "m", "quantized": "yes"}]}, "quantized"),
        ({"name": "s", "members": [{"model": "m", "size": 3}]}, "'size'"),
        ({"name": "s", "members": [{"model": "m"}], "fusion": "two_stage"}, "fusion"),
        (
            {
                "name": "s",
                "members": [{"model": "m"}, {"model": "n", "task": "super"}],
                "fusion": "none",
            },
            "fusion",
        ),
        ({"name": "s", "members": [{"model": "m", "task": "scene", "head": "super"}]}, "alias"),
    ]
    for d, pattern in cases:
        with pytest.raises(InputError, match=pattern):
            SystemSpec.from_dict(d)
    row = {"name": "row3", "members": [{"model": "m"}], "flags": {}, "index": 3}
    assert SystemSpec.from_dict(row, allow_extra=True).extra == {"flags": {}, "index": 3}


def test_mtl_model_serving_both_heads_counts_once():
    spec = SystemSpec.from_dict(
        {
            "name": "mtl",
            "members": [{"model": "m", "task": "scene"}, {"model": "m", "task": "super"}],
        }
    )
    assert spec.fusion == "two_stage" and spec.models == ["m"]
