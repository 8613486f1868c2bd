"""Benchmark: kill the whole reproduction at random moments, recover, compare.

    .venv/bin/python benchmarks/crash_safety.py [--trials 20] [--seed 0]
        [--config tests/workflow/crash_config.yaml] [--cores 2]
        [--out benchmarks/results/crash_safety.json]

One uninterrupted reference run (Snakemake target: Table 1 of --config, every kind of
job) gives the wall time T and the reference results. Each trial then starts the same
run from nothing in its own directory, SIGKILLs Snakemake's whole process group at a
seeded uniformly random moment in (0.02 T, 0.98 T), applies the documented recovery
(`snakemake --unlock`, then the same command; rerun-incomplete is on in the default
profile) and compares every file under results/ with the reference byte for byte. The
jobs that were running when the kill landed are read from the killed run's log.

The complement of the deterministic fault-injection test
(tests/workflow/test_crash_safety.py): there the kills land at named points, here
wherever the clock says.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def env() -> dict[str, str]:
    return dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        ACOUSTIC_LOTTERY_PROGRESS="0",
    )


def command(work: Path, cores: int, *args: str) -> list[str]:
    return [
        str(BIN / "snakemake"),
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(work),
        "--cores",
        str(cores),
        *args,
    ]


def target(config: Path) -> str:
    import yaml

    name = yaml.safe_load(config.read_text())["dataset"]["name"]
    return f"results/{name}/table1.md"


def fresh(base: Path, name: str, config: Path) -> Path:
    work = base / name
    work.mkdir(parents=True)
    shutil.copy(config, work / "config.yaml")
    return work


def results(work: Path) -> dict[str, bytes]:
    root = work / "results"
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def running_jobs(log: str) -> list[str]:
    """Jobs Snakemake had started and not finished when the log stops (rule: output)."""
    started: dict[str, str] = {}
    for block in re.split(r"\n(?=\[|rule |localrule )", log):
        m = re.search(r"^(?:local)?rule (\w+):.*?jobid: (\d+)", block, re.S | re.M)
        if m:
            out = re.search(r"output: ([^\n]+)", block)
            started[m.group(2)] = f"{m.group(1)}: {out.group(1) if out else ''}".strip()
        for done in re.findall(r"Finished job(?:id:)? (\d+)", block):
            started.pop(done, None)
    return sorted(started.values())


def trial(base: Path, k: int, config: Path, cores: int, at: float, tgt: str) -> dict[str, Any]:
    work = fresh(base, f"trial{k:02d}", config)
    log_path = work / "killed.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command(work, cores, tgt),
            env=env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=at)
            killed = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed = True
    running = running_jobs(log_path.read_text()) if killed else []
    subprocess.run(command(work, cores, "--unlock"), env=env(), capture_output=True, check=True)
    t0 = time.perf_counter()
    rerun = subprocess.run(command(work, cores, tgt), env=env(), capture_output=True, text=True)
    return {
        "trial": k,
        "kill_at_s": round(at, 2),
        "killed": killed,
        "running_at_kill": running,
        "rerun_exit": rerun.returncode,
        "rerun_s": round(time.perf_counter() - t0, 1),
        "rerun_tail": rerun.stderr[-800:] if rerun.returncode else "",
        "work": work,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--config", type=Path, default=ROOT / "tests/workflow/crash_config.yaml")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/crash_safety.json")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    args = ap.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="crash_safety."))
    tgt = target(args.config)
    try:
        ref = fresh(base, "reference", args.config)
        t0 = time.perf_counter()
        subprocess.run(command(ref, args.cores, tgt), env=env(), capture_output=True, check=True)
        wall = time.perf_counter() - t0
        reference = results(ref)
        print(f"reference: {len(reference)} result files in {wall:.1f} s", flush=True)
        rng = random.Random(args.seed)
        trials = []
        for k in range(args.trials):
            at = rng.uniform(0.02, 0.98) * wall
            t = trial(base, k, args.config, args.cores, at, tgt)
            got = results(t.pop("work"))
            t["missing"] = sorted(set(reference) - set(got))
            t["extra"] = sorted(set(got) - set(reference))
            t["different"] = sorted(n for n in reference if n in got and got[n] != reference[n])
            t["identical"] = (
                t["rerun_exit"] == 0 and not t["missing"] and not t["extra"] and not t["different"]
            )
            trials.append(t)
            print(
                f"trial {k:2d}: kill at {at:5.1f} s ({len(t['running_at_kill'])} jobs running)"
                f" -> {'identical' if t['identical'] else 'DIFFERENT'}",
                flush=True,
            )
        kills = sum(t["killed"] for t in trials)
        same = sum(t["identical"] for t in trials if t["killed"])
        summary = {
            "headline": f"{kills} kills, {same} identical finishes",
            "kills": kills,
            "identical_finishes": same,
            "trials": len(trials),
            "reference_wall_s": round(wall, 1),
            "reference_files": len(reference),
            "config": os.path.relpath(args.config, ROOT),
            "target": tgt,
            "seed": args.seed,
            "cores": args.cores,
            "recovery": "snakemake --unlock; snakemake --cores N <target> (rerun-incomplete on)",
            "trials_detail": trials,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
        print(summary["headline"])
        return 0 if same == kills else 1
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
