"""Metrics against numbers computed by hand on a six-clip prediction set."""

from __future__ import annotations

import math

import numpy as np
import pytest

from acoustic_lottery.errors import InputError
from acoustic_lottery.evaluation.metrics import evaluate_predictions, log_loss, renormalise
from acoustic_lottery.evaluation.predict import Predictions

NAMES = ["indoor", "outdoor", "transportation"]


def hand_made() -> Predictions:
    probs = [
        [0.7, 0.2, 0.1],  # true 0, a: right, p 0.7
        [0.2, 0.5, 0.3],  # true 1, a: right, p 0.5
        [0.6, 0.3, 0.1],  # true 2, b: wrong (0), p 0.1
        [0.8, 0.8, 0.4],  # true 0, s4: sums to 2 -> [0.4, 0.4, 0.2], argmax 0 right, p 0.4
        [0.0, 1.0, 0.0],  # true 2, s4: wrong (1), p 0 -> clipped to 1e-15
        [0.1, 0.1, 0.8],  # true 2, s5: right, p 0.8
    ]
    return Predictions(
        probs=np.array(probs, dtype=np.float32),
        label=np.array([0, 1, 2, 0, 2, 2]),
        device=["a", "a", "b", "s4", "s4", "s5"],
        filename=[f"audio/x{i}.wav" for i in range(6)],
        class_names=NAMES,
        task="super",
        source={"kind": "hand"},
    )


def nll(*ps: float) -> float:
    return -sum(math.log(p) for p in ps) / len(ps)


def test_overall_numbers() -> None:
    m = evaluate_predictions(hand_made())
    assert m["n"] == 6 and m["task"] == "super"
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["log_loss"] == pytest.approx(nll(0.7, 0.5, 0.1, 0.4, 1e-15, 0.8), rel=1e-6)
    assert m["macro_class_accuracy"] == pytest.approx((1 + 1 + 1 / 3) / 3)


def test_per_device_and_seen_unseen() -> None:
    m = evaluate_predictions(hand_made())
    dev = m["per_device"]
    assert list(dev) == ["a", "b", "s4", "s5"]
    assert dev["a"] == {"n": 2, "accuracy": 1.0, "log_loss": pytest.approx(nll(0.7, 0.5))}
    assert dev["b"] == {"n": 1, "accuracy": 0.0, "log_loss": pytest.approx(nll(0.1))}
    assert dev["s4"]["accuracy"] == 0.5
    assert dev["s4"]["log_loss"] == pytest.approx(nll(0.4, 1e-15), rel=1e-6)
    assert m["seen"]["n"] == 3 and m["seen"]["accuracy"] == pytest.approx(2 / 3)
    assert m["seen"]["log_loss"] == pytest.approx(nll(0.7, 0.5, 0.1))
    assert m["unseen"]["n"] == 3 and m["unseen"]["accuracy"] == pytest.approx(2 / 3)
    other = evaluate_predictions(hand_made(), unseen_devices=("b",))
    assert other["unseen"]["n"] == 1 and other["unseen"]["accuracy"] == 0.0


def test_per_class_and_confusion_matrix() -> None:
    m = evaluate_predictions(hand_made())
    cls = m["per_class"]
    assert [cls[c]["n"] for c in NAMES] == [2, 1, 3]
    assert cls["transportation"]["accuracy"] == pytest.approx(1 / 3)
    assert cls["indoor"]["log_loss"] == pytest.approx(nll(0.7, 0.4))
    cm = m["confusion_matrix"]
    assert cm["class_names"] == NAMES and cm["rows"] == "true"
    assert cm["matrix"] == [[2, 0, 0], [0, 1, 0], [1, 1, 1]]


def test_renormalisation_and_clipping() -> None:
    p = renormalise(np.array([[2.0, 2.0], [0.0, 3.0]]))
    assert p.tolist() == [[0.5, 0.5], [1e-15, 1.0]]
    assert log_loss(np.array([[1.0, 3.0]]), np.array([1])) == pytest.approx(-math.log(0.75))


def test_bad_predictions_are_input_errors() -> None:
    pred = hand_made()
    pred.label[2] = -1
    with pytest.raises(InputError, match=r"1 of 6 rows are unlabelled.*x2\.wav"):
        evaluate_predictions(pred, name="p.h5")
    pred = hand_made()
    pred.probs[1] = 0
    with pytest.raises(InputError, match="row 1 sums to 0"):
        evaluate_predictions(pred)
    pred = hand_made()
    pred.probs[4, 0] = np.nan
    with pytest.raises(InputError, match="row 4 has a non-finite"):
        evaluate_predictions(pred)


def test_log_loss_equals_scikit_learns_on_normalised_probabilities() -> None:
    from sklearn.metrics import log_loss as sk_log_loss

    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(10), size=200)
    label = rng.integers(0, 10, size=200)
    assert log_loss(probs, label) == pytest.approx(
        sk_log_loss(label, probs, labels=np.arange(10)), rel=1e-12
    )


def test_confusion_matrix_equals_scikit_learns_with_absent_classes() -> None:
    from sklearn.metrics import confusion_matrix

    rng = np.random.default_rng(5)
    n, k = 300, 10
    label = rng.integers(0, k - 2, size=n)  # classes 8 and 9 never true
    probs = rng.dirichlet(np.ones(k), size=n).astype(np.float32)
    probs[:, 9] = 0  # class 9 never predicted
    pred = Predictions(
        probs=probs,
        label=label,
        device=["a"] * n,
        filename=[f"audio/y{i}.wav" for i in range(n)],
        class_names=[f"c{i}" for i in range(k)],
        task="scene",
        source={"kind": "random"},
    )
    ours = evaluate_predictions(pred)["confusion_matrix"]["matrix"]
    theirs = confusion_matrix(label, probs.argmax(1), labels=np.arange(k))
    assert ours == theirs.tolist()
    assert sum(map(sum, ours)) == n
