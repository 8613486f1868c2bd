"""One row of Table 1: fuse the members' prediction files, evaluate, size, and set the
paper's published figures beside ours. Also the whole table as Markdown and CSV.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from acoustic_lottery.errors import InputError
from acoustic_lottery.faults import failpoint
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
        # BN folded into the convolutions (beside the rule's size: the report's pruned sizes
        # count weights only). A float report's is at 4 bytes a value; an int8 report's is
        # its artifact's, already at 1 byte.
        folded = report.get("size_kb_bn_folded")
        if folded is not None and "int8" not in report:
            folded = folded * per_value / 4
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
                "kb_bn_folded": folded,
                "macs": report.get("macs"),
                "macs_input_shape": report.get("input_shape"),
            }
        )
    total_bytes = sum(m["bytes"] for m in members)
    macs = [m["macs"] for m in members]
    folded_kb = [m["kb_bn_folded"] for m in members]
    return {
        "members": members,
        "bytes": total_bytes,
        "kb": total_bytes / 1024,
        "kb_bn_folded": sum(folded_kb) if all(v is not None for v in folded_kb) else None,
        "nonzero": sum(m["nonzero"] for m in members),
        "macs": sum(macs) if all(v is not None for v in macs) else None,
        "dtype": spec.get("size_dtype", "float32"),
    }


def row_uncertainty(pred, statistics: dict | None = None) -> dict:
    """95 % (`level`) cluster-bootstrap intervals of a row's predictions over recordings.

    Keys: accuracy_ci and log_loss_ci [lo, hi], unseen_accuracy_ci (when the split has
    unseen-device clips), n_clips, n_recordings, bootstrap {n_boot, seed, level, unit}.
    """
    import numpy as np

    from acoustic_lottery.evaluation.bootstrap import (
        ClipScores,
        bootstrap_settings,
        clip_scores,
        cluster_bootstrap,
        recording_ids,
    )
    from acoustic_lottery.labels import UNSEEN_DEVICES

    settings = bootstrap_settings(statistics)
    scores = clip_scores(pred)
    clusters = recording_ids(pred.filename, where=f"row predictions ({pred.task})")
    overall = cluster_bootstrap(scores, clusters, **settings)
    out = {
        "accuracy_ci": overall["accuracy_ci"],
        "log_loss_ci": overall["log_loss_ci"],
    }
    unseen = np.isin(pred.device.astype(str), UNSEEN_DEVICES)
    if unseen.any():
        sub = ClipScores(scores.correct[unseen], scores.nll[unseen])
        out["unseen_accuracy_ci"] = cluster_bootstrap(sub, clusters[unseen], **settings)[
            "accuracy_ci"
        ]
    out.update(
        n_clips=overall["n_clips"],
        n_recordings=overall["n_recordings"],
        bootstrap=overall["bootstrap"],
    )
    return out


def build_row(
    spec: dict,
    prediction_files: list[Path],
    size_files: list[Path],
    out_predictions: Path | None = None,
    statistics: dict | None = None,
) -> dict:
    """The row JSON: our accuracy, log loss and size next to the paper's; accuracy and
    log loss with their cluster-bootstrap intervals (`statistics`: n_boot, seed, level)."""
    from acoustic_lottery.evaluation.metrics import evaluate_predictions
    from acoustic_lottery.evaluation.predict import write_predictions

    pred = combine_members(spec, prediction_files)
    if out_predictions is not None:
        write_predictions(out_predictions, pred)
    metrics = evaluate_predictions(pred)
    uncertainty = row_uncertainty(pred, statistics)
    size = system_size(spec, size_files)
    if spec.get("system"):
        paper = paper_system(spec["system"]).to_dict()
        paper["index"] = None
    elif spec.get("variant"):
        # Our addition beside the report's row (e.g. a 90 % ticket): the report has no
        # figures for it, only the row's system name.
        paper = {
            **paper_row(spec["index"]).to_dict(),
            "size_kb": None,
            "size_text": None,
            "accuracy": None,
            "log_loss": None,
        }
    else:
        paper = paper_row(spec["index"]).to_dict()
    return {
        "row": spec["index"],
        "variant": spec.get("variant", ""),
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
            "size_kb_bn_folded": size["kb_bn_folded"],
            "macs": size["macs"],
            "seen_accuracy": 100.0 * metrics["seen"]["accuracy"],
            "unseen_accuracy": 100.0 * metrics["unseen"]["accuracy"],
            **uncertainty,
        },
        "size": size,
        "metrics": metrics,
        "paper": paper,
    }


def _format_ci(ci: list[float] | None, digits: int) -> str | None:
    """`lo–hi` (en dash) at the precision of the point value; None for a row without one."""
    if not ci:
        return None
    return f"{ci[0]:.{digits}f}–{ci[1]:.{digits}f}"


def _interval_note(rows: list[dict]) -> str:
    """The header sentence on the intervals, from the rows' own bootstrap settings."""
    boots = [r["ours"]["bootstrap"] for r in rows if r["ours"].get("bootstrap")]
    if not boots:
        return "No row has bootstrap intervals (rows written before they existed).\n\n"
    levels = sorted({b["level"] for b in boots})
    n_boot = sorted({b["n_boot"] for b in boots})
    recordings = sorted({r["ours"]["n_recordings"] for r in rows if r["ours"].get("bootstrap")})
    clips = sorted({r["ours"]["n_clips"] for r in rows if r["ours"].get("bootstrap")})

    def joined(values: list) -> str:
        return " / ".join(str(v) for v in values)

    return (
        f"acc_ci, log_loss_ci: {joined([f'{100 * v:g} %' for v in levels])} "
        "cluster-bootstrap percentile "
        f"intervals over recordings ({joined(n_boot)} resamples of the {joined(recordings)} "
        f"evaluation recordings, each with all its device clips; {joined(clips)} clips). "
        "Clips of one recording share its content, so recordings, not clips, are the "
        "independent unit; comparisons.md gives paired intervals of the report's claims.\n\n"
    )


