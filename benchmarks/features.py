"""Benchmark: batched torch LMFB extraction vs a plain librosa-per-clip loop.

    .venv/bin/python benchmarks/features.py [--clips 64] [--rounds 7] [--batch-size 16]
        [--out benchmarks/results/features.json]

Both sides work on the same synthetic 10 s clips (seeded white noise at 44.1 kHz,
written as 24-bit WAV like TAU). Two comparisons:

* compute (the headline number): the clips are decoded once beforehand and excluded from
  both timings; torch runs the extractor `extract_split` uses (batched torch.stft,
  float32, `batch_size` clips per call, chunked internally), librosa runs
  `logmel_librosa` clip by clip. Rounds alternate between the two so that drifting
  machine load hits both alike. The headline is the best round of each (timeit's rule:
  slower rounds are other processes interfering); medians are reported beside it.
* end to end: decoding included in both. `extract_split` (2 decoding workers, HDF5
  written) against `load_audio` + `logmel_librosa` per clip with nothing written.

Warm-up (librosa's first-call JIT, torch's first STFT) is excluded. Thread settings are
recorded; a sweep over (workers, threads) of `extract_split` shows which is fastest.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import pandas as pd
import soundfile as sf
import torch

from acoustic_lottery import __version__
from acoustic_lottery.data.audio import load_audio
from acoustic_lottery.features.extract import build_extractor, extract_split
from acoustic_lottery.features.lmfb import LogMelConfig, logmel_librosa
from acoustic_lottery.io import write_json

SR = 44100
SECONDS = 10.0


def make_clips(root: Path, n: int, seed: int = 0) -> pd.DataFrame:
    """n seeded white-noise clips of 10 s as 24-bit WAV, with a read_split-like table."""
    rng = np.random.default_rng(seed)
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        name = f"park-lyon-{i}-0-a.wav"
        y = np.clip(0.1 * rng.standard_normal(int(SECONDS * SR)), -1, 1)
        sf.write(audio / name, y, SR, subtype="PCM_24")
        rows.append(
            {
                "filename": f"audio/{name}",
                "path": (audio / name).resolve(),
                "scene": "park",
                "label10": 4,
                "label3": 1,
                "device": "a",
                "city": "lyon",
                "identifier": f"lyon-{i}",
                "segment": "0",
            }
        )
    return pd.DataFrame(rows)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_compute(
    waves: np.ndarray, batch_size: int, rounds: int, threads: int, round_clips: int
) -> dict[str, Any]:
    """Alternating rounds of librosa-per-clip and batched torch on in-memory waves.

    Each round takes the next `round_clips` clips (cycling through all of them); which
    side goes first alternates, so neither always inherits the other's warm caches or
    spinning BLAS/OpenMP threads.
    """
    cfg = LogMelConfig()
    torch.set_num_threads(threads)
    extractor = build_extractor("lmfb", cfg)
    batch = torch.from_numpy(waves)
    n = len(waves)
    round_clips = min(round_clips, n)

    def run_librosa(s: int) -> None:
        for y in waves[s : s + round_clips]:
            logmel_librosa(y, cfg)

    def run_torch(s: int) -> None:
        part = batch[s : s + round_clips]
        with torch.inference_mode():
            for b in range(0, len(part), batch_size):
                extractor(part[b : b + batch_size]).numpy()

    def timed(fn: Any, s: int) -> float:
        t0 = time.perf_counter()
        fn(s)
        return round_clips / (time.perf_counter() - t0)

    # Warm-up: librosa's numba JIT on first call, torch's first FFT plan / allocations.
    run_librosa(0)
    run_torch(0)
    lib, tor = [], []
    for r in range(rounds):
        s = (r * round_clips) % (n - round_clips + 1)
        if r % 2 == 0:
            lib.append(timed(run_librosa, s))
            tor.append(timed(run_torch, s))
        else:
            tor.append(timed(run_torch, s))
            lib.append(timed(run_librosa, s))
    # Agreement on this material, for the record.
    worst = max(
        float(np.abs(extractor(batch[i : i + 1])[0].numpy() - logmel_librosa(waves[i])).max())
        for i in range(min(n, 8))
    )
    return {
        "librosa_clips_per_s": max(lib),
        "torch_clips_per_s": max(tor),
        "ratio": max(tor) / max(lib),
        "librosa_median_clips_per_s": statistics.median(lib),
        "torch_median_clips_per_s": statistics.median(tor),
        "median_ratio": statistics.median(tor) / statistics.median(lib),
        "librosa_rounds": lib,
        "torch_rounds": tor,
        "round_clips": round_clips,
        "torch_threads": threads,
        "batch_size": batch_size,
        "max_abs_diff_vs_librosa": worst,
    }


def time_end_to_end(
    meta: pd.DataFrame,
    out_dir: Path,
    batch_size: int,
    settings: list[tuple[int, int]],
    repeats: int,
) -> dict[str, Any]:
    """Decode + extract: extract_split at several (workers, threads) vs a librosa loop.

    Each variant runs `repeats` times, interleaved; the best run of each is kept.
    """
    n = len(meta)
    cfg = LogMelConfig()
    librosa_rates: list[float] = []
    rates: dict[tuple[int, int], list[float]] = {s: [] for s in settings}
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p in meta["path"]:
            logmel_librosa(load_audio(p, SR, SECONDS), cfg)
        librosa_rates.append(n / (time.perf_counter() - t0))
        for workers, threads in settings:
            out = out_dir / f"bench_w{workers}_t{threads}.h5"
            t0 = time.perf_counter()
            extract_split(
                meta,
                out,
                "lmfb",
                cfg,
                seconds=SECONDS,
                batch_size=batch_size,
                workers=workers,
                threads=threads,
                split="train",
            )
            rates[(workers, threads)].append(n / (time.perf_counter() - t0))
            out.unlink()
    librosa_rate = max(librosa_rates)
    sweep = [
        {"workers": w, "threads": t, "clips_per_s": max(r), "runs": r}
        for (w, t), r in rates.items()
    ]
    best = max(sweep, key=lambda r: r["clips_per_s"])
    default = next(r for r in sweep if (r["workers"], r["threads"]) == (2, 2))
    return {
        "librosa_loop_clips_per_s": librosa_rate,
        "extract_split_sweep": sweep,
        "extract_split_default_clips_per_s": default["clips_per_s"],
        "ratio_default": default["clips_per_s"] / librosa_rate,
        "librosa_loop_runs": librosa_rates,
        "fastest": {k: best[k] for k in ("workers", "threads", "clips_per_s")},
        "note": "decoding of 24-bit WAV included in both; extract_split also writes HDF5",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--round-clips", type=int, default=16, help="clips per timed round")
    ap.add_argument("--repeats", type=int, default=3, help="end-to-end runs per variant")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--skip-end-to-end", action="store_true")
    ap.add_argument(
        "--out", default=str(Path(__file__).resolve().parent / "results" / "features.json")
    )
    args = ap.parse_args(argv)
    os.environ.setdefault("ACOUSTIC_LOTTERY_PROGRESS", "0")

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        root = Path(tmp)
        meta = make_clips(root, args.clips)
        waves = np.stack([load_audio(p, SR, SECONDS) for p in meta["path"]])
        compute = time_compute(waves, args.batch_size, args.rounds, args.threads, args.round_clips)
        print(
            f"compute only: torch {compute['torch_clips_per_s']:.1f} clips/s, librosa "
            f"{compute['librosa_clips_per_s']:.1f} clips/s, ratio {compute['ratio']:.2f} "
            f"(medians {compute['median_ratio']:.2f}); max |diff| "
            f"{compute['max_abs_diff_vs_librosa']:.1e}",
            file=sys.stderr,
        )
        end_to_end = None
        if not args.skip_end_to_end:
            end_to_end = time_end_to_end(
                meta, root, args.batch_size, [(2, 2), (2, 1), (1, 2), (0, 2)], args.repeats
            )
            print(
                f"end to end: extract_split(workers=2, threads=2) "
                f"{end_to_end['extract_split_default_clips_per_s']:.1f} clips/s, librosa loop "
                f"{end_to_end['librosa_loop_clips_per_s']:.1f} clips/s, ratio "
                f"{end_to_end['ratio_default']:.2f}; fastest {end_to_end['fastest']}",
                file=sys.stderr,
            )

    result = {
        "benchmark": "lmfb feature extraction, 10 s clips at 44.1 kHz -> 3 x 128 x 423",
        "n_clips": args.clips,
        "rounds": args.rounds,
        "decoding": "excluded from both in 'compute'; included in both in 'end_to_end'",
        "warmup_excluded": True,
        "compute": compute,
        "end_to_end": end_to_end,
        "machine": {
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "librosa": librosa.__version__,
            "numpy": np.__version__,
            "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "code_version": __version__,
    }
    write_json(args.out, result)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
