"""The real Snakemake DAG on tiny configurations: one uninterrupted run shared by the
end-to-end tests (test_snakemake.py) and the crash-safety tests that compare with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TINY = Path(__file__).with_name("tiny_config.yaml")


def snakemake_env(**extra: str) -> dict[str, str]:
    return dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        ACOUSTIC_LOTTERY_PROGRESS="0",
        **extra,
    )


def snakemake(
    workdir: Path, *args: str, check: bool = True, snakefile: Path | None = None
) -> subprocess.CompletedProcess:
    """`snakemake -s <Snakefile> --directory <workdir> ARGS`, failing loudly on error."""
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(snakefile or ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=snakemake_env(), timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def smk() -> Callable[..., subprocess.CompletedProcess]:
    """`smk(workdir, *args, check=True, snakefile=None)`: one Snakemake run."""
    return snakemake


@pytest.fixture(scope="session")
def smk_env() -> Callable[..., dict[str, str]]:
    """The environment the runs get (the venv's tools on PATH), plus `**extra`."""
    return snakemake_env


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The whole tiny DAG, uninterrupted, from this checkout's Snakefile."""
    work = tmp_path_factory.mktemp("tiny")
    shutil.copy(TINY, work / "config.yaml")
    snakemake(work, "--cores", "2")
    return work
