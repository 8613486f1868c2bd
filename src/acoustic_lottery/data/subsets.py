"""Nested, stratified train subsets for the DCASE 2024 data-efficiency setting.

DCASE 2024 Task 1 trains one system per subset of the train split: about 5, 10, 25, 50
and 100 % of its clips, with these properties (official baseline README):
smaller subsets are contained in larger ones; scenes and devices keep the split's
proportions; a 10 s recording segment is either fully in a subset or not at all (TAU22
cuts every 10 s segment into ten 1 s clips, and clips of one segment are near-duplicates,
so splitting them would leak and would overstate the amount of data).

Sampling here: the unit is a *segment group* — clips sharing scene, identifier
(city-location), segment and device (for TAU20 10 s names that is one clip). Within each
stratum (scene, device) the groups are put in one seeded random order, and the subset of
fraction f takes the shortest prefix of that order whose clip count is nearest to
f · (clips of the stratum). Prefixes of one order are nested, so every smaller subset is
inside every larger one; each stratum is off its share by at most half a group (within
one clip for 1-clip groups).

Subset lists are TAB-separated files with a header `filename<TAB>scene_label` like the
TAU evaluation-setup CSVs (the DCASE 2024 split{x}.csv files have the same columns).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from acoustic_lottery.errors import InputError
from acoustic_lottery.io import atomic_path

#: The DCASE 2024 Task 1 train subsets, in percent of the train split.
DCASE2024_FRACTIONS: tuple[float, ...] = (5.0, 10.0, 25.0, 50.0, 100.0)
#: Columns of the split table the sampling needs (as `data.tau.read_split` gives them).
REQUIRED_COLUMNS: tuple[str, ...] = ("filename", "scene", "device", "identifier", "segment")
#: What clips of one 10 s recording segment share.
GROUP_COLUMNS: tuple[str, ...] = ("scene", "identifier", "segment", "device")
STRATUM_COLUMNS: tuple[str, ...] = ("scene", "device")
HEADER: tuple[str, str] = ("filename", "scene_label")
_N_SHOWN = 5


def subset_filename(fraction: float) -> str:
    """``split5.csv`` for 5 (%), ``split2.5.csv`` for 2.5: the DCASE 2024 naming."""
    text = f"{int(fraction)}" if float(fraction).is_integer() else f"{fraction:g}"
    return f"split{text}.csv"


def check_fractions(fractions: Iterable[float]) -> list[float]:
    """Sorted unique percentages in (0, 100]; InputError naming the bad value otherwise."""
    out: list[float] = []
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, int | float) or not math.isfinite(f):
            raise InputError(f"subset fractions: expected percentages in (0, 100], found {f!r}")
        if not 0 < f <= 100:
            raise InputError(f"subset fractions: expected percentages in (0, 100], found {f}")
        out.append(float(f))
    if not out:
        raise InputError("subset fractions: expected at least one percentage, found none")
    if len(set(out)) != len(out):
        raise InputError(f"subset fractions: expected distinct percentages, found {out}")
    return sorted(out)


def _check_split(split: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in split.columns]
    if missing:
        raise InputError(
            f"train split table: missing columns {missing}: expected {list(REQUIRED_COLUMNS)} "
            "(as data.tau.read_split returns them)"
        )
    if len(split) == 0:
        raise InputError("train split table: expected at least one clip, found none")
    unlabelled = split["scene"].astype(str) == ""
    if unlabelled.any():
        first = split.loc[unlabelled, "filename"].iloc[0]
        raise InputError(
            f"train split table: {int(unlabelled.sum())} clips have no scene label "
            f"(first: {first}); subsets are stratified by scene and need a labelled split"
        )
    dup = split["filename"].duplicated()
    if dup.any():
        raise InputError(
            f"train split table: filename {split.loc[dup, 'filename'].iloc[0]!r} is listed "
            "more than once"
        )


def segment_groups(split: pd.DataFrame) -> pd.Series:
    """Group label of every clip: ``scene|identifier|segment|device`` (one 10 s recording)."""
    _check_split(split)
    parts = [split[c].astype(str) for c in GROUP_COLUMNS]
    label = parts[0]
    for part in parts[1:]:
        label = label + "|" + part
    return label.rename("group")


def nested_subsets(
    split: pd.DataFrame,
    fractions: Sequence[float] = DCASE2024_FRACTIONS,
    *,
    seed: int,
) -> dict[float, pd.DataFrame]:
    """Subsets of `split` for each percentage, nested, stratified by (scene, device).

    Returns {fraction: rows of `split` (original order, index kept)}. Whole segment groups
    only (see module doc); deterministic for a given split content and seed (the order of
    the input rows does not matter).
    """
    fractions = check_fractions(fractions)
    groups = segment_groups(split)
    rng = np.random.default_rng(seed)
    chosen_groups: dict[float, set[str]] = {f: set() for f in fractions}
    table = pd.DataFrame({"group": groups.to_numpy()})
    for c in STRATUM_COLUMNS:
        table[c] = split[c].astype(str).to_numpy()
    sizes = table.groupby("group", sort=True).size()
    strata = table.drop_duplicates("group").set_index("group")[list(STRATUM_COLUMNS)]
    for _, members in strata.groupby(list(STRATUM_COLUMNS), sort=True):
        names = np.array(sorted(members.index))  # sorted first: independent of row order
        order = names[rng.permutation(len(names))]
        counts = sizes.loc[order].to_numpy()
        cumulative = np.concatenate([[0], np.cumsum(counts)])
        total = int(cumulative[-1])
        for f in fractions:
            target = f / 100.0 * total
            # nearest prefix (ties to the shorter one); monotone in f, hence nested
            k = int(np.argmin(np.abs(cumulative - target)))
            chosen_groups[f].update(order[:k].tolist())
    out: dict[float, pd.DataFrame] = {}
    for f in fractions:
        mask = groups.isin(chosen_groups[f]).to_numpy()
        out[f] = split.loc[mask]
    return out


def write_subset(path: str | os.PathLike[str], subset: pd.DataFrame) -> Path:
    """Write `filename<TAB>scene_label` rows (TAU style) atomically; returns the path."""
    for c in ("filename", "scene"):
        if c not in subset.columns:
            raise InputError(f"write_subset {path}: subset table lacks column {c!r}")
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(HEADER)
        for name, scene in zip(subset["filename"], subset["scene"]):
            writer.writerow((name, scene))
    return path


def write_subsets(
    out_dir: str | os.PathLike[str], subsets: Mapping[float, pd.DataFrame]
) -> list[Path]:
    """Write every subset as ``<out_dir>/split<f>.csv``; returns the paths (fraction order)."""
    out_dir = Path(out_dir)
    return [write_subset(out_dir / subset_filename(f), subsets[f]) for f in sorted(subsets)]


def read_subset_list(path: str | os.PathLike[str]) -> list[tuple[int, str, str | None]]:
    """(line, filename, scene_label or None) of a TAB-separated subset list.

    InputError naming the file and line for missing columns, ragged lines and duplicates.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: subset file not found (expected a TAB-separated CSV)")
    rows: list[tuple[int, str, str | None]] = []
    seen: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t")
            header = [h.strip().lstrip("\ufeff") for h in next(reader, [])]
            if "filename" not in header:
                raise InputError(
                    f"{path}: wrong columns: expected a TAB-separated header with 'filename' "
                    f"(and optionally 'scene_label'), found {header}"
                )
            col = header.index("filename")
            scene_col = header.index("scene_label") if "scene_label" in header else None
            for fields in reader:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                line = reader.line_num
                if len(fields) != len(header):
                    raise InputError(
                        f"{path}, line {line}: expected {len(header)} TAB-separated fields "
                        f"({header}), found {len(fields)}: {fields}"
                    )
                name = fields[col].strip()
                if name in seen:
                    raise InputError(
                        f"{path}, line {line}: filename {name!r} already listed on line "
                        f"{seen[name]}"
                    )
                seen[name] = line
                scene = fields[scene_col].strip() if scene_col is not None else None
                rows.append((line, name, scene))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot be read as a UTF-8 TAB-separated file: {exc}") from exc
    return rows


