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
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.io import write_torch
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
    """Return `value` with mappings as plain dicts; reject anything weights_only can't load.

    Strings are interned: pickle memoizes by object identity, so equal strings that are
    distinct objects (a history resumed from a checkpoint beside fresh rows) would
    otherwise pickle to different bytes.
    """
    if isinstance(value, str):
        return sys.intern(str(value))
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
            out[_check_plain(key, where)] = _check_plain(item, f"{where}[{key!r}]")
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
    checkpoint["state_dict"] = {
        sys.intern(k): v.detach().cpu() for k, v in model.state_dict().items()
    }
    write_torch(path, checkpoint)


#: What `load_checkpoint` expected, in the error for a file that is none of ours.
EXPECTED = f"expected a torch checkpoint written by acoustic-lottery, format {FORMAT!r}"
#: First bytes of an int8 artifact (`quantization.artifact.MAGIC`; a test keeps them equal).
_ARTIFACT_MAGIC = b"ALOTTERY"


def _first_sentence(exc: BaseException, limit: int = 160) -> str:
    """`Type: first sentence` of an exception, on one line (torch's run to paragraphs)."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and "Unsupported global" in text:
        text = text[text.index("Unsupported global") :]  # the part that names the class
    text = " ".join(text.split())
    cut = text.find(". ")
    text = text[:cut] if cut > 0 else text.rstrip(".")
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def describe_content(head: bytes) -> str | None:
    """What a file starting with `head` looks like, for errors about the wrong file kind.

    None when the bytes say nothing recognisable.
    """
    if not head:
        return "the file is empty"
    if head.startswith(_ARTIFACT_MAGIC):
        return "it is an int8 artifact of `acoustic-lottery quantize`"
    if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
        return "it is a WAV audio file"
    if head.startswith((b"fLaC", b"OggS", b"ID3")):
        return "it is an audio file"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "it is an HDF5 file (features or predictions?)"
    if head.startswith(b"\x93NUMPY"):
        return "it is a numpy .npy file"
    if b"\0" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as e:
            if e.start < len(head) - 3:  # not just a character cut at the end of `head`
                return None
        return "it is a text file"
    return None


def _not_a_checkpoint(path: Path, reason: str) -> InputError:
    return InputError(
        f"checkpoint {path}: not a checkpoint or int8 artifact ({EXPECTED}): {reason}"
    )


def _read_torch(path: Path) -> Any:
    """torch.load(weights_only=True) of a file; any failure to read it is an InputError."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as e:
        raise InputError(f"checkpoint {path}: cannot be read ({e.strerror or e})") from e
    if head.startswith(_ARTIFACT_MAGIC):
        raise InputError(
            f"checkpoint {path}: is an int8 artifact of `acoustic-lottery quantize`, not a float "
            f"checkpoint ({EXPECTED})"
        )
    hint = describe_content(head)
    if hint is not None:
        raise _not_a_checkpoint(path, hint)
    try:
        # torch does not check the zip members' CRCs: a damaged checkpoint could load
        # wrong weights without a word
        if head.startswith(b"PK\x03\x04") and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            if bad is not None:
                raise _not_a_checkpoint(path, f"damaged: zip member {bad!r} fails its CRC check")
        return torch.load(path, map_location="cpu", weights_only=True)
    except InputError:
        raise
    except Exception as e:  # torch.load raises many types on foreign bytes
        if isinstance(e, pickle.UnpicklingError) and "Unsupported global" in str(e):
            what = "it holds objects other than tensors and plain types"
        elif head.startswith(b"PK"):
            what = "a damaged or truncated torch zip archive"
        else:
            what = "not a torch file of tensors and plain types"
        raise _not_a_checkpoint(path, f"{what} ({_first_sentence(e)})") from e


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint safely (weights_only=True) and check it has every required key.

    Any file that is not one (audio, text, an artifact, truncated or damaged) is an
    InputError naming the file and what was expected.
    """
    path = Path(path)
    if path.is_dir():
        raise _not_a_checkpoint(path, "it is a directory")
    if not path.is_file():
        raise InputError(f"checkpoint {path}: no such file")
    checkpoint = _read_torch(path)
    if not isinstance(checkpoint, dict):
        raise _not_a_checkpoint(path, f"it holds a {type(checkpoint).__name__}; expected a dict")
    if "format" not in checkpoint:
        keys = sorted(map(str, checkpoint))
        raise _not_a_checkpoint(
            path,
            f"a torch file of a dict without key 'format' (keys {keys[:6]}"
            f"{' ...' if len(keys) > 6 else ''})",
        )
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
