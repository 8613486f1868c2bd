"""`acoustic-lottery size`: DCASE 2021 size, int8 estimate and MACs of a model as JSON.

    acoustic-lottery size --arch sic [--task mtl | --classes 3] [--width W] [--dtype float16]
    acoustic-lottery size models/sic/round1/final.pt [--dtype int8] [--output row.json]

A checkpoint is measured as stored (pruned weights are zeros and do not count); a fresh
model tells what an architecture costs before training.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.io import write_json
from acoustic_lottery.models.checkpoint import load_checkpoint, load_model
from acoustic_lottery.models.heads import SCENE_CLASSES, SUPER_CLASSES
from acoustic_lottery.models.macs import count_macs
from acoustic_lottery.models.registry import ARCHS, build_model
from acoustic_lottery.models.size import (
    DTYPE_CHOICES,
    bn_folded_size,
    int8_estimate,
    size_report,
)

#: Default input of each feature set: (channels are the model's, bands, frames of 10 s).
DEFAULT_INPUT: dict[str, tuple[int, int]] = {"lmfb": (128, 423), "baseline": (40, 500)}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "size",
        help="size (DCASE 2021 rule), int8 estimate and MACs of a model",
        description=(
            "Print a JSON size report: every stored value incl. BN statistics, zeros "
            "skipped, KB = 1024 bytes; the same after folding BN into the conv biases "
            "(size_kb_bn_folded); the BN-folded int8 estimate and the MACs on "
            "the default input (lmfb 3×128×423, baseline 1×40×500)."
        ),
    )
    p.add_argument("checkpoint", nargs="?", help="a trained model's checkpoint (.pt)")
    p.add_argument("--arch", choices=ARCHS, help="measure a freshly built model instead")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--task", choices=("scene", "super", "mtl"), help="heads of a fresh model (default scene)"
    )
    group.add_argument(
        "--classes",
        type=int,
        help=f"classes of a fresh single-head model: {SUPER_CLASSES} = super, otherwise scene",
    )
    p.add_argument("--width", type=float, help="width multiplier of a fresh model (default 1.0)")
    p.add_argument("--in-channels", type=int, help="input channels (fresh model)")
    p.add_argument(
        "--dtype",
        choices=tuple(DTYPE_CHOICES),
        help="bytes per value as if stored in this dtype (default: as stored)",
    )
    p.add_argument("--frames", type=int, help="input frames T for the MAC count")
    p.add_argument("--bands", type=int, help="input bands F for the MAC count")
    p.add_argument("--no-layers", action="store_true", help="omit the per-layer lists")
    p.add_argument("--output", "-o", help="also write the JSON here (atomically)")
    p.set_defaults(func=run_size)


def _fresh(args: argparse.Namespace) -> tuple[nn.Module, dict[str, Any], str]:
    """A freshly built model (seed 0) from --arch/--task/--classes/--width/--in-channels."""
    if args.classes is None:
        task, n_classes = args.task or "scene", None
    elif args.classes == SUPER_CLASSES:
        task, n_classes = "super", None
    else:
        task, n_classes = "scene", args.classes
    model = build_model(
        args.arch,
        n_classes,
        task=task,
        width=1.0 if args.width is None else args.width,
        in_channels=args.in_channels,
        seed=0,
    )
    feature_set = "baseline" if args.arch == "baseline" else "lmfb"
    return model, dict(model.spec), feature_set


def _input_shape(args: argparse.Namespace, in_channels: int, feature_set: str) -> list[int]:
    bands, frames = DEFAULT_INPUT.get(feature_set, DEFAULT_INPUT["lmfb"])
    for flag, value in (("--frames", args.frames), ("--bands", args.bands)):
        if value is not None and value < 1:
            raise InputError(f"size: {flag} expects a positive integer, found {value}")
    return [in_channels, args.bands or bands, args.frames or frames]


def build_report(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON report of `acoustic-lottery size` (separate from printing, for tests)."""
    if (args.checkpoint is None) == (args.arch is None):
        raise InputError("size: give either a CHECKPOINT or --arch NAME (exactly one)")
    if args.checkpoint is not None:
        if args.task or any(v is not None for v in (args.classes, args.in_channels, args.width)):
            raise InputError(
                "size: --task/--classes/--width/--in-channels describe a fresh model; "
                "a checkpoint carries its own"
            )
        checkpoint = load_checkpoint(args.checkpoint)
        model, meta = load_model(args.checkpoint)
        spec = {k: meta[k] for k in ("arch", "task", "n_classes", "width", "in_channels")}
        feature_set = str(meta["feature_set"])
        source: dict[str, Any] = {"checkpoint": str(args.checkpoint)}
        stored = checkpoint["state_dict"]
    else:
        if args.classes is not None and args.classes < 2:
            raise InputError(f"size: --classes expects an integer >= 2, found {args.classes}")
        model, spec, feature_set = _fresh(args)
        stored = model.state_dict()
        source = {
            "fresh": True,
            "note": "untrained: zero BN shifts and running means are skipped by the rule; "
            "dense_kb is what the trained model stores",
        }
        if args.classes not in (None, SCENE_CLASSES, SUPER_CLASSES):
            source["classes"] = args.classes
    dtype_bytes = {"*": DTYPE_CHOICES[args.dtype]} if args.dtype else None
    size = size_report(stored, dtype_bytes=dtype_bytes)
    shape = _input_shape(args, int(spec["in_channels"]), feature_set)
    macs = count_macs(model, shape)
    int8 = int8_estimate(model)
    folded = bn_folded_size(model, dtype_bytes=dtype_bytes)
    report = {
        **source,
        **spec,
        "heads": [list(h) for h in model.heads],
        "feature_set": feature_set,
        "dtype": args.dtype or "as stored",
        "params": size["params"],
        "nonzero": size["nonzero"],
        "bytes": size["bytes"],
        "kb": size["kb"],
        "dense_bytes": size["dense_bytes"],
        "dense_kb": size["dense_kb"],
        "sparsity": size["sparsity"],
        "rule": size["rule"],
        # the same rule after folding BN into the conv biases (what a deployment stores)
        "size_kb_bn_folded": folded["kb"],
        "bn_folded": {k: v for k, v in folded.items() if k != "kb"},
        "int8_estimate": {k: v for k, v in int8.items() if k != "layers"},
        "macs": macs["macs"],
        "input_shape": macs["input_shape"],
        "other_ops": macs["other"],
        "layers": size["layers"],
        "macs_layers": macs["layers"],
    }
    if args.no_layers:
        del report["layers"], report["macs_layers"]
    return report


def run_size(args: argparse.Namespace) -> int:
    report = build_report(args)
    if args.output:
        write_json(args.output, report)
    json.dump(report, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0
