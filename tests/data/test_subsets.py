"""DCASE 2024 train subsets: nested, stratified by (scene, device), segments kept whole."""

from __future__ import annotations

import pandas as pd
import pytest

from acoustic_lottery.data.subsets import (
    DCASE2024_FRACTIONS,
    check_fractions,
    nested_subsets,
    read_subset,
    segment_groups,
    subset_filename,
    subset_summary,
    write_subset,
    write_subsets,
)
from acoustic_lottery.errors import InputError
from acoustic_lottery.labels import SCENES

DEVICES = {"a": 9, "b": 3, "c": 2, "s1": 1}  # segments per (scene, city) and device


def make_split(clips_per_segment: int) -> pd.DataFrame:
    """A read_split-like table: 10 scenes, uneven devices, 2 cities, 1 s clips per segment.

    clips_per_segment 1 is a TAU20-like split (one 10 s clip per segment), 10 TAU22-like.
    Strata sizes differ (scene index changes the segment count), as in the real split.
    """
    rows = []
    for si, scene in enumerate(SCENES):
        for city in ("lisbon", "paris"):
            location = str(100 + si)
            for device, n_segments in DEVICES.items():
                for segment in range(n_segments * 2 + si % 3):
                    for sub in range(clips_per_segment):
                        parts = [scene, city, location, str(1000 + segment)]
                        if clips_per_segment > 1:
                            parts.append(str(sub))
                        name = "-".join([*parts, device]) + ".wav"
                        rows.append(
                            {
                                "filename": f"audio/{name}",
                                "scene": scene,
                                "device": device,
                                "city": city,
                                "identifier": f"{city}-{location}",
                                "segment": str(1000 + segment),
                                "subsegment": str(sub) if clips_per_segment > 1 else "",
                            }
                        )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("clips_per_segment", [1, 10])
def test_subsets_are_nested_stratified_and_keep_segments_whole(clips_per_segment: int) -> None:
    split = make_split(clips_per_segment)
    subsets = nested_subsets(split, DCASE2024_FRACTIONS, seed=3)
    assert sorted(subsets) == list(DCASE2024_FRACTIONS)
    names = {f: set(sub["filename"]) for f, sub in subsets.items()}
    fractions = sorted(subsets)
    for small, large in zip(fractions, fractions[1:]):
        assert names[small] < names[large]  # strictly nested
    assert names[100.0] == set(split["filename"])

    groups = segment_groups(split)
    assert groups.nunique() == len(split) // clips_per_segment
    strata = split.groupby(["scene", "device"]).size()
    for f, sub in subsets.items():
        # whole segments only: a group is fully in or fully out
        picked = groups.isin(set(groups.loc[sub.index]))
        assert picked.sum() == len(sub)
        # each (scene, device) stratum gets its share, off by at most half a segment
        # (within one clip when a segment is one clip)
        counts = sub.groupby(["scene", "device"]).size().reindex(strata.index, fill_value=0)
        error = (counts - f / 100 * strata).abs()
        assert error.max() <= clips_per_segment / 2, (f, error.max())
        assert abs(len(sub) - f / 100 * len(split)) <= len(strata) * clips_per_segment / 2


def test_subsets_are_deterministic_and_independent_of_row_order() -> None:
    split = make_split(10)
    a = nested_subsets(split, [5, 25], seed=11)
    shuffled = split.sample(frac=1.0, random_state=0)
    b = nested_subsets(shuffled, [5, 25], seed=11)
    c = nested_subsets(split, [5, 25], seed=12)
    for f in (5.0, 25.0):
        assert set(a[f]["filename"]) == set(b[f]["filename"])
        assert list(a[f]["filename"]) == list(
            nested_subsets(split, [5, 25], seed=11)[f]["filename"]
        )
    assert set(a[5.0]["filename"]) != set(c[5.0]["filename"])
    # rows keep the split's order and index
    assert list(a[25.0].index) == sorted(a[25.0].index)


