"""`TrainSpec`: every setting of one training run, validated once, stored in every checkpoint.

Why a frozen dataclass rather than a loose dict: a resumed run compares the spec of its
checkpoint with the one it was given, so the spec has to be complete (defaults filled),
canonical (`to_dict` is JSON) and immutable during a run. Defaults are those of the
published systems (REFERENCE_NOTES "Training" and "Augmentation"); 14 epochs are the
cosine cycles 2 + 4 + 8, so the model is taken at the learning-rate minimum.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from acoustic_lottery.errors import InputError

__all__ = ["AMP_MODES", "FEATURE_SETS", "RUNTIME_KEYS", "TASKS", "KDSpec", "TrainSpec"]

TASKS: tuple[str, ...] = ("scene", "super", "mtl")
#: Mixed precision of the forward/backward pass (`torch.autocast`); "off" is float32.
AMP_MODES: tuple[str, ...] = ("off", "bf16", "fp16")
#: Settings that change how fast a run goes, never its numbers: a resumed run does not
#: compare them (a job killed for memory may resume with fewer workers or a smaller cap).
RUNTIME_KEYS: tuple[str, ...] = ("workers", "resident_mb")
FEATURE_SETS: tuple[str, ...] = ("lmfb", "baseline")
HEAD_NAMES: tuple[str, ...] = ("scene", "super")


def _close(name: str, allowed: list[str]) -> str:
    hint = difflib.get_close_matches(name, allowed, n=1)
    return f"; did you mean {hint[0]!r}?" if hint else ""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and math.isfinite(v)


@dataclass(frozen=True)
class KDSpec:
    """Distillation weights: hard·CE(labels) + soft·(T² if t2_scaling)·KL(teacher ‖ student).

    ASC_Knowledge_Transfer used hard 0, soft 1, T 1; Hinton's form multiplies the soft
    term by T² so its gradient scale does not shrink with the temperature.
    """

    temperature: float = 1.0
    hard_weight: float = 0.0
    soft_weight: float = 1.0
    t2_scaling: bool = True

    @classmethod
    def from_dict(cls, d: Any, source: str = "spec") -> KDSpec:
        """Validate a `kd` mapping; every error names `<source>.kd.<key>`."""
        if not isinstance(d, Mapping):
            raise InputError(
                f"{source}: key 'kd': expected a mapping with temperature, hard_weight, "
                f"soft_weight, t2_scaling (or null), found {type(d).__name__} {d!r}"
            )
        allowed = [f.name for f in dataclasses.fields(cls)]
        values: dict[str, Any] = {}
        for key, v in d.items():
            if key not in allowed:
                raise InputError(
                    f"{source}: unknown key 'kd.{key}'{_close(str(key), allowed)} "
                    f"(allowed: {', '.join(allowed)})"
                )
            if key == "t2_scaling":
                if not isinstance(v, bool):
                    raise InputError(
                        f"{source}: key 'kd.t2_scaling': expected a boolean, found {v!r}"
                    )
                values[key] = v
                continue
            if not _is_number(v):
                raise InputError(f"{source}: key 'kd.{key}': expected a number, found {v!r}")
            if key == "temperature" and not v > 0:
                raise InputError(f"{source}: key 'kd.temperature': expected > 0, found {v!r}")
            if key != "temperature" and v < 0:
                raise InputError(f"{source}: key 'kd.{key}': expected >= 0, found {v!r}")
            values[key] = float(v)
        kd = cls(**values)
        if kd.hard_weight == 0 and kd.soft_weight == 0:
            raise InputError(
                f"{source}: key 'kd': hard_weight and soft_weight are both 0 (nothing to learn)"
            )
        return kd


# (name, kind, minimum, maximum, allow_none): kinds are "int", "float", "str".
_NUMERIC_RULES: dict[str, tuple[str, float | None, float | None, bool]] = {
    "width": ("float", 0.0, None, False),
    "epochs": ("int", 1, None, False),
    "batch_size": ("int", 1, None, False),
    "lr_max": ("float", 0.0, None, False),
    "lr_min": ("float", 0.0, None, False),
    "momentum": ("float", 0.0, 1.0, False),
    "weight_decay": ("float", 0.0, None, False),
    "cycle_epochs": ("int", 1, None, False),
    "cycle_mult": ("int", 1, None, False),
    "mixup_alpha": ("float", 0.0, None, False),
    "specaug_freq": ("int", 0, None, False),
    "specaug_time": ("int", 0, None, False),
    "crop_frames": ("int", 1, None, True),
    "seed": ("int", 0, None, False),
    "threads": ("int", 1, None, False),
    "bn_momentum": ("float", 0.0, 1.0, True),
    "rewind_step": ("int", 0, None, True),
    "workers": ("int", 0, 64, False),
    "resident_mb": ("int", 0, None, False),
}
# Keys whose value must be strictly greater than the minimum.
_STRICT_MIN = {"width", "lr_max", "bn_momentum"}


@dataclass(frozen=True)
class TrainSpec:
    """One training run. `to_dict()` is what checkpoints store and resumes compare.

    bn_momentum: None keeps the models' Keras default (PyTorch momentum 0.01); a number
    sets every BatchNorm's PyTorch momentum (weight of the new batch statistics).
    crop_frames: random crop length in training (None = whole clips); evaluation always
    uses every frame. rewind_step: save `rewind.pt` after this many optimizer steps
    (late rewinding for the lottery). device: "cpu", "cuda", "cuda:N" or "auto".
    amp: mixed precision ("bf16", "fp16" with a gradient scaler on CUDA, "off").
    workers: data-loader processes that read and augment batches ahead of the step
    (0: in the training process). resident_mb: training files totalling at most this
    many MiB of float32 features are read into memory once; larger sets are read batch
    by batch from the HDF5 files, so memory does not grow with the number of clips.
    Batches are the same either way (same clips, same augmentation draws).
    """

    arch: str
    task: str = "scene"
    width: float = 1.0
    feature_set: str = "lmfb"
    epochs: int = 14
    batch_size: int = 32
    lr_max: float = 0.1
    lr_min: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 0.0
    cycle_epochs: int = 2
    cycle_mult: int = 2
    mixup_alpha: float = 0.4
    specaug_freq: int = 12
    specaug_time: int = 39
    crop_frames: int | None = None
    seed: int = 0
    device: str = "cpu"
    threads: int = 2
    bn_momentum: float | None = None
    kd: KDSpec | None = None
    mtl_weights: dict[str, float] = field(default_factory=lambda: {"scene": 1.0, "super": 1.0})
    rewind_step: int | None = None
    amp: str = "off"
    workers: int = 0
    resident_mb: int = 512

    def __hash__(self) -> int:  # dict field: hash the canonical JSON instead
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @property
    def heads(self) -> tuple[str, ...]:
        """Head names the model of this task has, in output order."""
        return ("scene", "super") if self.task == "mtl" else (self.task,)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: Any, source: str = "spec") -> TrainSpec:
        """Validate a spec mapping (defaults fill missing keys); InputError names the key."""
        if isinstance(d, TrainSpec):
            return d
        if not isinstance(d, Mapping):
            raise InputError(f"{source}: expected a mapping of training settings, found {d!r}")
        allowed = cls.field_names()
        for key in d:
            if key not in allowed:
                raise InputError(
                    f"{source}: unknown key {key!r}{_close(str(key), allowed)} "
                    f"(allowed: {', '.join(allowed)})"
                )
        if "arch" not in d:
            raise InputError(f"{source}: missing required key 'arch' (the model architecture)")
        values: dict[str, Any] = {}
        for key, v in d.items():
            values[key] = _check_value(key, v, source)
        if "mtl_weights" in values:
            values["mtl_weights"] = dict(values["mtl_weights"])
        spec = cls(**values)
        if spec.lr_min > spec.lr_max:
            raise InputError(
                f"{source}: key 'lr_min': expected <= lr_max ({spec.lr_max}), found {spec.lr_min}"
            )
        return spec

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (kd as a mapping or None); `from_dict(to_dict())` round-trips."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["kd"] = None if self.kd is None else dataclasses.asdict(self.kd)
        out["mtl_weights"] = dict(self.mtl_weights)
        return out

    def replace(self, **changes: Any) -> TrainSpec:
        """A validated copy with some settings changed (e.g. threads from the command line)."""
        d = self.to_dict()
        d.update(changes)
        return TrainSpec.from_dict(d)


def _check_value(key: str, v: Any, source: str) -> Any:
    if key == "amp":
        if v not in AMP_MODES:
            raise InputError(f"{source}: key 'amp': expected one of {list(AMP_MODES)}, found {v!r}")
        return v
    if key in ("arch", "task", "feature_set", "device"):
        if not isinstance(v, str) or not v:
            raise InputError(f"{source}: key {key!r}: expected a non-empty string, found {v!r}")
        if key == "task" and v not in TASKS:
            raise InputError(f"{source}: key 'task': expected one of {list(TASKS)}, found {v!r}")
        if key == "feature_set" and v not in FEATURE_SETS:
            raise InputError(
                f"{source}: key 'feature_set': expected one of {list(FEATURE_SETS)}, found {v!r}"
            )
        if key == "device" and not (
            v in ("cpu", "auto", "cuda") or (v.startswith("cuda:") and v[5:].isdigit())
        ):
            raise InputError(
                f"{source}: key 'device': expected 'cpu', 'auto', 'cuda' or 'cuda:N', found {v!r}"
            )
        return v
    if key == "kd":
        return None if v is None else KDSpec.from_dict(v, source)
    if key == "mtl_weights":
        if not isinstance(v, Mapping):
            raise InputError(
                f"{source}: key 'mtl_weights': expected a mapping {{scene: w, super: w}}, "
                f"found {v!r}"
            )
        if set(v) != set(HEAD_NAMES):
            raise InputError(
                f"{source}: key 'mtl_weights': expected exactly the keys {list(HEAD_NAMES)}, "
                f"found {sorted(map(str, v))}"
            )
        out = {}
        for name in HEAD_NAMES:
            w = v[name]
            if not _is_number(w) or w < 0:
                raise InputError(
                    f"{source}: key 'mtl_weights.{name}': expected a number >= 0, found {w!r}"
                )
            out[name] = float(w)
        return out
    kind, lo, hi, allow_none = _NUMERIC_RULES[key]
    if v is None:
        if allow_none:
            return None
        raise InputError(f"{source}: key {key!r}: expected {_kind_word(kind)}, found null")
    if kind == "int" and not _is_int(v):
        raise InputError(f"{source}: key {key!r}: expected an integer, found {v!r}")
    if kind == "float" and not _is_number(v):
        raise InputError(f"{source}: key {key!r}: expected a number, found {v!r}")
    strict = key in _STRICT_MIN
    if lo is not None and (v < lo or (strict and v == lo)):
        raise InputError(
            f"{source}: key {key!r}: expected {'>' if strict else '>='} {lo}, found {v!r}"
        )
    if hi is not None and (v > hi or (key == "momentum" and v == hi)):
        bound = "<" if key == "momentum" else "<="
        raise InputError(f"{source}: key {key!r}: expected {bound} {hi}, found {v!r}")
    return float(v) if kind == "float" else int(v)


def _kind_word(kind: str) -> str:
    return {"int": "an integer", "float": "a number", "str": "a string"}[kind]
