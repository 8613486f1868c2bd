"""Data-efficiency study verbs: subset feature files, per-system results, the table.

    acoustic-lottery select-features --features train/orig.h5 --subset subsets/split5.csv \
        --out train/subset5/orig.h5 [--missing error|skip]
    acoustic-lottery efficiency-system --spec JSON --metrics 5=M.json 10=M.json ... \
        --complexity 5=C.json ... [--pruning 5=progressive.json ...] --out SYSTEM.json
    acoustic-lottery efficiency-table --systems A.json B.json ... --out-md T.md \
        --out-csv T.csv [--subsets-summary summary.json]

The library side is `acoustic_lottery.efficiency`; the workflow's rules call these verbs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from acoustic_lottery.errors import InputError

__all__ = ["parse_fraction_files", "register"]


def parse_fraction_files(values: list[str], option: str) -> dict[str, Path]:
    """``P=PATH`` pairs -> {subset key: path}; each subset once, P a percentage in (0, 100]."""
    from acoustic_lottery.efficiency import fraction_key

    out: dict[str, Path] = {}
    for v in values:
        frac, sep, path = v.partition("=")
        if not sep or not frac or not path:
            raise InputError(f"{option} {v!r}: expected P=PATH, e.g. 25=metrics/25.json")
        try:
            f = float(frac)
        except ValueError:
            raise InputError(
                f"{option} {v!r}: the subset {frac!r} is not a percentage (a number in (0, 100])"
            ) from None
        if not 0 < f <= 100:
            raise InputError(f"{option} {v!r}: expected a percentage in (0, 100], found {frac}")
        key = fraction_key(f)
        if key in out:
            raise InputError(f"{option}: subset {key} given twice")
        out[key] = Path(path)
    return out


def _select(args: argparse.Namespace) -> int:
    from acoustic_lottery.efficiency import select_features

    report = select_features(
        args.features, args.subset, args.out, missing=args.missing, batch_size=args.batch_size
    )
    skipped = ""
    if report["skipped"]:
        skipped = f", {report['skipped']} listed clips not in the file (skipped)"
    print(f"select-features: {report['rows']} of {report['listed']} clips{skipped} -> {args.out}")
    return 0


def _system(args: argparse.Namespace) -> int:
    from acoustic_lottery.efficiency import write_system

    text = args.spec
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise InputError(f"--spec {text!r}: neither JSON text nor an existing JSON file")
        text = path.read_text(encoding="utf-8")
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--spec: not valid JSON: {exc}") from exc
    if not isinstance(spec, dict):
        raise InputError(f"--spec: expected a JSON object, found {type(spec).__name__}")
    result = write_system(
        spec,
        parse_fraction_files(args.metrics, "--metrics"),
        parse_fraction_files(args.complexity, "--complexity"),
        args.out,
        parse_fraction_files(args.pruning, "--pruning"),
    )
    cells = ", ".join(
        f"{k} %: {result['subsets'][k]['macro_class_accuracy_pct']:.1f}"
        for k in result["fractions"]
    )
    print(
        f"{result['system']} ({result['label']}): macro class accuracy {cells}; mean "
        f"{result['mean_macro_class_accuracy_pct']:.1f}; complexity "
        f"{'within' if result['complexity_ok'] else 'OVER'} the limits"
    )
    return 0


def _table(args: argparse.Namespace) -> int:
    from acoustic_lottery.efficiency import write_table

    write_table(args.systems, args.out_md, args.out_csv, args.subsets_summary)
    print(Path(args.out_md).read_text(encoding="utf-8"))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `select-features`, `efficiency-system` and `efficiency-table` verbs."""
    s = subparsers.add_parser(
        "select-features",
        help="copy the rows of a subset's clips into a new feature file",
        description="Copy the rows of the clips listed in a subset CSV (TAB-separated, "
        "header filename[, scene_label]; e.g. from `acoustic-lottery subsets`) out of a "
        "feature file, in the file's row order, streamed in batches. A listed clip that is "
        "not in the file is an error naming both (or skipped with --missing skip).",
    )
    s.add_argument("--features", required=True, type=Path, metavar="F.h5", help="source file")
    s.add_argument("--subset", required=True, type=Path, metavar="SPLIT.csv", help="clip list")
    s.add_argument("--out", required=True, type=Path, metavar="OUT.h5", help="file to write")
    s.add_argument(
        "--missing",
        choices=("error", "skip"),
        default="error",
        help="a listed clip absent from --features: fail (default) or leave it out (for "
        "copies holding only some clips, e.g. speccorr)",
    )
    s.add_argument("--batch-size", type=int, default=256, help="rows copied per read")
    s.set_defaults(func=_select)

    y = subparsers.add_parser(
        "efficiency-system",
        help="one data-efficiency system's results over the subsets (JSON)",
        description="Collect the metrics, DCASE 2024 complexity report and (for a pruned "
        "system) pruning report of the models one system trained on each subset into one "
        "JSON: macro class accuracy per subset and its mean.",
    )
    y.add_argument("--spec", required=True, help="system spec as JSON text or a JSON file")
    y.add_argument(
        "--metrics", required=True, nargs="+", metavar="P=JSON", help="evaluate JSON per subset"
    )
    y.add_argument(
        "--complexity",
        required=True,
        nargs="+",
        metavar="P=JSON",
        help="complexity JSON of the deployed model per subset",
    )
    y.add_argument(
        "--pruning",
        nargs="+",
        default=[],
        metavar="P=JSON",
        help="progressive.json per subset (pruned systems)",
    )
    y.add_argument("--out", required=True, type=Path, metavar="SYSTEM.json")
    y.set_defaults(func=_system)

    t = subparsers.add_parser(
        "efficiency-table",
        help="the data-efficiency table (Markdown and CSV) from system JSON files",
        description="Macro class accuracy per subset and its mean for every system, plain "
        "accuracy, and the complexity of the deployed models against the DCASE 2024 limits.",
    )
    t.add_argument("--systems", required=True, nargs="+", type=Path, metavar="SYSTEM.json")
    t.add_argument("--out-md", required=True, type=Path)
    t.add_argument("--out-csv", required=True, type=Path)
    t.add_argument(
        "--subsets-summary",
        type=Path,
        metavar="SUMMARY.json",
        help="`subsets --summary` JSON: adds the clips of each subset to the headers",
    )
    t.set_defaults(func=_table)
