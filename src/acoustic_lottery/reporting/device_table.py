"""Per-device accuracy as a Markdown table: the device-robustness comparison of the README.

Seen devices (a, b, c, s1–s3) first, then the unseen s4–s6, then the seen / unseen / all
averages, one row per model, so the gap on unseen devices is read off one line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from acoustic_lottery import labels
from acoustic_lottery.errors import InputError
from acoustic_lottery.io import atomic_path
from acoustic_lottery.reporting.device_plots import _fraction, _per_device, read_metrics

__all__ = ["device_table"]


def device_table(
    metrics_json_paths: Mapping[str, str | os.PathLike[str]], out_md: str | os.PathLike[str]
) -> dict[str, Any]:
    """Write `out_md`; return {"devices", "rows": {name: {device: percent, ...}}}."""
    if not metrics_json_paths:
        raise InputError("device-table: no metrics files given")
    rows: dict[str, dict[str, float]] = {}
    present: set[str] = set()
    for name, path in metrics_json_paths.items():
        metrics = read_metrics(path)
        where = f"metrics file {path}"
        row = _per_device(metrics, where)
        present |= set(row)
        for group in ("seen", "unseen"):
            part = metrics.get(group)
            row[group] = _fraction(
                part.get("accuracy") if isinstance(part, Mapping) else None, where
            )
        row["all"] = _fraction(metrics.get("accuracy"), f"{where} key 'accuracy'")
        rows[name] = row
    devices = [d for d in labels.DEVICES if d in present] + sorted(present - set(labels.DEVICES))
    cols = [*devices, "seen", "unseen", "all"]
    unseen = set(labels.UNSEEN_DEVICES)
    head = ["model", *(f"{d} (unseen)" if d in unseen else d for d in cols)]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join([":---", *["---:"] * len(cols)]) + "|",
    ]
    for name, row in rows.items():
        cells = [f"{row[c]:.1f}" if row.get(c) == row.get(c) else "–" for c in cols]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    text = "Accuracy (%) per device on the evaluation split.\n\n" + "\n".join(lines) + "\n"
    out_md = Path(out_md)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return {"devices": devices, "rows": rows, "out": str(out_md)}
