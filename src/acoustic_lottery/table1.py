"""One row of Table 1: fuse the members' prediction files, evaluate, size, and set the
paper's published figures beside ours. Also the whole table as Markdown and CSV.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from acoustic_lottery.errors import InputError
from acoustic_lottery.io import atomic_path, read_json, write_json
from acoustic_lottery.labels import super_index_map
from acoustic_lottery.paper import paper_row, paper_system

BYTES_PER_VALUE = {"float32": 4, "float16": 2, "int8": 1}
FLAGS = ("tsl", "lth", "two_stage", "mtl", "quant", "aug")


def combine_members(spec: dict, prediction_files: list[Path]):
    """Average each head's members (weighted), then two-stage fusion when asked."""
    from acoustic_lottery.evaluation.predict import read_predictions
    from acoustic_lottery.systems.ensemble import ensemble_predictions
    from acoustic_lottery.systems.fusion import fuse_predictions

    members = spec["members"]
    if len(members) != len(prediction_files):
        raise InputError(
            f"row {spec['name']}: {len(members)} members but "
            f"{len(prediction_files)} prediction files"
        )
    by_head: dict[str, list] = {"scene": [], "super": []}
    weights: dict[str, list[float]] = {"scene": [], "super": []}
    for member, path in zip(members, prediction_files):
        pred = read_predictions(path)
        if pred.task != member["head"]:
            raise InputError(
                f"{path}: holds '{pred.task}' predictions, expected '{member['head']}'"
            )
        by_head[member["head"]].append(pred)
        weights[member["head"]].append(float(member["weight"]))
    if not by_head["scene"]:
        raise InputError(f"row {spec['name']}: no 10-class (scene) member")
    scene = ensemble_predictions(by_head["scene"], weights["scene"])
    if spec["fusion"] == "two_stage":
        if not by_head["super"]:
            raise InputError(f"row {spec['name']}: two-stage fusion needs a 3-class (super) member")
        sup = ensemble_predictions(by_head["super"], weights["super"])
        return fuse_predictions(scene, sup, super_index_map())
    if by_head["super"]:
        raise InputError(f"row {spec['name']}: 3-class members given but fusion is 'none'")
    return scene


def system_size(spec: dict, size_files: list[Path]) -> dict:
    """Sum of the members' sizes by the DCASE rule (each distinct model counted once)."""
    per_value = BYTES_PER_VALUE[spec.get("size_dtype", "float32")]
    members = []
    for path in size_files:
        report = read_json(path)
        if "int8" in report:
            # A `quantize` report. The DCASE rule as the challenge applied it: every non-zero
            # value the model stores (BN included) at 1 byte. The artifact folds BN into the
            # convolutions and stores slightly fewer (`int8.bytes`, kept for reference).
            values = (report.get("float_size") or report["int8"])["nonzero"]
            report = {
                "params": report["int8"]["params"],
                "nonzero": values,
                "macs": report.get("macs"),
                "input_shape": report.get("input_shape"),
                "artifact_int8_bytes": report["int8"]["bytes"],
            }
            nbytes = values
        else:
            nbytes = report["bytes"] if per_value == 4 else report["nonzero"] * per_value
        members.append(
            {
                "model": Path(path).name.removesuffix(".json"),
                "params": report["params"],
                "nonzero": report["nonzero"],
                "bytes": nbytes,
                "kb": nbytes / 1024,
                "macs": report.get("macs"),
                "macs_input_shape": report.get("input_shape"),
            }
        )
    total_bytes = sum(m["bytes"] for m in members)
    macs = [m["macs"] for m in members]
    return {
        "members": members,
        "bytes": total_bytes,
        "kb": total_bytes / 1024,
        "nonzero": sum(m["nonzero"] for m in members),
        "macs": sum(macs) if all(v is not None for v in macs) else None,
        "dtype": spec.get("size_dtype", "float32"),
    }


def build_row(
    spec: dict,
    prediction_files: list[Path],
    size_files: list[Path],
    out_predictions: Path | None = None,
) -> dict:
    """The row JSON: our accuracy, log loss and size next to the paper's."""
    from acoustic_lottery.evaluation.metrics import evaluate_predictions
    from acoustic_lottery.evaluation.predict import write_predictions

    pred = combine_members(spec, prediction_files)
    if out_predictions is not None:
        write_predictions(out_predictions, pred)
    metrics = evaluate_predictions(pred)
    size = system_size(spec, size_files)
    if spec.get("system"):
        paper = paper_system(spec["system"]).to_dict()
        paper["index"] = None
    else:
        paper = paper_row(spec["index"]).to_dict()
    return {
        "row": spec["index"],
        "name": spec["name"],
        "system": paper["system"],
        "dataset": spec["dataset"],
        "flags": spec["flags"],
        "members": spec["members"],
        "fusion": spec["fusion"],
        "ours": {
            "accuracy": 100.0 * metrics["accuracy"],
            "log_loss": metrics["log_loss"],
            "size_kb": size["kb"],
            "macs": size["macs"],
            "seen_accuracy": 100.0 * metrics["seen"]["accuracy"],
            "unseen_accuracy": 100.0 * metrics["unseen"]["accuracy"],
        },
        "size": size,
        "metrics": metrics,
        "paper": paper,
    }


def table_frame(rows: list[dict]) -> pd.DataFrame:
    """One line per row: flags, our size/accuracy/log loss and the paper's."""
    lines = []
    for r in sorted(rows, key=lambda r: (r["row"] is None, r["row"] or 0, r["name"])):
        p, o = r["paper"], r["ours"]
        idx = r["row"] if r["row"] is not None else f"({r['name'].removeprefix('system')})"
        line = {"idx": idx, "system": r["system"]}
        line.update({f: "Y" if r["flags"].get(f) else "-" for f in FLAGS})
        line.update(
            {
                "size_kb": round(o["size_kb"], 1),
                "macs_M": round(o["macs"] / 1e6, 1) if o.get("macs") is not None else None,
                "acc": round(o["accuracy"], 1),
                "log_loss": round(o["log_loss"], 3),
                "unseen_acc": round(o["unseen_accuracy"], 1),
                "paper_size": p["size_text"],
                "paper_acc": p["accuracy"],
                "paper_log_loss": p["log_loss"],
            }
        )
        lines.append(line)
    return pd.DataFrame(lines)


def write_table(row_files: list[Path], out_md: Path, out_csv: Path) -> pd.DataFrame:
    rows = [read_json(p) for p in row_files]
    datasets = {r["dataset"] for r in rows}
    frame = table_frame(rows)
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    header = (
        f"# Table 1 reproduction on data set '{', '.join(sorted(datasets))}'\n\n"
        "Ours: size by the DCASE 2021 rule (non-zero values, KB = 1024 B), accuracy and\n"
        "multi-class log loss on the evaluation split; paper: the report's Table 1.\n\n"
    )
    with atomic_path(out_md) as tmp:
        tmp.write_text(header + frame.to_markdown(index=False) + "\n")
    return frame


def write_row(
    spec: dict,
    prediction_files: list[Path],
    size_files: list[Path],
    out: Path,
    out_predictions: Path | None = None,
) -> dict:
    row = build_row(spec, prediction_files, size_files, out_predictions)
    write_json(out, row)
    return row
