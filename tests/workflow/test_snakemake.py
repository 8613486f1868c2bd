"""The real Snakemake DAG, end to end, on a tiny configuration."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TINY = Path(__file__).with_name("tiny_config.yaml")


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(
        os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", ACOUSTIC_LOTTERY_PROGRESS="0"
    )
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("tiny")
    shutil.copy(TINY, work / "config.yaml")
    snakemake(work, "--cores", "2")
    return work


@pytest.mark.slow
def test_rows_0_and_3_are_built(tiny_run):
    rows = {}
    for n in (0, 3):
        rows[n] = json.loads((tiny_run / f"results/tiny/table1/row{n}.json").read_text())
        ours = rows[n]["ours"]
        assert 0.0 <= ours["accuracy"] <= 100.0
        assert ours["log_loss"] > 0
        assert rows[n]["paper"]["index"] == n
    # the challenge shipped the baseline in float16: 46,246 values x 2 bytes
    assert rows[0]["ours"]["size_kb"] == pytest.approx(90.3, rel=0.01)
    assert rows[3]["ours"]["size_kb"] == pytest.approx(503, rel=0.01)
    assert rows[3]["paper"]["accuracy"] == 67.8
    table = (tiny_run / "results/tiny/table1.md").read_text()
    assert "Official Baseline" in table and "SIC" in table


@pytest.mark.slow
def test_every_job_leaves_a_log_and_a_benchmark(tiny_run):
    logs = list((tiny_run / "logs/tiny").rglob("*.log"))
    benches = list((tiny_run / "benchmarks/snakemake/tiny").rglob("*.tsv"))
    assert len(logs) >= 9 and len(benches) == len(logs)


@pytest.mark.slow
def test_second_run_has_nothing_to_do(tiny_run):
    proc = snakemake(tiny_run, "-n", "--cores", "2")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_bad_config_key_stops_the_run_naming_it(tmp_path):
    cfg = TINY.read_text().replace("  epochs: 2\n", "  epochz: 2\n")
    (tmp_path / "config.yaml").write_text(cfg)
    proc = snakemake(tmp_path, "-n", "--cores", "1", check=False)
    assert proc.returncode != 0
    assert "unknown config key 'training.epochz'" in proc.stdout + proc.stderr


def test_dry_run_lists_the_jobs_of_rows_0_and_3(tmp_path):
    shutil.copy(TINY, tmp_path / "config.yaml")
    proc = snakemake(tmp_path, "-n", "--cores", "2")
    out = proc.stdout
    for rule in ("generate_synthetic", "features", "train", "predict", "size", "row", "table"):
        assert f"rule {rule}:" in out or f"\n{rule} " in out or f" {rule}\n" in out, rule


def test_lint_is_clean():
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        [str(BIN / "snakemake"), "--lint"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr
