"""`acoustic-lottery train`: one model directory from a spec and feature files.

    acoustic-lottery train --spec JSON --train F.h5 [F2.h5 ...] --out-dir DIR
        [--teacher HEAD=CKPT ...] [--teacher-fusion CKPT] [--mask MASK.pt]
        [--init-state CKPT [--late-rewind]] [--threads N]

Rerunning the same command after an interruption resumes from DIR/checkpoint.pt.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from acoustic_lottery.errors import InputError
from acoustic_lottery.models.checkpoint import describe_content, load_checkpoint
from acoustic_lottery.training.spec import TrainSpec
from acoustic_lottery.training.trainer import train

__all__ = [
    "add_teacher_args",
    "load_mask_file",
    "parse_spec_arg",
    "parse_teacher_fusion",
    "parse_teachers",
    "register",
]


def parse_spec_arg(value: str) -> TrainSpec:
    """--spec is JSON text (starting with '{') or the path of a JSON file."""
    text, source = value, "--spec"
    if not value.lstrip().startswith("{"):
        path = Path(value)
        if not path.is_file():
            raise InputError(f"--spec {value!r}: neither JSON text nor an existing JSON file")
        text, source = path.read_text(encoding="utf-8"), str(path)
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{source}: not valid JSON: {e}") from e
    return TrainSpec.from_dict(d, source=source)


def parse_teachers(values: list[str]) -> dict[str, Path]:
    """HEAD=CKPT pairs -> {head: path}; each head at most once, each file a checkpoint."""
    out: dict[str, Path] = {}
    for v in values:
        head, sep, path = v.partition("=")
        if not sep or not head or not path:
            raise InputError(
                f"--teacher {v!r}: expected HEAD=CKPT, e.g. scene=models/fcnn/final.pt"
            )
        if head not in ("scene", "super"):
            raise InputError(f"--teacher {v!r}: head must be 'scene' or 'super', found {head!r}")
        if head in out:
            raise InputError(f"--teacher: head {head!r} given twice")
        if not Path(path).is_file():
            raise InputError(f"--teacher {v!r}: no such file {path}")
        try:  # before any training data is read: a wrong file fails at once
            load_checkpoint(path)
        except InputError as e:
            raise InputError(f"--teacher {v!r}: {e}") from e
        out[head] = Path(path)
    return out


def parse_teacher_fusion(value: Path | None, teachers: dict[str, Path]) -> Path | None:
    """--teacher-fusion CKPT: a 3-class model fused two-stage into the scene teacher.

    Checked before any training data is read: the file must be a checkpoint with a
    'super' head, and a scene teacher (--teacher scene=CKPT) must be there to fuse into.
    """
    if value is None:
        return None
    from acoustic_lottery.models.heads import resolve_heads

    path = Path(value)
    if not path.is_file():
        raise InputError(f"--teacher-fusion {path}: no such file")
    try:
        ck = load_checkpoint(path)
        heads = resolve_heads(ck["task"], ck["n_classes"])
    except InputError as e:
        raise InputError(f"--teacher-fusion {path}: {e}") from e
    if "super" not in dict(heads):
        raise InputError(
            f"--teacher-fusion {path}: the model has heads {heads} (task {ck['task']!r}); "
            "expected a 3-class model with a 'super' head (task super or mtl)"
        )
    if "scene" not in teachers:
        raise InputError(
            f"--teacher-fusion {path}: fuses into the scene teacher's probabilities, but no "
            "scene teacher was given (--teacher scene=CKPT)"
        )
    return path


def add_teacher_args(p: argparse.ArgumentParser) -> None:
    """--teacher HEAD=CKPT (repeatable) and --teacher-fusion CKPT, shared by the verbs."""
    p.add_argument(
        "--teacher",
        action="append",
        default=[],
        metavar="HEAD=CKPT",
        help="teacher checkpoint for a head (needs 'kd' in the spec); repeatable",
    )
    p.add_argument(
        "--teacher-fusion",
        type=Path,
        metavar="CKPT",
        help="3-class model fused two-stage into the scene teacher (P10 * P3[:, map], "
        "renormalised: row 1's two-stage FCNN as the teacher)",
    )


def load_mask_file(path: Path) -> dict[str, torch.Tensor]:
    """A dict parameter name -> bool tensor saved by torch.save (or a checkpoint's 'mask')."""
    if not path.is_file():
        raise InputError(f"--mask {path}: no such file")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types on foreign bytes
        with open(path, "rb") as fh:
            hint = describe_content(fh.read(512))
        if hint is None:
            hint = f"{type(e).__name__}: {' '.join(str(e).split())[:120]}"
        raise InputError(
            f"--mask {path}: not a torch file of tensors (expected a dict parameter name -> "
            f"bool tensor saved by torch.save): {hint}"
        ) from e
    if isinstance(obj, dict) and "format" in obj and "mask" in obj:
        obj = obj["mask"]
    if not isinstance(obj, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise InputError(
            f"--mask {path}: expected a dict parameter name -> bool tensor, found "
            f"{type(obj).__name__}"
        )
    return obj


def run_train(args: argparse.Namespace) -> int:
    spec = parse_spec_arg(args.spec)
    if args.threads is not None:
        spec = spec.replace(threads=args.threads)
    teachers = parse_teachers(args.teacher)
    fusion = parse_teacher_fusion(args.teacher_fusion, teachers)
    masks = load_mask_file(args.mask) if args.mask is not None else None
    init_state = None
    start_step, optimizer_state = 0, None
    if args.init_state is not None:
        ck = load_checkpoint(args.init_state)
        init_state = ck["state_dict"]
        if args.late_rewind:
            if "optimizer" not in ck:
                raise InputError(
                    f"--init-state {args.init_state}: --late-rewind needs a checkpoint with an "
                    "optimizer state (a rewind.pt), this one has none"
                )
            start_step, optimizer_state = int(ck["global_step"]), ck["optimizer"]
    elif args.late_rewind:
        raise InputError("--late-rewind needs --init-state")
    for f in args.train:
        if not f.is_file():
            raise InputError(f"--train {f}: no such file")
    summary = train(
        spec,
        args.train,
        args.out_dir,
        teachers=teachers or None,
        teacher_fusion=fusion,
        masks=masks,
        init_state=init_state,
        start_step=start_step,
        optimizer_state=optimizer_state,
    )
    print(json.dumps(summary, sort_keys=True))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` verb."""
    p = subparsers.add_parser(
        "train",
        help="train one model (resumable)",
        description="Train a model; writes init.pt, checkpoint.pt, final.pt and history.csv "
        "in --out-dir. Rerun the same command to resume an interrupted run.",
    )
    p.add_argument("--spec", required=True, help="training spec: JSON text or a JSON file")
    p.add_argument(
        "--train",
        required=True,
        nargs="+",
        type=Path,
        metavar="F.h5",
        help="training feature files (concatenated)",
    )
    p.add_argument("--out-dir", required=True, type=Path, help="model directory")
    add_teacher_args(p)
    p.add_argument("--mask", type=Path, help="torch file of a dict parameter -> bool mask")
    p.add_argument(
        "--init-state",
        type=Path,
        metavar="CKPT",
        help="start from this checkpoint's weights instead of the seeded init",
    )
    p.add_argument(
        "--late-rewind",
        action="store_true",
        help="with --init-state: also continue from its global step and optimizer",
    )
    p.add_argument("--threads", type=int, help="CPU threads (overrides the spec)")
    p.set_defaults(func=run_train)
