"""`acoustic-lottery probe`: how hard a data set is, per device group, in seconds.

    acoustic-lottery probe --train results/synthetic/features/lmfb/train/orig.h5
        --evaluate results/synthetic/features/lmfb/evaluate/orig.h5 [--out probe.json]
        [--task scene|super] [--l2 0.001] [--channel 0]

A standardised multinomial logistic regression (L2-regularised, deterministic) on the
per-clip mean and standard deviation over time of every mel band, fitted on the
training split; prints its accuracy on the evaluation split for device a, the seen
devices (b, c, s1-s3), the unseen ones (s4-s6) and all, and writes it as JSON
(acoustic_lottery/probe.py; docs/synthetic_dataset.md uses it to calibrate the
embedded data set).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from acoustic_lottery.errors import InputError


def _labels(features: Any, task: str, path: str) -> Any:
    labels = features.label10 if task == "scene" else features.label3
    if len(labels) == 0:
        raise InputError(f"{path}: no clips")
    if (labels < 0).any():
        raise InputError(f"{path}: unlabelled clips (label -1): the probe needs labels")
    return labels


def run_probe(args: argparse.Namespace) -> int:
    from acoustic_lottery.features.store import read_features
    from acoustic_lottery.io import write_json
    from acoustic_lottery.labels import SCENES, SUPER_CLASSES
    from acoustic_lottery.probe import clip_statistics, probe, probe_table

    if not args.l2 > 0:
        raise InputError(f"--l2: expected a positive number, got {args.l2}")
    train = read_features(args.train)
    evaluate = read_features(args.evaluate)
    n_classes = len(SCENES) if args.task == "scene" else len(SUPER_CLASSES)
    report = probe(
        clip_statistics(train.x, args.channel),
        _labels(train, args.task, args.train),
        clip_statistics(evaluate.x, args.channel),
        _labels(evaluate, args.task, args.evaluate),
        evaluate.device,
        n_classes,
        l2=args.l2,
    )
    report.update(train_file=str(args.train), evaluate_file=str(args.evaluate), task=args.task)
    table = probe_table(report)
    print(table)
    if args.out:
        write_json(Path(args.out), report)
    if args.out_md:
        from acoustic_lottery.io import atomic_path

        with atomic_path(Path(args.out_md)) as tmp:
            tmp.write_text(
                "# Linear probe of the data set, per device group\n\n"
                "A standardised logistic regression on the per-clip mean and std of each "
                "log-mel band, fitted on the training split (`acoustic-lottery probe`): "
                "how separable the scenes are on each device group, whatever a model "
                "learns.\n\n" + table + "\n",
                encoding="utf-8",
            )
    return 0


def register(subparsers: Any) -> None:
    """Add the `probe` verb."""
    p = subparsers.add_parser(
        "probe",
        help="linear probe of a data set's difficulty per device group (a, seen, unseen)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--train", required=True, help="training split's feature file (HDF5)")
    p.add_argument("--evaluate", required=True, help="evaluation split's feature file (HDF5)")
    p.add_argument("--out", default=None, help="write the report as JSON here")
    p.add_argument("--out-md", default=None, help="write the table as Markdown here")
    p.add_argument("--task", choices=("scene", "super"), default="scene")
    p.add_argument("--l2", type=float, default=1e-3, help="L2 weight (default 0.001)")
    p.add_argument("--channel", type=int, default=0, help="feature channel (0: the log-mel)")
    p.set_defaults(func=run_probe)
