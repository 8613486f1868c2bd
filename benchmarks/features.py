"""Benchmark: batched torch LMFB extraction vs a plain librosa-per-clip loop.

    .venv/bin/python benchmarks/features.py [--clips 64] [--blocks 4] [--rounds 12]
        [--batch-size 16] [--out benchmarks/results/features.json]

Both sides work on the same synthetic 10 s clips (seeded white noise at 44.1 kHz,
written as 24-bit WAV like TAU). Two comparisons:

* compute (the headline): the clips are decoded before the clock starts, for both.
  torch runs the extractor `extract_split` uses (batched torch.stft in float32,
  `batch_size` clips per call), librosa runs `logmel_librosa` clip by clip. Each side
  runs in its own process: in one process, numpy's OpenBLAS threads still spinning
  after a librosa call halved the speed of the torch call that followed. Processes
  alternate (librosa, torch, torch, librosa, ...) in `blocks`, each timing `rounds`
  rounds of `round_clips` clips after a warm-up round (librosa's first-call JIT, torch's
  first FFT). The headline is the best round of each side (timeit's rule: slower rounds
  are other processes interfering; this machine is shared), medians are reported beside.
* end to end: decoding included for both. `extract_split` at several (workers,
  threads), HDF5 written, against `load_audio` + `logmel_librosa` per clip with nothing
  written; best of `repeats` runs each, each run in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

SR = 44100
SECONDS = 10.0
E2E_SETTINGS: tuple[tuple[int, int], ...] = ((2, 1), (2, 2), (1, 1), (0, 2))


def make_clips(root: Path, n: int, seed: int = 0) -> pd.DataFrame:
    """n seeded white-noise clips of 10 s as 24-bit WAV, with a read_split-like table."""
    rng = np.random.default_rng(seed)
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        name = f"park-lyon-{i}-0-a.wav"
        if not (audio / name).exists():
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


# --------------------------------------------------------------------------- children


def child_compute(args: argparse.Namespace) -> dict[str, Any]:
    """Time one side on in-memory waves: per-round clips/s after a warm-up round."""
    import torch

    from acoustic_lottery.data.audio import load_audio
    from acoustic_lottery.features.extract import build_extractor
    from acoustic_lottery.features.lmfb import LogMelConfig, logmel_librosa

    torch.set_num_threads(args.threads)
    meta = make_clips(Path(args.workdir), args.clips)
    waves = np.stack([load_audio(p, SR, SECONDS) for p in meta["path"]])
    cfg = LogMelConfig()
    k = min(args.round_clips, len(waves))
    if args.child == "librosa":

        def run(part: np.ndarray) -> None:
            for y in part:
                logmel_librosa(y, cfg)

    else:
        extractor = build_extractor("lmfb", cfg)

        def run(part: np.ndarray) -> None:
            t = torch.from_numpy(part)
            with torch.inference_mode():
                for b in range(0, len(t), args.batch_size):
                    extractor(t[b : b + args.batch_size]).numpy()

    run(waves[:k])  # warm-up
    rates = []
    for r in range(args.rounds):
        s = (r * k) % (len(waves) - k + 1)
        t0 = time.perf_counter()
        run(waves[s : s + k])
        rates.append(k / (time.perf_counter() - t0))
    out: dict[str, Any] = {"rates": rates}
    if args.child == "torch":
        worst = max(
            float(
                np.abs(
                    extractor(torch.from_numpy(waves[i : i + 1]))[0].numpy()
                    - logmel_librosa(waves[i], cfg)
                ).max()
            )
            for i in range(min(len(waves), 4))
        )
        out["max_abs_diff_vs_librosa"] = worst
    return out


def child_e2e(args: argparse.Namespace) -> dict[str, Any]:
    """One end-to-end run: decode + features (+ HDF5 for extract_split) of all clips."""
    from acoustic_lottery.data.audio import load_audio
    from acoustic_lottery.features.extract import extract_split
    from acoustic_lottery.features.lmfb import LogMelConfig, logmel_librosa

    meta = make_clips(Path(args.workdir), args.clips)
    cfg = LogMelConfig()
    logmel_librosa(load_audio(meta["path"][0], SR, SECONDS), cfg)  # warm-up, both sides
    if args.child == "e2e-librosa":
        t0 = time.perf_counter()
        for p in meta["path"]:
            logmel_librosa(load_audio(p, SR, SECONDS), cfg)
        return {"rate": len(meta) / (time.perf_counter() - t0)}
    out = Path(args.workdir) / f"bench_{os.getpid()}.h5"
    extract_split(meta.iloc[:4], out, "lmfb", cfg, seconds=SECONDS, workers=0)  # warm-up
    t0 = time.perf_counter()
    extract_split(
        meta,
        out,
        "lmfb",
        cfg,
        seconds=SECONDS,
        batch_size=args.batch_size,
        workers=args.workers,
        threads=args.threads,
    )
    rate = len(meta) / (time.perf_counter() - t0)
    out.unlink()
    return {"rate": rate}


def run_child(base: list[str], child: str, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", child, *base, *extra]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=4, help="processes per side (compute)")
    ap.add_argument("--rounds", type=int, default=12, help="timed rounds per process")
    ap.add_argument("--round-clips", type=int, default=16, help="clips per timed round")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--e2e-clips", type=int, default=160)
    ap.add_argument("--repeats", type=int, default=2, help="end-to-end runs per variant")
    ap.add_argument("--skip-end-to-end", action="store_true")
    ap.add_argument(
        "--out", default=str(Path(__file__).resolve().parent / "results" / "features.json")
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ["ACOUSTIC_LOTTERY_PROGRESS"] = "0"

    if args.child is not None:
        fn = child_compute if args.child in ("librosa", "torch") else child_e2e
        print(json.dumps(fn(args)))
        return 0

    import librosa
    import torch

    from acoustic_lottery import __version__
    from acoustic_lottery.io import write_json

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        make_clips(Path(tmp), max(args.clips, args.e2e_clips))
        base = ["--workdir", tmp, "--batch-size", str(args.batch_size)]
        compute_base = base + [
            "--clips", str(args.clips), "--rounds", str(args.rounds),
            "--round-clips", str(args.round_clips), "--threads", str(args.threads),
        ]  # fmt: skip
        lib: list[float] = []
        tor: list[float] = []
        diff = None
        for b in range(args.blocks):
            order = ("librosa", "torch") if b % 2 == 0 else ("torch", "librosa")
            for side in order:
                res = run_child(compute_base, side, [])
                (lib if side == "librosa" else tor).extend(res["rates"])
                diff = res.get("max_abs_diff_vs_librosa", diff)
        compute = {
            "librosa_clips_per_s": max(lib),
            "torch_clips_per_s": max(tor),
            "ratio": max(tor) / max(lib),
            "librosa_median_clips_per_s": statistics.median(lib),
            "torch_median_clips_per_s": statistics.median(tor),
            "median_ratio": statistics.median(tor) / statistics.median(lib),
            "librosa_rounds": lib,
            "torch_rounds": tor,
            "round_clips": args.round_clips,
            "torch_threads": args.threads,
            "batch_size": args.batch_size,
            "max_abs_diff_vs_librosa": diff,
        }
        print(
            f"compute only: torch {compute['torch_clips_per_s']:.1f} clips/s, librosa "
            f"{compute['librosa_clips_per_s']:.1f} clips/s, ratio {compute['ratio']:.2f} "
            f"(medians {compute['median_ratio']:.2f}); max |diff| {diff:.1e}",
            file=sys.stderr,
        )
        end_to_end = None
        if not args.skip_end_to_end:
            e2e_base = base + ["--clips", str(args.e2e_clips)]
            lib_runs: list[float] = []
            runs: dict[tuple[int, int], list[float]] = {s: [] for s in E2E_SETTINGS}
            for _ in range(args.repeats):
                lib_runs.append(run_child(e2e_base, "e2e-librosa", [])["rate"])
                for w, t in E2E_SETTINGS:
                    extra = ["--workers", str(w), "--threads", str(t)]
                    runs[(w, t)].append(run_child(e2e_base, "e2e-torch", extra)["rate"])
            sweep = [
                {"workers": w, "threads": t, "clips_per_s": max(r), "runs": r}
                for (w, t), r in runs.items()
            ]
            best = max(sweep, key=lambda r: r["clips_per_s"])
            default = sweep[0]
            end_to_end = {
                "n_clips": args.e2e_clips,
                "librosa_loop_clips_per_s": max(lib_runs),
                "librosa_loop_runs": lib_runs,
                "extract_split_sweep": sweep,
                "extract_split_default_clips_per_s": default["clips_per_s"],
                "default_setting": {"workers": default["workers"], "threads": default["threads"]},
                "ratio_default": default["clips_per_s"] / max(lib_runs),
                "fastest": {k: best[k] for k in ("workers", "threads", "clips_per_s")},
                "note": "decoding of 24-bit WAV included in both; extract_split also writes "
                "HDF5; warm-up excluded",
            }
            print(
                f"end to end ({args.e2e_clips} clips): extract_split(workers=2, threads=1) "
                f"{default['clips_per_s']:.1f} clips/s, librosa loop {max(lib_runs):.1f} "
                f"clips/s, ratio {end_to_end['ratio_default']:.2f}; fastest "
                f"{end_to_end['fastest']}",
                file=sys.stderr,
            )

    result = {
        "benchmark": "lmfb feature extraction, 10 s clips at 44.1 kHz -> 3 x 128 x 423",
        "n_clips": args.clips,
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
