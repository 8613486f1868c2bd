"""Reading the TAU Urban Acoustic Scenes 2020 / 2022 Mobile layout.

Everything downstream (feature extraction, spectrum correction, per-device metrics)
relies on one table per split whose device, city and location come from the file
name, so this module checks the CSVs strictly and fails with the file and line of the
first problem instead of letting a bad row surface as a shape error hours later.

Layout (see docs/CONTRACTS.md): ``<root>/audio/*.wav``, ``<root>/meta.csv`` and
``<root>/evaluation_setup/fold1_{train,evaluate,test}.csv``, all TAB-separated with a
header line.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import pandas as pd

from acoustic_lottery.errors import InputError
from acoustic_lottery.labels import DEVICES, SCENE_TO_SUPER, SCENES, SUPER_CLASSES

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "evaluate", "test")
MISSING_POLICIES: tuple[str, ...] = ("error", "skip")

#: Columns each CSV must have (extra columns are tolerated and ignored).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "train": ("filename", "scene_label"),
    "evaluate": ("filename", "scene_label"),
    "test": ("filename",),
    "meta": ("filename", "scene_label", "identifier", "source_label"),
}

#: Columns of the tables returned by `read_split` / `read_meta`, in this order.
COLUMNS: tuple[str, ...] = (
    "filename",
    "path",
    "scene",
    "label10",
    "label3",
    "device",
    "city",
    "location",
    "identifier",
    "segment",
    "subsegment",
)

_NUM = re.compile(r"^[0-9]+$")
_CITY = re.compile(r"^[a-z][a-z_]*$")
_N_SHOWN = 5


@dataclass(frozen=True)
class ClipName:
    """The fields of a TAU file name.

    TAU 2020: ``<scene>-<city>-<location>-<segment>-<device>.wav``;
    TAU 2022 (1 s clips): ``<scene>-<city>-<location>-<segment>-<subsegment>-<device>.wav``
    (``subsegment`` is "" for the 2020 form).
    """

    scene: str
    city: str
    location: str
    segment: str
    subsegment: str
    device: str

    @property
    def identifier(self) -> str:
        """``city-location``: recordings with the same identifier share a place."""
        return f"{self.city}-{self.location}"


def split_csv_path(root: Path, split: str) -> Path:
    """Path of the evaluation-setup CSV of `split` ("train", "evaluate" or "test")."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    return Path(root) / "evaluation_setup" / f"fold1_{split}.csv"


def parse_clip_name(name: str) -> ClipName:
    """Parse a TAU 2020 or 2022 file name (with or without directory); ValueError if not one.

    The error text says what was expected so callers can add file and line.
    """
    base = PurePosixPath(name).name
    if not base.endswith(".wav"):
        raise ValueError(f"file name {base!r} does not end in '.wav'")
    fields = base[: -len(".wav")].split("-")
    if len(fields) == 5:
        scene, city, location, segment, device = fields
        subsegment = ""
    elif len(fields) == 6:
        scene, city, location, segment, subsegment, device = fields
        if not _NUM.match(subsegment):
            raise ValueError(f"file name {base!r}: subsegment {subsegment!r} is not a number")
    else:
        raise ValueError(
            f"file name {base!r} has {len(fields)} '-'-separated fields: expected "
            "<scene>-<city>-<location>-<segment>-<device>.wav (TAU 2020) or "
            "<scene>-<city>-<location>-<segment>-<subsegment>-<device>.wav (TAU 2022)"
        )
    if scene not in SCENES:
        raise ValueError(f"file name {base!r}: scene {scene!r} is not one of {', '.join(SCENES)}")
    if not _CITY.match(city):
        raise ValueError(f"file name {base!r}: city {city!r} is not a lower-case name")
    if not _NUM.match(location):
        raise ValueError(f"file name {base!r}: location {location!r} is not a number")
    if not _NUM.match(segment):
        raise ValueError(f"file name {base!r}: segment {segment!r} is not a number")
    if device not in DEVICES:
        raise ValueError(
            f"file name {base!r}: device {device!r} is not one of {', '.join(DEVICES)}"
        )
    return ClipName(scene, city, location, segment, subsegment, device)


