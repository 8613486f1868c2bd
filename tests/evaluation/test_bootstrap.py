"""Cluster bootstrap over recordings: coverage of the point, planted and null differences,
why clusters matter, determinism, device gaps, and recordings from TAU file names."""

from __future__ import annotations

import numpy as np
import pytest

from acoustic_lottery.errors import InputError
from acoustic_lottery.evaluation.bootstrap import (
    ClipScores,
    clip_scores,
    cluster_bootstrap,
    group_gap_bootstrap,
    paired_bootstrap,
    recording_id,
    recording_ids,
)
from acoustic_lottery.evaluation.predict import Predictions
from acoustic_lottery.labels import DEVICES


def clustered(n_rec: int = 40, n_dev: int = 9, p: float = 0.6, seed: int = 1):
    """Clips whose correctness is mostly decided by their recording (shared content)."""
    rng = np.random.default_rng(seed)
    hard = rng.random(n_rec) > p  # a recording the model gets wrong on most devices
    flip = rng.random((n_rec, n_dev)) < 0.1
    correct = (~hard[:, None]) ^ flip
    nll = np.where(correct, 0.3, 2.0) + 0.1 * rng.random((n_rec, n_dev))
    clusters = np.repeat(np.arange(n_rec), n_dev)
    return ClipScores(correct.ravel(), nll.ravel()), clusters


def test_interval_covers_the_point_estimate_and_reports_its_settings():
    scores, clusters = clustered()
    r = cluster_bootstrap(scores, clusters, n_boot=500, seed=3)
    assert r["accuracy"] == pytest.approx(100 * scores.correct.mean())
    assert r["log_loss"] == pytest.approx(scores.nll.mean())
    assert r["accuracy_ci"][0] <= r["accuracy"] <= r["accuracy_ci"][1]
    assert r["log_loss_ci"][0] <= r["log_loss"] <= r["log_loss_ci"][1]
    assert 0 <= r["accuracy_ci"][0] < r["accuracy_ci"][1] <= 100
    assert (r["n_clips"], r["n_recordings"]) == (360, 40)
    assert r["bootstrap"] == {"n_boot": 500, "seed": 3, "level": 0.95, "unit": "recording"}


def test_a_fixed_seed_gives_the_same_intervals_and_another_seed_others():
    scores, clusters = clustered()
    a = cluster_bootstrap(scores, clusters, seed=5)
    assert cluster_bootstrap(scores, clusters, seed=5) == a
    assert cluster_bootstrap(scores, clusters, seed=6)["accuracy_ci"] != a["accuracy_ci"]
    b = clustered(seed=2)[0]
    assert paired_bootstrap(scores, b, clusters, seed=5) == paired_bootstrap(
        scores, b, clusters, seed=5
    )


def test_clusters_widen_the_interval_of_perfectly_correlated_duplicates():
    # 40 recordings, each clip duplicated on 9 devices with the same outcome: as clips they
    # look like 360 independent draws; as recordings they are 40.
    rng = np.random.default_rng(0)
    correct = np.repeat(rng.random(40) < 0.5, 9)
    nll = np.where(correct, 0.2, 2.5)
    scores = ClipScores(correct, nll)
    by_recording = cluster_bootstrap(scores, np.repeat(np.arange(40), 9))
    by_clip = cluster_bootstrap(scores, np.arange(360))
    width = lambda r, k: r[k][1] - r[k][0]  # noqa: E731
    assert width(by_recording, "accuracy_ci") > 2.0 * width(by_clip, "accuracy_ci")
    assert width(by_recording, "log_loss_ci") > 2.0 * width(by_clip, "log_loss_ci")
    # sqrt(9) = 3 times wider in theory
    assert width(by_recording, "accuracy_ci") == pytest.approx(
        3 * width(by_clip, "accuracy_ci"), rel=0.3
    )


