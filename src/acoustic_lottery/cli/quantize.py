"""`acoustic-lottery quantize` and `acoustic-lottery artifact-info`.

    acoustic-lottery quantize --model CKPT --out ARTIFACT [--calibration F.h5]
        [--max-clips 256] [--seed 0] [--batch-size 32] [--float-dtype float32|float16]
        [--report R.json]
    acoustic-lottery artifact-info --model ARTIFACT [--out R.json]

`quantize` writes one deployable int8 artifact (BN folded, per-channel symmetric int8
weights, dynamic int8 activations; pruned weights stay exactly 0) with the feature
configuration of its model, and prints the DCASE size of the quantized model next to the
artifact's bytes on disk. `predict --model ARTIFACT` (features or wav clips) runs it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from acoustic_lottery.errors import InputError
from acoustic_lottery.io import read_json, write_json
from acoustic_lottery.quantization.artifact import inspect_artifact
from acoustic_lottery.quantization.deploy import quantize_checkpoint, size_summary

__all__ = ["register", "size_lines"]


def size_lines(size: dict[str, Any]) -> list[str]:
    """Human-readable lines of a `deploy.size_summary` (printed by both verbs)."""
    b = size["breakdown"]
    return [
        f"DCASE size (int8 model): {size['dcase_kb']:.2f} KB ({size['dcase_bytes']} bytes)",
        f"artifact on disk: {size['file_bytes']} bytes ({size['file_kb']:.2f} KB), "
        f"{size['ratio']:.3f} x DCASE",
        f"  fixed header + manifest {size['fixed_bytes']} B; payload {size['payload_bytes']} B "
        f"= values {b.get('values', 0)} + masks {b.get('masks', 0)} + scales "
        f"{b.get('scales', 0)} ({size['payload_ratio']:.3f} x DCASE)",
        f"  bound ({size['bound']}): {'ok' if size['within_bound'] else 'EXCEEDED'}",
    ]


def run_quantize(args: argparse.Namespace) -> int:
    report = quantize_checkpoint(
        args.model,
        args.out,
        calibration=args.calibration,
        max_clips=args.max_clips,
        seed=args.seed,
        batch_size=args.batch_size,
        float_dtype=args.float_dtype,
    )
    print(f"wrote {args.out}")
    mask = report["mask"]
    if mask.get("present"):
        print(f"mask: {mask['kept']} of {mask['values']} weights kept ({mask['sparsity']:.2%})")
    print(
        f"float model {report['float_dcase_kb']:.2f} KB; int8 sparsity "
        f"{report['int8']['sparsity']:.2%}"
    )
    for line in size_lines(report["size"]):
        print(line)
    cal = report["calibration"]
    if cal is not None:
        for head, h in cal["heads"].items():
            acc = ""
            if "float_accuracy" in h:
                acc = f", accuracy float {h['float_accuracy']:.4f} int8 {h['int8_accuracy']:.4f}"
            print(f"check {head}: {cal['n']} clips, top-1 agreement {h['agreement']:.4f}{acc}")
    if args.float_size is not None:  # MACs are counted on the float model
        if not args.float_size.is_file():
            raise InputError(f"--float-size {args.float_size}: no such file")
        float_size = read_json(args.float_size)
        report["macs"] = float_size.get("macs")
        report["input_shape"] = float_size.get("input_shape")
        report["float_size"] = {k: float_size.get(k) for k in ("params", "nonzero", "bytes")}
    if args.report is not None:
        write_json(args.report, report)
    return 0


def run_info(args: argparse.Namespace) -> int:
    info = inspect_artifact(args.model)
    size = size_summary(info)
    manifest = info["manifest"]
    system = manifest.get("system", {})
    print(f"{args.model}: system {system.get('name')!r}, members {len(system.get('members', []))}")
    for name, m in manifest.get("models", {}).items():
        feats = (m.get("meta") or {}).get("features") or {}
        print(
            f"  model {name}: arch {(m.get('arch') or {}).get('arch')}, activations "
            f"{m.get('activations')}, features {feats.get('feature_set')} at "
            f"{feats.get('sample_rate')} Hz"
        )
    for line in size_lines(size):
        print(line)
    if args.out is not None:
        write_json(args.out, {"path": str(args.model), "size": size, "manifest": manifest})
    return 0


def _pairs(values: list[str] | None, option: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise InputError(f"{option}: expected MODEL=PATH, found {value!r}")
        if name in out:
            raise InputError(f"{option}: model {name!r} given twice")
        out[name] = Path(path)
    return out


def run_export_system(args: argparse.Namespace) -> int:
    import json

    from acoustic_lottery.io import write_json
    from acoustic_lottery.quantization.system_export import export_system

    try:
        spec = json.loads(args.spec)
    except json.JSONDecodeError as e:
        raise InputError(f"--spec: not valid JSON: {e}") from e
    if not isinstance(spec, dict):
        raise InputError(f"--spec: expected a JSON object, found {spec!r}")
    report = export_system(
        spec,
        args.out,
        int8=_pairs(args.int8, "--int8"),
        floats=_pairs(args.float, "--float"),
        features=_pairs(args.features, "--features"),
    )
    info = report["artifact"]
    print(
        f"export-system {report['system']}: {len(report['members'])} members, fusion "
        f"{report['fusion']}; DCASE size {report['size_kb']:.1f} KB, file "
        f"{info['file_bytes']} B -> {args.out}"
    )
    if args.report is not None:
        write_json(args.report, report)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `quantize`, `artifact-info` and `export-system` verbs."""
    p = subparsers.add_parser(
        "quantize",
        help="float checkpoint -> deployable int8 artifact",
        description="Fold BN, quantize every conv / linear weight to per-channel int8 "
        "(pruned weights stay 0) and write one artifact file with the feature "
        "configuration; print its DCASE size and bytes on disk.",
    )
    p.add_argument("--model", required=True, type=Path, metavar="CKPT")
    p.add_argument("--out", required=True, type=Path, metavar="ARTIFACT")
    p.add_argument(
        "--calibration",
        type=Path,
        metavar="F.h5",
        help="feature file of the model's features: its feature settings are stored in the "
        "artifact and float vs int8 is checked on --max-clips of its clips "
        "(default: the published settings of the checkpoint's feature set, no check)",
    )
    p.add_argument("--max-clips", type=int, default=256, help="clips of the check (default 256)")
    p.add_argument("--seed", type=int, default=0, help="draw of the checked clips")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--float-dtype",
        choices=("float32", "float16"),
        default="float32",
        help="storage of float tensors that are not int8-layer biases (default float32)",
    )
    p.add_argument("--report", type=Path, metavar="R.json", help="write the size report here")
    p.add_argument(
        "--float-size",
        type=Path,
        metavar="SIZE.json",
        help="the float model's `size` report: its MACs are copied into --report",
    )
    p.set_defaults(func=run_quantize)

    i = subparsers.add_parser(
        "artifact-info",
        help="size breakdown and manifest of an artifact",
        description="Check an artifact (checksums, tensor table) without building its models "
        "and print its DCASE size next to its bytes on disk.",
    )
    i.add_argument("--model", required=True, type=Path, metavar="ARTIFACT")
    i.add_argument("--out", type=Path, metavar="R.json", help="write the report as JSON")
    i.set_defaults(func=run_info)

    e = subparsers.add_parser(
        "export-system",
        help="a whole system (members, fusion, weights, class names) as one artifact",
        description="Write a Table 1 row or submitted system as one artifact that "
        "`predict` runs on a feature file or on WAV clips: int8 members from their int8 "
        "artifacts, float members from their checkpoints, the fusion and score weights "
        "from --spec; print its DCASE size.",
    )
    e.add_argument("--spec", required=True, help="the row spec as JSON (from the workflow)")
    e.add_argument("--int8", nargs="*", metavar="MODEL=ARTIFACT", help="int8 members")
    e.add_argument("--float", nargs="*", metavar="MODEL=CKPT", help="float members")
    e.add_argument(
        "--features",
        nargs="*",
        metavar="MODEL=F.h5",
        help="a float member's feature file: its settings are stored for WAV input",
    )
    e.add_argument("--out", required=True, type=Path, metavar="SYSTEM.alot")
    e.add_argument("--report", type=Path, metavar="R.json", help="write the size report here")
    e.set_defaults(func=run_export_system)
