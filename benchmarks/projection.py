"""Project the cost of a whole configured run from per-clip figures measured at scale.

Used by benchmarks/scale.py. The run is the real DAG: `snakemake -n -p` of the target
under the config lists every job's shell command, and each command's verb, training
spec (epochs, architecture), feature files and teachers say what it costs:

* features / augment: clips x seconds per clip (measured end to end, decode to HDF5);
* train / lottery-round / prune-progressive: epochs x training clips x (1 / training
  rate of the architecture + 1 / inference rate of each teacher: distillation runs the
  teachers on every batch);
* predict: clips x 1 / inference rate;
* everything else (evaluate, fusion, size, figures): a fixed cost per job, the measured
  start-up of one CLI call.

Training and inference rates per architecture come from benchmarks/train_throughput.py
(model compute only), scaled by the ratio of the real trainer's SIC rate (scale.py:
reading batches from disk, augmenting) to the benchmark's SIC rate. Clip counts are
those of TAU Urban Acoustic Scenes 2020 Mobile, development (REFERENCE_NOTES).
"""

from __future__ import annotations

import json
import re
import shlex
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: TAU 2020 Mobile development, fold 1 (REFERENCE_NOTES "Data").
TAU2020_CLIPS = {"train": 13965, "train_device_a": 10215, "evaluate": 2970}
#: Elements per clip of each feature set at 10 s (3 x 128 x 423 LMFB, 1 x 40 x 500).
ELEMENTS = {"lmfb": 3 * 128 * 423, "baseline": 40 * 500}

TRAINING_VERBS = ("train", "lottery-round", "prune-progressive")
_SUBSET = re.compile(r"/subset(\d+)/")


@dataclass(frozen=True)
class Rates:
    """Measured per-clip figures of this machine (seconds, clips/s, bytes)."""

    features_s_per_clip: float
    augment_s_per_clip: float
    bytes_per_element: float
    job_overhead_s: float
    train_rate: Mapping[str, float]  # arch -> clips/s, the real trainer's scale
    infer_rate: Mapping[str, float]  # arch -> clips/s


def shell_commands(dry_run_text: str) -> list[list[str]]:
    """The `acoustic-lottery` argument lists of a `snakemake -n -p` listing."""
    out = []
    for line in dry_run_text.splitlines():
        if not line.startswith("Shell command:"):
            continue
        cmd = line.split(":", 1)[1].split(">", 1)[0].strip()
        if not cmd.startswith("acoustic-lottery"):
            continue
        out.append(shlex.split(cmd)[1:])
    return out


def _options(args: list[str]) -> dict[str, list[str]]:
    """--flag values... -> {flag: [values]} (repeated flags accumulate)."""
    opts: dict[str, list[str]] = defaultdict(list)
    key = None
    for a in args[1:]:
        if a.startswith("--"):
            key = a[2:]
            opts.setdefault(key, [])
        elif key is not None:
            opts[key].append(a)
    return opts


def clips_of(path: str, clips: Mapping[str, int] = TAU2020_CLIPS) -> int:
    """Clips in a feature file of the run, from its path (split, copy, subset)."""
    if "/evaluate" in path or "/test" in path:
        return clips["evaluate"]
    n = clips["train_device_a"] if path.endswith("speccorr.h5") else clips["train"]
    m = _SUBSET.search(path)
    return round(n * int(m.group(1)) / 100) if m else n


def _feature_set(path: str) -> str:
    return "baseline" if "/baseline/" in path else "lmfb"


def _model_dir(ckpt: str) -> str:
    """results/<ds>/models/<name>/final.pt -> results/<ds>/models/<name>."""
    p = Path(ckpt).parent
    return str(p.parent if re.fullmatch(r"round\d+|pruned|dense", p.name) else p)


def project(commands: Iterable[list[str]], rates: Rates) -> dict[str, Any]:
    """Seconds per job family, disk of the feature files, and the jobs left unpriced."""
    commands = list(commands)
    arch_of: dict[str, str] = {}
    for args in commands:
        if args and args[0] in TRAINING_VERBS:
            opts = _options(args)
            spec = json.loads(opts["spec"][0])
            for d in opts.get("out-dir", []):
                arch_of[d] = spec["arch"]
                arch_of[_model_dir(d + "/final.pt")] = spec["arch"]
    seconds: dict[str, float] = defaultdict(float)
    jobs: dict[str, int] = defaultdict(int)
    disk = 0.0
    unpriced: set[str] = set()
    for args in commands:
        verb = args[0] if args else ""
        opts = _options(args)
        jobs[verb] += 1
        if verb in ("features", "augment"):
            out = opts["out"][0]
            n = clips_of(out)
            per_clip = rates.features_s_per_clip if verb == "features" else rates.augment_s_per_clip
            seconds[verb] += n * per_clip
            disk += n * ELEMENTS[_feature_set(out)] * rates.bytes_per_element
        elif verb == "select-features":
            out = opts["out"][0]
            disk += clips_of(out) * ELEMENTS[_feature_set(out)] * rates.bytes_per_element
            seconds[verb] += rates.job_overhead_s
        elif verb in TRAINING_VERBS:
            spec = json.loads(opts["spec"][0])
            n = sum(clips_of(p) for p in opts["train"])
            arch = spec["arch"]
            if arch not in rates.train_rate:
                unpriced.add(arch)
                continue
            per_clip = 1.0 / rates.train_rate[arch]
            teachers = [t.split("=", 1)[1] for t in opts.get("teacher", [])]
            teachers += opts.get("teacher-fusion", [])
            for t in teachers:
                t_arch = arch_of.get(_model_dir(t))
                if t_arch is None or t_arch not in rates.infer_rate:
                    unpriced.add(f"teacher {t}")
                    continue
                per_clip += 1.0 / rates.infer_rate[t_arch]
            seconds[verb] += spec["epochs"] * n * per_clip
        elif verb == "predict" and "features" in opts:
            model = opts["model"][0]
            arch = arch_of.get(_model_dir(model))
            n = clips_of(opts["features"][0])
            if arch is None or arch not in rates.infer_rate:
                arch = "sic"  # int8 artifacts and ONNX: priced as the float SIC
            seconds[verb] += n / rates.infer_rate[arch] + rates.job_overhead_s
        else:
            seconds["other"] += rates.job_overhead_s
    total = sum(seconds.values())
    return {
        "jobs": dict(sorted(jobs.items())),
        "seconds": {k: round(v, 1) for k, v in sorted(seconds.items())},
        "total_seconds": round(total, 1),
        "total_days": round(total / 86400, 2),
        "feature_disk_gb": round(disk / 1e9, 1),
        "unpriced": sorted(unpriced),
    }
