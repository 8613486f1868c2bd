"""Benchmark: the pipeline's steps at 10 s scale, their memory, and the cost of the paper run.

    .venv/bin/python benchmarks/scale.py [--sizes 500,2000] [--augment-kind pitch]
        [--throughput-rounds 2] [--work DIR] [--keep] [--skip-projection]
        [--out benchmarks/results/scale.json]

For each size (training clips of the embedded synthetic data set, 10 s clips at
44.1 kHz like TAU), one CLI call per step, each in its own process:

1. `features`: LMFB of the training split to HDF5 (3 x 128 x 423 per clip);
2. `augment`: one offline augmented copy (`--augment-kind`);
3. `train`: one epoch of SIC with the tau2020 training settings (crop 400,
   SpecAugment, mixup), `resident_mb: 0`: every batch read from the HDF5 file;
4. `predict`: SIC over the training features, batch by batch.

Per step: wall time, clips per second and peak memory: `peak_rss_mb` is the largest
resident set of the step's process tree (`os.wait4`'s rusage: exact, the largest single
process), `peak_tree_rss_mb` the sum over the process and its data-loader workers,
sampled every 0.2 s. The goal is bounded memory: at the larger size each step's peak
within 1.2x of the smaller size's.

Streaming vs in memory: at the smaller size, `train` with `resident_mb: 0` and with
the whole file in memory alternate (A B B A ...) for `--throughput-rounds` pairs; the
headline is the median ratio of streaming to in-memory clips/s (best and worst beside).

Projection: from the per-clip figures of the larger size and
benchmarks/results/train_throughput_cpu.json (per-architecture rates), the time,
feature disk and memory of `snakemake --configfile configs/tau2020.yaml` (its whole
DAG, listed by a dry run) on this machine (benchmarks/projection.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from projection import Rates, project, shell_commands  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("acoustic-lottery"))
SECONDS = 10.0
#: The SIC of configs/tau2020.yaml, one epoch (cycle of 1 so that it ends at the LR min).
SIC_SPEC = {
    "arch": "sic",
    "task": "scene",
    "feature_set": "lmfb",
    "epochs": 1,
    "cycle_epochs": 1,
    "batch_size": 32,
    "crop_frames": 400,
    "specaug_freq": 12,
    "specaug_time": 39,
    "mixup_alpha": 0.4,
    "seed": 0,
    "threads": 2,
    "device": "cpu",
}


def _tree_rss_kb(pid: int) -> int:
    """Resident kB of `pid` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        stack.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def run_step(name: str, args: list[str], log_dir: Path) -> dict[str, Any]:
    """Run one CLI call; wall time, exact peak RSS (wait4) and sampled tree RSS."""
    log = log_dir / f"{name}.log"
    env = {**os.environ, "ACOUSTIC_LOTTERY_PROGRESS": "0"}
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen([CLI, *args], stdout=fh, stderr=subprocess.STDOUT, env=env)
        peak_tree = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak_tree
            while not stop.is_set():
                peak_tree = max(peak_tree, _tree_rss_kb(proc.pid))
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"scale: step {name} failed (exit {proc.returncode}); see {log}")
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "peak_tree_rss_mb": round(peak_tree / 1024, 1),
    }


def _n_clips(path: Path) -> int:
    import h5py

    with h5py.File(path, "r") as f:
        return int(f["features"].shape[0])


