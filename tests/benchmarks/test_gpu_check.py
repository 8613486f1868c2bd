"""benchmarks/gpu_check.sh as the test suite can run it: the CPU dry check.

On a GPU machine the script trains the whole tiny DAG on CUDA; here the same script
runs with --device cpu on a small target (one model trained, predicted, evaluated)
and the throughput benchmark, so everything but the CUDA part is exercised.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), "--python", sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


def test_dry_check_on_cpu_trains_on_the_requested_device(tmp_path: Path) -> None:
    proc = _run("--device", "cpu", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["training_jobs"], summary
    assert set(summary["training_jobs"].values()) == {"cpu"}
    assert summary["wrong_device"] == {}
    thr = json.loads((tmp_path / "train_throughput_cpu.json").read_text())
    assert thr["models"]["sic:1.0"]["train_clips_per_s"]["median"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_one_fails_clearly(tmp_path: Path) -> None:
    proc = _run("--out", str(tmp_path))
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    proc = _run("--device", "tpu", "--out", str(tmp_path))
    assert proc.returncode == 1 and "--device must be cpu or cuda" in proc.stderr
