"""Benchmark: batched torch LMFB extraction vs a plain librosa-per-clip loop.

    .venv/bin/python benchmarks/features.py [--clips 64] [--blocks 2] [--pairs 24]
        [--round-clips 16] [--batch-size 16] [--e2e-clips 160] [--repeats 5]
        [--profile-clips 64] [--profile-passes 3] [--skip-end-to-end] [--skip-profile]
        [--out benchmarks/results/features.json]

Both sides work on the same synthetic 10 s clips (seeded white noise at 44.1 kHz,
written as 24-bit WAV like TAU). Every headline is the median of interleaved rounds,
with the best and the worst round beside it; nothing is chosen after the fact. Ratios
are torch / librosa clips per second.

* compute: the clips are decoded before the clock starts, for both. torch runs the
  extractor `extract_split` uses (batched torch.stft in float32, `batch_size` clips
  per call, `threads` torch threads), librosa runs `logmel_librosa` clip by clip
  (numpy's BLAS with `threads` threads too). Each
  side lives in its own process (in one process, numpy's OpenBLAS threads still
  spinning after a librosa call halved the speed of the torch call that followed);
  both processes stay alive and take turns, one round of `round_clips` clips at a
  time, in pairs ordered librosa-torch, torch-librosa, ... (ABBA, so a drifting load
  hits both alike), with `pause` seconds of idleness before each round (so that threads
  still spinning after one side's round do not run into the other's). `blocks` fresh
  process pairs run `pairs` pairs each, after one untimed warm-up round per process.
  Headline ratio: the median over pairs of (torch rate / librosa rate) of the two
  rounds of one pair; best and worst pair beside it, and the ratio of the two sides'
  median rates as a cross-check.
* end to end: decoding included for both. `extract_split` (HDF5 written) at workers
  2 (what the pipeline runs: two worker processes decoding and computing features, one
  torch thread each), 1 and 0 (all in the main process, `default_threads(0)` torch
  threads), against `load_audio` + `logmel_librosa` per clip with nothing written, run
  with numpy's default BLAS threads and with one BLAS thread. Each run is a fresh
  process; a repeat runs both librosa loops and every setting once, in an order
  reversed on every other repeat. Headline: workers=2, the median over repeats of (its
  rate / the librosa loop's rate in the same repeat), against the librosa loop that is
  faster by median (the stronger baseline: on a shared machine two BLAS threads lost
  2x to one); best and worst repeat beside.
* profile (where the time goes): every stage of the extraction, one torch thread and no
  workers, timed separately over `profile_clips` clips in `profile_passes` passes; the
  median per stage is reported with its share of the total. The stages call the
  extractor's own pieces (`MelSpectrogram.spectrum`, `.power_spectrum`, `.project`, ...),
  checked to give exactly `LogMelExtractor`'s output. Beside it, a real `extract_split`
  run at workers=2: the main process's time writing HDF5 and waiting for batches, and
  the CPU time of all processes per clip against the serial passes' (what worker
  start-up and sending batches cost). The JSON's `note` says, from these numbers,
  whether the 2.5x goal end to end is reached and where the time goes.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

SR = 44100
SECONDS = 10.0
#: (workers, threads), None: extract_split's default (`default_threads`: one per worker;
#: the cores, at most 4, with workers=0). The first is what the pipeline runs
#: (features.workers = 2).
E2E_SETTINGS: tuple[tuple[int, int | None], ...] = ((2, None), (1, None), (0, None))
GOAL_RATIO = 2.5
#: What sets the number of threads of numpy's BLAS (OpenBLAS, MKL, OpenMP builds).
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")
MSG = "@@ "  # prefix of the protocol lines a child prints (libraries may print too)


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


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median headline with the best and the worst beside it (higher is better)."""
    return {
        "median": statistics.median(values),
        "best": max(values),
        "worst": min(values),
        "n": len(values),
    }


def _cpu(who: int) -> float:
    import resource

    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def say(obj: Any) -> None:
    print(MSG + json.dumps(obj), flush=True)


# --------------------------------------------------------------------------- children


