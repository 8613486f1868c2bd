"""The README's scale section: rendered from the benchmark results, held to them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from acoustic_lottery.cli import main
from acoustic_lottery.errors import InputError
from acoustic_lottery.reporting.readme import BEGIN, END
from acoustic_lottery.reporting.scale_report import SCALE_BEGIN, SCALE_END, render_scale

ROOT = Path(__file__).resolve().parents[2]


def step(clips_per_s: float, mb: float) -> dict:
    return {"clips_per_s": clips_per_s, "peak_rss_mb": mb, "peak_tree_rss_mb": mb, "wall_s": 1}


def fake_benchmarks(root: Path, *, projected: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    names = ("features", "augment", "train", "predict")
    sizes = {
        "500": {"steps": {s: step(10.0, 1000.0) for s in names}},
        "2000": {"steps": {s: step(11.0, 1100.0) for s in names}},
    }
    proj = {
        "target": "snakemake --configfile configs/tau2020.yaml (all)",
        "jobs": {"train": 3, "evaluate": 4},
        "seconds": {"train": 7200.0, "lottery-round": 3600.0, "features": 360.0},
        "total_seconds": 11160.0,
        "feature_disk_gb": 61.2,
        "peak_memory_mb": 2048.0,
        "unpriced": [],
    }
    scale = {
        "machine": {"cpu_count": 2},
        "settings": {"sizes": [500, 2000], "augment_kind": "pitch"},
        "sizes": sizes,
        "streaming_vs_memory": {
            "rounds": [{}, {}],
            "ratio_stream_over_memory": {"median": 0.97, "best": 1.01, "worst": 0.93},
        },
        "projection_tau2020": proj if projected else {"skipped": "--skip-projection"},
    }
    rate = {"median": 5.0, "best": 6.0, "worst": 4.0}
    thr = {
        "settings": {"device": "cpu", "threads": 2, "rounds": 3, "batch_size": 16},
        "models": {
            "sic:1.0": {"train_clips_per_s": rate, "infer_clips_per_s": rate, "peak_rss_mb": 800}
        },
    }
    (root / "scale.json").write_text(json.dumps(scale))
    (root / "train_throughput_cpu.json").write_text(json.dumps(thr))
    return root


def test_the_section_shows_measured_figures_and_the_projection(tmp_path: Path) -> None:
    b = fake_benchmarks(tmp_path)
    text = render_scale(b / "scale.json", b / "train_throughput_cpu.json")
    assert text.startswith(SCALE_BEGIN) and text.rstrip().endswith(SCALE_END)
    assert "| train | 10.0 | 11.0 | 1000 | 1100 | 1.10 |" in text
    assert "median 0.97x (best 1.01, worst 0.93)" in text
    assert "about **3.1 h** of compute" in text and "61 GB of feature files" in text
    assert "| sic:1.0 | 5.00 (4.00–6.00) |" in text
    assert "peak at 2.0 GB at either size" in text and "(sic:1.0) at 0.8 GB with batch 16" in text


def test_a_skipped_projection_says_so(tmp_path: Path) -> None:
    b = fake_benchmarks(tmp_path, projected=False)
    text = render_scale(b / "scale.json", b / "train_throughput_cpu.json")
    assert "Projection not computed: --skip-projection" in text


def test_missing_or_old_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="scale.json: benchmark result not found"):
        render_scale(tmp_path / "scale.json", tmp_path / "t.json")
    b = fake_benchmarks(tmp_path)
    data = json.loads((b / "scale.json").read_text())
    del data["streaming_vs_memory"]
    (b / "scale.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="'streaming_vs_memory.ratio_stream_over_memory'"):
        render_scale(b / "scale.json", b / "train_throughput_cpu.json")


def test_the_verb_fills_both_sections(tmp_path: Path) -> None:
    from .test_readme import fake_results

    results = fake_results(tmp_path / "results")
    bench = fake_benchmarks(tmp_path / "bench")
    readme = tmp_path / "README.md"
    readme.write_text(f"{BEGIN}\n{END}\n\n## TAU\n\n{SCALE_BEGIN}\n{SCALE_END}\n")
    args = ["readme", "--snapshot", str(tmp_path / "snap"), "--readme", str(readme)]
    args += ["--benchmarks", str(bench)]
    assert main([*args, "--results", str(results)]) == 0
    assert "| train | 10.0 | 11.0 |" in readme.read_text()
    assert main([*args, "--check"]) == 0


def test_the_committed_readme_holds_the_committed_scale_results() -> None:
    bench = ROOT / "benchmarks" / "results"
    section = render_scale(bench / "scale.json", bench / "train_throughput_cpu.json")
    assert section in (ROOT / "README.md").read_text(encoding="utf-8"), (
        "README.md's scale section differs from benchmarks/results/: run `make readme`"
    )
