"""`acoustic-lottery export-onnx | quantize-onnx | predict-onnx | compare-onnx`.

    acoustic-lottery export-onnx --model CKPT --out F.onnx [--frames T] [--bands F]
        [--opset 17] [--report R.json]
    acoustic-lottery quantize-onnx --model F.onnx --calibration FEATURES.h5
        --out F.int8.onnx [--max-clips N] [--seed S] [--activation-type quint8|qint8]
        [--per-tensor] [--calibrate-method minmax|entropy|percentile|distribution]
        [--batch-size N] [--no-preprocess] [--reduce-range] [--report R.json]
    acoustic-lottery predict-onnx --model F.onnx --features F.h5 --out P.h5
        [--head scene|super] [--out-super P3.h5] [--threads N] [--batch-size N]
    acoustic-lottery compare-onnx --model CKPT --onnx F.int8.onnx --features F.h5
        --out C.json [--tolerance 0.5] [--threads N] [--batch-size N] [--record-only]

Calibration reads only `--max-clips` clips (seeded draw) of the feature file, so a whole
training split never has to fit in memory. predict-onnx writes the same prediction files
as `predict`. compare-onnx is the issue's acceptance check: the onnxruntime int8
accuracy against the PyTorch int8 evaluation (exit code 1 when they differ by more than
--tolerance points, unless --record-only: then the report alone says it, so that a
pipeline records the comparison and goes on).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from acoustic_lottery.errors import InputError
from acoustic_lottery.io import write_json
from acoustic_lottery.quantization.onnx_export import (
    ACTIVATION_TYPES,
    CALIBRATION_METHODS,
    compare_with_torch_int8,
    export_checkpoint,
    predict_onnx,
    quantize_onnx_static,
    read_feature_rows,
    read_onnx_metadata,
)

__all__ = ["register"]


def run_export(args: argparse.Namespace) -> int:
    report = export_checkpoint(
        args.model, args.out, frames=args.frames, bands=args.bands, opset=args.opset
    )
    if args.report is not None:
        write_json(args.report, report.to_dict())
    print(
        f"wrote {args.out}: {report.file_bytes} bytes, opset {report.opset}, input "
        f"{report.input_shape}, max |onnxruntime - torch| {report.max_abs_diff:.2e}"
    )
    return 0


def run_quantize(args: argparse.Namespace) -> int:
    meta = read_onnx_metadata(args.model)
    rows = read_feature_rows(args.calibration, max_clips=args.max_clips, seed=args.seed)
    fset, mset = rows.attrs.get("feature_set"), meta.get("feature_set")
    if fset is not None and mset is not None and fset != mset:
        raise InputError(
            f"quantize-onnx: calibration features {args.calibration} are feature_set {fset!r} "
            f"but the model {args.model} was exported for {mset!r}"
        )
    report = quantize_onnx_static(
        args.model,
        args.out,
        rows.x,
        per_channel=not args.per_tensor,
        activation_type=args.activation_type,
        calibrate_method=args.calibrate_method,
        batch_size=args.batch_size,
        preprocess=not args.no_preprocess,
        reduce_range=args.reduce_range,
        source={
            "calibration": str(args.calibration),
            "split": rows.attrs.get("split"),
            "copy": rows.attrs.get("copy"),
            "max_clips": args.max_clips,
            "seed": args.seed,
        },
    )
    if args.report is not None:
        write_json(args.report, report.to_dict())
    print(
        f"wrote {args.out}: {report.file_bytes} bytes ({report.size_ratio:.3f} x float), "
        f"calibrated on {report.n_calibration} clips"
    )
    return 0


def run_predict(args: argparse.Namespace) -> int:
    if args.out_super is not None:
        head = args.head or "scene"
        if head == "super":
            raise InputError("--out-super writes the super head; --head super conflicts with it")
        out: Path | dict[str, Path] = {head: args.out, "super": args.out_super}
    elif args.head is not None:
        out = {args.head: args.out}
    else:
        out = args.out
    results = predict_onnx(
        args.model, args.features, out, threads=args.threads, batch_size=args.batch_size
    )
    for head, pred in results.items():
        print(f"{head}: {pred.n} clips, {pred.probs.shape[1]} classes")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    result = compare_with_torch_int8(
        args.model,
        args.onnx,
        args.features,
        tolerance_points=args.tolerance,
        threads=args.threads,
        batch_size=args.batch_size,
    )
    write_json(args.out, result)
    for head, r in result["heads"].items():
        print(
            f"{head}: torch int8 {r['torch_int8_accuracy']:.2f} %, onnx int8 "
            f"{r['onnx_int8_accuracy']:.2f} %, difference {r['difference_points']:+.2f} points "
            f"(n {r['n']})"
        )
    return 0 if result["within_tolerance"] or args.record_only else 1


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}") from e
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}")
    return value


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, found {text!r}") from e
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, found {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the export-onnx, quantize-onnx, predict-onnx and compare-onnx verbs."""
    p = subparsers.add_parser(
        "export-onnx",
        help="checkpoint -> self-contained float ONNX file",
        description="Export a checkpoint to ONNX (dynamic batch and time axes), checked "
        "against torch with onnxruntime.",
    )
    p.add_argument("--model", required=True, type=Path, metavar="CKPT")
    p.add_argument("--out", required=True, type=Path, metavar="F.onnx")
    p.add_argument(
        "--frames",
        type=_positive_int,
        help="time frames of the tracing input (default: a 10 s clip, 423 lmfb / 500 baseline)",
    )
    p.add_argument("--bands", type=_positive_int, help="mel bands (default: from the feature set)")
    p.add_argument("--opset", type=_positive_int, default=17)
    p.add_argument("--report", type=Path, metavar="R.json", help="also write the export report")
    p.set_defaults(func=run_export)

    p = subparsers.add_parser(
        "quantize-onnx",
        help="float ONNX -> static int8 (QDQ) ONNX",
        description="onnxruntime static quantization: per-channel symmetric int8 weights, "
        "activations calibrated on clips of a feature file.",
    )
    p.add_argument("--model", required=True, type=Path, metavar="F.onnx")
    p.add_argument("--calibration", required=True, type=Path, metavar="FEATURES.h5")
    p.add_argument("--out", required=True, type=Path, metavar="F.int8.onnx")
    p.add_argument(
        "--max-clips",
        type=_positive_int,
        default=256,
        help="calibration clips drawn from the file (default 256)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the clip draw")
    p.add_argument("--activation-type", choices=ACTIVATION_TYPES, default="quint8")
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor")
    p.add_argument("--calibrate-method", choices=CALIBRATION_METHODS, default="minmax")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="calibration batch")
    p.add_argument("--no-preprocess", action="store_true", help="skip quant_pre_process")
    p.add_argument(
        "--reduce-range",
        action="store_true",
        help="7-bit weights (for x86 CPUs without VNNI, where uint8 x int8 may saturate)",
    )
    p.add_argument("--report", type=Path, metavar="R.json", help="also write the report")
    p.set_defaults(func=run_quantize)

    p = subparsers.add_parser(
        "predict-onnx",
        help="ONNX model + features -> prediction file(s)",
        description="Run an exported (float or int8) model with onnxruntime on the CPU.",
    )
    p.add_argument("--model", required=True, type=Path, metavar="F.onnx")
    p.add_argument("--features", required=True, type=Path, metavar="F.h5")
    p.add_argument("--out", required=True, type=Path, metavar="P.h5")
    p.add_argument("--head", choices=("scene", "super"), help="head written to --out (MTL)")
    p.add_argument("--out-super", type=Path, metavar="P3.h5", help="MTL: the super head")
    p.add_argument(
        "--threads", type=_threads, default=1, help="intra-op threads (0 = onnxruntime's choice)"
    )
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.set_defaults(func=run_predict)

    p = subparsers.add_parser(
        "compare-onnx",
        help="int8 ONNX accuracy vs the PyTorch int8 evaluation",
        description="Accuracy of an int8 ONNX model and of the checkpoint's PyTorch int8 "
        "evaluation on a feature file; exit 1 if they differ by more than --tolerance points.",
    )
    p.add_argument("--model", required=True, type=Path, metavar="CKPT")
    p.add_argument("--onnx", required=True, type=Path, metavar="F.int8.onnx")
    p.add_argument("--features", required=True, type=Path, metavar="F.h5")
    p.add_argument("--out", required=True, type=Path, metavar="C.json")
    p.add_argument("--tolerance", type=float, default=0.5, help="percentage points")
    p.add_argument("--threads", type=_threads, default=1)
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument(
        "--record-only",
        action="store_true",
        help="exit 0 whatever the difference (the report's within_tolerance says it)",
    )
    p.set_defaults(func=run_compare)