def test_a_planted_difference_is_detected():
    a, clusters = clustered(n_rec=100, seed=4)
    b_correct = a.correct.copy()
    rng = np.random.default_rng(9)
    # B fixes the wrong clips of 40 % of the recordings: +~15 points
    fixed = np.repeat(rng.random(100) < 0.4, 9)
    b_correct[fixed] = True
    b = ClipScores(b_correct, np.where(b_correct, 0.3, a.nll))
    r = paired_bootstrap(a, b, clusters)
    assert r["accuracy_diff"] == pytest.approx(100 * (b_correct.mean() - a.correct.mean()))
    assert r["accuracy_diff"] > 5
    assert r["accuracy_diff_excludes_zero"] and r["accuracy_diff_ci"][0] > 0
    assert r["log_loss_diff_excludes_zero"] and r["log_loss_diff_ci"][1] < 0
    assert r["accuracy_diff_ci"][0] <= r["accuracy_diff"] <= r["accuracy_diff_ci"][1]
    assert r["accuracy_diff_half_width"] == pytest.approx(
        (r["accuracy_diff_ci"][1] - r["accuracy_diff_ci"][0]) / 2
    )


def test_a_null_difference_has_an_interval_containing_zero():
    # B is A with the outcomes of each recording's clips shuffled among its devices: the
    # same accuracy per recording, so B - A is 0 in every resample.
    a, clusters = clustered(seed=7)
    rng = np.random.default_rng(8)
    perm = np.concatenate([rng.permutation(9) + 9 * r for r in range(40)])
    b = ClipScores(a.correct[perm], a.nll[perm])
    r = paired_bootstrap(a, b, clusters)
    assert r["accuracy_diff"] == pytest.approx(0, abs=1e-9)
    assert r["accuracy_diff_ci"][0] <= 0 <= r["accuracy_diff_ci"][1]
    assert not r["accuracy_diff_excludes_zero"] and not r["log_loss_diff_excludes_zero"]
    # identical systems: exactly 0 in every resample
    r = paired_bootstrap(a, ClipScores(a.correct.copy(), a.nll.copy()), clusters)
    assert r["accuracy_diff_ci"] == [0.0, 0.0] and r["log_loss_diff_ci"] == [0.0, 0.0]


def test_two_different_but_equally_good_systems_are_not_declared_different():
    hits = 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        clusters = np.repeat(np.arange(40), 9)
        a = ClipScores(rng.random(360) < 0.6, rng.random(360))
        b = ClipScores(rng.random(360) < 0.6, rng.random(360))
        r = paired_bootstrap(a, b, clusters, n_boot=1000, seed=seed)
        hits += r["accuracy_diff_excludes_zero"]
    assert hits <= 4  # 5 % expected: 1 of 20


def device_clips(n_rec: int = 100, unseen_hit: float = 0.4, seen_hit: float = 0.7, seed: int = 3):
    """n_rec recordings on all 9 devices: a recording's content decides most of its clips
    (shared difficulty), and the unseen devices s4-s6 lose some on top."""
    rng = np.random.default_rng(seed)
    easy = rng.random(n_rec)[:, None]
    unseen = np.isin(np.asarray(DEVICES), ["s4", "s5", "s6"])[None, :]
    p = np.where(unseen, unseen_hit, seen_hit)
    correct = easy < p + 0.05 * rng.standard_normal((n_rec, len(DEVICES)))
    nll = np.where(correct, 0.4, 2.0)
    clusters = np.repeat(np.arange(n_rec), len(DEVICES))
    devices = np.tile(np.asarray(DEVICES), n_rec)
    return ClipScores(correct.ravel(), nll.ravel()), clusters, devices


