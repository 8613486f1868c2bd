"""The tau2020 projection prices each job of a dry-run listing by what its command says."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from projection import TAU2020_CLIPS, Rates, clips_of, project, shell_commands  # noqa: E402

SPEC = '{"arch":"sic","epochs":10,"task":"scene","width":1.0}'
TEACHER = '{"arch":"fcnn","epochs":2,"task":"scene","width":1.0}'
F = "results/t/features/lmfb"
LINES = [
    "rule train:",
    f"acoustic-lottery train --spec '{TEACHER}' --train {F}/train/orig.h5 "
    "--out-dir results/t/models/fcnn10 --threads 2",
    f"acoustic-lottery train --spec '{SPEC}' --train {F}/train/orig.h5 {F}/train/speccorr.h5 "
    "--out-dir results/t/models/sic_tsl --teacher scene=results/t/models/fcnn10/final.pt",
    f"acoustic-lottery features --dataset-root d --split evaluate --out {F}/evaluate/orig.h5",
    "acoustic-lottery predict --model results/t/models/sic_tsl/final.pt "
    f"--features {F}/evaluate/orig.h5 --out p.h5",
    "acoustic-lottery evaluate --predictions p.h5 --out m.json",
    "mkdir -p somewhere",
]
DRY = "\n".join(
    line if line.startswith("rule") else f"Shell command: {line} > logs/x.log 2>&1"
    for line in LINES
)
RATES = Rates(
    features_s_per_clip=0.01,
    augment_s_per_clip=0.02,
    bytes_per_element=4.0,
    job_overhead_s=3.0,
    train_rate={"sic": 10.0, "fcnn": 1.0},
    infer_rate={"sic": 100.0, "fcnn": 5.0},
)


def test_only_project_commands_are_read() -> None:
    verbs = [c[0] for c in shell_commands(DRY)]
    assert verbs == ["train", "train", "features", "predict", "evaluate"]


def test_clip_counts_follow_split_copy_and_subset() -> None:
    assert clips_of("r/features/lmfb/train/orig.h5") == TAU2020_CLIPS["train"]
    assert clips_of("r/features/lmfb/train/speccorr.h5") == TAU2020_CLIPS["train_device_a"]
    assert clips_of("r/features/lmfb/evaluate/orig.h5") == TAU2020_CLIPS["evaluate"]
    assert clips_of("r/features/lmfb/train/subset10/orig.h5") == round(0.1 * 13965)


def test_each_job_is_priced_by_its_epochs_clips_and_teachers() -> None:
    out = project(shell_commands(DRY), RATES)
    n, na, ne = 13965, 10215, 2970
    teacher = 2 * n / 1.0
    # the student: its own step plus the teacher's forward pass on every clip
    student = 10 * (n + na) * (1 / 10.0 + 1 / 5.0)
    assert out["seconds"]["train"] == pytest.approx(teacher + student, abs=0.1)
    assert out["seconds"]["features"] == pytest.approx(ne * 0.01, abs=0.1)
    assert out["seconds"]["predict"] == pytest.approx(ne / 100.0 + 3.0, abs=0.1)
    assert out["seconds"]["other"] == pytest.approx(3.0)
    assert out["feature_disk_gb"] == pytest.approx(ne * 3 * 128 * 423 * 4 / 1e9, abs=0.05)
    assert out["unpriced"] == []


def test_an_unmeasured_architecture_is_reported_not_guessed() -> None:
    rates = Rates(**{**RATES.__dict__, "train_rate": {"sic": 10.0}})
    out = project(shell_commands(DRY), rates)
    assert "fcnn" in out["unpriced"]
