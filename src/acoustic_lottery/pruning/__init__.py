"""Lottery-ticket pruning library: masks, mask strategies, schedules, rewinding.

Pure functions on torch modules / state dicts; the lottery-round orchestration (train,
mask, rewind, retrain) builds on these. `reachability` keeps every class of every head
predictable after any prune. See `strategies` for the definitions of the
report's three mask strategies (large_final, small_weights, global_small_weights).
"""

from acoustic_lottery.pruning.masks import (
    Mask,
    apply_mask,
    check_mask_matches,
    full_mask,
    load_mask,
    mask_sparsity,
    model_sparsity,
    prunable_parameters,
    save_mask,
)
from acoustic_lottery.pruning.reachability import (
    check_reachable,
    restore_reachability,
    unreachable_classes,
)
from acoustic_lottery.pruning.rewind import reinit_state, rewind_state, rewind_to_snapshot
from acoustic_lottery.pruning.schedule import (
    PRESETS,
    PruneStep,
    preset,
    progressive_steps,
    rate_per_round,
    rounds_for,
    sparsity_after,
    target_for_size,
)
from acoustic_lottery.pruning.strategies import (
    REPORT_STRATEGIES,
    STRATEGIES,
    build_mask,
    global_small_weights,
    large_final,
    random_mask_like,
    seeded_generator,
    small_weights,
)

__all__ = [
    "Mask",
    "PRESETS",
    "PruneStep",
    "REPORT_STRATEGIES",
    "STRATEGIES",
    "apply_mask",
    "build_mask",
    "check_mask_matches",
    "check_reachable",
    "full_mask",
    "global_small_weights",
    "large_final",
    "load_mask",
    "mask_sparsity",
    "model_sparsity",
    "preset",
    "progressive_steps",
    "prunable_parameters",
    "random_mask_like",
    "rate_per_round",
    "reinit_state",
    "restore_reachability",
    "rewind_state",
    "rewind_to_snapshot",
    "rounds_for",
    "save_mask",
    "seeded_generator",
    "small_weights",
    "sparsity_after",
    "target_for_size",
    "unreachable_classes",
]
