"""The report's claims as paired comparisons: B − A with a cluster-bootstrap interval.

Two halves. `comparison_pairs` (torch-free, run by the Snakefile when it loads) turns the
`comparisons` config section into concrete pairs of prediction files, marking as skipped
every pair whose rows or models this configuration does not build, so a small config
(the tests' tiny one) still yields a DAG. `write_comparisons` (the `comparisons` verb)
reads the files, takes the difference B − A in accuracy points and in log loss per pair
with its paired interval over recordings (`evaluation.bootstrap.paired_bootstrap`), and
writes results/<dataset>/comparisons.{md,csv,json}.

A pair side is one of: `row: "N"` / `system: X` (the row's fused predictions,
predictions/table1/rowN.h5), `model: M` (+ `head`, `quantized`: the model's own
predictions; a lottery chain's are its last round's), or `best_member_of: "N"` (the
10-class member of row N with the best accuracy, chosen at run time on the evaluation
clips themselves, which favours the member: a conservative test of an ensemble).
`devices: unseen | seen | all` restricts both sides to those clips.

`device_gaps` (one system each) compare the system with itself: B its accuracy on the
unseen devices s4-s6, A on the seen devices other than the dominant a (b, c, s1-s3), on
the same recordings (`evaluation.bootstrap.group_gap_bootstrap`); negative d_acc: the
unseen devices are harder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from acoustic_lottery import pipeline
from acoustic_lottery.errors import InputError
from acoustic_lottery.labels import TRAIN_DEVICES, UNSEEN_DEVICES

#: The seen devices of a device gap: every training device but the dominant a.
GAP_SEEN_DEVICES: tuple[str, ...] = tuple(d for d in TRAIN_DEVICES if d != "a")
GAP_DEVICES = "b, c, s1-s3 vs s4-s6"

__all__ = ["comparison_pairs", "pair_files", "write_comparisons"]


def _side(config: dict, results: str, side: dict, where: str) -> dict:
    """{label, files, members, select} of one side; {"missing": why} if not configured."""
    table1 = config.get("table1") or {}
    systems = config.get("systems") or {}
    models = config.get("models") or {}
    if "row" in side or "system" in side:
        section, key = ("table1", side["row"]) if "row" in side else ("systems", side["system"])
        present = table1 if section == "table1" else systems
        if key not in present:
            return {"missing": f"{section}.{key} is not in this configuration"}
        name = f"row{key}" if section == "table1" else f"system{key}"
        label = f"row {key}" if section == "table1" else f"system ({key})"
        return {
            "label": label,
            "files": [f"{results}/predictions/table1/{name}.h5"],
            "members": [label],
            "select": "only",
        }
    if "best_member_of" in side:
        key = side["best_member_of"]
        if key not in table1:
            return {"missing": f"table1.{key} is not in this configuration"}
        members = [m for m in pipeline.row_members(config, f"row{key}") if m["head"] == "scene"]
        files, labels = [], []
        for m in members:
            path = _model_file(results, m["model"], "scene", m.get("quantized", False))
            if path not in files:
                files.append(path)
                labels.append(m["model"] + (" (int8)" if m.get("quantized") else ""))
        return {
            "label": f"best member of row {key}",
            "files": files,
            "members": labels,
            "select": "best",
        }
    name = side["model"]
    if name not in models:
        return {"missing": f"models.{name} is not in this configuration"}
    heads = pipeline.heads_of(config, name)
    head = side.get("head") or heads[0]
    if head not in heads:
        raise InputError(f"config: {where}.head: model '{name}' has head(s) {heads}, not '{head}'")
    quantized = bool(side.get("quantized", False))
    label = name + (" (int8)" if quantized else "") + (f" [{head}]" if head != "scene" else "")
    return {
        "label": label,
        "files": [_model_file(results, name, head, quantized)],
        "members": [label],
        "select": "only",
    }


def _model_file(results: str, model: str, head: str, quantized: bool) -> str:
    q = "int8/" if quantized else ""
    return f"{results}/predictions/{model}/{q}{head}/evaluate.h5"


def _control_pairs(config: dict) -> list[dict]:
    """Every lottery chain of a Table 1 row or system against each of its control
    chains (final rounds).

    Controls of chains no row uses (Figure 2's, their own target) are left out:
    comparing them would pull the figure's chains into the report's target.
    """
    in_rows = {
        m["model"]
        for section in ("table1", "systems")
        for row in (config.get(section) or {}).values()
        for m in row.get("members", [])
    }
    pairs = []
    for name, m in sorted((config.get("models") or {}).items()):
        lot = m.get("lottery") if isinstance(m, dict) else None
        if not (isinstance(lot, dict) and lot.get("control") and lot.get("control_of")):
            continue
        if lot["control_of"] not in in_rows:
            continue
        chain = lot["control_of"]
        head = pipeline.heads_of(config, chain)[0]
        pairs.append(
            {
                "claim": f"the lottery ticket {chain} beats its {lot['control']} control "
                f"{name} (final rounds)",
                "a": {"model": name, "head": head},
                "b": {"model": chain, "head": head},
                "devices": "all",
            }
        )
    return sorted(pairs, key=lambda p: (p["b"]["model"], p["a"]["model"]))


def comparison_pairs(config: dict, results: str) -> list[dict]:
    """The configured comparisons (then the lottery controls) as concrete pairs.

    Each: {claim, devices, a: {label, files, members, select}, b: {...}}; a pair naming
    a row, system or model this configuration lacks gets `skipped` (why) and no files,
    so the DAG never asks for a file no rule makes. `results`: results/<dataset>.
    """
    section = config.get("comparisons") or {}
    configured = list(section.get("pairs", []))
    if section.get("controls", True):
        configured += _control_pairs(config)
    out = []
    for i, pair in enumerate(configured):
        where = f"comparisons.pairs[{i}]"
        line: dict[str, Any] = {"claim": pair["claim"], "devices": pair.get("devices", "all")}
        missing = []
        for key in ("a", "b"):
            side = _side(config, results, pair[key], f"{where}.{key}")
            if "missing" in side:
                if side["missing"] not in missing:
                    missing.append(side["missing"])
            else:
                line[key] = side
        if missing:
            line = {
                "claim": line["claim"],
                "devices": line["devices"],
                "skipped": "; ".join(missing),
            }
        out.append(line)
    for i, gap in enumerate(section.get("device_gaps", [])):
        side = _side(config, results, gap["of"], f"comparisons.device_gaps[{i}].of")
        line = {"claim": gap["claim"], "devices": GAP_DEVICES, "kind": "device_gap"}
        if "missing" in side:
            line["skipped"] = side["missing"]
        else:
            line.update(a=side, b=side)
        out.append(line)
    return out


def pair_files(pairs: Sequence[dict]) -> list[str]:
    """Every prediction file the pairs read, each once, in order (the rule's inputs)."""
    files: list[str] = []
    for pair in pairs:
        for key in ("a", "b"):
            for f in pair.get(key, {}).get("files", []):
                if f not in files:
                    files.append(f)
    return files


# ---------------------------------------------------------------------- the verb


def _device_mask(devices: np.ndarray, which: str) -> np.ndarray:
    unseen = np.isin(devices.astype(str), UNSEEN_DEVICES)
    if which == "unseen":
        return unseen
    if which == "seen":
        return ~unseen
    if which == "all":
        return np.ones(devices.shape, dtype=bool)
    raise InputError(f"comparisons: devices must be all, seen or unseen, found {which!r}")


def _pick(side: dict, read, mask_of) -> tuple[Any, str]:
    """The side's predictions (the best member's for select 'best') and its label."""
    from acoustic_lottery.evaluation.bootstrap import clip_scores

    preds = [read(f) for f in side["files"]]
    if not preds:
        raise InputError(f"comparisons: {side['label']}: no prediction files")
    if side.get("select") != "best":
        return preds[0], side["label"]
    accs = [float(clip_scores(p).correct[mask_of(p)].mean()) for p in preds]
    best = int(np.argmax(accs))  # ties: the first member
    return preds[best], f"{side['label']} ({side['members'][best]})"


def _check_pair(pa, pb, name_a: str, name_b: str) -> None:
    from acoustic_lottery.systems.fusion import check_same_clips

    check_same_clips([pa.filename, pb.filename], [name_a, name_b])
    if pa.class_names != pb.class_names:
        raise InputError(
            f"comparisons: {name_b} has classes {pb.class_names}, {name_a} has {pa.class_names}"
        )
    if not np.array_equal(pa.label, pb.label):
        i = int(np.flatnonzero(pa.label != pb.label)[0])
        raise InputError(
            f"comparisons: {name_a} and {name_b} label clip {pa.filename[i]!r} differently"
        )


def compare_pairs(
    pairs: Sequence[dict],
    predictions: Sequence[str | os.PathLike[str]],
    statistics: dict | None = None,
) -> dict[str, Any]:
    """Each pair's B − A (paired cluster bootstrap) and the table's resolution."""
    from acoustic_lottery.evaluation.bootstrap import (
        bootstrap_settings,
        clip_scores,
        group_gap_bootstrap,
        paired_bootstrap,
        recording_ids,
    )
    from acoustic_lottery.evaluation.predict import read_predictions

    settings = bootstrap_settings(statistics)
    given = {os.path.normpath(str(p)) for p in predictions}
    for f in pair_files(pairs):
        if os.path.normpath(f) not in given:
            raise InputError(
                f"comparisons: {f} is named by a pair but not given with --predictions"
            )
    cache: dict[str, Any] = {}

    def read(path: str):
        if path not in cache:
            cache[path] = read_predictions(path)
        return cache[path]

    results = []
    for pair in pairs:
        base = {"claim": pair["claim"], "devices": pair.get("devices", "all")}
        if pair.get("skipped"):
            results.append({**base, "status": "skipped", "reason": pair["skipped"]})
            continue

        if pair.get("kind") == "device_gap":
            p, label = _pick(pair["a"], read, lambda p: np.ones(p.device.shape, dtype=bool))
            devices = np.asarray(p.device).astype(str)
            stats = group_gap_bootstrap(
                clip_scores(p),
                recording_ids(p.filename, where=label),
                np.isin(devices, GAP_SEEN_DEVICES),
                np.isin(devices, UNSEEN_DEVICES),
                **settings,
            )
            results.append(
                {
                    **base,
                    "a": f"{label} on b, c, s1-s3",
                    "b": f"{label} on s4-s6",
                    "status": "ok",
                    **stats,
                }
            )
            continue

        def mask_of(p, which=base["devices"]):
            return _device_mask(p.device, which)

        pa, label_a = _pick(pair["a"], read, mask_of)
        pb, label_b = _pick(pair["b"], read, mask_of)
        _check_pair(pa, pb, label_a, label_b)
        mask = mask_of(pa)
        if not mask.any():
            results.append(
                {
                    **base,
                    "a": label_a,
                    "b": label_b,
                    "status": "skipped",
                    "reason": f"no clips of {base['devices']} devices",
                }
            )
            continue
        sa, sb = clip_scores(pa), clip_scores(pb)
        clusters = recording_ids(pa.filename, where=label_a)[mask]
        stats = paired_bootstrap(
            (sa.correct[mask], sa.nll[mask]),
            (sb.correct[mask], sb.nll[mask]),
            clusters,
            **settings,
        )
        results.append({**base, "a": label_a, "b": label_b, "status": "ok", **stats})
    done = [r for r in results if r["status"] == "ok"]
    resolution = {
        "n_comparisons": len(done),
        "accuracy_points": float(np.median([r["accuracy_diff_half_width"] for r in done]))
        if done
        else None,
        "log_loss": float(np.median([r["log_loss_diff_half_width"] for r in done]))
        if done
        else None,
    }
    return {
        "bootstrap": {**settings, "unit": "recording"},
        "comparisons": results,
        "resolution": resolution,
    }


def _ci(ci: list[float], digits: int) -> str:
    return f"[{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]"


def comparisons_frame(result: dict[str, Any]):
    """One line per computed comparison (the Markdown and CSV table)."""
    import pandas as pd

    lines = []
    for r in result["comparisons"]:
        if r["status"] != "ok":
            continue
        lines.append(
            {
                "claim": r["claim"],
                "A": r["a"],
                "B": r["b"],
                "devices": r["devices"],
                "clips": r["n_clips"],
                "recordings": r["n_recordings"],
                "acc_A": round(r["a_accuracy"], 1),
                "acc_B": round(r["b_accuracy"], 1),
                "d_acc": round(r["accuracy_diff"], 1),
                "d_acc_ci": _ci(r["accuracy_diff_ci"], 1),
                "acc_resolved": "yes" if r["accuracy_diff_excludes_zero"] else "no",
                "d_log_loss": round(r["log_loss_diff"], 3),
                "d_log_loss_ci": _ci(r["log_loss_diff_ci"], 3),
                "log_loss_resolved": "yes" if r["log_loss_diff_excludes_zero"] else "no",
            }
        )
    columns = [
        "claim", "A", "B", "devices", "clips", "recordings", "acc_A", "acc_B", "d_acc",
        "d_acc_ci", "acc_resolved", "d_log_loss", "d_log_loss_ci", "log_loss_resolved",
    ]  # fmt: skip
    return pd.DataFrame(lines, columns=columns)


def _markdown(result: dict[str, Any], frame) -> str:
    b = result["bootstrap"]
    level = f"{100 * b['level']:g} %"
    text = [
        "# Paired comparisons of the report's claims\n",
        f"Each line: system B minus system A on the same evaluation clips; d_acc in "
        f"accuracy points, d_log_loss in log loss (negative: B better), each with its "
        f"{level} paired cluster-bootstrap percentile interval ({b['n_boot']} resamples "
        "of the evaluation recordings, each with all its device clips, the same "
        "recordings for A and B; seed "
        f"{b['seed']}). *resolved*: the interval excludes 0.\n",
    ]
    if len(frame):
        text.append(frame.to_markdown(index=False) + "\n")
    else:
        text.append("No comparison could be computed in this configuration.\n")
    skipped = [r for r in result["comparisons"] if r["status"] == "skipped"]
    if skipped:
        text.append("Skipped (not built by this configuration):\n")
        text += [f"- {r['claim']}: {r['reason']}" for r in skipped]
        text.append("")
    res = result["resolution"]
    if res["n_comparisons"]:
        text.append(
            f"Smallest difference this table resolves: about {res['accuracy_points']:.1f} "
            f"accuracy points and {res['log_loss']:.3f} in log loss (the median half-width "
            f"of the {res['n_comparisons']} paired {level} intervals); smaller differences "
            "between these systems are not distinguished from 0 on this evaluation split.\n"
        )
    else:
        text.append("No paired interval, so no resolution to report.\n")
    return "\n".join(text)


def write_comparisons(
    pairs: Sequence[dict],
    predictions: Sequence[str | os.PathLike[str]],
    *,
    out_md: str | os.PathLike[str],
    out_csv: str | os.PathLike[str],
    out_json: str | os.PathLike[str],
    statistics: dict | None = None,
) -> dict[str, Any]:
    """comparisons.md (table, skipped claims, resolution), .csv (the table), .json (all)."""
    from acoustic_lottery.io import atomic_path, write_json

    result = compare_pairs(pairs, predictions, statistics)
    frame = comparisons_frame(result)
    with atomic_path(Path(out_csv)) as tmp:
        frame.to_csv(tmp, index=False)
    write_json(Path(out_json), result)
    with atomic_path(Path(out_md)) as tmp:
        tmp.write_text(_markdown(result, frame), encoding="utf-8")
    return {**result, "out_md": str(out_md)}