def _read_tsv(
    path: Path, required: tuple[str, ...]
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, fields) rows of a TAB-separated file with a header."""
    if not path.is_file():
        raise InputError(f"{path}: file not found (expected a TAB-separated CSV with a header)")
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t")
            header = next(reader, None)
            rows: list[tuple[int, list[str]]] = []
            for fields in reader:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # blank lines (a trailing newline, hand edits)
                rows.append((reader.line_num, [f.strip() for f in fields]))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot be read as a UTF-8 TAB-separated file: {exc}") from exc
    if header is None:
        expected = "\t".join(required)
        raise InputError(f"{path}: file is empty: expected a header line {expected!r}")
    header = [h.strip() for h in header]
    if header and header[0].startswith("\ufeff"):
        header[0] = header[0][1:]
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(
            f"{path}: wrong columns: expected TAB-separated columns {list(required)}, "
            f"found {header} (missing {missing})"
        )
    for line, fields in rows:
        if len(fields) != len(header):
            raise InputError(
                f"{path}, line {line}: expected {len(header)} TAB-separated fields "
                f"({header}), found {len(fields)}: {fields}"
            )
    return header, rows


def _inside(root_resolved: Path, root_abs: Path, filename: str, where: str) -> Path:
    """Absolute path of `filename` under the root; InputError if it could escape it."""
    if not filename:
        raise InputError(f"{where}: empty filename")
    if (
        PurePosixPath(filename).is_absolute()
        or PureWindowsPath(filename).is_absolute()
        or PureWindowsPath(filename).drive
    ):
        raise InputError(
            f"{where}: filename {filename!r} is an absolute path: expected a path relative "
            f"to the data set root {root_abs} (e.g. audio/<name>.wav)"
        )
    parts = PurePosixPath(filename.replace("\\", "/")).parts
    if ".." in parts:
        raise InputError(
            f"{where}: filename {filename!r} contains '..': expected a path inside the data "
            f"set root {root_abs}"
        )
    path = root_abs.joinpath(*parts)
    resolved = path.resolve()
    if not resolved.is_relative_to(root_resolved):
        raise InputError(
            f"{where}: filename {filename!r} resolves to {resolved} (through a symbolic link), "
            f"outside the data set root {root_resolved}"
        )
    return path


def _build(
    root: Path,
    csv_path: Path,
    header: list[str],
    rows: list[tuple[int, list[str]]],
    *,
    labelled: bool,
    meta: bool,
    missing: str,
) -> pd.DataFrame:
    if missing not in MISSING_POLICIES:
        raise InputError(
            f"dataset.missing = {missing!r}: expected one of {', '.join(MISSING_POLICIES)}"
        )
    root_abs = Path(os.path.abspath(root))
    root_resolved = root_abs.resolve()
    col = {name: i for i, name in enumerate(header)}
    super_index = {s: SUPER_CLASSES.index(SCENE_TO_SUPER[s]) for s in SCENES}
    records: dict[str, list] = {c: [] for c in COLUMNS}
    if meta:
        records["source_label"] = []
    for line, fields in rows:
        where = f"{csv_path}, line {line}"
        filename = fields[col["filename"]]
        path = _inside(root_resolved, root_abs, filename, where)
        try:
            name = parse_clip_name(filename)
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from None
        scene = ""
        if labelled:
            scene = fields[col["scene_label"]]
            if scene not in SCENES:
                raise InputError(
                    f"{where}: unknown scene label {scene!r}: expected one of {', '.join(SCENES)}"
                )
            if scene != name.scene:
                raise InputError(
                    f"{where}: scene label {scene!r} does not match the scene {name.scene!r} "
                    f"in the file name {filename!r}"
                )
        if meta:
            identifier = fields[col["identifier"]]
            source = fields[col["source_label"]]
            if identifier != name.identifier:
                raise InputError(
                    f"{where}: identifier {identifier!r} does not match {name.identifier!r} "
                    f"(city-location) in the file name {filename!r}"
                )
            if source != name.device:
                raise InputError(
                    f"{where}: source_label {source!r} does not match the device "
                    f"{name.device!r} in the file name {filename!r}"
                )
            records["source_label"].append(source)
        records["filename"].append(filename)
        records["path"].append(path)
        records["scene"].append(scene)
        records["label10"].append(SCENES.index(scene) if scene else -1)
        records["label3"].append(super_index[scene] if scene else -1)
        records["device"].append(name.device)
        records["city"].append(name.city)
        records["location"].append(name.location)
        records["identifier"].append(name.identifier)
        records["segment"].append(name.segment)
        records["subsegment"].append(name.subsegment)

    frame = pd.DataFrame(records)
    frame["label10"] = frame["label10"].astype("int64")
    frame["label3"] = frame["label3"].astype("int64")
    for c in ("filename", "scene", "device", "city", "location", "identifier", "segment"):
        frame[c] = frame[c].astype(object)
    frame["subsegment"] = frame["subsegment"].astype(object)
    frame["path"] = frame["path"].astype(object)

    exists = [p.is_file() for p in frame["path"]]
    absent = [f for f, ok in zip(frame["filename"], exists) if not ok]
    if absent:
        shown = ", ".join(absent[:_N_SHOWN]) + (", ..." if len(absent) > _N_SHOWN else "")
        if missing == "error":
            raise InputError(
                f"{csv_path}: {len(absent)} of {len(frame)} listed audio files are missing "
                f"under {root_abs} (first: {shown}); set `dataset.missing: skip` to drop them "
                "with a warning"
            )
        log.warning(
            "%s: skipping %d of %d listed audio files that are missing under %s (first: %s)",
            csv_path,
            len(absent),
            len(frame),
            root_abs,
            shown,
        )
        frame = frame.loc[exists].reset_index(drop=True)
    return frame


def read_split(root: Path, split: str, missing: str = "error") -> pd.DataFrame:
    """Validated table of one split (``fold1_<split>.csv``); see docs/CONTRACTS.md.

    Columns: filename, path (absolute, inside `root`), scene ("" for test), label10 and
    label3 (-1 for test), device, city, location, identifier (city-location), segment,
    subsegment ("" for TAU 2020 names). `missing` is "error" (InputError listing the
    missing files) or "skip" (drop them with a logged warning), because real downloads
    are sometimes incomplete.
    """
    root = Path(root)
    csv_path = split_csv_path(root, split)
    header, rows = _read_tsv(csv_path, REQUIRED_COLUMNS[split])
    return _build(
        root, csv_path, header, rows, labelled=split != "test", meta=False, missing=missing
    )


def read_meta(root: Path, missing: str = "error") -> pd.DataFrame:
    """Validated table of ``meta.csv`` (every clip of the data set, with labels).

    Same columns as `read_split` plus ``source_label``; identifier and source_label must
    agree with the file name, since spectrum correction pairs clips by them.
    """
    root = Path(root)
    csv_path = root / "meta.csv"
    header, rows = _read_tsv(csv_path, REQUIRED_COLUMNS["meta"])
    return _build(root, csv_path, header, rows, labelled=True, meta=True, missing=missing)
