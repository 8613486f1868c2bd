"""The model zoo (baseline, SIC, LIC, FCNN teacher, two-path ResNet) and its size reports."""

from acoustic_lottery.models.heads import split_heads
from acoustic_lottery.models.registry import ARCHS, build_model

__all__ = ["ARCHS", "build_model", "split_heads"]