def read_subset(path: str | os.PathLike[str], split: pd.DataFrame) -> pd.DataFrame:
    """Rows of `split` listed in the subset file `path` (split order).

    InputError naming the file and line for: no `filename` column, a file name that is not
    in the split, a duplicate, or a `scene_label` that disagrees with the split.
    """
    path = Path(path)
    if "filename" not in split.columns:
        raise InputError(f"read_subset {path}: split table lacks column 'filename'")
    index = {name: i for i, name in enumerate(split["filename"].astype(str))}
    scenes = split["scene"].astype(str).to_numpy() if "scene" in split.columns else None
    rows: list[int] = []
    unknown: list[tuple[int, str]] = []
    for line, name, label in read_subset_list(path):
        if name not in index:
            unknown.append((line, name))
            continue
        i = index[name]
        if label is not None and scenes is not None and label != scenes[i]:
            raise InputError(
                f"{path}, line {line}: scene_label {label!r} for {name!r}, but "
                f"the split says {scenes[i]!r}"
            )
        rows.append(i)
    if unknown:
        shown = ", ".join(f"line {ln}: {n}" for ln, n in unknown[:_N_SHOWN])
        more = ", ..." if len(unknown) > _N_SHOWN else ""
        raise InputError(
            f"{path}: {len(unknown)} listed files are not in the train split "
            f"({len(split)} clips): expected a subset of it; found {shown}{more}"
        )
    return split.iloc[sorted(rows)]


def subset_summary(split: pd.DataFrame, subsets: Mapping[float, pd.DataFrame]) -> dict:
    """Clips, segment groups and per-(scene, device) counts of each subset, for logs/JSON."""
    groups = segment_groups(split)
    summary: dict = {"clips": len(split), "groups": int(groups.nunique()), "subsets": {}}
    for f in sorted(subsets):
        sub = subsets[f]
        strata = sub.groupby(list(STRATUM_COLUMNS), sort=True).size()
        summary["subsets"][subset_filename(f)] = {
            "fraction": f,
            "clips": len(sub),
            "share": len(sub) / len(split),
            "groups": int(segment_groups(sub).nunique()) if len(sub) else 0,
            "per_scene": {str(k): int(v) for k, v in sub.groupby("scene").size().items()},
            "per_device": {str(k): int(v) for k, v in sub.groupby("device").size().items()},
            "strata": len(strata),
        }
    return summary
