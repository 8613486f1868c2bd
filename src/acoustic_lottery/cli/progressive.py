"""`acoustic-lottery prune-progressive`: Rep-Mobile-style progressive pruning as one job.

    acoustic-lottery prune-progressive --spec JSON --train F.h5 [...] --dense FINAL.pt
        --out-dir DIR [--target-sparsity S] [--steps N] [--strategy S]
        [--ramp cubic|linear] [--start-fraction F] [--end-fraction F] [--min-keep K]
        [--reset-optimizer] [--scope weights|all] [--exclude-first] [--exclude-last]
        [--teacher HEAD=CKPT ...] [--teacher-fusion CKPT] [--threads N]

Options left out take the ``progressive`` preset's values (`pruning.schedule.PRESETS`).
Outputs in --out-dir: mask.pt, history.csv, progressive.json, final.pt; phases/ holds the
resume state while the job runs and is removed when it finishes.
Rerunning an interrupted job reuses the finished phases and resumes the current one.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from acoustic_lottery.errors import InputError

__all__ = ["register", "settings_from_args"]

# (argparse dest, preset key)
_SETTING_ARGS: tuple[tuple[str, str], ...] = (
    ("target_sparsity", "target_sparsity"),
    ("steps", "n_steps"),
    ("strategy", "strategy"),
    ("ramp", "ramp"),
    ("start_fraction", "start_fraction"),
    ("end_fraction", "end_fraction"),
    ("min_keep", "min_keep"),
)


def settings_from_args(args: argparse.Namespace, has_teachers: bool) -> dict[str, Any]:
    """Preset overrides from the options actually given (None = the preset's value).

    ``distillation`` follows the teachers: without one the job fine-tunes on labels.
    """
    out: dict[str, Any] = {key: getattr(args, dest) for dest, key in _SETTING_ARGS}
    out = {k: v for k, v in out.items() if v is not None}
    if args.reset_optimizer:
        out["reset_optimizer"] = True
    out["distillation"] = has_teachers
    return out


def _run(args: argparse.Namespace) -> int:
    from acoustic_lottery.cli.train import parse_spec_arg, parse_teacher_fusion, parse_teachers
    from acoustic_lottery.pruning.progressive import run_progressive

    spec = parse_spec_arg(args.spec)
    if args.threads is not None:
        spec = spec.replace(threads=args.threads)
    for f in args.train:
        if not f.is_file():
            raise InputError(f"--train {f}: no such file")
    if not args.dense.is_file():
        raise InputError(f"--dense {args.dense}: no such file")
    teachers = parse_teachers(args.teacher)
    fusion = parse_teacher_fusion(args.teacher_fusion, teachers)
    report = run_progressive(
        spec,
        args.train,
        args.out_dir,
        args.dense,
        settings_from_args(args, bool(teachers)),
        teachers or None,
        scope=args.scope,
        exclude_first=args.exclude_first,
        exclude_last=args.exclude_last,
        teacher_fusion=fusion,
    )
    sp = report["sparsity"]
    print(
        f"prune-progressive: {report['settings']['strategy']}, {len(report['steps'])} prunes "
        f"over {report['plan']['epochs']} epochs, sparsity {100 * sp['sparsity']:.2f} % of "
        f"{sp['total']} prunable values, size {report['size']['kb']:.2f} KB -> "
        f"{args.out_dir / 'final.pt'}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `prune-progressive` verb."""
    from acoustic_lottery.cli.train import add_teacher_args
    from acoustic_lottery.pruning.schedule import RAMPS
    from acoustic_lottery.pruning.strategies import STRATEGIES

    p = subparsers.add_parser(
        "prune-progressive",
        help="fine-tune a dense model while pruning it many times in small amounts",
        description="Rep-Mobile-style progressive pruning: fine-tune --dense for the spec's "
        "epochs, pruning --steps times on a cubic (or linear) ramp to --target-sparsity, "
        "no rewinding. Writes phases/, mask.pt, history.csv, progressive.json and final.pt "
        "in --out-dir. Options left out take the 'progressive' preset's values.",
    )
    p.add_argument("--spec", required=True, help="fine-tuning spec: JSON text or a JSON file")
    p.add_argument(
        "--train",
        required=True,
        nargs="+",
        type=Path,
        metavar="F.h5",
        help="training feature files (concatenated)",
    )
    p.add_argument("--dense", required=True, type=Path, metavar="CKPT", help="trained dense model")
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--target-sparsity", type=float, help="final fraction of the scope pruned")
    p.add_argument("--steps", type=int, help="number of prune events (n_steps)")
    p.add_argument("--strategy", choices=sorted(STRATEGIES), help="mask strategy")
    p.add_argument("--ramp", choices=RAMPS, help="sparsity ramp over the prune events")
    p.add_argument(
        "--start-fraction", type=float, help="fraction of the epochs before the ramp starts"
    )
    p.add_argument("--end-fraction", type=float, help="fraction of the epochs at the last prune")
    p.add_argument("--min-keep", type=int, help="survivors kept per tensor")
    p.add_argument(
        "--reset-optimizer",
        action="store_true",
        help="fresh momentum after every prune (default: keep it)",
    )
    p.add_argument(
        "--scope",
        choices=("weights", "all"),
        default="weights",
        help="prunable values: conv/linear weights (default) or also biases and BN channels",
    )
    p.add_argument("--exclude-first", action="store_true", help="keep the first layer dense")
    p.add_argument("--exclude-last", action="store_true", help="keep the last layer dense")
    add_teacher_args(p)
    p.add_argument("--threads", type=int, help="CPU threads (overrides the spec)")
    p.set_defaults(func=_run)
