"""Benchmark: float vs static-int8 ONNX latency per 10 s clip on one CPU core, and file sizes.

    .venv/bin/python benchmarks/onnx_latency.py [--archs sic,lic] [--rounds 15]
        [--per-round 10] [--warmup 20] [--calibration-clips 32] [--core N]
        [--no-variants] [--out benchmarks/results/onnx_latency.json]

For each architecture: a fresh model (seeded) whose BatchNorm statistics are set by
forward passes in train mode over pseudo log-mel inputs (cumulative average), exported
to ONNX (`export_onnx`) and quantized (`quantize_onnx_static`: QDQ, per-channel
symmetric int8 weights, uint8 activations, min/max calibration on pseudo log-mel clips
of the deployed shape 3 x 128 x 423).

Latency: batch 1, input 3 x 128 x 423 (one 10 s clip), onnxruntime CPU provider with
intra_op_num_threads=1, inter_op_num_threads=1, sequential execution, ORT_ENABLE_ALL,
and the process pinned to one core. After a warm-up, rounds alternate float and int8
(`per-round` calls each) so that drifting machine load hits both alike. Reported per
model: the median wall time per call (the headline) with the best (min) and the worst
(max) beside it, p10 / p90, and the median process CPU time per call with its best and
worst (the CPU time is what the call itself cost and barely moves when other processes
share the core; the wall time is what a user waits). Speed-up = float / int8 medians.

Variants (unless --no-variants) record what was tried to make int8 fast: int8
activations (asymmetric and symmetric), per-tensor weights, no pre-processing, lower
graph optimisation levels and onnxruntime's dynamic quantization; each with its median
latency, file size and argmax agreement with the float model on held-out pseudo clips.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from acoustic_lottery import __version__
from acoustic_lottery.io import write_json
from acoustic_lottery.models.registry import build_model
from acoustic_lottery.quantization.onnx_export import (
    INPUT_NAME,
    OUTPUT_NAME,
    export_onnx,
    make_session,
    quantize_onnx_static,
)

SHAPE = (3, 128, 423)  # one 10 s clip: log-mel, delta, delta-delta x 128 bands x 423 frames


def pseudo_logmel(
    n: int, rng: np.random.Generator, shape: tuple[int, int, int] = SHAPE
) -> np.ndarray:
    """Log-mel-like clips: a falling spectral envelope, time-correlated fluctuations per
    band, and finite-difference deltas (channels 1, 2) of it: value ranges and
    correlations like real features, which is what calibration ranges depend on."""
    _, f, t = shape
    envelope = np.linspace(2.0, -2.0, f)[:, None]
    out = np.empty((n, 3, f, t), dtype=np.float32)
    for i in range(n):
        noise = rng.standard_normal((f, t + 8))
        smooth = np.zeros_like(noise)
        acc = np.zeros(f)
        for j in range(t + 8):  # AR(1) along time: stationary sounds with slow changes
            acc = 0.8 * acc + 0.6 * noise[:, j]
            smooth[:, j] = acc
        level = rng.normal(0.0, 0.5)
        x = envelope + level + smooth
        d = (x[:, 2:] - x[:, :-2]) / 2.0
        dd = (d[:, 2:] - d[:, :-2]) / 2.0
        out[i, 0] = x[:, 4 : 4 + t]
        out[i, 1] = d[:, 2 : 2 + t]
        out[i, 2] = dd[:, :t]
    return out


def set_bn_statistics(model: torch.nn.Module, x: np.ndarray, batch: int = 8) -> torch.nn.Module:
    """Give every BN running statistics = the average batch statistics over `x` (train-mode
    passes with cumulative averaging), then eval mode: a fresh model's BNs would otherwise
    hold mean 0 / var 1 and the activations would not look like a trained model's."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for s in range(0, len(x), batch):
            model(torch.from_numpy(x[s : s + batch]))
    for bn, m in zip(bns, saved):
        bn.momentum = m
    return model.eval()


def cpu_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
    }
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in text.splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info["cpu_flags"] = sorted(
                    f for f in flags if "vnni" in f or f.startswith("amx") or f == "avx512f"
                )
                break
    except OSError:
        pass
    return info


def time_calls(
    sessions: dict[str, ort.InferenceSession],
    x: np.ndarray,
    *,
    rounds: int,
    per_round: int,
    warmup: int,
) -> dict[str, dict[str, float]]:
    """Interleaved timing of several sessions on the same input: per-call wall and CPU."""
    feed = {INPUT_NAME: x}
    for s in sessions.values():
        for _ in range(warmup):
            s.run([OUTPUT_NAME], feed)
    wall: dict[str, list[float]] = {k: [] for k in sessions}
    cpu: dict[str, list[float]] = {k: [] for k in sessions}
    for r in range(rounds):
        names = list(sessions) if r % 2 == 0 else list(reversed(sessions))
        for name in names:
            s = sessions[name]
            for _ in range(per_round):
                w0, c0 = time.perf_counter(), time.process_time()
                s.run([OUTPUT_NAME], feed)
                c1, w1 = time.process_time(), time.perf_counter()
                wall[name].append((w1 - w0) * 1e3)
                cpu[name].append((c1 - c0) * 1e3)
    out = {}
    for name in sessions:
        w = np.asarray(wall[name])
        out[name] = {
            "median_ms": float(np.median(w)),
            "p10_ms": float(np.percentile(w, 10)),
            "p90_ms": float(np.percentile(w, 90)),
            "min_ms": float(w.min()),
            "max_ms": float(w.max()),
            "cpu_median_ms": float(np.median(cpu[name])),
            "cpu_min_ms": float(np.min(cpu[name])),
            "cpu_max_ms": float(np.max(cpu[name])),
            "calls": int(w.size),
        }
    return out


