"""Named points where a crash-safety test can freeze a job, to kill it from outside there.

A kill at a random moment rarely lands inside a short write; a failpoint makes the test
deterministic. With ``ACOUSTIC_LOTTERY_FAILPOINT=<name>`` (or ``<name>@<n>``: the n-th
time this process passes it; several comma-separated: whichever comes first, in any job
running, freezes it) a job that reaches the point writes
``$ACOUSTIC_LOTTERY_FAILPOINT_DIR/<name>.reached`` and then waits until it is killed
(SIGKILL: no cleanup, no `finally`). Unset, a failpoint costs one dictionary lookup.

The points (tests/workflow/test_crash_safety.py kills the whole Snakemake process
group at each): ``features.write`` (a batch written into a feature file's temporary),
``train.step`` (inside an epoch), ``train.checkpoint`` (just after an epoch's
checkpoint), ``lottery.mask`` (a round's mask saved, training not started),
``quantize.write`` (an int8 artifact half-way to its name), ``table.write`` (Table 1
half-way to its name).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

ENV = "ACOUSTIC_LOTTERY_FAILPOINT"
ENV_DIR = "ACOUSTIC_LOTTERY_FAILPOINT_DIR"

POINTS: tuple[str, ...] = (
    "features.write",
    "train.step",
    "train.checkpoint",
    "lottery.mask",
    "quantize.write",
    "table.write",
)

_hits: Counter[str] = Counter()


def failpoint(name: str) -> None:
    """Freeze here (until killed) when the environment names this point."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    nth = None
    for entry in wanted.split(","):
        point, _, n = entry.strip().partition("@")
        if point == name:
            nth = int(n) if n else 1
    if nth is None:
        return
    _hits[name] += 1
    if _hits[name] != nth:
        return
    marker_dir = Path(os.environ.get(ENV_DIR, "."))
    marker_dir.mkdir(parents=True, exist_ok=True)
    (marker_dir / f"{name}.reached").write_text(f"{os.getpid()}\n")
    while True:  # the test kills the process group; never return into the job
        time.sleep(3600)
