"""The README's results section: generated from a run's summaries, never copied by hand.

The last test holds the committed README to the committed snapshot (docs/results/): a
results change that was not regenerated into the README fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acoustic_lottery.cli import main
from acoustic_lottery.errors import InputError
from acoustic_lottery.reporting.readme import (
    BEGIN,
    END,
    comparison_sentences,
    render,
    snapshot,
    update_readme,
)

ROOT = Path(__file__).resolve().parents[2]


def comparison(claim: str, d: float, lo: float, hi: float) -> dict:
    return {
        "claim": claim, "a": "row 3", "b": "row 4", "status": "ok", "accuracy_diff": d,
        "accuracy_diff_ci": [lo, hi], "accuracy_diff_excludes_zero": lo > 0 or hi < 0,
    }  # fmt: skip


def fake_results(root: Path, *, efficiency: bool = False) -> Path:
    (root / "figures").mkdir(parents=True)
    (root / "table1.md").write_text(
        "# Table 1 reproduction\n\n| idx | acc |\n|:--|--:|\n| 3 | 56.9 |\n"
    )
    result = {
        "comparisons": [
            comparison("TSL helps", 4.2, 1.0, 7.5),
            comparison("the ticket keeps accuracy", -6.0, -9.9, -2.1),
            comparison("int8 keeps accuracy", 0.3, -1.2, 1.9),
            {"claim": "skipped one", "status": "skipped", "reason": "not built"},
        ],
        "resolution": {"n_comparisons": 3, "accuracy_points": 3.4},
    }
    (root / "comparisons.json").write_text(json.dumps(result))
    (root / "comparisons.md").write_text("# Paired comparisons\n\n| claim | d_acc |\n")
    (root / "probe.md").write_text("# Probe\n\n| group | accuracy (%) |\n")
    (root / "figures/devices.md").write_text("| model | a |\n|:--|--:|\n| sic | 66.0 |\n")
    (root / "figures/figure2.png").write_bytes(b"\x89PNG fake")
    (root / "timings.json").write_text(
        json.dumps(
            {"paper": {"command": "make run", "seconds": 1890, "cores": 2, "note": "281 jobs"}}
        )
    )
    if efficiency:
        (root / "efficiency.md").write_text("Macro accuracy\n\n| System | Mean |\n")
    return root


def test_the_section_is_built_from_the_snapshot_alone(tmp_path):
    results = fake_results(tmp_path / "results")
    snap = tmp_path / "snap"
    copied = snapshot(results, snap)
    assert "table1.md" in copied and "figures/figure2.png" in copied
    assert "figures/figure3.png" not in copied and "efficiency.md" not in copied
    text = render(snap, figures_prefix="docs/results")
    assert text.startswith(BEGIN + "\n") and text.endswith(END + "\n")
    assert "| 3 | 56.9 |" in text and "# Table 1 reproduction" not in text
    assert "`make run`: 31.5 min of wall time on 2 cores (281 jobs)" in text
    assert "![Figure 2: masking strategies" in text and "(docs/results/figures/figure2.png)" in text
    assert "figure3" not in text and "data-efficiency" not in text
    assert "about 3.4 accuracy points" in text
    # the prose is the intervals' verdict, one line per computed comparison
    lines = comparison_sentences(json.loads((snap / "comparisons.json").read_text()))
    assert lines == [
        "- *TSL helps* — B: row 4, A: row 3: +4.2 points [+1.0, +7.5], **B above A**",
        "- *the ticket keeps accuracy* — B: row 4, A: row 3: -6.0 points [-9.9, -2.1], "
        "**B below A**",
        "- *int8 keeps accuracy* — B: row 4, A: row 3: +0.3 points [-1.2, +1.9], "
        "**not distinguished from 0**",
    ]
    assert all(line in text for line in lines) and "skipped one" not in text
    # a later run without the figure: the stale copy goes, the study comes in
    (results / "figures/figure2.png").unlink()
    (results / "efficiency.md").write_text("Macro accuracy\n\n| System | Mean |\n")
    snapshot(results, snap)
    assert not (snap / "figures/figure2.png").exists()
    assert "### The DCASE 2024 data-efficiency study" in render(snap)


def test_a_run_without_a_required_summary_is_refused(tmp_path):
    results = fake_results(tmp_path / "results")
    (results / "probe.md").unlink()
    with pytest.raises(InputError, match="missing probe.md; run `make run` first"):
        snapshot(results, tmp_path / "snap")
    with pytest.raises(InputError, match="missing table1.md"):
        render(tmp_path / "empty")


def test_the_readme_changes_between_its_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nintro\n\n{BEGIN}\nold numbers\n{END}\n\n## After\n")
    section = f"{BEGIN}\nnew numbers\n{END}\n"
    assert update_readme(readme, section) is True
    assert readme.read_text() == f"# Title\n\nintro\n\n{section}\n## After\n"
    assert update_readme(readme, section) is False  # already current
    readme.write_text("# no markers\n")
    with pytest.raises(InputError, match="no generated-section markers"):
        update_readme(readme, section)


def test_the_verb_updates_and_checks(tmp_path, capsys):
    results = fake_results(tmp_path / "results")
    snap, readme = tmp_path / "snap", tmp_path / "README.md"
    readme.write_text(f"intro\n{BEGIN}\n{END}\n")
    args = ["readme", "--snapshot", str(snap), "--readme", str(readme)]
    args += ["--benchmarks", str(tmp_path / "no-benchmarks")]
    assert main([*args, "--results", str(results)]) == 0
    assert main([*args, "--check"]) == 0
    (snap / "table1.md").write_text("| idx | acc |\n| 3 | 99.9 |\n")  # results moved on
    assert main([*args, "--check"]) == 1
    assert "does not hold the section results:begin" in capsys.readouterr().err


def test_the_committed_readme_is_generated_from_the_committed_results():
    snap = ROOT / "docs/results"
    section = render(snap, figures_prefix="docs/results")
    assert section in (ROOT / "README.md").read_text(encoding="utf-8"), (
        "README.md's results section differs from docs/results/: run `make readme`"
    )
