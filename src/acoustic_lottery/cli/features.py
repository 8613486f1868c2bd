"""`acoustic-lottery features`: one split of a TAU-layout data set -> one HDF5 feature file.

    acoustic-lottery features --dataset-root DIR --split train --feature-set lmfb \\
        --out features/train/orig.h5 [--seconds 10] [--missing error|skip] \\
        [--batch-size 16] [--workers 2] [--params '{"n_mels": 64}']

`--params` overrides fields of the feature config (LogMelConfig or
BaselineFeatureConfig); the resulting config is stored in the file's `params` attribute.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from acoustic_lottery.errors import InputError

log = logging.getLogger(__name__)

SPLITS = ("train", "evaluate", "test")
FEATURE_SET_NAMES = ("lmfb", "baseline")


def parse_params(text: str | None) -> dict[str, Any]:
    """--params JSON -> dict; anything but a JSON object is an InputError naming the option."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--params: expected a JSON object, found {text!r} ({exc})") from exc
    if not isinstance(value, dict):
        raise InputError(f"--params: expected a JSON object, found {type(value).__name__}")
    return value


def run_features(args: argparse.Namespace) -> int:
    """Read the split table, then stream its clips through the extractor into --out."""
    # Deferred imports keep `acoustic-lottery --help` fast (torch, librosa).
    from acoustic_lottery.data.tau import read_split
    from acoustic_lottery.features.extract import config_summary, extract_split, make_config

    cfg = make_config(args.feature_set, parse_params(args.params), source="--params")
    if args.seconds is not None and args.seconds <= 0:
        raise InputError(f"--seconds must be positive, found {args.seconds}")
    meta = read_split(Path(args.dataset_root), args.split, missing=args.missing)
    log.info("%s split: %d clips -> %s (%s)", args.split, len(meta), args.out, config_summary(cfg))
    extract_split(
        meta,
        Path(args.out),
        args.feature_set,
        cfg,
        seconds=args.seconds,
        sample_rate=cfg.sample_rate,
        batch_size=args.batch_size,
        workers=args.workers,
        split=args.split,
        copy="orig",
        precision=args.precision,
        threads=args.threads,
    )
    return 0


def register(subparsers: Any) -> None:
    """Add the `features` verb."""
    p = subparsers.add_parser(
        "features",
        help="extract log-mel features of one split into an HDF5 file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset-root", required=True, help="TAU-layout data set directory")
    p.add_argument("--split", required=True, choices=SPLITS)
    p.add_argument("--feature-set", required=True, choices=FEATURE_SET_NAMES)
    p.add_argument("--out", required=True, help="output .h5 file (written atomically)")
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="cut or zero-pad every clip to this length (default: keep file lengths, "
        "which must then all be equal)",
    )
    p.add_argument("--missing", choices=("error", "skip"), default="error")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--workers", type=int, default=2, help="processes decoding audio and computing features"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads with --workers 0 (workers: 1)"
    )
    p.add_argument(
        "--precision",
        choices=("float32", "float64"),
        default="float32",
        help="STFT precision (float64 matches librosa to 1e-7 at about half the speed)",
    )
    p.add_argument("--params", default=None, help="JSON object overriding feature config fields")
    p.set_defaults(func=run_features)
