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
    "probe",
    "config",
)

#: The module that adds each verb. A job imports only its own verb's module: torch,
#: pandas, matplotlib and onnxruntime take seconds to import, and a pipeline runs
#: hundreds of short jobs (tests/cli/test_dispatch.py keeps this map true).
VERB_GROUPS: dict[str, str] = {
    "generate": "data",
    "check-dataset": "data",
    "features": "features",
    "speccorr-coefficients": "augment",
    "augment": "augment",
    "size": "models",
    "train": "train",
    "lottery-round": "lottery",
    "lottery-dense": "lottery",
    "lottery-point": "lottery",
    "prune-progressive": "progressive",
    "predict": "evaluate",
    "evaluate": "evaluate",
    "figure2": "figures",
    "figure3": "figures",
    "device-bars": "figures",
    "confusion": "figures",
    "export-onnx": "onnx",
    "quantize-onnx": "onnx",
    "predict-onnx": "onnx",
    "compare-onnx": "onnx",
    "row": "table",
    "table": "table",
    "comparisons": "table",
    "device-table": "table",
    "onnx-table": "table",
    "readme": "table",
    "html-page": "table",
    "reparameterize": "repmobile",
    "subsets": "repmobile",
    "complexity": "repmobile",
    "quantize": "quantize",
    "artifact-info": "quantize",
    "export-system": "quantize",
    "select-features": "efficiency",
    "efficiency-system": "efficiency",
    "efficiency-table": "efficiency",
    "probe": "probe",
    "params-file": "config",
}


def _verb(argv: list[str]) -> str | None:
    """The verb of a command line (the top-level options take no values)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(groups: tuple[str, ...] = GROUPS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acoustic-lottery",
        description="Low-complexity, device-robust acoustic scene classification.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in groups:
        importlib.import_module(f"acoustic_lottery.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    verb = _verb(argv)
    # An unknown verb or a bare --help builds every verb, so that argparse lists them all.
    parser = build_parser((VERB_GROUPS[verb],) if verb in VERB_GROUPS else GROUPS)
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
