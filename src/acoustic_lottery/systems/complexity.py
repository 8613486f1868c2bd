"""The DCASE 2024 Task 1 complexity check: parameter memory <= 128 kB, <= 30 M MACs.

Rule text (DCASE 2024 Task 1, official baseline README): "max memory for model
parameters: 128 kB (Kilobyte)"; "max number of MACs for inference of a 1-second audio
snippet: 30 MMACs". The baseline's own arithmetic fixes the unit: 61,148 parameters ×
2 B = 122,296 B "<= 128 kB", and with int8 "the maximum number of allowed parameters would
be 128,000" — so 128 kB = 128,000 bytes (decimal kilobytes, unlike the 2021 rule's
KB = 1024 B in `models.size`).

Measured here:
- parameter memory: bytes of every stored value by its dtype, from `models.size.
  size_report` (so BN running statistics count, as in the 2021 rule — conservative). Zeros
  COUNT by default (`count_zeros=True`): the 2024 rule counts parameters, not non-zeros;
  `count_zeros=False` applies the 2021 zero-skipping instead. `dtype_bytes` reports a store
  in another precision ({"*": 2} for float16, {"*": 1} for int8).
- MACs: `models.macs.count_macs` (convs and linears) for one clip of `input_shape`; the
  default (3, 128, 44) is our LMFB input of a 1 s clip at 44.1 kHz, hop 1024 (44 STFT
  frames; the delta trimming leaves 36, so 44 is an upper bound).
- A Rep-Mobile model still in its multi-branch training form is measured after
  `reparameterize` (its inference form), as the rule concerns inference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.models.macs import count_macs
from acoustic_lottery.models.repmobile import rep_blocks, reparameterize
from acoustic_lottery.models.size import size_report

#: 128 kB, decimal (see module doc).
MAX_PARAM_BYTES = 128_000
MAX_MACS = 30_000_000
#: One 1 s clip of our LMFB features: channels, mel bands, STFT frames.
ONE_SECOND_INPUT: tuple[int, int, int] = (3, 128, 44)
RULE = (
    "DCASE2024 Task 1: parameter memory <= 128 kB (128,000 bytes, every stored value by its "
    "dtype), MACs <= 30 M for one 1 s clip, measured on the inference form"
)


def complexity_report(
    model: nn.Module,
    input_shape: Sequence[int] = ONE_SECOND_INPUT,
    *,
    dtype_bytes: Mapping[str, int] | None = None,
    count_zeros: bool = True,
    max_bytes: int = MAX_PARAM_BYTES,
    max_macs: int = MAX_MACS,
) -> dict[str, Any]:
    """Parameter memory and MACs of the model's inference form against the limits.

    Never raises for exceeding a limit (see `check_complexity`); `ok` says whether both
    hold. Returns {"rule", "form", "input_shape", "params", "nonzero", "param_bytes",
    "param_kb" (bytes / 1000), "count_zeros", "dtype_bytes", "macs", "max_bytes",
    "max_macs", "bytes_ok", "macs_ok", "ok", "layers_macs"}.
    """
    _check_limits(max_bytes, max_macs)
    form = "as given"
    if any(not b.deploy for b in rep_blocks(model)):
        model = reparameterize(model)
        form = "re-parameterized (inference form)"
    size = size_report(model, dtype_bytes=dtype_bytes)
    param_bytes = size["dense_bytes"] if count_zeros else size["bytes"]
    macs = count_macs(model, input_shape)
    report = {
        "rule": RULE,
        "form": form,
        "input_shape": macs["input_shape"],
        "params": size["params"],
        "nonzero": size["nonzero"],
        "param_bytes": int(param_bytes),
        "param_kb": param_bytes / 1000,
        "count_zeros": count_zeros,
        "dtype_bytes": dict(dtype_bytes) if dtype_bytes else None,
        "macs": int(macs["macs"]),
        "max_bytes": int(max_bytes),
        "max_macs": int(max_macs),
        "bytes_ok": param_bytes <= max_bytes,
        "macs_ok": macs["macs"] <= max_macs,
        "layers_macs": macs["layers"],
    }
    report["ok"] = report["bytes_ok"] and report["macs_ok"]
    return report


def check_complexity(
    model: nn.Module,
    input_shape: Sequence[int] = ONE_SECOND_INPUT,
    *,
    dtype_bytes: Mapping[str, int] | None = None,
    count_zeros: bool = True,
    max_bytes: int = MAX_PARAM_BYTES,
    max_macs: int = MAX_MACS,
    name: str = "model",
) -> dict[str, Any]:
    """`complexity_report`, raising InputError when either limit is exceeded.

    The message names both figures and both limits (whichever failed), so a too-large
    model tells at once how far it is from fitting on each axis.
    """
    report = complexity_report(
        model,
        input_shape,
        dtype_bytes=dtype_bytes,
        count_zeros=count_zeros,
        max_bytes=max_bytes,
        max_macs=max_macs,
    )
    if not report["ok"]:
        failed = [
            what
            for what, ok in (("parameter memory", report["bytes_ok"]), ("MACs", report["macs_ok"]))
            if not ok
        ]
        shape = "x".join(str(s) for s in report["input_shape"])
        raise InputError(
            f"{name}: exceeds the DCASE 2024 complexity limits ({' and '.join(failed)}): "
            f"parameter memory {report['param_bytes']:,} bytes ({report['param_kb']:.2f} kB) "
            f"vs limit {max_bytes:,} bytes ({max_bytes / 1000:g} kB); "
            f"MACs {report['macs']:,} ({report['macs'] / 1e6:.2f} M) vs limit {max_macs:,} "
            f"({max_macs / 1e6:g} M) for one clip of {shape}"
        )
    return report


def _check_limits(max_bytes: float, max_macs: float) -> None:
    for key, value in (("max_bytes", max_bytes), ("max_macs", max_macs)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise InputError(f"complexity limits: {key} expects a positive number, found {value!r}")