def child_compute(args: argparse.Namespace) -> None:
    """One side on in-memory waves; runs a round of clips each time the parent asks."""
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

    run(waves[:k])  # warm-up: librosa's first-call JIT, torch's first FFT
    say({"ready": True})
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] != "round":
            break
        s = int(cmd[1]) % (len(waves) - k + 1)
        time.sleep(args.pause)
        t0 = time.perf_counter()
        run(waves[s : s + k])
        say({"rate": k / (time.perf_counter() - t0)})
    out: dict[str, Any] = {}
    if args.child == "torch":
        out["max_abs_diff_vs_librosa"] = max(
            float(
                np.abs(
                    extractor(torch.from_numpy(waves[i : i + 1]))[0].numpy()
                    - logmel_librosa(waves[i], cfg)
                ).max()
            )
            for i in range(min(len(waves), 4))
        )
    say(out)


def child_e2e(args: argparse.Namespace) -> None:
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
        say({"rate": len(meta) / (time.perf_counter() - t0)})
        return
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
    say({"rate": rate})


def _stage_pass(
    meta: pd.DataFrame, writer_path: Path, batch_size: int, stages: dict[str, float]
) -> tuple[np.ndarray, Any]:
    """One serial pass over the clips of `meta` adding each stage's seconds into `stages`.

    The same steps as `extract_split` (workers=0) and `LogMelExtractor`, cut apart
    so that each can be timed; returns the first batch's features and waves for checking.
    """
    import torch

    from acoustic_lottery.data.audio import load_audio
    from acoustic_lottery.features.extract import build_extractor
    from acoustic_lottery.features.lmfb import minmax_torch, stack_deltas_torch
    from acoustic_lottery.features.store import FeatureWriter

    ext = build_extractor("lmfb")
    mel, cfg = ext.mel, ext.cfg
    clock = time.perf_counter

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = clock()
        out = fn()
        stages[name] = stages.get(name, 0.0) + clock() - t0
        return out

    paths = [str(p) for p in meta["path"]]
    first = None
    attrs = {"feature_set": "lmfb", "params": cfg.to_dict(), "split": "bench", "copy": "orig"}
    shape = (ext.n_channels, ext.n_features, ext.n_output_frames(int(SR * SECONDS)))
    writer = timed("hdf5 write", lambda: FeatureWriter(writer_path, attrs, shape).__enter__())
    with torch.inference_mode():
        for b in range(0, len(paths), batch_size):
            part = paths[b : b + batch_size]
            waves = [timed("decode", lambda p=p: load_audio(p, SR, SECONDS)) for p in part]
            wave = timed("batch stacking", lambda w=waves: torch.from_numpy(np.stack(w)))
            chunks = []
            for piece in torch.split(wave, ext.chunk):
                spec = timed("stft", lambda x=piece: mel.spectrum(x))
                mag = timed("power |X|^2", lambda s=spec: mel.power_spectrum(s))
                m = timed("mel projection", lambda x=mag: mel.project(x))
                lg = timed("log", lambda x=m: torch.log(x + cfg.eps))
                mm = timed("min-max", lambda x=lg: minmax_torch(x))
                chunks.append(
                    timed(
                        "deltas + channel stacking",
                        lambda x=mm: stack_deltas_torch(x).to(torch.float32),
                    )
                )
            x = timed("chunk concat + numpy", lambda c=chunks: torch.cat(c, dim=0).numpy())
            if first is None:
                first = (x, wave)
            timed("hdf5 write", lambda x=x, r=meta.iloc[b : b + batch_size]: writer.append(x, r))
    timed("hdf5 write", lambda: writer.__exit__(None, None, None))
    writer_path.unlink()
    assert first is not None
    return first