def optimized_ops(path: Path, work: Path) -> dict[str, int]:
    """Op census of the graph onnxruntime actually runs (ORT_ENABLE_ALL, one thread)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    opts.optimized_model_filepath = str(work / (path.stem + ".optimized.onnx"))
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    graph = onnx.load(opts.optimized_model_filepath).graph
    return dict(sorted(collections.Counter(n.op_type for n in graph.node).items()))


def agreement(a: Path, b: Path, x: np.ndarray) -> dict[str, float]:
    """Argmax agreement and largest logit difference of two models on clips x."""
    sa, sb = make_session(a, threads=0), make_session(b, threads=0)
    za = np.concatenate(
        [sa.run([OUTPUT_NAME], {INPUT_NAME: x[i : i + 8]})[0] for i in range(0, len(x), 8)]
    )
    zb = np.concatenate(
        [sb.run([OUTPUT_NAME], {INPUT_NAME: x[i : i + 8]})[0] for i in range(0, len(x), 8)]
    )
    return {
        "argmax_agreement": float(np.mean(za.argmax(1) == zb.argmax(1))),
        "max_abs_logit_diff": float(np.abs(za - zb).max()),
        "max_abs_logit": float(np.abs(za).max()),
    }


def run_variants(
    arch: str,
    float_path: Path,
    work: Path,
    calib: np.ndarray,
    held_out: np.ndarray,
    x: np.ndarray,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """The alternatives tried, each timed against the float model in the same rounds."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def static(name: str, **kw: Any) -> Callable[[], Path]:
        def make() -> Path:
            out = work / f"{arch}.{name}.onnx"
            quantize_onnx_static(float_path, out, calib, **kw)
            return out

        return make

    def dynamic() -> Path:
        out = work / f"{arch}.dynamic.onnx"
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # its advice to pre-process does not apply here
        try:
            quantize_dynamic(
                str(float_path), str(out), per_channel=True, weight_type=QuantType.QInt8
            )
        finally:
            root.setLevel(level)
        return out

    default = work / f"{arch}.int8.onnx"
    variants: list[tuple[str, Callable[[], Path], str]] = [
        ("int8 default (uint8 act, per-channel, pre-processed)", lambda: default, "all"),
        ("int8, int8 activations (asymmetric)", static("s8", activation_type="qint8"), "all"),
        (
            "int8, int8 activations (symmetric)",
            static("s8sym", activation_type="qint8", activation_symmetric=True),
            "all",
        ),
        ("int8, per-tensor weights", static("pt", per_channel=False), "all"),
        ("int8, no quant_pre_process", static("nopre", preprocess=False), "all"),
        ("int8 default, ORT_ENABLE_EXTENDED", lambda: default, "extended"),
        ("int8 default, ORT_ENABLE_BASIC", lambda: default, "basic"),
        ("float, ORT_ENABLE_EXTENDED", lambda: float_path, "extended"),
        ("int8 dynamic (quantize_dynamic, ConvInteger)", dynamic, "all"),
    ]
    results = []
    for label, make, level in variants:
        row: dict[str, Any] = {"variant": label, "optimization": level}
        try:
            path = make()
            sessions = {
                "float": make_session(float_path, threads=1),
                "variant": make_session(path, threads=1, optimization=level),
            }
            t = time_calls(
                sessions,
                x,
                rounds=max(2, args.rounds // 3),
                per_round=args.per_round,
                warmup=args.warmup // 2,
            )
            row.update(
                {
                    "median_ms": t["variant"]["median_ms"],
                    "cpu_median_ms": t["variant"]["cpu_median_ms"],
                    "float_median_ms": t["float"]["median_ms"],
                    "float_cpu_median_ms": t["float"]["cpu_median_ms"],
                    "speedup_vs_float_cpu": t["float"]["cpu_median_ms"]
                    / t["variant"]["cpu_median_ms"],
                    "file_bytes": path.stat().st_size,
                    **agreement(float_path, path, held_out),
                }
            )
        except Exception as e:  # a variant that does not build or run is a result too
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        results.append(row)
        print(f"  {arch} {label}: {row.get('cpu_median_ms', row.get('error'))}", file=sys.stderr)
    return results


def bench_arch(arch: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    model = build_model(arch, task="scene", seed=args.seed)
    set_bn_statistics(model, pseudo_logmel(16, rng))
    calib = pseudo_logmel(args.calibration_clips, rng)
    held_out = pseudo_logmel(32, rng)
    x = pseudo_logmel(1, rng)

    float_path, int8_path = work / f"{arch}.onnx", work / f"{arch}.int8.onnx"
    t0 = time.perf_counter()
    export = export_onnx(model, float_path, input_shape=SHAPE)
    t1 = time.perf_counter()
    quant = quantize_onnx_static(float_path, int8_path, calib)
    t2 = time.perf_counter()
    sessions = {
        "float": make_session(float_path, threads=1),
        "int8": make_session(int8_path, threads=1),
    }
    timing = time_calls(
        sessions, x, rounds=args.rounds, per_round=args.per_round, warmup=args.warmup
    )
    result: dict[str, Any] = {
        "arch": arch,
        "params": int(sum(p.numel() for p in model.parameters())),
        "export_seconds": t1 - t0,
        "export_max_abs_diff": export.max_abs_diff,
        "quantize_seconds": t2 - t1,
        "quantization": quant.settings,
        "float": {**timing["float"], "file_bytes": float_path.stat().st_size},
        "int8": {**timing["int8"], "file_bytes": int8_path.stat().st_size},
        "speedup_wall": timing["float"]["median_ms"] / timing["int8"]["median_ms"],
        "speedup_cpu": timing["float"]["cpu_median_ms"] / timing["int8"]["cpu_median_ms"],
        "size_ratio": int8_path.stat().st_size / float_path.stat().st_size,
        # On an untrained model the logits barely vary between clips (BN + global pooling
        # centre them), so this agreement is a sanity check, not an accuracy estimate;
        # accuracy is checked on trained models (tests, compare-onnx).
        "int8_vs_float": agreement(float_path, int8_path, held_out),
        "int8_runtime_ops": optimized_ops(int8_path, work),
        "float_runtime_ops": optimized_ops(float_path, work),
    }
    print(
        f"{arch}: float {timing['float']['median_ms']:.2f} ms (cpu "
        f"{timing['float']['cpu_median_ms']:.2f}), int8 {timing['int8']['median_ms']:.2f} ms "
        f"(cpu {timing['int8']['cpu_median_ms']:.2f}), speed-up {result['speedup_cpu']:.2f}x "
        f"(cpu), files {result['float']['file_bytes']} / {result['int8']['file_bytes']} bytes",
        file=sys.stderr,
    )
    if not args.no_variants:
        result["variants"] = run_variants(arch, float_path, work, calib, held_out, x, args)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default="sic,lic")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--calibration-clips", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--core", type=int, default=None, help="CPU to pin to (default: last)")
    parser.add_argument("--no-variants", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/onnx_latency.json"))
    args = parser.parse_args(argv)

    pinned = None
    if hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        pinned = args.core if args.core is not None else allowed[-1]
        os.sched_setaffinity(0, {pinned})
    torch.set_num_threads(1)
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="onnx-latency-") as tmp:
        archs = [bench_arch(a.strip(), args, Path(tmp)) for a in args.archs.split(",") if a]
    result = {
        "benchmark": "onnx_latency",
        "code_version": __version__,
        "input_shape": [1, *SHAPE],
        "clip_seconds": 10.0,
        "settings": {
            "provider": "CPUExecutionProvider",
            "intra_op_num_threads": 1,
            "inter_op_num_threads": 1,
            "execution_mode": "ORT_SEQUENTIAL",
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "pinned_cpu": pinned,
            "rounds": args.rounds,
            "per_round": args.per_round,
            "warmup": args.warmup,
            "calibration_clips": args.calibration_clips,
            "seed": args.seed,
        },
        "machine": {
            **cpu_info(),
            "loadavg_before": list(load_before) if load_before else None,
            "loadavg_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "versions": {
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "seconds": time.time() - started,
        "results": archs,
        "summary": {
            a["arch"]: {
                "float_ms": a["float"]["median_ms"],
                "float_ms_best": a["float"]["min_ms"],
                "float_ms_worst": a["float"]["max_ms"],
                "int8_ms": a["int8"]["median_ms"],
                "int8_ms_best": a["int8"]["min_ms"],
                "int8_ms_worst": a["int8"]["max_ms"],
                "float_cpu_ms": a["float"]["cpu_median_ms"],
                "int8_cpu_ms": a["int8"]["cpu_median_ms"],
                "speedup_wall": a["speedup_wall"],
                "speedup_cpu": a["speedup_cpu"],
                "float_bytes": a["float"]["file_bytes"],
                "int8_bytes": a["int8"]["file_bytes"],
                "size_ratio": a["size_ratio"],
                "int8_faster": a["int8"]["cpu_median_ms"] < a["float"]["cpu_median_ms"],
            }
            for a in archs
        },
    }
    write_json(args.out, result)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
