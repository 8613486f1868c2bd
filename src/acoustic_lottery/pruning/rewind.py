"""Weights to restart from under a mask (steps 9–10 of Algorithm 1) and their controls.

- `rewind_state`: the lottery ticket proper — surviving weights back to Θ0 bit for bit,
  pruned weights exactly 0, every other tensor (BN, biases, running stats) from Θ0 too.
- `rewind_to_snapshot`: Frankle et al.'s "late rewinding" — the same, from the weights
  after k training steps instead of step 0 (more stable for deeper nets).
- `reinit_state`: the control that makes a ticket a *winning* one — the same mask over a
  fresh random initialisation (another seed). If it trains as well as the ticket, the
  initialisation did not matter.

Optimizer state is not part of these dicts: the trainer starts a fresh optimizer (or
reloads the one saved with Θ0, as Audio Lottery does) after a rewind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.pruning.masks import check_mask_matches, state_of


def _masked_copy(
    state_like: Mapping[str, Any] | nn.Module, mask: Mapping[str, torch.Tensor], what: str
) -> dict[str, torch.Tensor]:
    state = state_of(state_like)
    if not state:
        raise InputError(f"{what}: no tensors found (expected a state dict or checkpoint dict)")
    check_mask_matches(state, mask)
    out = {k: v.detach().clone() for k, v in state.items()}
    for name, m in mask.items():
        t = out[name]
        t.masked_fill_(~m.to(t.device), 0)
    return out


def rewind_state(
    theta0: Mapping[str, Any] | nn.Module, mask: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Θ0 under ``mask``: survivors equal Θ0 bit for bit, pruned weights exactly +0.0.

    ``theta0`` is the state recorded before the first optimizer step (``init.pt``: a
    state dict, a checkpoint dict with ``state_dict``, or the module itself). Returns a
    new dict of cloned tensors; the input is not modified.
    """
    return _masked_copy(theta0, mask, "rewind_state(theta0)")


def rewind_to_snapshot(
    snapshot_state: Mapping[str, Any] | nn.Module, mask: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Late rewinding: the weights saved after k training steps, under ``mask``.

    Same guarantees as `rewind_state`; a separate name so that round logs and specs say
    which restart point was used.
    """
    return _masked_copy(snapshot_state, mask, "rewind_to_snapshot(snapshot_state)")


def reinit_state(
    model_builder: Callable[[], nn.Module], seed: int, mask: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """A fresh initialisation from ``model_builder`` under ``seed``, masked (re-init control).

    Module constructors draw from torch's global CPU generator, so it is forked, seeded,
    and restored afterwards: the caller's RNG state is untouched and the result depends
    on ``seed`` only. Pass a seed different from the one that produced Θ0.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"reinit_state: seed must be an integer, found {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        model = model_builder()
    if not isinstance(model, nn.Module):
        raise InputError(
            f"reinit_state: model_builder must return an nn.Module, found {type(model).__name__}"
        )
    return _masked_copy(model, mask, "reinit_state(model_builder())")