def child_profile(args: argparse.Namespace) -> None:
    """Stage times of the serial pipeline, and a real run at the pipeline's setting."""
    import resource

    import soundfile
    import torch

    import acoustic_lottery.features.extract as ex
    from acoustic_lottery.features.extract import default_threads, extract_split

    torch.set_num_threads(1)
    meta = make_clips(Path(args.workdir), args.clips)
    paths = [str(p) for p in meta["path"]]
    out = Path(args.workdir) / f"profile_{os.getpid()}.h5"
    x, wave = _stage_pass(meta.iloc[: args.batch_size], out, args.batch_size, {})  # warm-up
    with torch.inference_mode():
        if not np.array_equal(x, ex.build_extractor("lmfb")(wave).numpy()):
            raise AssertionError("profile stages no longer reproduce LogMelExtractor's output")
    passes: list[dict[str, float]] = []
    reads: list[float] = []
    for _ in range(args.passes):
        stages: dict[str, float] = {}
        t0, c0 = time.perf_counter(), time.process_time()
        _stage_pass(meta, out, args.batch_size, stages)
        stages["(wall of the pass)"] = time.perf_counter() - t0
        stages["(cpu of the pass)"] = time.process_time() - c0
        passes.append(stages)
        t0 = time.perf_counter()
        for p in paths:
            soundfile.read(p, dtype="float32", always_2d=True)
        reads.append(time.perf_counter() - t0)
    names = [k for k in passes[0] if not k.startswith("(")]
    med = {k: statistics.median(p[k] for p in passes) for k in names}
    total = sum(med.values())
    n = len(paths)
    stages_out = {
        k: {"seconds": med[k], "ms_per_clip": 1e3 * med[k] / n, "share": med[k] / total}
        for k in sorted(names, key=lambda k: -med[k])
    }

    # The real thing at the pipeline's setting: the workers decode and compute, the main
    # process writes (timed through FeatureWriter) and otherwise waits for batches. All
    # processes' CPU time per clip against the serial passes' shows what the workers cost
    # (their start-up, sending batches) beyond the work itself.
    spent = {"hdf5": 0.0}

    class TimedWriter(ex.FeatureWriter):  # type: ignore[misc, name-defined]
        def __enter__(self) -> Any:
            t0 = time.perf_counter()
            res = super().__enter__()
            spent["hdf5"] += time.perf_counter() - t0
            return res

        def append(self, *a: Any, **k: Any) -> None:
            t0 = time.perf_counter()
            super().append(*a, **k)
            spent["hdf5"] += time.perf_counter() - t0

        def __exit__(self, *a: Any) -> bool:
            t0 = time.perf_counter()
            res = super().__exit__(*a)
            spent["hdf5"] += time.perf_counter() - t0
            return bool(res)

    ex.FeatureWriter = TimedWriter  # type: ignore[misc]
    big = make_clips(Path(args.workdir), args.e2e_clips)
    workers = E2E_SETTINGS[0][0]
    extract_split(big.iloc[:4], out, "lmfb", None, seconds=SECONDS, workers=0)  # warm-up
    runs = []
    for _ in range(args.passes):
        spent["hdf5"] = 0.0
        c0, w0, t0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
        extract_split(
            big, out, "lmfb", None, seconds=SECONDS, batch_size=args.batch_size, workers=workers
        )
        wall = time.perf_counter() - t0
        runs.append(
            {
                "wall": wall,
                "hdf5 write": spent["hdf5"],
                "waiting for workers": wall - spent["hdf5"],
                "main_cpu": _cpu(resource.RUSAGE_SELF) - c0,
                "worker_cpu": _cpu(resource.RUSAGE_CHILDREN) - w0,
            }
        )
    out.unlink(missing_ok=True)
    med_run = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    n_big = len(big)
    serial_cpu = 1e3 * statistics.median(p["(cpu of the pass)"] for p in passes) / n
    parallel_cpu = 1e3 * (med_run["main_cpu"] + med_run["worker_cpu"]) / n_big
    pipeline = {
        "workers": workers,
        "threads_per_worker": default_threads(workers),
        "n_clips": n_big,
        "wall_seconds": med_run["wall"],
        "clips_per_s": n_big / med_run["wall"],
        "main_process": {
            k: {"seconds": med_run[k], "share": med_run[k] / med_run["wall"]}
            for k in ("hdf5 write", "waiting for workers")
        },
        "cpu_ms_per_clip": {
            "main": 1e3 * med_run["main_cpu"] / n_big,
            "workers": 1e3 * med_run["worker_cpu"] / n_big,
            "all": parallel_cpu,
            "serial_one_thread": serial_cpu,
            "workers_overhead": parallel_cpu - serial_cpu,
        },
        "passes": runs,
    }
    say(
        {
            "n_clips": n,
            "passes": args.passes,
            "torch_threads": 1,
            "batch_size": args.batch_size,
            "stages": stages_out,
            "total_seconds": total,
            "ms_per_clip": 1e3 * total / n,
            "decode_with_libsndfile_ms_per_clip": 1e3 * statistics.median(reads) / n,
            "decode_note": "decode is load_audio; for comparison, sf.read of the same files "
            "(libsndfile, which load_audio leaves integer PCM WAV files to no more)",
            "pass_wall_seconds": [p["(wall of the pass)"] for p in passes],
            "pass_cpu_seconds": [p["(cpu of the pass)"] for p in passes],
            "stages_match_extractor": True,
            "resampling": "not exercised: the clips are at 44.1 kHz like TAU",
            "pipeline": pipeline,
        }
    )