def test_write_read_round_trip_and_file_format(tmp_path) -> None:
    split = make_split(1)
    subsets = nested_subsets(split, [10, 50, 100], seed=0)
    paths = write_subsets(tmp_path / "splits", subsets)
    assert [p.name for p in paths] == ["split10.csv", "split50.csv", "split100.csv"]
    lines = paths[0].read_text(encoding="utf-8").splitlines()
    assert lines[0] == "filename\tscene_label"
    assert len(lines) == 1 + len(subsets[10.0])
    first = subsets[10.0].iloc[0]
    assert lines[1] == f"{first['filename']}\t{first['scene']}"
    for path, f in zip(paths, (10.0, 50.0, 100.0)):
        back = read_subset(path, split)
        assert list(back["filename"]) == list(subsets[f]["filename"])
    assert sorted(p.name for p in (tmp_path / "splits").iterdir()) == sorted(
        p.name for p in paths
    )  # no temporaries left


def test_read_subset_rejects_files_not_in_the_split(tmp_path) -> None:
    split = make_split(1)
    path = tmp_path / "split5.csv"
    good = split["filename"].iloc[0]
    path.write_text(
        "filename\tscene_label\n"
        f"{good}\t{split['scene'].iloc[0]}\n"
        "audio/park-nowhere-1-1-a.wav\tpark\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError) as err:
        read_subset(path, split)
    message = str(err.value)
    assert str(path) in message and "line 3" in message
    assert "park-nowhere-1-1-a.wav" in message and "not in the train split" in message


@pytest.mark.parametrize(
    "body,match",
    [
        ("name\tscene_label\n", "wrong columns"),
        ("filename\tscene_label\n{f}\t{s}\n{f}\t{s}\n", r"line 3: .*already listed on line 2"),
        ("filename\tscene_label\n{f}\ttram_x\n", r"line 2: scene_label 'tram_x'"),
        ("filename\tscene_label\n{f}\n", r"line 2: expected 2 TAB-separated fields"),
    ],
)
def test_read_subset_errors_name_file_and_line(tmp_path, body: str, match: str) -> None:
    split = make_split(1)
    path = tmp_path / "s.csv"
    path.write_text(
        body.format(f=split["filename"].iloc[0], s=split["scene"].iloc[0]), encoding="utf-8"
    )
    with pytest.raises(InputError, match=match) as err:
        read_subset(path, split)
    assert str(path) in str(err.value)
    with pytest.raises(InputError, match="not found"):
        read_subset(tmp_path / "missing.csv", split)


def test_bad_inputs_are_input_errors() -> None:
    split = make_split(1)
    with pytest.raises(InputError, match=r"\(0, 100\]"):
        nested_subsets(split, [0, 50], seed=0)
    with pytest.raises(InputError, match=r"\(0, 100\]"):
        check_fractions([150])
    with pytest.raises(InputError, match="distinct"):
        check_fractions([5, 5.0])
    with pytest.raises(InputError, match="missing columns.*segment"):
        nested_subsets(split.drop(columns=["segment"]), seed=0)
    unlabelled = split.assign(scene="")
    with pytest.raises(InputError, match="no scene label"):
        nested_subsets(unlabelled, seed=0)
    with pytest.raises(InputError, match="more than once"):
        nested_subsets(pd.concat([split, split.iloc[:1]]), seed=0)


def test_names_and_summary() -> None:
    assert subset_filename(5) == "split5.csv"
    assert subset_filename(100.0) == "split100.csv"
    assert subset_filename(2.5) == "split2.5.csv"
    split = make_split(10)
    subsets = nested_subsets(split, [25, 100], seed=1)
    summary = subset_summary(split, subsets)
    assert summary["clips"] == len(split)
    info = summary["subsets"]["split25.csv"]
    assert info["clips"] == len(subsets[25.0]) and info["clips"] % 10 == 0
    assert set(info["per_scene"]) == set(SCENES)
    assert summary["subsets"]["split100.csv"]["share"] == 1.0


def test_write_subset_needs_filename_and_scene(tmp_path) -> None:
    with pytest.raises(InputError, match="scene"):
        write_subset(tmp_path / "x.csv", pd.DataFrame({"filename": ["a"]}))
    assert not (tmp_path / "x.csv").exists()
