"""Rep-Mobile / DCASE 2024 verbs: fold a model, make the train subsets, check complexity.

    acoustic-lottery reparameterize --model final.pt --out deploy.pt
    acoustic-lottery subsets --split-csv ROOT/evaluation_setup/fold1_train.csv --root ROOT \
        --fractions 5 10 25 50 100 --seed 0 --out-dir splits/
    acoustic-lottery complexity --model deploy.pt --frames 44 --out complexity.json

`reparameterize` refuses to write a folded checkpoint whose outputs differ from the
training form's by 1e-4 or more on a random batch (nor one that does not reload into the
same outputs), and `complexity` fails (exit 2, no JSON) when the DCASE 2024 limits are
exceeded, so a pipeline cannot go on with a model that breaks them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from acoustic_lottery.data import tau
from acoustic_lottery.data.subsets import (
    DCASE2024_FRACTIONS,
    nested_subsets,
    subset_summary,
    write_subsets,
)
from acoustic_lottery.errors import InputError
from acoustic_lottery.io import write_json
from acoustic_lottery.models.checkpoint import load_checkpoint, load_model, save_checkpoint
from acoustic_lottery.models.repmobile import (
    DEPLOY_ARCH,
    TRAIN_ARCH,
    block_structure,
    max_output_diff,
    reparameterize,
)
from acoustic_lottery.models.size import DTYPE_CHOICES
from acoustic_lottery.systems.complexity import (
    MAX_MACS,
    MAX_PARAM_BYTES,
    ONE_SECOND_INPUT,
    check_complexity,
)

log = logging.getLogger(__name__)

#: Checkpoint entries that describe training state of the multi-branch form; they do not
#: apply to the folded model and are dropped from its checkpoint.
TRAINING_STATE_KEYS: tuple[str, ...] = ("optimizer", "scheduler", "rng", "mask")
_BANDS, _FRAMES = ONE_SECOND_INPUT[1], ONE_SECOND_INPUT[2]


def register(subparsers: argparse._SubParsersAction) -> None:
    r = subparsers.add_parser(
        "reparameterize",
        help="fold a Rep-Mobile training checkpoint into its one-conv-per-block form",
        description=(
            "Load a trained 'repmobile' checkpoint, fold every multi-branch block into one "
            "conv with a bias (BN running statistics), check the outputs on a random batch "
            "(max |diff| < --tol) and write a 'repmobile_deploy' checkpoint."
        ),
    )
    r.add_argument("--model", required=True, help="training-form checkpoint (arch repmobile)")
    r.add_argument("--out", required=True, help="inference-form checkpoint to write")
    r.add_argument("--frames", type=int, default=_FRAMES, help="frames of the check batch")
    r.add_argument("--bands", type=int, default=_BANDS, help="mel bands of the check batch")
    r.add_argument("--batch", type=int, default=4, help="clips in the check batch")
    r.add_argument("--seed", type=int, default=0, help="seed of the check batch")
    r.add_argument("--tol", type=float, default=1e-4, help="max allowed |output difference|")
    r.set_defaults(func=run_reparameterize)

    s = subparsers.add_parser(
        "subsets",
        help="nested DCASE 2024 train subsets (split5.csv ... split100.csv)",
        description=(
            "Sample nested subsets of a train split, stratified by (scene, device), keeping "
            "the clips of one 10 s recording segment together; write split<f>.csv files "
            "(TAB-separated filename, scene_label)."
        ),
    )
    s.add_argument("--split-csv", required=True, help="the train split CSV (TAB-separated)")
    s.add_argument("--root", required=True, help="data set root (audio/, evaluation_setup/)")
    s.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=list(DCASE2024_FRACTIONS),
        help="percentages of the split (default 5 10 25 50 100)",
    )
    s.add_argument("--seed", type=int, required=True, help="sampling seed")
    s.add_argument("--out-dir", required=True, help="directory for the split<f>.csv files")
    s.add_argument(
        "--missing",
        choices=tau.MISSING_POLICIES,
        default="error",
        help="listed audio files absent under --root: fail (default) or skip them",
    )
    s.add_argument("--summary", help="also write a JSON summary (counts per subset)")
    s.set_defaults(func=run_subsets)

    c = subparsers.add_parser(
        "complexity",
        help="DCASE 2024 complexity check (parameter memory, MACs of a 1 s clip)",
        description=(
            "Measure parameter memory (every stored value by dtype; zeros count unless "
            "--skip-zeros) and MACs for one clip of in_channels x --bands x --frames on the "
            "inference form (a training-form Rep-Mobile is folded first); fail when above "
            "--max-kb (decimal kB) or --max-macs, else write the JSON report."
        ),
    )
    c.add_argument("--model", required=True, help="checkpoint (.pt)")
    c.add_argument("--frames", type=int, default=_FRAMES, help="frames of a 1 s clip (44)")
    c.add_argument("--bands", type=int, default=_BANDS, help="mel bands (128)")
    c.add_argument("--out", required=True, help="JSON report to write")
    c.add_argument(
        "--max-kb", type=float, default=MAX_PARAM_BYTES / 1000, help="kB limit (1 kB = 1000 B)"
    )
    c.add_argument("--max-macs", type=float, default=float(MAX_MACS), help="MAC limit")
    c.add_argument(
        "--dtype",
        choices=tuple(DTYPE_CHOICES),
        help="count bytes as if stored in this dtype (default: as stored)",
    )
    c.add_argument("--skip-zeros", action="store_true", help="do not count zero values (2021 rule)")
    c.set_defaults(func=run_complexity)


def _positive(value: float, flag: str) -> None:
    if not value > 0:
        raise InputError(f"{flag} expects a positive number, found {value}")


def run_reparameterize(args: argparse.Namespace) -> int:
    """Fold, verify (against the training form and after reloading), write."""
    for value, flag in (
        (args.frames, "--frames"),
        (args.bands, "--bands"),
        (args.batch, "--batch"),
    ):
        _positive(value, flag)
    _positive(args.tol, "--tol")
    checkpoint = load_checkpoint(args.model)
    if checkpoint["arch"] != TRAIN_ARCH:
        hint = " (already folded)" if checkpoint["arch"] == DEPLOY_ARCH else ""
        raise InputError(
            f"reparameterize {args.model}: key 'arch' is {checkpoint['arch']!r}{hint}: expected "
            f"{TRAIN_ARCH!r} (a Rep-Mobile training-form checkpoint)"
        )
    model, meta = load_model(args.model)
    folded = reparameterize(model)
    shape = (int(checkpoint["in_channels"]), args.bands, args.frames)
    diff = max_output_diff(model, folded, shape, batch=args.batch, seed=args.seed)
    if not diff < args.tol:
        raise InputError(
            f"reparameterize {args.model}: folded model differs from the training form by "
            f"max |diff| {diff:.3g} on a random batch {[args.batch, *shape]}: expected < "
            f"{args.tol:g}; nothing written"
        )
    out_meta: dict[str, Any] = {
        k: v for k, v in meta.items() if k not in TRAINING_STATE_KEYS and k != "format"
    }
    out_meta["arch"] = DEPLOY_ARCH
    out_meta["reparameterized_from"] = str(args.model)
    out_meta["reparam_max_abs_diff"] = diff
    save_checkpoint(args.out, folded, out_meta)
    reloaded, _ = load_model(args.out)
    rediff = max_output_diff(model, reloaded, shape, batch=args.batch, seed=args.seed)
    if not rediff < args.tol:
        Path(args.out).unlink(missing_ok=True)
        raise InputError(
            f"reparameterize {args.out}: the written checkpoint reloads into a model that "
            f"differs by {rediff:.3g} (expected < {args.tol:g}); removed it"
        )
    dropped = sorted(set(meta) & set(TRAINING_STATE_KEYS))
    if dropped:
        log.info(
            "reparameterize: dropped training state %s (not valid for the folded form)", dropped
        )
    report = {
        "model": str(args.model),
        "out": str(args.out),
        "max_abs_diff": diff,
        "reload_max_abs_diff": rediff,
        "check_shape": [args.batch, *shape],
        "blocks": len(block_structure(folded)),
    }
    json.dump(report, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


def _read_split_csv(root: Path, split_csv: Path, missing: str):
    """The split table of `split_csv`, validated as `tau.read_split` validates splits.

    A CSV at one of the root's standard places goes through `tau.read_split`; another
    CSV (e.g. a DCASE 2024 train list kept elsewhere) through the same reader and checks
    (tau has no public reader for an arbitrary CSV path).
    """
    if not split_csv.is_file():
        raise InputError(f"--split-csv {split_csv}: file not found")
    for split in ("train", "evaluate"):
        standard = tau.split_csv_path(root, split)
        if standard.is_file() and standard.resolve() == split_csv.resolve():
            return tau.read_split(root, split, missing=missing)
    header, rows = tau._read_tsv(split_csv, tau.REQUIRED_COLUMNS["train"])
    return tau._build(root, split_csv, header, rows, labelled=True, meta=False, missing=missing)


def run_subsets(args: argparse.Namespace) -> int:
    """Read the split, sample the nested subsets, write split<f>.csv under --out-dir."""
    root, split_csv = Path(args.root), Path(args.split_csv)
    split = _read_split_csv(root, split_csv, args.missing)
    subsets = nested_subsets(split, args.fractions, seed=args.seed)
    paths = write_subsets(args.out_dir, subsets)
    summary = subset_summary(split, subsets)
    summary.update({"split_csv": str(split_csv), "seed": args.seed})
    if args.summary:
        write_json(args.summary, summary)
    for path, info in zip(paths, summary["subsets"].values()):
        log.info(
            "%s: %d clips (%.1f %%), %d segment groups",
            path,
            info["clips"],
            100 * info["share"],
            info["groups"],
        )
    return 0


def run_complexity(args: argparse.Namespace) -> int:
    """Load, measure on the inference form, fail above the limits, else write the JSON."""
    for value, flag in (
        (args.frames, "--frames"),
        (args.bands, "--bands"),
        (args.max_kb, "--max-kb"),
        (args.max_macs, "--max-macs"),
    ):
        _positive(value, flag)
    model, meta = load_model(args.model)
    shape = (int(meta["in_channels"]), args.bands, args.frames)
    dtype_bytes = {"*": DTYPE_CHOICES[args.dtype]} if args.dtype else None
    report = check_complexity(
        model,
        shape,
        dtype_bytes=dtype_bytes,
        count_zeros=not args.skip_zeros,
        max_bytes=int(round(args.max_kb * 1000)),
        max_macs=int(round(args.max_macs)),
        name=f"complexity {args.model}",
    )
    report.update(
        {
            "model": str(args.model),
            "arch": meta["arch"],
            "task": meta["task"],
            "width": meta["width"],
            "dtype": args.dtype or "as stored",
            "blocks": block_structure(reparameterize(model))
            if meta["arch"] == TRAIN_ARCH
            else block_structure(model),
        }
    )
    write_json(args.out, report)
    summary = {k: report[k] for k in ("params", "param_bytes", "param_kb", "macs", "ok")}
    json.dump(summary, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0