# --------------------------------------------------------------------------- parent


def child_cmd(child: str, base: list[str], extra: Sequence[str] = ()) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", child, *base, *extra]


def read_msg(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(MSG):
            return dict(json.loads(line[len(MSG) :]))
    proc.wait()
    err = proc.stderr.read() if proc.stderr is not None else ""
    raise RuntimeError(f"benchmark child exited with {proc.returncode}: {err[-2000:]}")


def blas_env(threads: int | None) -> dict[str, str] | None:
    """The environment of a child whose numpy BLAS runs `threads` threads (None: default)."""
    if threads is None:
        return None
    return {**os.environ, **{k: str(threads) for k in BLAS_THREAD_VARS}}


def run_child(
    child: str, base: list[str], extra: Sequence[str] = (), env: dict[str, str] | None = None
) -> dict[str, Any]:
    res = subprocess.run(
        child_cmd(child, base, extra), check=True, capture_output=True, text=True, env=env
    )
    for line in reversed(res.stdout.splitlines()):
        if line.startswith(MSG):
            return dict(json.loads(line[len(MSG) :]))
    raise RuntimeError(f"benchmark child {child} printed no result")


def bench_compute(args: argparse.Namespace, base: list[str]) -> dict[str, Any]:
    lib: list[float] = []
    tor: list[float] = []
    pair_ratios: list[float] = []
    diff = None
    for _ in range(args.blocks):
        procs = {
            side: subprocess.Popen(
                child_cmd(side, base),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
                env=blas_env(args.threads) if side == "librosa" else None,
            )
            for side in ("librosa", "torch")
        }
        try:
            for p in procs.values():
                read_msg(p)  # ready: both warmed up and idle
            for k in range(args.pairs):
                rates = {}
                for side in ("librosa", "torch") if k % 2 == 0 else ("torch", "librosa"):
                    stdin = procs[side].stdin
                    assert stdin is not None
                    stdin.write(f"round {len(lib) * args.round_clips}\n")
                    stdin.flush()
                    rates[side] = float(read_msg(procs[side])["rate"])
                lib.append(rates["librosa"])
                tor.append(rates["torch"])
                pair_ratios.append(rates["torch"] / rates["librosa"])
            for side, p in procs.items():
                assert p.stdin is not None
                p.stdin.write("quit\n")
                p.stdin.flush()
                res = read_msg(p)
                if side == "torch":
                    diff = res["max_abs_diff_vs_librosa"]
                p.stdin.close()
                p.wait(timeout=60)
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
                    p.wait()
    ratio = spread(pair_ratios)
    return {
        "headline": "median over interleaved round pairs of torch/librosa clips/s",
        "ratio": ratio["median"],
        "ratio_best": ratio["best"],
        "ratio_worst": ratio["worst"],
        "ratio_of_medians": statistics.median(tor) / statistics.median(lib),
        "torch_clips_per_s": spread(tor),
        "librosa_clips_per_s": spread(lib),
        "pair_ratios": pair_ratios,
        "librosa_rounds": lib,
        "torch_rounds": tor,
        "blocks": args.blocks,
        "pairs_per_block": args.pairs,
        "round_clips": args.round_clips,
        "pause_s": args.pause,
        "torch_threads": args.threads,
        "librosa_blas_threads": args.threads,
        "batch_size": args.batch_size,
        "max_abs_diff_vs_librosa": diff,
    }


def bench_end_to_end(args: argparse.Namespace, base: list[str]) -> dict[str, Any]:
    from acoustic_lottery.features.extract import default_threads

    e2e_base = base + ["--clips", str(args.e2e_clips)]
    settings = [(w, default_threads(w) if t is None else t) for w, t in E2E_SETTINGS]
    loops = {"librosa loop, default BLAS threads": None, "librosa loop, one BLAS thread": 1}
    variants: list[str] = [*loops, *(f"{w},{t}" for w, t in settings)]
    runs: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.repeats):
        for v in variants if r % 2 == 0 else list(reversed(variants)):
            if v in loops:
                runs[v].append(run_child("e2e-librosa", e2e_base, env=blas_env(loops[v]))["rate"])
            else:
                w, t = v.split(",")
                extra = ["--workers", w, "--threads", t]
                runs[v].append(run_child("e2e-torch", e2e_base, extra)["rate"])
    # The baseline is the faster librosa loop by median (the stronger baseline, so the
    # ratio can only come out lower): on a shared machine numpy's default BLAS threads
    # can lose to one thread, because a parallel region waits for a preempted thread.
    baseline = max(loops, key=lambda v: statistics.median(runs[v]))
    lib = runs[baseline]
    sweep = []
    for w, t in settings:
        r = runs[f"{w},{t}"]
        pr = [a / b for a, b in zip(r, lib)]
        sweep.append(
            {
                "workers": w,
                "threads": t,
                "clips_per_s": spread(r),
                "ratio": spread(pr),
                "runs": r,
                "pair_ratios": pr,
            }
        )
    default = sweep[0]
    fastest = max(sweep, key=lambda s: s["clips_per_s"]["median"])
    return {
        "headline": "median over repeats of extract_split(workers=2) / librosa loop clips/s, "
        "all runs of a repeat back to back; the librosa loop is the faster of its two "
        "BLAS settings by median",
        "n_clips": args.e2e_clips,
        "repeats": args.repeats,
        "default_setting": {"workers": default["workers"], "threads": default["threads"]},
        "ratio": default["ratio"]["median"],
        "ratio_best": default["ratio"]["best"],
        "ratio_worst": default["ratio"]["worst"],
        "ratio_of_medians": default["clips_per_s"]["median"] / statistics.median(lib),
        "extract_split_clips_per_s": default["clips_per_s"],
        "baseline": baseline,
        "librosa_loop_clips_per_s": spread(lib),
        "librosa_loops": {v: {"clips_per_s": spread(runs[v]), "runs": runs[v]} for v in loops},
        "extract_split_sweep": sweep,
        "fastest_by_median": {
            "workers": fastest["workers"],
            "threads": fastest["threads"],
            "clips_per_s": fastest["clips_per_s"]["median"],
            "ratio": fastest["ratio"]["median"],
        },
        "note": "decoding of 24-bit WAV included in both; extract_split also writes "
        "HDF5; warm-up excluded; worker start-up included",
    }


