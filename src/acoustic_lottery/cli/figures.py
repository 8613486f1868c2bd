"""Verbs `figure2`, `figure3`, `device-bars`, `confusion`: the report's figures (PNG, PDF
or SVG by the extension of --out)."""

from __future__ import annotations

import argparse
from pathlib import Path

from acoustic_lottery.errors import InputError


def _figure2(args: argparse.Namespace) -> int:
    from acoustic_lottery.reporting.figures import figure2

    result = figure2(args.points, args.out, title=args.title, paper_points=args.paper_points)
    print(f"figure2: {len(result['series'])} strategy line(s) -> {result['out']}")
    return 0


def _figure3(args: argparse.Namespace) -> int:
    from acoustic_lottery.reporting.figures import figure3

    result = figure3(args.dense, args.pruned, args.out, layers=args.layers, bins=args.bins)
    p = result["pruned"]
    print(
        f"figure3: {len(result['layers'])} layer(s); pruned {100 * p['sparsity']:.2f} % "
        f"({p['kb']:.1f} KB non-zero) -> {result['out']}"
    )
    return 0


def parse_named_paths(items: list[str], option: str = "--metrics") -> dict[str, Path]:
    """NAME=PATH pairs -> ordered dict; the order is the bar order of the plot."""
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise InputError(f"{option} {item!r}: expected NAME=PATH")
        if name in out:
            raise InputError(f"{option}: name {name!r} given twice")
        out[name] = Path(path)
    return out


def _device_bars(args: argparse.Namespace) -> int:
    from acoustic_lottery.reporting.device_plots import device_bars

    result = device_bars(parse_named_paths(args.metrics), args.out, title=args.title)
    print(
        f"device-bars: {len(result['models'])} model(s) x {len(result['devices'])} device(s) "
        f"-> {result['out']}"
    )
    return 0


def _confusion(args: argparse.Namespace) -> int:
    from acoustic_lottery.reporting.device_plots import (
        confusion_matrix_plot,
        write_confusion_records,
    )

    result = confusion_matrix_plot(args.metrics, args.out, title=args.title)
    if args.out_data is not None:
        write_confusion_records(args.metrics, args.out_data)
    print(
        f"confusion: {len(result['class_names'])} classes, accuracy "
        f"{result['accuracy']:.1f} % -> {result['out']}"
    )
    return 0


def _figure_out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, required=True, help="figure to write: .png, .pdf or .svg"
    )


def register(sub: argparse._SubParsersAction) -> None:
    from acoustic_lottery.reporting.figures import LAYER_CHOICES

    p = sub.add_parser("figure2", help="Figure 2: LTH strategies, accuracy vs weights remaining")
    p.add_argument(
        "--points",
        nargs="+",
        type=Path,
        required=True,
        help="lottery point JSON files (a point or a list of points each)",
    )
    p.add_argument(
        "--paper-points", nargs="+", type=Path, help="optional reference points drawn as open stars"
    )
    _figure_out(p)
    p.add_argument("--title")
    p.set_defaults(func=_figure2)

    f = sub.add_parser("figure3", help="Figure 3: layer-wise weights, dense vs LTH-pruned")
    f.add_argument("--dense", type=Path, required=True, help="dense student checkpoint")
    f.add_argument("--pruned", type=Path, required=True, help="pruned student checkpoint")
    _figure_out(f)
    f.add_argument(
        "--layers",
        choices=LAYER_CHOICES,
        default="non_conv",
        help="non_conv (the report: BN and dense/head layers) or all",
    )
    f.add_argument("--bins", type=int, default=40, help="histogram bins per layer")
    f.set_defaults(func=_figure3)

    d = sub.add_parser("device-bars", help="accuracy per device (seen | unseen), per model")
    d.add_argument(
        "--metrics",
        nargs="+",
        required=True,
        metavar="NAME=PATH",
        help="metrics JSON per model, in bar order",
    )
    _figure_out(d)
    d.add_argument("--title")
    d.set_defaults(func=_device_bars)

    c = sub.add_parser("confusion", help="row-normalised confusion matrix of one metrics JSON")
    c.add_argument("--metrics", type=Path, required=True, help="metrics JSON")
    _figure_out(c)
    c.add_argument(
        "--out-data",
        type=Path,
        metavar="C.csv",
        help="also one (actual, predicted) line per clip: DVC's confusion plot data",
    )
    c.add_argument("--title")
    c.set_defaults(func=_confusion)
