"""Two-stage fusion: hand-computed products, renormalisation, certainty, clip-order checks."""

from __future__ import annotations

import numpy as np
import pytest

from acoustic_lottery.errors import InputError
from acoustic_lottery.evaluation.predict import Predictions, read_predictions, write_predictions
from acoustic_lottery.labels import SCENES, SUPER_CLASSES, super_index_map
from acoustic_lottery.systems.fusion import fuse_predictions, two_stage

TAU_MAP = [0, 2, 2, 0, 1, 1, 0, 1, 1, 2]


def test_tau_map_is_the_published_one():
    assert super_index_map() == TAU_MAP


def test_small_hand_computed_product_is_renormalised():
    p10 = np.array([[0.2, 0.5, 0.3], [0.4, 0.35, 0.25]])
    p3 = np.array([[0.6, 0.4], [0.2, 0.8]])
    out = two_stage(p10, p3, [0, 1, 1])
    # row 0: [0.12, 0.20, 0.12] / 0.44 ; row 1: [0.08, 0.28, 0.20] / 0.56
    expected = np.array([[0.12, 0.20, 0.12], [0.08, 0.28, 0.20]])
    expected /= np.array([[0.44], [0.56]])
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)
    # the 3-class model flips the decision of row 1 (10-class alone says class 0)
    assert p10[1].argmax() == 0 and out[1].argmax() == 1


def test_tau_map_uniform_scenes_follow_super_classes():
    p10 = np.full((1, 10), 0.1)
    p3 = np.array([[0.5, 0.3, 0.2]])
    out = two_stage(p10, p3, TAU_MAP)
    raw = np.array([0.05, 0.02, 0.02, 0.05, 0.03, 0.03, 0.05, 0.03, 0.03, 0.02])
    np.testing.assert_allclose(out[0], raw / 0.33, rtol=1e-6)


def test_certain_three_class_model_restricts_to_its_super_class():
    rng = np.random.default_rng(0)
    p10 = rng.dirichlet(np.ones(10), size=5)
    p3 = np.zeros((5, 3))
    p3[:, 1] = 1.0  # certainly outdoor
    out = two_stage(p10, p3, TAU_MAP)
    outdoor = [j for j, s in enumerate(TAU_MAP) if s == 1]
    others = [j for j, s in enumerate(TAU_MAP) if s != 1]
    assert (out[:, others] == 0).all()
    expected = p10[:, outdoor] / p10[:, outdoor].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out[:, outdoor], expected, rtol=1e-6)


def test_zero_mass_row_and_bad_inputs_are_errors():
    p10 = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    p3 = np.array([[0.0, 1.0], [0.5, 0.5]])
    with pytest.raises(InputError, match="row 0"):
        two_stage(p10, p3, [0, 1, 1])
    with pytest.raises(InputError, match="index_map"):
        two_stage(p10, np.full((2, 2), 0.5), [0, 1])
    with pytest.raises(InputError, match="0..1"):
        two_stage(p10, np.full((2, 2), 0.5), [0, 1, 2])
    with pytest.raises(InputError, match="rows"):
        two_stage(p10, np.full((3, 2), 0.5), [0, 1, 1])
    with pytest.raises(InputError, match=">= 0"):
        two_stage(-p10, np.full((2, 2), 0.5), [0, 1, 1])


def _pred(probs, task, names, filenames, path="x.h5"):
    n = probs.shape[0]
    return Predictions(
        probs=probs,
        label=np.arange(n) % probs.shape[1],
        device=np.array(["a"] * n),
        filename=np.array(filenames),
        class_names=list(names),
        task=task,
        source={"path": path},
    )


def test_fuse_predictions_matches_core_and_derives_map_from_class_names(tmp_path):
    rng = np.random.default_rng(1)
    files = [f"audio/clip{i}.wav" for i in range(6)]
    p10 = rng.dirichlet(np.ones(10), size=6).astype(np.float32)
    p3 = rng.dirichlet(np.ones(3), size=6).astype(np.float32)
    pred10 = _pred(p10, "scene", SCENES, files, "scene.h5")
    pred3 = _pred(p3, "super", SUPER_CLASSES, files, "super.h5")
    write_predictions(tmp_path / "s.h5", pred10)
    write_predictions(tmp_path / "t.h5", pred3)
    fused = fuse_predictions(
        read_predictions(tmp_path / "s.h5"), read_predictions(tmp_path / "t.h5")
    )
    np.testing.assert_array_equal(fused.probs, two_stage(p10, p3, TAU_MAP))
    assert fused.task == "scene" and fused.logits is None
    np.testing.assert_array_equal(fused.label, pred10.label)
    assert fused.source["kind"] == "two_stage" and fused.source["index_map"] == TAU_MAP
    # the 3-class file with its columns in another order fuses to the same result
    perm = [2, 0, 1]
    shuffled = _pred(p3[:, perm], "super", [SUPER_CLASSES[i] for i in perm], files)
    np.testing.assert_allclose(fuse_predictions(pred10, shuffled).probs, fused.probs, rtol=1e-6)


def test_fuse_predictions_rejects_other_clip_order_and_wrong_tasks():
    files = [f"audio/clip{i}.wav" for i in range(4)]
    p10 = np.full((4, 10), 0.1, np.float32)
    p3 = np.full((4, 3), 1 / 3, np.float32)
    pred10 = _pred(p10, "scene", SCENES, files, "scene.h5")
    swapped = [files[0], files[2], files[1], files[3]]
    with pytest.raises(InputError, match=r"row 1.*clip2\.wav.*clip1\.wav"):
        fuse_predictions(pred10, _pred(p3, "super", SUPER_CLASSES, swapped, "super.h5"))
    with pytest.raises(InputError, match="4 clips|3 clips"):
        fuse_predictions(pred10, _pred(p3[:3], "super", SUPER_CLASSES, files[:3]))
    with pytest.raises(InputError, match="expected 'super'"):
        fuse_predictions(pred10, pred10)
    with pytest.raises(InputError, match="expected 'scene'"):
        fuse_predictions(_pred(p3, "super", SUPER_CLASSES, files), pred10)
    unknown = _pred(p10, "scene", [f"c{i}" for i in range(10)], files)
    with pytest.raises(InputError, match="cannot map"):
        fuse_predictions(unknown, _pred(p3, "super", SUPER_CLASSES, files))