def closing_note(
    compute: dict[str, Any], e2e: dict[str, Any] | None, prof: dict[str, Any] | None
) -> str:
    parts = [
        f"compute {compute['ratio']:.2f}x by median (best {compute['ratio_best']:.2f}x, "
        f"worst {compute['ratio_worst']:.2f}x)"
    ]
    if e2e is not None:
        reached = "reached" if e2e["ratio"] >= GOAL_RATIO else "not reached"
        parts.append(
            f"end to end {e2e['ratio']:.2f}x by median (best {e2e['ratio_best']:.2f}x, "
            f"worst {e2e['ratio_worst']:.2f}x) against the {e2e['baseline']}: the "
            f"{GOAL_RATIO}x goal is {reached}"
        )
    if prof is not None:
        shares = ", ".join(
            f"{k} {100 * v['share']:.0f} %" for k, v in prof["stages"].items() if v["share"] >= 0.01
        )
        pipe = prof["pipeline"]
        cpu = pipe["cpu_ms_per_clip"]
        parts.append(
            f"where the time goes (one thread, no workers, {prof['ms_per_clip']:.1f} ms per "
            f"clip): {shares}; at workers={pipe['workers']} all processes together spend "
            f"{cpu['all']:.1f} ms of CPU per clip against {cpu['serial_one_thread']:.1f} ms "
            f"serially (the difference: starting the workers and sending batches), and the "
            f"main process waits for batches "
            f"{100 * pipe['main_process']['waiting for workers']['share']:.0f} % of the time"
        )
    return "; ".join(parts) + "."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--clips", type=int, default=64, help="in-memory clips (compute)")
    ap.add_argument("--blocks", type=int, default=2, help="fresh process pairs (compute)")
    ap.add_argument("--pairs", type=int, default=24, help="round pairs per block (compute)")
    ap.add_argument("--round-clips", type=int, default=16, help="clips per timed round")
    ap.add_argument("--pause", type=float, default=0.2, help="idle seconds before a round")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--e2e-clips", type=int, default=160)
    ap.add_argument("--repeats", type=int, default=5, help="end-to-end runs per variant")
    ap.add_argument("--profile-clips", type=int, default=64)
    ap.add_argument("--profile-passes", type=int, default=3)
    ap.add_argument("--skip-end-to-end", action="store_true")
    ap.add_argument("--skip-profile", action="store_true")
    ap.add_argument(
        "--out", default=str(Path(__file__).resolve().parent / "results" / "features.json")
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=2, help=argparse.SUPPRESS)
    ap.add_argument("--passes", type=int, default=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ["ACOUSTIC_LOTTERY_PROGRESS"] = "0"

    if args.child is not None:
        if args.child in ("librosa", "torch"):
            child_compute(args)
        elif args.child == "profile":
            child_profile(args)
        else:
            child_e2e(args)
        return 0

    import librosa
    import torch

    from acoustic_lottery import __version__
    from acoustic_lottery.io import write_json

    started = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        make_clips(Path(tmp), max(args.clips, args.e2e_clips, args.profile_clips))
        base = ["--workdir", tmp, "--batch-size", str(args.batch_size)]
        compute_base = base + [
            "--clips", str(args.clips), "--round-clips", str(args.round_clips),
            "--threads", str(args.threads), "--pause", str(args.pause),
        ]  # fmt: skip
        section_s: dict[str, float] = {}
        t_section = time.perf_counter()
        compute = bench_compute(args, compute_base)
        section_s["compute"] = time.perf_counter() - t_section
        print(
            f"compute: ratio {compute['ratio']:.2f} by median of {len(compute['pair_ratios'])} "
            f"pairs (best {compute['ratio_best']:.2f}, worst {compute['ratio_worst']:.2f}); "
            f"torch {compute['torch_clips_per_s']['median']:.1f}, librosa "
            f"{compute['librosa_clips_per_s']['median']:.1f} clips/s (medians); "
            f"max |diff| {compute['max_abs_diff_vs_librosa']:.1e}",
            file=sys.stderr,
        )
        end_to_end = None
        if not args.skip_end_to_end:
            t_section = time.perf_counter()
            end_to_end = bench_end_to_end(args, base)
            section_s["end_to_end"] = time.perf_counter() - t_section
            print(
                f"end to end ({args.e2e_clips} clips): ratio {end_to_end['ratio']:.2f} by "
                f"median of {args.repeats} repeats (best {end_to_end['ratio_best']:.2f}, "
                f"worst {end_to_end['ratio_worst']:.2f}); fastest by median "
                f"{end_to_end['fastest_by_median']}",
                file=sys.stderr,
            )
        profile = None
        if not args.skip_profile:
            extra = [
                "--clips", str(args.profile_clips), "--passes", str(args.profile_passes),
                "--e2e-clips", str(args.e2e_clips),
            ]  # fmt: skip
            t_section = time.perf_counter()
            profile = run_child("profile", base, extra)
            section_s["profile"] = time.perf_counter() - t_section
            print(
                "profile: "
                + ", ".join(f"{k} {100 * v['share']:.0f}%" for k, v in profile["stages"].items()),
                file=sys.stderr,
            )

    result = {
        "benchmark": "lmfb feature extraction, 10 s clips at 44.1 kHz -> 3 x 128 x 423",
        "rules": "every headline is the median of interleaved rounds, best and worst beside "
        "it; ratios are torch / librosa clips per second, per interleaved pair",
        "goal_ratio_end_to_end": GOAL_RATIO,
        "goal_reached": None if end_to_end is None else end_to_end["ratio"] >= GOAL_RATIO,
        "note": closing_note(compute, end_to_end, profile),
        "n_clips": args.clips,
        "decoding": "excluded from both in 'compute'; included in both in 'end_to_end'",
        "warmup_excluded": True,
        "compute": compute,
        "end_to_end": end_to_end,
        "profile": profile,
        "seconds": time.perf_counter() - started,
        "section_seconds": section_s,
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
