"""Every model of the shipped configurations stops training at a cosine-cycle end.

The 2021 system takes each model at the learning-rate minimum (REFERENCE_NOTES
"Training"): with per-batch cosine and warm restarts that is the last batch of a cycle, so
a model's epochs must be a cycle end of its own spec (cycle_epochs 2: 2, 6, 14, 30, ...;
cycle_epochs 1: 1, 3, 7, 15, ...). The configurations are resolved as the pipeline
resolves them: config.yaml, and each configs/*.yaml merged over it the way Snakemake's
`--configfile` does, validated, then turned into the very specs the jobs receive
(`pipeline.train_spec`, `pipeline.round_spec` per lottery round with its `epochs`
override, the data-efficiency study's student, fine-tuning and teacher specs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from snakemake.common.configfile import load_configfile
from snakemake.utils import update_config

from acoustic_lottery import efficiency, pipeline
from acoustic_lottery.configuration import validate_config
from acoustic_lottery.training.schedule import cycle_ends
from acoustic_lottery.training.spec import TrainSpec

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
OVERLAYS = sorted((ROOT / "configs").glob("*.yaml"))


def resolve(overlay: Path | None) -> dict[str, Any]:
    """config.yaml (the Snakefile's `configfile:`), then `--configfile overlay` over it."""
    config = load_configfile(str(ROOT / "config.yaml"))
    if overlay is not None:
        update_config(config, load_configfile(str(overlay)))
    return validate_config(config, SCHEMA, source=str(overlay or "config.yaml"))


def job_specs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every training spec a job of this configuration gets, by a readable job name."""
    out: dict[str, dict[str, Any]] = {}
    for name in config["models"]:
        if pipeline.is_lottery(config, name):
            for t in range(1, pipeline.lottery_rounds(config, name) + 1):
                out[f"models.{name} round {t}"] = pipeline.round_spec(config, name, t)
        else:  # dense and progressive models: one run of train_spec's epochs
            out[f"models.{name}"] = pipeline.train_spec(config, name)
    if efficiency.has_study(config):
        key = efficiency.STUDY_KEY
        for name in efficiency.train_systems(config):
            out[f"{key}.systems.{name} (dense)"] = efficiency.student_spec(config, name)
        for name in efficiency.pruned_systems(config):
            out[f"{key}.systems.{name} (pruned)"] = efficiency.finetune_spec(config, name)
        for name in efficiency.subset_teachers(config):
            out[f"{key} teacher {name}"] = efficiency.teacher_spec(config, name)
    return out


def off_cycle(config: dict[str, Any]) -> list[str]:
    """Jobs whose epochs are not a cycle end of their own spec, each with the nearest ends."""
    bad = []
    for job, raw in job_specs(config).items():
        spec = TrainSpec.from_dict(raw, source=job)
        ends = cycle_ends(spec, up_to_epochs=2 * spec.epochs + spec.cycle_epochs)
        if spec.epochs not in ends:
            below = [e for e in ends if e < spec.epochs][-1:]
            above = [e for e in ends if e > spec.epochs][:1]
            bad.append(
                f"{job}: epochs {spec.epochs} with cycle_epochs {spec.cycle_epochs}, "
                f"cycle_mult {spec.cycle_mult}: nearest cycle ends {below + above}"
            )
    return bad


@pytest.mark.parametrize(
    "overlay", [None, *OVERLAYS], ids=["config.yaml", *(f"configs/{p.name}" for p in OVERLAYS)]
)
def test_every_model_ends_at_a_cosine_cycle_end(overlay: Path | None) -> None:
    config = resolve(overlay)
    assert len(job_specs(config)) > len(config["models"])  # chains add one job per round
    assert off_cycle(config) == []


def test_tau2020_is_checked_with_the_models_it_lengthens() -> None:
    """The overlay really changes the epochs that the test checks (not config.yaml's)."""
    specs = job_specs(resolve(ROOT / "configs/tau2020.yaml"))
    assert specs["models.fcnn10"]["epochs"] == 126 and specs["models.fcnn10"]["cycle_epochs"] == 2
    aug = specs["models.lic_tsl_aug_lth round 2"]
    assert (aug["epochs"], aug["cycle_epochs"]) == (127, 1)


def test_an_off_cycle_model_is_reported() -> None:
    config = resolve(None)
    config["models"]["sic_aug"]["training"]["epochs"] = 126  # cycle_epochs 1: 63 or 127
    config["models"]["sic_lth"]["lottery"]["per_round"] = {2: {"epochs": 5}}
    bad = off_cycle(config)
    assert any(b.startswith("models.sic_aug: epochs 126") and "[63, 127]" in b for b in bad)
    assert any(b.startswith("models.sic_lth round 2: epochs 5") and "[2, 6]" in b for b in bad)
    assert not any(b.startswith("models.sic_lth round 1") for b in bad)
