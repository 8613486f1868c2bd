"""Systems built from prediction files: two-stage fusion, ensembles, the size budget."""

from acoustic_lottery.systems.budget import BUDGET_KB, check_budget, system_size_kb
from acoustic_lottery.systems.ensemble import (
    MemberSpec,
    SystemSpec,
    average,
    ensemble_predictions,
    weights_by_quantization,
)
from acoustic_lottery.systems.fusion import fuse_predictions, two_stage

__all__ = [
    "BUDGET_KB",
    "MemberSpec",
    "SystemSpec",
    "average",
    "check_budget",
    "ensemble_predictions",
    "fuse_predictions",
    "system_size_kb",
    "two_stage",
    "weights_by_quantization",
]
