"""`acoustic-lottery predict` and `acoustic-lottery evaluate`.

    acoustic-lottery predict --model CKPT|ARTIFACT --features F.h5 --out P.h5
        [--head scene|super] [--out-super P3.h5] [--batch-size N] [--device cpu|auto|cuda]
    acoustic-lottery predict --model ARTIFACT CLIP.wav [CLIP.wav ...] [--json R.json]
    acoustic-lottery evaluate --predictions P.h5 --out METRICS.json [--unseen s4,s5,s6]

For an MTL model, --out receives the head named by --head (default scene) and
--out-super the super-class head. --model may be a float checkpoint or an int8 artifact
of `acoustic-lottery quantize` (told apart by the file's magic bytes, not its name): an
artifact is evaluated as the int8 model itself. With wav clips instead of --features /
--out, the artifact alone classifies them (its stored feature settings; a clip at another
sample rate is an error) and prints per clip the scene, its indoor / outdoor /
transportation group and the class probabilities.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from acoustic_lottery import labels
from acoustic_lottery.errors import InputError
from acoustic_lottery.evaluation.metrics import evaluate_predictions
from acoustic_lottery.evaluation.predict import read_predictions
from acoustic_lottery.io import write_json

__all__ = ["register"]


def _clip_paths(paths: list[Path]) -> list[Path]:
    """The clips named, a folder standing for every .wav under it (sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix.lower() == ".wav" and q.is_file())
            if not found:
                raise InputError(f"predict: folder {p} holds no .wav files")
            out += found
        else:
            out.append(p)
    return out


def _run_predict_clips(args: argparse.Namespace) -> int:
    import tempfile

    from acoustic_lottery.quantization.deploy import (
        format_clip_predictions,
        is_artifact,
        predict_clips,
    )
    from acoustic_lottery.quantization.system_export import checkpoint_artifact

    if args.features is not None or args.out is not None or args.out_super is not None:
        raise InputError("give either wav clips or --features/--out (a feature file), not both")
    clips = _clip_paths(args.clips)
    with tempfile.TemporaryDirectory(prefix="acoustic-lottery-") as tmp:
        artifact = args.model
        if not is_artifact(args.model):  # a float checkpoint: as a one-model artifact
            artifact = Path(tmp) / "model.alot"
            checkpoint_artifact(args.model, artifact, features=args.feature_settings)
        elif args.feature_settings is not None:
            raise InputError(
                f"--feature-settings: {args.model} is an artifact, which stores its own"
            )
        results = predict_clips(artifact, clips)
    print(format_clip_predictions(results))
    if args.json is not None:
        write_json(args.json, {"model": str(args.model), "clips": [r.to_dict() for r in results]})
    return 0


def run_predict(args: argparse.Namespace) -> int:
    if args.clips:
        return _run_predict_clips(args)
    if args.features is None or args.out is None:
        raise InputError("predict: --features and --out are required unless wav clips are given")
    if args.json is not None:
        raise InputError("predict: --json reports wav clips; with --features use --out")
    if args.out_super is not None:
        head = args.head or "scene"
        if head == "super":
            raise InputError("--out-super writes the super head; --head super conflicts with it")
        out: Path | dict[str, Path] = {head: args.out, "super": args.out_super}
    elif args.head is not None:
        out = {args.head: args.out}
    else:
        out = args.out
    from acoustic_lottery.evaluation.predict import predict
    from acoustic_lottery.quantization.deploy import is_artifact, predict_artifact

    run = predict_artifact if is_artifact(args.model) else predict
    results = run(args.model, args.features, out, batch_size=args.batch_size, device=args.device)
    for head, pred in results.items():
        print(f"{head}: {pred.n} clips, {pred.probs.shape[1]} classes")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    pred = read_predictions(args.predictions)
    unseen = [d for d in args.unseen.split(",") if d] if args.unseen is not None else None
    metrics = evaluate_predictions(
        pred, labels.UNSEEN_DEVICES if unseen is None else unseen, name=str(args.predictions)
    )
    metrics["predictions"] = str(args.predictions)
    write_json(args.out, metrics)
    print(
        f"accuracy {metrics['accuracy']:.4f}, log loss {metrics['log_loss']:.4f}, n {metrics['n']}"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `predict` and `evaluate` verbs."""
    p = subparsers.add_parser(
        "predict",
        help="model + features -> prediction file(s); model + wav clips/folders -> scenes",
        description="Run a checkpoint or an int8 artifact over a feature file (eval mode, "
        "full-length clips) and write class probabilities per head; or classify wav clips "
        "with an artifact alone.",
    )
    p.add_argument(
        "--model",
        required=True,
        type=Path,
        metavar="CKPT|ARTIFACT",
        help="float checkpoint or int8 artifact (detected by content)",
    )
    p.add_argument(
        "clips",
        nargs="*",
        type=Path,
        metavar="CLIP.wav",
        help="wav files or folders of them to classify with an artifact or a float "
        "checkpoint (then no --features / --out)",
    )
    p.add_argument("--features", type=Path, metavar="F.h5")
    p.add_argument("--out", type=Path, metavar="P.h5")
    p.add_argument(
        "--head",
        choices=("scene", "super"),
        help="head written to --out (needed for an MTL model; default scene)",
    )
    p.add_argument(
        "--out-super",
        type=Path,
        metavar="P3.h5",
        help="MTL model: also write the super-class head here",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu", help="cpu, auto, cuda or cuda:N")
    p.add_argument(
        "--json", type=Path, metavar="R.json", help="wav clips: also write the results as JSON"
    )
    p.add_argument(
        "--feature-settings",
        type=Path,
        metavar="F.h5",
        help="wav clips with a float checkpoint: a feature file of the model's features, "
        "whose settings turn the audio into its input (default: the published settings "
        "of its feature set); an artifact stores its own",
    )
    p.set_defaults(func=run_predict)

    e = subparsers.add_parser(
        "evaluate",
        help="prediction file -> metrics JSON",
        description="Accuracy, log loss (renormalised rows), per device / class, seen vs "
        "unseen devices and the confusion matrix of a labelled prediction file.",
    )
    e.add_argument("--predictions", required=True, type=Path, metavar="P.h5")
    e.add_argument("--out", required=True, type=Path, metavar="METRICS.json")
    e.add_argument(
        "--unseen",
        metavar="DEV,DEV",
        help=f"unseen devices (default {','.join(labels.UNSEEN_DEVICES)})",
    )
    e.set_defaults(func=run_evaluate)
