"""Verbs of the offline augmented copies (report §2.1).

    acoustic-lottery speccorr-coefficients --dataset-root DIR --out coeffs.npz \\
        [--seconds S] [--max-pairs 150] [--seed 0] [--missing error|skip] \\
        [--n-fft 2048] [--hop 1024] [--sample-rate 44100] [--devices b,c,s1,s2,s3] \\
        [--method ratio_of_means|mean_of_ratios]

    acoustic-lottery augment --kind pitch|speed|noise|mix|speccorr|reverb --dataset-root DIR \\
        --out features/lmfb/train/<kind>.h5 [--coefficients coeffs.npz] [--seed 0] \\
        [--seconds S] [--feature-set lmfb] [--params JSON] [--aug-params JSON] \\
        [--gain-devices b,c,...] [--missing error|skip] [--batch-size 16] [--workers 2]

`--params` overrides feature config fields (as for `features`); `--aug-params`
overrides the augmentation's own ranges, e.g. '{"max_steps": 2}' for pitch or
'{"method": "resample"}' for speed, '{"rt60_max": 0.6}' for reverb.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from acoustic_lottery import __version__
from acoustic_lottery.errors import InputError

log = logging.getLogger(__name__)

KINDS = ("pitch", "speed", "noise", "mix", "speccorr", "reverb")


def _json_object(text: str | None, option: str) -> dict[str, Any]:
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{option}: expected a JSON object, found {text!r} ({exc})") from exc
    if not isinstance(value, dict):
        raise InputError(f"{option}: expected a JSON object, found {type(value).__name__}")
    return value


def _device_list(text: str | None, option: str) -> list[str] | None:
    if text is None or not text.strip():
        return None
    from acoustic_lottery.labels import DEVICES

    devices = [d.strip() for d in text.split(",") if d.strip()]
    unknown = [d for d in devices if d not in DEVICES]
    if unknown:
        raise InputError(f"{option}: unknown devices {unknown}; expected some of {list(DEVICES)}")
    return devices


def _positive(value: float | int | None, option: str) -> None:
    if value is not None and value <= 0:
        raise InputError(f"{option} must be positive, found {value}")


def run_speccorr_coefficients(args: argparse.Namespace) -> int:
    """Estimate the per-device coefficients from the training split and save them."""
    from acoustic_lottery.augment import speccorr
    from acoustic_lottery.data.tau import read_split

    _positive(args.seconds, "--seconds")
    for value, option in (
        (args.max_pairs, "--max-pairs"),
        (args.n_fft, "--n-fft"),
        (args.hop, "--hop"),
        (args.sample_rate, "--sample-rate"),
    ):
        _positive(value, option)
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, found {args.seed}")
    root = Path(args.dataset_root)
    meta = read_split(root, "train", missing=args.missing)
    pairs = speccorr.select_pairs(
        speccorr.find_pairs(meta, devices=_device_list(args.devices, "--devices")),
        max_pairs=args.max_pairs,
        seed=args.seed,
    )
    coeffs = speccorr.estimate_from_pairs(
        pairs,
        n_fft=args.n_fft,
        hop=args.hop,
        sample_rate=args.sample_rate,
        seconds=args.seconds,
        method=args.method,
    )
    info = {
        "dataset_root": str(root),
        "split": "train",
        "reference": speccorr.REFERENCE_DEVICE,
        "n_fft": args.n_fft,
        "hop": args.hop,
        "sample_rate": args.sample_rate,
        "seconds": args.seconds,
        "max_pairs": args.max_pairs,
        "seed": args.seed,
        "method": args.method,
        "n_pairs": {d: len(v) for d, v in pairs.items()},
        "pairs": {d: [k for k, _, _ in v] for d, v in pairs.items()},
        "code_version": __version__,
    }
    speccorr.save_coefficients(args.out, coeffs, info)
    log.info(
        "spectrum-correction coefficients of %s (%s pairs) -> %s",
        ", ".join(coeffs),
        ", ".join(str(len(v)) for v in pairs.values()),
        args.out,
    )
    return 0


def run_augment(args: argparse.Namespace) -> int:
    """Write one augmented copy of the training split."""
    from acoustic_lottery.augment.copies import make_copy
    from acoustic_lottery.features.extract import make_config

    _positive(args.seconds, "--seconds")
    if args.kind == "speccorr" and not args.coefficients:
        raise InputError(
            "augment --kind speccorr needs --coefficients (from speccorr-coefficients)"
        )
    cfg = make_config(args.feature_set, _json_object(args.params, "--params"), source="--params")
    make_copy(
        args.kind,
        args.dataset_root,
        args.out,
        feature_set=args.feature_set,
        feature_cfg=cfg,
        seconds=args.seconds,
        seed=args.seed,
        missing=args.missing,
        coefficients=args.coefficients,
        gain_devices=_device_list(args.gain_devices, "--gain-devices"),
        aug_params=_json_object(args.aug_params, "--aug-params"),
        batch_size=args.batch_size,
        workers=args.workers,
        threads=args.threads,
    )
    return 0


def register(subparsers: Any) -> None:
    """Add the `speccorr-coefficients` and `augment` verbs."""
    p = subparsers.add_parser(
        "speccorr-coefficients",
        help="estimate spectrum-correction coefficients from time-aligned device pairs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset-root", required=True, help="TAU-layout data set directory")
    p.add_argument("--out", required=True, help="output .npz (written atomically)")
    p.add_argument(
        "--seconds", type=float, default=None, help="cut or zero-pad clips to this length"
    )
    p.add_argument("--max-pairs", type=int, default=150, help="pairs per device (D20: 150)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pair selection")
    p.add_argument("--missing", choices=("error", "skip"), default="error")
    p.add_argument("--n-fft", type=int, default=2048)
    p.add_argument("--hop", type=int, default=1024)
    p.add_argument("--sample-rate", type=int, default=44100)
    p.add_argument(
        "--devices", default=None, help="comma-separated devices (default: all but a in the split)"
    )
    p.add_argument(
        "--method",
        choices=("ratio_of_means", "mean_of_ratios"),
        default="ratio_of_means",
        help="frame/pair averaging (mean_of_ratios is D20's formula; see speccorr)",
    )
    p.set_defaults(func=run_speccorr_coefficients)

    a = subparsers.add_parser(
        "augment",
        help="write one offline augmented copy of the training split (HDF5 features)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("--kind", required=True, choices=KINDS)
    a.add_argument("--dataset-root", required=True, help="TAU-layout data set directory")
    a.add_argument("--out", required=True, help="output .h5 file (written atomically)")
    a.add_argument("--coefficients", default=None, help="speccorr-coefficients output (.npz)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument(
        "--seconds", type=float, default=None, help="cut or zero-pad clips to this length"
    )
    a.add_argument("--feature-set", choices=("lmfb", "baseline"), default="lmfb")
    a.add_argument("--params", default=None, help="JSON object overriding feature config fields")
    a.add_argument("--aug-params", default=None, help="JSON object overriding augmentation ranges")
    a.add_argument(
        "--gain-devices",
        default=None,
        help="speccorr: comma-separated devices to average (default: all in the coefficients)",
    )
    a.add_argument("--missing", choices=("error", "skip"), default="error")
    a.add_argument("--batch-size", type=int, default=16)
    a.add_argument(
        "--workers", type=int, default=2, help="processes decoding audio and computing features"
    )
    a.add_argument(
        "--threads", type=int, default=None, help="torch threads with --workers 0 (workers: 1)"
    )
    a.set_defaults(func=run_augment)
