"""The synthetic generator never takes over a directory it did not make (checked when the
DAG is built, because Snakemake deletes a `directory()` output before rerunning its rule)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acoustic_lottery.data.synthetic import SUMMARY_NAME, check_generator_owns
from acoustic_lottery.errors import InputError


def test_missing_empty_or_generated_directories_are_the_generators(tmp_path: Path) -> None:
    check_generator_owns(tmp_path / "not-yet")
    (tmp_path / "empty").mkdir()
    check_generator_owns(tmp_path / "empty")
    made = tmp_path / "made"
    (made / "audio").mkdir(parents=True)
    (made / SUMMARY_NAME).write_text(json.dumps({"config": {"seed": 1}, "clips": 0}))
    check_generator_owns(made)


@pytest.mark.parametrize("summary", [None, "not json", json.dumps(["a list"])])
def test_a_directory_without_the_generators_summary_is_refused(
    tmp_path: Path, summary: str | None
) -> None:
    real = tmp_path / "TAU-urban-acoustic-scenes-2020-mobile-development"
    (real / "audio").mkdir(parents=True)
    (real / "audio" / "airport-lisbon-1000-40000-a.wav").write_bytes(b"RIFF")
    if summary is not None:
        (real / SUMMARY_NAME).write_text(summary)
    with pytest.raises(InputError, match=f"dataset.path {real}: a non-empty directory"):
        check_generator_owns(real)
    assert (real / "audio" / "airport-lisbon-1000-40000-a.wav").exists()


def test_a_file_in_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("x")
    with pytest.raises(InputError, match="is not a directory"):
        check_generator_owns(tmp_path / "data")