def table_frame(rows: list[dict]) -> pd.DataFrame:
    """One line per row: flags, our size/accuracy (with its interval)/log loss (with its
    interval) and the paper's."""
    lines = []

    def order(r: dict) -> tuple:
        return (r["row"] is None, r["row"] or 0, r.get("variant", ""), r["name"])

    for r in sorted(rows, key=order):
        p, o = r["paper"], r["ours"]
        if r["row"] is None:
            idx = f"({r['name'].removeprefix('system')})"
        else:
            idx = f"{r['row']}{r.get('variant', '')}"
        line = {"idx": idx, "system": r["system"]}
        line.update({f: "Y" if r["flags"].get(f) else "-" for f in FLAGS})
        line.update(
            {
                "size_kb": round(o["size_kb"], 1),
                "bn_folded_kb": (
                    round(o["size_kb_bn_folded"], 1)
                    if o.get("size_kb_bn_folded") is not None
                    else None
                ),
                "macs_M": round(o["macs"] / 1e6, 1) if o.get("macs") is not None else None,
                "acc": round(o["accuracy"], 1),
                "acc_ci": _format_ci(o.get("accuracy_ci"), 1),
                "log_loss": round(o["log_loss"], 3),
                "log_loss_ci": _format_ci(o.get("log_loss_ci"), 3),
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
        "Ours: size by the DCASE 2021 rule (non-zero values, BN included, KB = 1024 B),\n"
        "bn_folded_kb the same after folding BN into the convolutions' biases (the report's\n"
        "pruned sizes count the weights alone), accuracy and multi-class log loss on the\n"
        "evaluation split; paper: the report's Table 1.\n\n" + _interval_note(rows)
    )
    with atomic_path(out_md) as tmp:
        tmp.write_text(header + frame.to_markdown(index=False) + "\n")
        failpoint("table.write")
    return frame


def row_summary(row: dict) -> dict[str, float]:
    """The few figures of a row that `dvc metrics show` / `dvc exp show` display: flat
    keys, rounded as Table 1 prints them, intervals as _lo/_hi when the row has them (the
    full row JSON holds ~110 values, thousands of columns across a table)."""
    o = row["ours"]
    out: dict[str, float] = {"acc": round(float(o["accuracy"]), 2)}
    for name, key, digits in (
        ("acc", "accuracy_ci", 2),
        ("log_loss", "log_loss_ci", 4),
        ("unseen_acc", "unseen_accuracy_ci", 2),
    ):
        if name != "acc":
            out[name] = round(float(o[key.removesuffix("_ci")]), digits)
        ci = o.get(key)
        if ci is not None:
            out[f"{name}_lo"], out[f"{name}_hi"] = (round(float(v), digits) for v in ci)
    out["size_kb"] = round(float(o["size_kb"]), 1)
    if o.get("macs") is not None:
        out["macs_M"] = round(float(o["macs"]) / 1e6, 1)
    return out


def write_row(
    spec: dict,
    prediction_files: list[Path],
    size_files: list[Path],
    out: Path,
    out_predictions: Path | None = None,
    statistics: dict | None = None,
    out_summary: Path | None = None,
) -> dict:
    """Build a row; write it (and its `row_summary` when `out_summary` is given)."""
    row = build_row(spec, prediction_files, size_files, out_predictions, statistics)
    write_json(out, row)
    if out_summary is not None:
        write_json(out_summary, row_summary(row))
    return row
