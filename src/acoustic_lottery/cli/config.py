"""Verb `params-file`: write (or check) params.yaml, the knobs `dvc exp run -S` edits,
for the models of a configuration (no torch)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from acoustic_lottery.errors import InputError


def _params_file(args: argparse.Namespace) -> int:
    from acoustic_lottery.configuration import load_yaml
    from acoustic_lottery.experiment_params import check_params_file, render_params
    from acoustic_lottery.io import atomic_path

    config = load_yaml(args.config)
    if not isinstance(config, dict):
        raise InputError(f"{args.config}: expected a mapping at the top level")
    if args.check:
        problems = check_params_file(config, load_yaml(args.out) or {})
        if problems:
            print(
                f"params-file: {args.out} does not list the knobs of {args.config}: "
                f"{', '.join(problems[:8])}{' ...' if len(problems) > 8 else ''}; "
                f"run `acoustic-lottery params-file --config {args.config} --out {args.out}` "
                "(it resets every knob to empty)",
                file=sys.stderr,
            )
            return 1
        print(f"params-file: {args.out} lists every knob of {args.config}")
        return 0
    with atomic_path(args.out) as tmp:
        tmp.write_text(render_params(config), encoding="utf-8")
    print(f"params-file: wrote {args.out} for the {len(config.get('models', {}))} models")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "params-file",
        help="write params.yaml: every training knob of a configuration, empty",
        description="params.yaml holds the knobs that `dvc exp run -S` edits, laid over "
        "the configuration; an empty value means as the configuration. --check only "
        "verifies that every knob is listed (exit 1 if not).",
    )
    p.add_argument("--config", type=Path, default=Path("config.yaml"))
    p.add_argument("--out", type=Path, default=Path("params.yaml"))
    p.add_argument("--check", action="store_true")
    p.set_defaults(func=_params_file)
