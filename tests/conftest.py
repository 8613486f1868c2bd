"""Suite-wide ordering for parallel runs (`make test` runs pytest-xdist, one file per
worker at a time): the files that run the real Snakemake DAG take minutes each, so they
are handed out first and the many short files fill the other worker meanwhile, instead
of a long file starting last and running alone."""

from __future__ import annotations

import pytest

#: Files that run whole DAGs, longest first (measured with --durations).
LONG_FIRST = (
    "tests/workflow/test_crash_safety.py",
    "tests/workflow/test_snakemake.py",
    "tests/workflow/test_dvc.py",
    "tests/workflow/test_slurm.py",
    "tests/benchmarks/test_gpu_check.py",
)


def _rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return LONG_FIRST.index(path) if path in LONG_FIRST else len(LONG_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the order within each file is kept
