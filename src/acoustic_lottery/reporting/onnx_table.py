"""The ONNX int8 check as a Markdown table: onnxruntime's static int8 model against the
PyTorch int8 evaluation, per model, with the file sizes of both ONNX models.

The two int8 models differ on purpose: PyTorch's rounds activations per clip at run time
(dynamic range, as the report's TFLite models), onnxruntime's uses ranges calibrated on
training clips (static QDQ). The table shows how far apart that puts them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from acoustic_lottery.errors import InputError
from acoustic_lottery.io import atomic_path, read_json

__all__ = ["onnx_table"]

_COMPARE_KEYS = ("torch_int8_accuracy", "onnx_int8_accuracy", "difference_points", "n")


def _check_compare(report: Any, where: str) -> Mapping[str, Any]:
    heads = report.get("heads") if isinstance(report, Mapping) else None
    if not isinstance(heads, Mapping) or not heads:
        raise InputError(f"onnx-table: {where}: expected a compare-onnx report with 'heads'")
    for head, r in heads.items():
        missing = [k for k in _COMPARE_KEYS if not isinstance(r, Mapping) or k not in r]
        if missing:
            raise InputError(f"onnx-table: {where}: heads.{head} lacks {', '.join(missing)}")
    return report


def onnx_table(
    reports: Mapping[str, tuple[str | os.PathLike[str], str | os.PathLike[str]]],
    out_md: str | os.PathLike[str],
) -> dict[str, Any]:
    """`reports`: {model: (compare-onnx JSON, quantize-onnx JSON)}. Writes `out_md`;
    returns the rows and whether every model is within its tolerance."""
    if not reports:
        raise InputError("onnx-table: no reports given")
    rows: list[dict[str, Any]] = []
    for model, (compare_path, quantize_path) in reports.items():
        compare = _check_compare(read_json(compare_path), str(compare_path))
        quant = read_json(quantize_path)
        if not isinstance(quant, Mapping) or not {"file_bytes", "float_bytes"} <= set(quant):
            raise InputError(
                f"onnx-table: {quantize_path}: expected a quantize-onnx report with "
                "'file_bytes' and 'float_bytes'"
            )
        tol = float(compare.get("tolerance_points", 0.5))
        for head, r in compare["heads"].items():
            rows.append(
                {
                    "model": model,
                    "head": head,
                    "n": int(r["n"]),
                    "torch_int8_accuracy": float(r["torch_int8_accuracy"]),
                    "onnx_int8_accuracy": float(r["onnx_int8_accuracy"]),
                    "difference_points": float(r["difference_points"]),
                    "argmax_agreement": float(r.get("argmax_agreement", float("nan"))),
                    "tolerance_points": tol,
                    "within_tolerance": abs(float(r["difference_points"])) <= tol,
                    "float_onnx_bytes": int(quant["float_bytes"]),
                    "int8_onnx_bytes": int(quant["file_bytes"]),
                }
            )
    lines = [
        "| model | head | clips | PyTorch int8 (%) | ONNX int8 (%) | difference (points) "
        "| same top-1 (%) | float ONNX (KB) | int8 ONNX (KB) | within tolerance |",
        "|:---|:---|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['head']} | {r['n']} | {r['torch_int8_accuracy']:.2f} "
            f"| {r['onnx_int8_accuracy']:.2f} | {r['difference_points']:+.2f} "
            f"| {100 * r['argmax_agreement']:.1f} | {r['float_onnx_bytes'] / 1024:.1f} "
            f"| {r['int8_onnx_bytes'] / 1024:.1f} "
            f"| {'yes' if r['within_tolerance'] else 'no'} (±{r['tolerance_points']:g}) |"
        )
    text = (
        "onnxruntime static int8 (QDQ, per-channel weights, activations calibrated on "
        "training clips) against the PyTorch int8 evaluation (per-channel weights, "
        "activations quantized per clip), on the evaluation split.\n\n" + "\n".join(lines) + "\n"
    )
    out_md = Path(out_md)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return {
        "rows": rows,
        "within_tolerance": all(r["within_tolerance"] for r in rows),
        "out": str(out_md),
    }
