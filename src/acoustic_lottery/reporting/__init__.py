"""Figures of the report (Figure 2, Figure 3) and per-device / confusion plots.

Rendering is headless (Agg canvas per figure, no pyplot), so the plots run on CI and on
cluster nodes without a display.
"""

from acoustic_lottery.reporting.device_plots import (
    confusion_matrix_plot,
    device_bars,
    read_confusion,
    read_metrics,
)
from acoustic_lottery.reporting.figures import (
    STRATEGIES,
    figure2,
    figure3,
    load_points,
    select_layers,
    validate_point,
)

__all__ = [
    "STRATEGIES",
    "confusion_matrix_plot",
    "device_bars",
    "figure2",
    "figure3",
    "load_points",
    "read_confusion",
    "read_metrics",
    "select_layers",
    "validate_point",
]
