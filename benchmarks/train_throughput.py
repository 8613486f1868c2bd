"""Benchmark: training and inference throughput of the paper's models at 10 s input.

    .venv/bin/python benchmarks/train_throughput.py [--device cpu|cuda] [--amp off]
        [--models sic:1.0,lic:1.0,fcnn:1.0,resnet:1.0,repmobile:1.0,baseline:1.0] [--rounds 3]
        [--steps 2] [--batch-size 16] [--threads 2] [--out PATH]

What is timed: one SGD step (forward, loss, backward, update) on a batch of the
training input of `configs/tau2020.yaml` (LMFB 3 x 128 x 400 after the 400-frame crop;
the baseline's 1 x 40 x 500), channels-last, under `--amp` exactly as the trainer runs
it; and eval-mode inference on the full 3 x 128 x 423 clip. The data loader is not
in it (benchmarks/scale.py times the real trainer reading from disk).

Each (model, round) runs in its own process, rounds interleaved (round 1 of every
model, then round 2, ...), so drifting machine load hits every model alike and each
process's peak memory is that model's: peak RSS (`getrusage`) and, on CUDA, peak
allocated device memory. The headline per model is the median clips/s over rounds,
with the best and worst beside it. Results: benchmarks/results/train_throughput_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_MODELS = "sic:1.0,lic:1.0,fcnn:1.0,resnet:1.0,repmobile:1.0,baseline:1.0"
LMFB_TRAIN, LMFB_CLIP = (3, 128, 400), (3, 128, 423)
BASELINE_INPUT = (1, 40, 500)


def input_shapes(arch: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(training input, inference input) of `arch` in the paper's setting."""
    if arch == "baseline":
        return BASELINE_INPUT, BASELINE_INPUT
    return LMFB_TRAIN, LMFB_CLIP


def measure(
    arch: str,
    width: float,
    *,
    device: str,
    amp: str,
    steps: int,
    batch_size: int,
    threads: int,
    seed: int = 0,
) -> dict[str, Any]:
    """One round of one model, in this process: clips/s of training and of inference."""
    import torch
    import torch.nn.functional as F

    from acoustic_lottery.evaluation.predict import resolve_device
    from acoustic_lottery.models.registry import build_model
    from acoustic_lottery.training.trainer import _autocast, _grad_scaler, memory_format

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    dev = resolve_device(device)
    train_shape, clip_shape = input_shapes(arch)
    model = build_model(arch, task="scene", width=width, in_channels=train_shape[0])
    fmt = memory_format(dev, amp)
    model.to(dev, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = _grad_scaler(dev, amp)
    x = torch.rand(batch_size, *train_shape, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch_size,), device=dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def step() -> None:
        with _autocast(dev, amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()

    model.train()
    step()  # warm-up: allocator, kernels, oneDNN primitive cache
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    train_s = time.perf_counter() - t0

    model.eval()
    xe = torch.rand(batch_size, *clip_shape, device=dev).contiguous(memory_format=fmt)
    with torch.inference_mode(), _autocast(dev, amp):
        model(xe)
        sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            model(xe)
        sync()
        infer_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "train_clips_per_s": steps * batch_size / train_s,
        "infer_clips_per_s": steps * batch_size / infer_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if dev.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
        out["cuda_device"] = torch.cuda.get_device_name(dev)
    return out


def _child(args: argparse.Namespace) -> None:
    arch, width = args.child.split(":")
    result = measure(
        arch,
        float(width),
        device=args.device,
        amp=args.amp,
        steps=args.steps,
        batch_size=args.batch_size,
        threads=args.threads,
    )
    print(json.dumps(result))


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of the rounds as the headline, best and worst beside it."""
    out: dict[str, Any] = {"rounds": rounds}
    for key in ("train_clips_per_s", "infer_clips_per_s"):
        values = [r[key] for r in rounds]
        out[key] = {
            "median": statistics.median(values),
            "best": max(values),
            "worst": min(values),
        }
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rounds)
    if any("peak_cuda_mb" in r for r in rounds):
        out["peak_cuda_mb"] = max(r.get("peak_cuda_mb", 0.0) for r in rounds)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"])
    p.add_argument("--models", default=DEFAULT_MODELS, help="arch:width,... (registry names)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2, help="timed training steps per round")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args)
        return 0
    if args.rounds < 1 or args.steps < 1 or args.batch_size < 1:
        p.error("--rounds, --steps and --batch-size must be >= 1")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m.count(":") != 1:
            p.error(f"--models: expected arch:width, found {m!r}")
    rounds: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    for r in range(args.rounds):
        for m in models:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                m,
                "--device",
                args.device,
                "--amp",
                args.amp,
                "--steps",
                str(args.steps),
                "--batch-size",
                str(args.batch_size),
                "--threads",
                str(args.threads),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.stderr.write(done.stderr)
                print(f"train_throughput: {m} round {r + 1} failed", file=sys.stderr)
                return 1
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rounds[m].append(result)
            print(
                f"round {r + 1}/{args.rounds} {m}: train {result['train_clips_per_s']:.2f} "
                f"clips/s, inference {result['infer_clips_per_s']:.2f} clips/s, "
                f"peak RSS {result['peak_rss_mb']:.0f} MB",
                file=sys.stderr,
            )
    import torch

    from acoustic_lottery import __version__

    device_name = args.device
    summary = {
        "benchmark": "training and inference throughput at 10 s input (tau2020 shapes)",
        "code_version": __version__,
        "torch_version": torch.__version__,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
        "settings": {
            "device": device_name,
            "amp": args.amp,
            "rounds": args.rounds,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "train_input": {"lmfb": LMFB_TRAIN, "baseline": BASELINE_INPUT},
            "inference_input": {"lmfb": LMFB_CLIP, "baseline": BASELINE_INPUT},
        },
        "headline": "median clips/s over interleaved rounds (best and worst beside)",
        "models": {m: summarise(v) for m, v in rounds.items()},
    }
    kind = "cuda" if device_name.startswith("cuda") else device_name
    out = args.out or Path(__file__).parent / "results" / f"train_throughput_{kind}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    tmp.replace(out)
    for m, s in summary["models"].items():
        t = s["train_clips_per_s"]
        print(
            f"{m}: train {t['median']:.2f} clips/s (best {t['best']:.2f}, worst "
            f"{t['worst']:.2f}), inference {s['infer_clips_per_s']['median']:.2f} clips/s"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