def test_a_planted_device_gap_is_measured_and_no_gap_is_not_declared():
    seen = ["b", "c", "s1", "s2", "s3"]
    scores, clusters, devices = device_clips(unseen_hit=0.4, seen_hit=0.7)
    in_a, in_b = np.isin(devices, seen), np.isin(devices, ["s4", "s5", "s6"])
    gap = group_gap_bootstrap(scores, clusters, in_a, in_b, n_boot=1000)
    expected = 100 * (scores.correct[in_b].mean() - scores.correct[in_a].mean())
    assert gap["accuracy_diff"] == pytest.approx(expected)
    assert gap["accuracy_diff"] < -20 and gap["accuracy_diff_ci"][1] < 0
    assert gap["accuracy_diff_excludes_zero"] and gap["log_loss_diff"] > 0
    assert gap["n_clips"] == 100 * 8 and gap["n_recordings"] == 100

    # pairing by recording: the shared content cancels, so the interval is narrower than
    # that of two independent groups with the same separate intervals
    def width(ci):
        return ci[1] - ci[0]

    own = [
        width(cluster_bootstrap((scores.correct[m], scores.nll[m]), clusters[m])["accuracy_ci"])
        for m in (in_a, in_b)
    ]
    assert width(gap["accuracy_diff_ci"]) < 0.9 * float(np.hypot(*own))
    # the same difficulty on every device: the interval holds 0
    scores0, clusters0, devices0 = device_clips(unseen_hit=0.6, seen_hit=0.6)
    none = group_gap_bootstrap(
        scores0, clusters0, np.isin(devices0, seen), np.isin(devices0, ["s4", "s5", "s6"])
    )
    assert none["accuracy_diff_ci"][0] < 0 < none["accuracy_diff_ci"][1]
    assert not none["accuracy_diff_excludes_zero"]
    # deterministic for a seed
    again = group_gap_bootstrap(scores, clusters, in_a, in_b, n_boot=1000)
    assert again == gap


def test_a_device_gap_needs_two_disjoint_groups():
    scores, clusters, devices = device_clips(n_rec=10)
    a = np.isin(devices, ["b"])
    with pytest.raises(InputError, match="no clips"):
        group_gap_bootstrap(scores, clusters, a, np.zeros_like(a))
    with pytest.raises(InputError, match="share clips"):
        group_gap_bootstrap(scores, clusters, a, a)
    with pytest.raises(InputError, match="group masks"):
        group_gap_bootstrap(scores, clusters, a[:-1], a)


def test_bad_inputs_are_named():
    scores, clusters = clustered()
    with pytest.raises(InputError, match="cluster ids"):
        cluster_bootstrap(scores, clusters[:-1])
    with pytest.raises(InputError, match="n_boot"):
        cluster_bootstrap(scores, clusters, n_boot=0)
    with pytest.raises(InputError, match="level"):
        cluster_bootstrap(scores, clusters, level=1.0)
    with pytest.raises(InputError, match="for 360 clips"):
        paired_bootstrap(scores, ClipScores(scores.correct[:-1], scores.nll[:-1]), clusters)


def test_the_recording_of_a_clip_drops_its_device_and_subsegment():
    assert recording_id("airport-lisbon-1000-40000-a.wav") == "airport-lisbon-1000-40000"
    assert recording_id("audio/airport-lisbon-1000-40000-s5.wav") == "airport-lisbon-1000-40000"
    assert recording_id("bus-lyon-1161-44460-7-b.wav") == "bus-lyon-1161-44460"
    names = [f"audio/park-paris-12-{seg}-{d}.wav" for seg in (1, 2) for d in DEVICES]
    ids = recording_ids(names)
    assert len(set(ids)) == 2 and list(ids[:9]) == ["park-paris-12-1"] * 9
    with pytest.raises(InputError, match="row 1: cannot derive the recording"):
        recording_ids(["park-paris-12-1-a.wav", "clip.wav"])


def test_clip_scores_follow_the_evaluation_metrics():
    from acoustic_lottery.evaluation.metrics import evaluate_predictions

    rng = np.random.default_rng(0)
    probs = rng.random((18, 10)).astype(np.float32)
    pred = Predictions(
        probs=probs,
        label=rng.integers(0, 10, 18),
        device=list(DEVICES) * 2,
        filename=[f"park-paris-12-{i // 9}-{d}.wav" for i, d in enumerate(list(DEVICES) * 2)],
        class_names=[f"c{i}" for i in range(10)],
        task="scene",
    )
    s = clip_scores(pred)
    m = evaluate_predictions(pred)
    assert s.correct.mean() == pytest.approx(m["accuracy"])
    assert s.nll.mean() == pytest.approx(m["log_loss"])
