"""`acoustic-lottery generate` and `check-dataset`: make or inspect a TAU-layout data set.

    acoustic-lottery generate --out data/synthetic [--seed 0] [--layout tau2020]
        [--clip-seconds 1] [--train-segments-per-scene 54]
        [--train-parallel-fraction 0.15] [--eval-segments-per-scene 10]
        [--difficulty 0.0] [--cities barcelona,helsinki,...]
        [--train-places-per-scene N|per-segment] [--eval-places-per-scene N|per-segment]
        [--device-severity 0.4] [--overwrite]

    acoustic-lottery check-dataset --root /data/TAU-urban-acoustic-scenes-2020-mobile-development
        [--missing error|skip]

`generate` prints the summary JSON (also written to <out>/synthetic.json);
`check-dataset` reads all three splits exactly as the pipeline will and prints clip
counts per split, device and scene, so a real download can be checked before hours of
feature extraction.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from acoustic_lottery.errors import InputError
from acoustic_lottery.labels import DEVICES, SCENES

_CONFIG_OPTIONS: tuple[tuple[str, str], ...] = (
    ("seed", "seed"),
    ("clip_seconds", "clip_seconds"),
    ("layout", "layout"),
    ("train_segments_per_scene", "train_segments_per_scene"),
    ("train_parallel_fraction", "train_parallel_fraction"),
    ("eval_segments_per_scene", "eval_segments_per_scene"),
    ("difficulty", "difficulty"),
    ("subsegments_per_segment", "subsegments_per_segment"),
    ("train_places_per_scene", "train_places_per_scene"),
    ("eval_places_per_scene", "eval_places_per_scene"),
    ("device_severity", "device_severity"),
)

#: The value of a --*-places-per-scene option that asks for one place per segment.
PLACE_PER_SEGMENT = "per-segment"


def parse_cities(text: str) -> list[str]:
    """'a,b,c' -> ['a', 'b', 'c']; empty names are an InputError naming the option."""
    cities = [c.strip() for c in text.split(",")]
    if not text.strip() or any(not c for c in cities):
        raise InputError(f"--cities: expected a comma-separated list of city names, got {text!r}")
    return cities


def _places(text: str) -> int | str:
    """An option value: a positive integer, or 'per-segment' (one place per segment)."""
    if text == PLACE_PER_SEGMENT:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or {PLACE_PER_SEGMENT!r}, got {text!r}"
        ) from None


def config_from_args(args: argparse.Namespace) -> Any:
    """SyntheticConfig from the options given (the dataclass defaults for the rest)."""
    from acoustic_lottery.data.synthetic import SyntheticConfig

    values: dict[str, Any] = {}
    for option, key in _CONFIG_OPTIONS:
        value = getattr(args, option)
        if value == PLACE_PER_SEGMENT:
            values[key] = None
        elif value is not None:
            values[key] = value
    if args.cities is not None:
        values["cities"] = parse_cities(args.cities)
    return SyntheticConfig.from_dict(values)


def run_generate(args: argparse.Namespace) -> int:
    """Write the synthetic data set and print its summary."""
    from acoustic_lottery.data.synthetic import generate

    cfg = config_from_args(args)
    summary = generate(Path(args.out), cfg, overwrite=args.overwrite, workers=args.workers)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def dataset_report(root: Path, missing: str = "error") -> dict[str, Any]:
    """Counts per split, device and scene of a TAU-layout data set, as the pipeline reads it."""
    from acoustic_lottery.data.tau import SPLITS, read_split

    report: dict[str, Any] = {"root": str(root), "splits": {}}
    tables = {}
    for split in SPLITS:
        table = read_split(Path(root), split, missing=missing)
        tables[split] = table
        devices = Counter(table["device"])
        entry: dict[str, Any] = {
            "clips": len(table),
            "devices": {d: devices.get(d, 0) for d in DEVICES},
            "identifiers": int(table["identifier"].nunique()),
        }
        if split != "test":
            scenes = Counter(table["scene"])
            entry["scenes"] = {s: scenes.get(s, 0) for s in SCENES}
        report["splits"][split] = entry
    train, evaluate = tables["train"], tables["evaluate"]
    report["shared_identifiers_train_evaluate"] = len(
        set(train["identifier"]) & set(evaluate["identifier"])
    )
    report["test_matches_evaluate"] = sorted(tables["test"]["filename"]) == sorted(
        evaluate["filename"]
    )
    return report


def run_check_dataset(args: argparse.Namespace) -> int:
    """Read every split (validating it) and print the counts."""
    print(json.dumps(dataset_report(Path(args.root), args.missing), indent=2))
    return 0


def register(subparsers: Any) -> None:
    """Add the `generate` and `check-dataset` verbs."""
    g = subparsers.add_parser(
        "generate",
        help="write the synthetic data set in the TAU Urban Acoustic Scenes layout",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g.add_argument("--out", required=True, help="output directory (replaced atomically)")
    g.add_argument("--seed", type=int, default=None, help="data set seed (default 0)")
    g.add_argument("--clip-seconds", type=float, default=None, help="clip length (default 1)")
    g.add_argument("--layout", choices=("tau2020", "tau2022"), default=None)
    g.add_argument("--train-segments-per-scene", type=int, default=None)
    g.add_argument(
        "--train-parallel-fraction",
        type=float,
        default=None,
        help="fraction of train segments also on b, c, s1-s3 (default 0.15)",
    )
    g.add_argument("--eval-segments-per-scene", type=int, default=None)
    g.add_argument("--difficulty", type=float, default=None, help="0 (easy) .. 1 (hard), default 0")
    g.add_argument("--cities", default=None, help="comma-separated city names")
    for split, what in (("train", "training"), ("eval", "evaluation")):
        g.add_argument(
            f"--{split}-places-per-scene",
            type=_places,
            default=None,
            metavar="N|per-segment",
            help=f"places (city-location) per scene of the {what} split, at most its "
            f"segments per scene; {PLACE_PER_SEGMENT!r} (the default): one per segment",
        )
    g.add_argument(
        "--device-severity",
        type=float,
        default=None,
        help="scale of every device's departure from flat: 1 the drawn devices, 0 all "
        "flat like device a (default 0.4)",
    )
    g.add_argument(
        "--subsegments-per-segment",
        type=int,
        default=None,
        help="tau2022 layout: 1-clip subsegments per recorded segment (default 10)",
    )
    g.add_argument("--overwrite", action="store_true", help="replace an existing data set")
    g.add_argument("--workers", type=int, default=None, help="render threads (default: cores)")
    g.set_defaults(func=run_generate)

    c = subparsers.add_parser(
        "check-dataset",
        help="validate a TAU-layout data set and print counts per split, device and scene",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("--root", required=True, help="data set root (audio/, evaluation_setup/)")
    c.add_argument("--missing", choices=("error", "skip"), default="error")
    c.set_defaults(func=run_check_dataset)
