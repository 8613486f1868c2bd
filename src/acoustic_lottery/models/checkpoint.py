"""Checkpoints that rebuild their model alone and load with `torch.load(weights_only=True)`.

A checkpoint is a dict of tensors and plain Python types (CONTRACTS "Checkpoints"):
`format` ("acoustic-lottery/1"), the model spec (`arch`, `task`, `n_classes`, `width`,
`in_channels`), `feature_set`, `state_dict`, `epoch`, `global_step`, plus optional extras
(`optimizer`, `scheduler`, `rng`, `mask`, `spec`, ...). No pickled classes: a checkpoint
never executes code when read, and it stays readable across code versions.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.io import atomic_path
from acoustic_lottery.models.registry import build_model

FORMAT = "acoustic-lottery/1"
SPEC_KEYS: tuple[str, ...] = ("arch", "task", "n_classes", "width", "in_channels")
#: Keys every checkpoint has; load_checkpoint rejects one that lacks any of them.
REQUIRED_KEYS: tuple[str, ...] = (
    "format",
    *SPEC_KEYS,
    "feature_set",
    "state_dict",
    "epoch",
    "global_step",
)

_PLAIN = (str, int, float, bool, type(None), torch.Tensor, torch.dtype, torch.Size, torch.device)


def _check_plain(value: Any, where: str) -> Any:
    """Return `value` with mappings as plain dicts; reject anything weights_only can't load."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise InputError(
                    f"save_checkpoint: key {key!r} in {where} is a {type(key).__name__}; "
                    "expected str or int keys"
                )
            out[key] = _check_plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, list | tuple):
        items = [_check_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise InputError(
        f"save_checkpoint: {where} is a {type(value).__module__}.{type(value).__name__}; "
        "expected tensors and plain Python types only (convert numpy arrays with "
        "torch.from_numpy, objects to dicts)"
    )


def model_spec(model: nn.Module) -> dict[str, Any]:
    """The `build_model` arguments recorded on a model by `build_model`."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, Mapping) or any(k not in spec for k in SPEC_KEYS):
        raise InputError(
            f"save_checkpoint: model has no complete `spec` attribute (keys {list(SPEC_KEYS)}); "
            "build it with acoustic_lottery.models.build_model"
        )
    return {k: spec[k] for k in SPEC_KEYS}


def save_checkpoint(
    path: str | os.PathLike[str], model: nn.Module, meta: Mapping[str, Any], **extra: Any
) -> None:
    """Write model + metadata atomically (a crash never leaves a half-written checkpoint).

    meta must hold `feature_set`; it may hold `epoch` and `global_step` (default 0) and any
    other plain entries. Spec keys in meta must agree with `model.spec`. `extra` entries
    (optimizer=..., mask=..., rng=...) are stored under their names.
    """
    spec = model_spec(model)
    for key in SPEC_KEYS:
        if key in meta and meta[key] != spec[key]:
            raise InputError(
                f"save_checkpoint {path}: meta[{key!r}]={meta[key]!r} disagrees with the "
                f"model's spec {key}={spec[key]!r}"
            )
    if "feature_set" not in meta:
        raise InputError(
            f"save_checkpoint {path}: meta lacks 'feature_set' (expected 'lmfb' or 'baseline')"
        )
    clash = sorted(set(extra) & ({"format", "state_dict", *SPEC_KEYS}))
    if clash:
        raise InputError(f"save_checkpoint {path}: extra keys {clash} are reserved")
    checkpoint: dict[str, Any] = {"epoch": 0, "global_step": 0}
    checkpoint.update(_check_plain(dict(meta), "meta"))
    checkpoint.update(_check_plain(dict(extra), "extra"))
    checkpoint.update(spec)
    checkpoint["format"] = FORMAT
    checkpoint["state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint safely (weights_only=True) and check it has every required key."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path}: no such file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as e:
        raise InputError(
            f"checkpoint {path}: not a readable torch checkpoint of tensors and plain types "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from e
    if not isinstance(checkpoint, dict):
        raise InputError(f"checkpoint {path}: expected a dict, found {type(checkpoint).__name__}")
    for key in REQUIRED_KEYS:
        if key not in checkpoint:
            raise InputError(f"checkpoint {path}: missing key {key!r}")
    if checkpoint["format"] != FORMAT:
        raise InputError(
            f"checkpoint {path}: key 'format' is {checkpoint['format']!r}, expected {FORMAT!r}"
        )
    if not isinstance(checkpoint["state_dict"], Mapping):
        raise InputError(
            f"checkpoint {path}: key 'state_dict' is a {type(checkpoint['state_dict']).__name__},"
            " expected a dict of tensors"
        )
    return checkpoint


def load_model(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from the checkpoint alone, load its weights strictly, eval mode.

    Returns (model, meta) where meta is the checkpoint without its state_dict.
    """
    checkpoint = load_checkpoint(path)
    try:
        model = build_model(
            checkpoint["arch"],
            checkpoint["n_classes"],
            task=checkpoint["task"],
            width=checkpoint["width"],
            in_channels=checkpoint["in_channels"],
        )
    except InputError as e:
        raise InputError(f"checkpoint {path}: {e}") from e
    try:
        result = model.load_state_dict(checkpoint["state_dict"], strict=False)
    except RuntimeError as e:  # shape mismatches
        raise InputError(
            f"checkpoint {path}: state_dict does not fit {checkpoint['arch']!r}: "
            f"{str(e).splitlines()[-1].strip()}"
        ) from e
    if result.missing_keys or result.unexpected_keys:
        raise InputError(
            f"checkpoint {path}: state_dict does not fit {checkpoint['arch']!r}: "
            f"missing keys {result.missing_keys[:5]}, unexpected keys "
            f"{result.unexpected_keys[:5]}"
        )
    model.eval()
    meta = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    return model, meta