def run_size(n: int, work: Path, kind: str) -> dict[str, Any]:
    """Generate n training clips of 10 s and time the four steps on them."""
    d = work / f"n{n}"
    d.mkdir(parents=True, exist_ok=True)
    logs = d / "logs"
    logs.mkdir(exist_ok=True)
    data = d / "data"
    steps: dict[str, Any] = {}
    steps["generate"] = run_step(
        "generate",
        [
            "generate",
            "--out",
            str(data),
            "--clip-seconds",
            str(SECONDS),
            "--train-segments-per-scene",
            str(max(1, n // 10)),
            "--train-parallel-fraction",
            "0",  # n clips exactly (all device a): this benchmark is about scale
            "--eval-segments-per-scene",
            "1",
            "--overwrite",
        ],
        logs,
    )
    orig, copy = d / "orig.h5", d / f"{kind}.h5"
    common = ["--dataset-root", str(data), "--seconds", str(SECONDS), "--workers", "2"]
    steps["features"] = run_step(
        "features",
        ["features", *common, "--split", "train", "--feature-set", "lmfb", "--out", str(orig)],
        logs,
    )
    steps["augment"] = run_step(
        "augment", ["augment", *common, "--kind", kind, "--out", str(copy)], logs
    )
    spec = json.dumps({**SIC_SPEC, "resident_mb": 0})
    steps["train"] = run_step(
        "train",
        ["train", "--spec", spec, "--train", str(orig), "--out-dir", str(d / "sic")],
        logs,
    )
    steps["predict"] = run_step(
        "predict",
        [
            "predict",
            "--model",
            str(d / "sic" / "final.pt"),
            "--features",
            str(orig),
            "--out",
            str(d / "pred.h5"),
        ],
        logs,
    )
    clips = _n_clips(orig)
    for name in ("features", "augment", "train", "predict"):
        step_clips = _n_clips(copy) if name == "augment" else clips
        steps[name]["clips"] = step_clips
        steps[name]["clips_per_s"] = round(step_clips / steps[name]["wall_s"], 3)
    return {
        "train_clips": clips,
        "feature_file_bytes": orig.stat().st_size,
        "bytes_per_clip": orig.stat().st_size / clips,
        "steps": steps,
        "data": str(data),
        "orig": str(orig),
    }


def streaming_vs_memory(orig: Path, work: Path, rounds: int) -> dict[str, Any]:
    """Interleaved A B B A training epochs: streaming (A) vs the file in memory (B)."""
    logs = work / "throughput_logs"
    logs.mkdir(exist_ok=True)
    clips = _n_clips(orig)
    pairs: list[dict[str, float]] = []
    for r in range(rounds):
        order = ("stream", "memory") if r % 2 == 0 else ("memory", "stream")
        got: dict[str, float] = {}
        for mode in order:
            cap = 0 if mode == "stream" else 1 << 20
            spec = json.dumps({**SIC_SPEC, "resident_mb": cap})
            res = run_step(
                f"{mode}{r}",
                ["train", "--spec", spec, "--train", str(orig), "--out-dir", str(work / mode)],
                logs,
            )
            got[mode] = clips / res["wall_s"]
            got[f"{mode}_peak_rss_mb"] = res["peak_rss_mb"]
        pairs.append(got)
    ratios = [p["stream"] / p["memory"] for p in pairs]
    return {
        "clips": clips,
        "rounds": pairs,
        "ratio_stream_over_memory": {
            "median": statistics.median(ratios),
            "best": max(ratios),
            "worst": min(ratios),
        },
    }


def _cli_overhead(log_dir: Path) -> float:
    walls = [run_step(f"startup{i}", ["size", "--help"], log_dir)["wall_s"] for i in range(3)]
    return statistics.median(walls)


def projection(small_data: Path, large: dict[str, Any], overhead: float) -> dict[str, Any]:
    """Project the tau2020 run (whole DAG) from the larger size's figures."""
    thr_path = ROOT / "benchmarks" / "results" / "train_throughput_cpu.json"
    if not thr_path.exists():
        return {"skipped": f"{thr_path} missing: run benchmarks/train_throughput.py first"}
    thr = json.loads(thr_path.read_text())["models"]
    steps = large["steps"]
    bench_sic_train = thr["sic:1.0"]["train_clips_per_s"]["median"]
    bench_sic_infer = thr["sic:1.0"]["infer_clips_per_s"]["median"]
    real_train = steps["train"]["clips_per_s"]
    real_infer = steps["predict"]["clips_per_s"]
    train_factor, infer_factor = real_train / bench_sic_train, real_infer / bench_sic_infer
    train_rate, infer_rate = {}, {}
    for key, m in thr.items():
        arch = key.split(":")[0]
        train_rate[arch] = m["train_clips_per_s"]["median"] * train_factor
        infer_rate[arch] = m["infer_clips_per_s"]["median"] * infer_factor
    rates = Rates(
        features_s_per_clip=1 / steps["features"]["clips_per_s"],
        augment_s_per_clip=1 / steps["augment"]["clips_per_s"],
        bytes_per_element=large["bytes_per_clip"] / (3 * 128 * 423),
        job_overhead_s=overhead,
        train_rate=train_rate,
        infer_rate=infer_rate,
    )
    dry = subprocess.run(
        [
            str(Path(sys.executable).with_name("snakemake")),
            "-n",
            "-p",
            "--configfile",
            "configs/tau2020.yaml",
            "--config",
            f'dataset={{"path": "{small_data}"}}',
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    if dry.returncode != 0:
        return {"skipped": f"snakemake dry run failed: {dry.stderr[-2000:]}"}
    result = project(shell_commands(dry.stdout), rates)
    result["rates"] = {
        "features_s_per_clip": rates.features_s_per_clip,
        "augment_s_per_clip": rates.augment_s_per_clip,
        "train_clips_per_s": train_rate,
        "infer_clips_per_s": infer_rate,
        "trainer_over_benchmark_sic": {"train": train_factor, "predict": infer_factor},
        "job_overhead_s": overhead,
    }
    result["peak_memory_mb"] = max(s["peak_tree_rss_mb"] for s in steps.values())
    result["target"] = "snakemake --configfile configs/tau2020.yaml (all)"
    result["threads"] = SIC_SPEC["threads"]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="500,2000")
    p.add_argument("--augment-kind", default="pitch")
    p.add_argument("--throughput-rounds", type=int, default=2)
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    p.add_argument("--skip-projection", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    args = p.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if len(sizes) < 2 or sizes[0] < 32:
        p.error("--sizes: give at least two sizes, each >= 32 clips")
    work = args.work or Path(tempfile.mkdtemp(prefix="al-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        results = {}
        for n in sizes:
            print(f"scale: {n} training clips of {SECONDS:g} s in {work}", file=sys.stderr)
            results[n] = run_size(n, work, args.augment_kind)
            for name, s in results[n]["steps"].items():
                print(f"  {name}: {json.dumps(s)}", file=sys.stderr)
        small, large = results[sizes[0]], results[sizes[-1]]
        ratios = {
            name: {
                key: round(large["steps"][name][key] / small["steps"][name][key], 3)
                for key in ("peak_rss_mb", "peak_tree_rss_mb")
            }
            for name in ("features", "augment", "train", "predict")
        }
        throughput = streaming_vs_memory(Path(small["orig"]), work, args.throughput_rounds)
        proj = (
            {"skipped": "--skip-projection"}
            if args.skip_projection
            else projection(Path(small["data"]), large, _cli_overhead(work))
        )
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    import torch

    from acoustic_lottery import __version__

    for r in results.values():
        r.pop("data"), r.pop("orig")
    summary = {
        "benchmark": "pipeline steps at 10 s scale: time, clips/s, peak memory; projection",
        "code_version": __version__,
        "torch_version": torch.__version__,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "settings": {
            "sizes": sizes,
            "clip_seconds": SECONDS,
            "augment_kind": args.augment_kind,
            "sic_spec": SIC_SPEC,
            "throughput_rounds": args.throughput_rounds,
        },
        "sizes": {str(n): r for n, r in results.items()},
        "rss_ratio_large_over_small": ratios,
        "rss_goal": "every step's peak within 1.2x from the smaller to the larger size",
        "rss_goal_met": all(v["peak_rss_mb"] <= 1.2 for v in ratios.values()),
        "streaming_vs_memory": throughput,
        "projection_tau2020": proj,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    tmp.replace(args.out)
    print(json.dumps({"rss_ratio": ratios, "projection": proj}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
