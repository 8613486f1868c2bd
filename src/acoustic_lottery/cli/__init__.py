"""`acoustic-lottery <verb>`: one verb per Snakemake rule.

Each verb group lives in its own module with `register(subparsers)`; a verb's handler
takes the parsed arguments and returns an exit code. `InputError` becomes a one-line
message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from acoustic_lottery import __version__
from acoustic_lottery.errors import InputError

#: Modules under acoustic_lottery.cli that add verbs.
GROUPS: tuple[str, ...] = (
    "data",
    "features",
    "augment",
    "models",
    "train",
    "lottery",
    "progressive",
    "evaluate",
    "figures",
    "onnx",
    "table",
    "repmobile",
    "quantize",
    "efficiency",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acoustic-lottery",
        description="Low-complexity, device-robust acoustic scene classification.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in GROUPS:
        importlib.import_module(f"acoustic_lottery.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"acoustic-lottery {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
