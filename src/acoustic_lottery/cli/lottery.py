"""Verbs of the lottery-ticket chain: one round per job, its Figure 2 point, the dense point.

    acoustic-lottery lottery-round --round T --spec JSON --train F.h5 [...] --out-dir DIR
        --theta0 INIT.pt --previous FINAL.pt [--previous-mask MASK.pt]
        --strategy S (--rate R | --target-sparsity S --rounds N)
        [--scope weights|all] [--exclude-first] [--exclude-last] [--min-keep K]
        [--rewind init|step [--rewind-checkpoint REWIND.pt]] [--optimizer reset|rewind]
        [--control random_mask|random_reinit] [--control-seed N]
        [--teacher HEAD=CKPT ...] [--teacher-fusion CKPT] [--threads N]
    acoustic-lottery lottery-dense --final FINAL.pt --out ROUND.json [--scope ...]
    acoustic-lottery lottery-point --round-report ROUND.json --metrics METRICS.json
        --out POINT.json [--strategy S] [--model NAME]

A round's outputs (all in --out-dir): mask.pt, init.pt, checkpoint.pt, final.pt,
history.csv, round.json (written last). Rerunning an interrupted round resumes it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from acoustic_lottery.errors import InputError
from acoustic_lottery.io import read_json, write_json

__all__ = ["lottery_point", "register"]


def _run_round(args: argparse.Namespace) -> int:
    from acoustic_lottery.cli.train import parse_spec_arg, parse_teacher_fusion, parse_teachers
    from acoustic_lottery.pruning.lottery import run_round

    spec = parse_spec_arg(args.spec)
    if args.threads is not None:
        spec = spec.replace(threads=args.threads)
    for f in args.train:
        if not f.is_file():
            raise InputError(f"--train {f}: no such file")
    for opt, path in (
        ("--theta0", args.theta0),
        ("--previous", args.previous),
        ("--previous-mask", args.previous_mask),
        ("--rewind-checkpoint", args.rewind_checkpoint),
    ):
        if path is not None and not path.is_file():
            raise InputError(f"{opt} {path}: no such file")
    if args.rate is None and args.target_sparsity is None:
        raise InputError("lottery-round: give --rate R, or --target-sparsity S with --rounds N")
    if args.rewind == "step" and args.rewind_checkpoint is None:
        raise InputError("--rewind step needs --rewind-checkpoint REWIND.pt (late rewinding)")
    if args.rewind == "init" and args.rewind_checkpoint is not None:
        raise InputError("--rewind-checkpoint is only used with --rewind step")
    teachers = parse_teachers(args.teacher)
    fusion = parse_teacher_fusion(args.teacher_fusion, teachers)
    report = run_round(
        round_index=args.round,
        spec=spec,
        train_files=args.train,
        out_dir=args.out_dir,
        theta0=args.theta0,
        previous=args.previous,
        previous_mask=args.previous_mask,
        strategy=args.strategy,
        rate=args.rate,
        target_sparsity=args.target_sparsity,
        rounds=args.rounds,
        scope=args.scope,
        exclude_first=args.exclude_first,
        exclude_last=args.exclude_last,
        rewind=args.rewind,
        rewind_checkpoint=args.rewind_checkpoint,
        optimizer=args.optimizer,
        control=args.control,
        control_seed=args.control_seed,
        teachers=teachers or None,
        teacher_fusion=fusion,
        min_keep=args.min_keep,
    )
    mask = report["sparsity"]["mask"]
    print(
        f"lottery-round {report['round']}: {report['strategy']}"
        f"{' (' + report['control'] + ')' if report['control'] else ''}, "
        f"{100 * report['weights_remaining']:.3g} % of {mask['total']} prunable values left, "
        f"size {report['size']['kb']:.2f} KB -> {args.out_dir / 'round.json'}"
    )
    return 0


def _run_dense(args: argparse.Namespace) -> int:
    from acoustic_lottery.pruning.lottery import dense_round_report

    if not args.final.is_file():
        raise InputError(f"--final {args.final}: no such file")
    report = dense_round_report(
        args.final,
        args.out,
        scope=args.scope,
        exclude_first=args.exclude_first,
        exclude_last=args.exclude_last,
    )
    print(f"lottery-dense: size {report['size']['kb']:.2f} KB -> {args.out}")
    return 0


def _number(obj: Any, key: str, where: Path) -> float:
    value = obj.get(key) if isinstance(obj, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{where}: key {key!r}: expected a number, found {value!r}")
    return float(value)


def _read(path: Path, what: str) -> Any:
    if not path.is_file():
        raise InputError(f"{what} {path}: no such file")
    try:
        return read_json(path)
    except json.JSONDecodeError as e:
        raise InputError(f"{what} {path}: not valid JSON: {e}") from e


def lottery_point(
    round_report: Path,
    metrics: Path,
    *,
    strategy: str | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """A Figure 2 point from a round report and an evaluation metrics JSON.

    strategy: the round's control if any, else its strategy (a dense round-0 report has
    none: pass one). accuracy in percent (the metrics hold a fraction); model: the arch;
    scope: which values the masks prune (weights, or all); seed: the training seed (the
    round's spec, or the dense model's), so Figure 2 can average seeds.
    """
    from acoustic_lottery.reporting.figures import validate_point

    rep = _read(round_report, "--round-report")
    met = _read(metrics, "--metrics")
    if not isinstance(rep, dict) or not isinstance(rep.get("model"), dict):
        raise InputError(f"{round_report}: expected a lottery round report (key 'model')")
    if strategy is None:
        strategy = rep.get("control") or rep.get("strategy")
    if strategy is None:
        raise InputError(
            f"{round_report}: a dense (round 0) report has no strategy; pass --strategy"
        )
    accuracy = _number(met, "accuracy", metrics)
    if not 0.0 <= accuracy <= 1.0:
        raise InputError(
            f"{metrics}: key 'accuracy': expected a fraction in [0, 1], found {accuracy}"
        )
    size = rep.get("size")
    seed = rep["spec"].get("seed") if isinstance(rep.get("spec"), dict) else rep.get("seed")
    point = {
        "strategy": strategy,
        "scope": rep.get("scope") or "weights",
        "seed": seed,
        "weights_remaining": _number(rep, "weights_remaining", round_report),
        "accuracy": 100.0 * accuracy,
        "log_loss": _number(met, "log_loss", metrics),
        "size_kb": _number(size, "kb", round_report) if size is not None else None,
        "round": rep.get("round"),
        "model": model if model is not None else str(rep["model"].get("arch", "")),
    }
    clean = validate_point(point, str(round_report))
    return {k: clean[k] for k in point}


def _run_point(args: argparse.Namespace) -> int:
    point = lottery_point(args.round_report, args.metrics, strategy=args.strategy, model=args.model)
    write_json(args.out, point)
    print(
        f"lottery-point: {point['strategy']} at {100 * point['weights_remaining']:.3g} % "
        f"weights, accuracy {point['accuracy']:.1f} % -> {args.out}"
    )
    return 0


def _scope_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scope",
        choices=("weights", "all"),
        default="weights",
        help="prunable values: conv/linear weights (default) or also biases and BN channels",
    )
    p.add_argument("--exclude-first", action="store_true", help="keep the first layer dense")
    p.add_argument("--exclude-last", action="store_true", help="keep the last layer dense")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `lottery-round`, `lottery-dense` and `lottery-point`."""
    from acoustic_lottery.cli.train import add_teacher_args
    from acoustic_lottery.pruning.strategies import STRATEGIES

    p = subparsers.add_parser(
        "lottery-round",
        help="one lottery-ticket round: mask, rewind, retrain (Algorithm 1)",
        description="Build the next mask from --previous, rewind the survivors to --theta0 "
        "(or a late-rewinding snapshot), train under the mask. Writes mask.pt, init.pt, "
        "checkpoint.pt, final.pt, history.csv and round.json in --out-dir.",
    )
    p.add_argument("--round", required=True, type=int, help="round index t >= 1")
    p.add_argument("--spec", required=True, help="training spec: JSON text or a JSON file")
    p.add_argument("--train", required=True, nargs="+", type=Path, metavar="F.h5")
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--theta0", required=True, type=Path, help="the dense run's init.pt (Θ0)")
    p.add_argument(
        "--previous",
        required=True,
        type=Path,
        help="previous round's final.pt (round 1: the dense model's)",
    )
    p.add_argument("--previous-mask", type=Path, help="previous round's mask.pt (rounds >= 2)")
    p.add_argument("--strategy", required=True, choices=sorted(STRATEGIES))
    how = p.add_mutually_exclusive_group()
    how.add_argument("--rate", type=float, help="fraction of the remaining weights to prune")
    how.add_argument("--target-sparsity", type=float, help="sparsity reached after --rounds")
    p.add_argument("--rounds", type=int, help="number of rounds of the schedule (T)")
    _scope_args(p)
    p.add_argument("--min-keep", type=int, default=1, help="survivors kept per tensor (1)")
    p.add_argument("--rewind", choices=("init", "step"), default="init")
    p.add_argument("--rewind-checkpoint", type=Path, help="rewind.pt for --rewind step")
    p.add_argument("--optimizer", choices=("reset", "rewind"), default="reset")
    p.add_argument("--control", choices=("random_mask", "random_reinit"))
    p.add_argument("--control-seed", type=int, default=0)
    add_teacher_args(p)
    p.add_argument("--threads", type=int, help="CPU threads (overrides the spec)")
    p.set_defaults(func=_run_round)

    d = subparsers.add_parser(
        "lottery-dense",
        help="round-0 report of the dense model (the 100 %% point of Figure 2)",
    )
    d.add_argument("--final", required=True, type=Path, help="the dense model's final.pt")
    d.add_argument("--out", required=True, type=Path, help="round report JSON to write")
    _scope_args(d)
    d.set_defaults(func=_run_dense)

    q = subparsers.add_parser("lottery-point", help="a Figure 2 point from a round + metrics")
    q.add_argument("--round-report", required=True, type=Path, help="round.json")
    q.add_argument("--metrics", required=True, type=Path, help="evaluation metrics JSON")
    q.add_argument("--out", required=True, type=Path, help="point JSON to write")
    q.add_argument("--strategy", help="override (needed for a dense round-0 report)")
    q.add_argument("--model", help="model label of the point (default: the arch)")
    q.set_defaults(func=_run_point)
