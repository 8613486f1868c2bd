"""data.tau: strict reading of the TAU layout, errors naming file and line."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from acoustic_lottery.data.tau import COLUMNS, parse_clip_name, read_meta, read_split
from acoustic_lottery.errors import InputError

TRAIN = [
    ("audio/airport-barcelona-0-0-a.wav", "airport"),
    ("audio/airport-barcelona-0-0-b.wav", "airport"),
    ("audio/bus-lisbon-3-17-s2.wav", "bus"),
    ("audio/street_traffic-london-12-340-c.wav", "street_traffic"),
]
EVALUATE = [
    ("audio/park-helsinki-5-40-s5.wav", "park"),
    ("audio/tram-paris-7-99-a.wav", "tram"),
]


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _touch(root: Path, names) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")  # read_split only checks existence


def make_layout(root: Path, train=TRAIN, evaluate=EVALUATE, touch=True) -> Path:
    setup = root / "evaluation_setup"
    _write(setup / "fold1_train.csv", ["filename\tscene_label"] + [f"{f}\t{s}" for f, s in train])
    _write(
        setup / "fold1_evaluate.csv",
        ["filename\tscene_label"] + [f"{f}\t{s}" for f, s in evaluate],
    )
    _write(setup / "fold1_test.csv", ["filename"] + [f for f, _ in evaluate])
    meta = ["filename\tscene_label\tidentifier\tsource_label"]
    for f, s in train + evaluate:
        try:
            n = parse_clip_name(f)
        except ValueError:
            continue  # layouts built to test bad names
        meta.append(f"{f}\t{s}\t{n.identifier}\t{n.device}")
    _write(root / "meta.csv", meta)
    if touch:
        _touch(root, [f for f, _ in train + evaluate])
    return root


def test_train_split_is_parsed_from_file_names(tmp_path: Path) -> None:
    root = make_layout(tmp_path)
    df = read_split(root, "train")
    assert list(df.columns) == list(COLUMNS)
    assert list(df["filename"]) == [f for f, _ in TRAIN]
    assert list(df["device"]) == ["a", "b", "s2", "c"]
    assert list(df["city"]) == ["barcelona", "barcelona", "lisbon", "london"]
    assert list(df["identifier"]) == ["barcelona-0", "barcelona-0", "lisbon-3", "london-12"]
    assert list(df["segment"]) == ["0", "0", "17", "340"]
    assert list(df["subsegment"]) == ["", "", "", ""]
    assert list(df["label10"]) == [0, 0, 1, 8]
    assert list(df["label3"]) == [0, 0, 2, 1]  # indoor, indoor, transportation, outdoor
    assert str(df["label10"].dtype) == "int64"
    for p, f in zip(df["path"], df["filename"]):
        assert p.is_absolute() and p == tmp_path.absolute() / f


def test_test_split_has_no_labels(tmp_path: Path) -> None:
    df = read_split(make_layout(tmp_path), "test")
    assert list(df["scene"]) == ["", ""]
    assert list(df["label10"]) == [-1, -1] and list(df["label3"]) == [-1, -1]
    assert list(df["device"]) == ["s5", "a"]


def test_wrong_columns_name_file_and_expected_and_found(tmp_path: Path) -> None:
    root = make_layout(tmp_path)
    csv = root / "evaluation_setup" / "fold1_train.csv"
    _write(csv, ["filename,scene_label", "audio/airport-barcelona-0-0-a.wav,airport"])
    with pytest.raises(InputError) as exc:
        read_split(root, "train")
    msg = str(exc.value)
    assert str(csv) in msg
    assert "['filename', 'scene_label']" in msg and "found ['filename,scene_label']" in msg


def test_meta_needs_its_four_columns(tmp_path: Path) -> None:
    root = make_layout(tmp_path)
    _write(root / "meta.csv", ["filename\tscene_label", "audio/bus-lisbon-3-17-s2.wav\tbus"])
    with pytest.raises(InputError, match=r"meta\.csv: wrong columns.*missing \['identifier', "):
        read_meta(root)


def test_unknown_scene_label_names_file_and_line(tmp_path: Path) -> None:
    rows = [TRAIN[0], ("audio/airport-barcelona-0-1-a.wav", "airprot")]
    root = make_layout(tmp_path, train=rows)
    with pytest.raises(
        InputError, match=r"fold1_train\.csv, line 3: unknown scene label 'airprot'"
    ):
        read_split(root, "train")


def test_label_contradicting_the_file_name_is_refused(tmp_path: Path) -> None:
    root = make_layout(tmp_path, train=[("audio/bus-lisbon-3-17-s2.wav", "tram")])
    with pytest.raises(InputError, match=r"line 2: scene label 'tram' does not match .*'bus'"):
        read_split(root, "train")


@pytest.mark.parametrize(
    "filename",
    ["audio/../../etc/airport-barcelona-0-0-a.wav", "../airport-barcelona-0-0-a.wav"],
)
def test_dotdot_path_is_refused_with_line(tmp_path: Path, filename: str) -> None:
    root = make_layout(tmp_path / "ds", train=[TRAIN[0], (filename, "airport")])
    with pytest.raises(InputError, match=r"fold1_train\.csv, line 3: filename .* contains '\.\.'"):
        read_split(root, "train")


def test_absolute_path_is_refused_with_line(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "airport-barcelona-0-0-a.wav"
    _touch(tmp_path, [outside.relative_to(tmp_path)])
    root = make_layout(tmp_path / "ds", train=[(str(outside), "airport")])
    with pytest.raises(InputError, match=r"line 2: filename .* is an absolute path"):
        read_split(root, "train")


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
def test_symlink_escaping_the_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    root = make_layout(tmp_path / "ds", train=[("leak/airport-barcelona-0-0-a.wav", "airport")],
                       touch=False)  # fmt: skip
    (root / "leak").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(InputError, match=r"line 2: filename .* outside the data set root"):
        read_split(root, "train")


def test_missing_files_error_gives_count_first_names_and_hint(tmp_path: Path) -> None:
    train = [(f"audio/park-milan-1-{i}-a.wav", "park") for i in range(8)]
    root = make_layout(tmp_path, train=train, touch=False)
    _touch(root, [train[0][0]])
    with pytest.raises(InputError) as exc:
        read_split(root, "train")
    msg = str(exc.value)
    assert "7 of 8 listed audio files are missing" in msg
    assert "park-milan-1-1-a.wav" in msg and "park-milan-1-5-a.wav" in msg
    assert "park-milan-1-6-a.wav" not in msg  # only the first five are named
    assert "dataset.missing: skip" in msg


def test_missing_files_skip_drops_them_with_a_warning(tmp_path: Path, caplog) -> None:
    train = [(f"audio/park-milan-1-{i}-a.wav", "park") for i in range(4)]
    root = make_layout(tmp_path, train=train, touch=False)
    _touch(root, [train[0][0], train[2][0]])
    with caplog.at_level(logging.WARNING, logger="acoustic_lottery.data.tau"):
        df = read_split(root, "train", missing="skip")
    assert list(df["segment"]) == ["0", "2"]
    assert list(df.index) == [0, 1]
    assert any("skipping 2 of 4" in r.getMessage() for r in caplog.records)


def test_bad_missing_policy_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dataset.missing = 'ignore'"):
        read_split(make_layout(tmp_path), "train", missing="ignore")


def test_tau2022_names_carry_a_subsegment(tmp_path: Path) -> None:
    train = [
        ("audio/airport-lisbon-1000-40000-0-a.wav", "airport"),
        ("audio/airport-lisbon-1000-40000-9-s3.wav", "airport"),
    ]
    df = read_split(make_layout(tmp_path, train=train), "train")
    assert list(df["subsegment"]) == ["0", "9"]
    assert list(df["segment"]) == ["40000", "40000"]
    assert list(df["device"]) == ["a", "s3"]
    assert list(df["identifier"]) == ["lisbon-1000", "lisbon-1000"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("audio/airport-barcelona-0-a.wav", "4 '-'-separated fields"),
        ("audio/airport-barcelona-0-0-z.wav", "device 'z'"),
        ("audio/airport-barcelona-x-0-a.wav", "location 'x'"),
        ("audio/airport-barcelona-0-0-a.flac", "does not end in '.wav'"),
        ("audio/0.wav", "1 '-'-separated fields"),
    ],
)
def test_unparseable_name_names_file_and_line(tmp_path: Path, name: str, reason: str) -> None:
    root = make_layout(tmp_path, evaluate=[EVALUATE[0], (name, "airport")])
    with pytest.raises(InputError) as exc:
        read_split(root, "test")
    assert "fold1_test.csv, line 3" in str(exc.value) and reason in str(exc.value)


def test_read_meta_checks_identifier_and_source_label(tmp_path: Path) -> None:
    root = make_layout(tmp_path)
    meta = read_meta(root)
    assert len(meta) == len(TRAIN) + len(EVALUATE)
    assert list(meta["source_label"]) == list(meta["device"])
    lines = (root / "meta.csv").read_text().splitlines()
    fields = lines[2].split("\t")
    lines[2] = "\t".join([fields[0], fields[1], "barcelona-9", fields[3]])
    _write(root / "meta.csv", lines)
    with pytest.raises(InputError, match=r"meta\.csv, line 3: identifier 'barcelona-9'"):
        read_meta(root)


def test_missing_csv_and_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"fold1_train\.csv: file not found"):
        read_split(tmp_path, "train")
    with pytest.raises(InputError, match="unknown split 'dev'"):
        read_split(make_layout(tmp_path), "dev")


def test_row_with_wrong_field_count_names_line(tmp_path: Path) -> None:
    root = make_layout(tmp_path)
    csv = root / "evaluation_setup" / "fold1_evaluate.csv"
    csv.write_text(csv.read_text() + "audio/park-helsinki-5-41-a.wav\tpark\textra\n")
    with pytest.raises(InputError, match=r"fold1_evaluate\.csv, line 4: expected 2 TAB-separated"):
        read_split(root, "evaluate")
