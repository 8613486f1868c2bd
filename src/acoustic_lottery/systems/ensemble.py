"""Ensembles and system descriptions (report Section 3.3, Table 1 rows 20-22, systems a-d).

An ensemble averages its members' class probabilities, optionally weighted (System (d)
weights unquantized members 4x the quantized ones). A system is a set of members, each a
model's head ("scene" = 10 classes, "super" = 3 classes): the scene members are averaged,
the super members are averaged, and if both exist the two averages are combined by
two-stage fusion. Everything works on prediction files (or arrays), never on models, so
combining costs seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from acoustic_lottery.errors import InputError
from acoustic_lottery.systems.fusion import (
    check_probs,
    check_same_clips,
    fuse_predictions,
    two_stage,
)

if TYPE_CHECKING:
    from acoustic_lottery.evaluation.predict import Predictions

__all__ = [
    "FUSIONS",
    "TASKS",
    "MemberSpec",
    "SystemSpec",
    "average",
    "ensemble_predictions",
    "normalise_weights",
    "weights_by_quantization",
]

TASKS: tuple[str, ...] = ("scene", "super")
FUSIONS: tuple[str, ...] = ("two_stage", "none")


def normalise_weights(
    weights: Sequence[float] | None, n: int, where: str = "ensemble"
) -> np.ndarray:
    """Weights as a float64 array summing to 1 (None = equal); InputError on bad values."""
    if weights is None:
        return np.full(n, 1.0 / n) if n else np.zeros(0)
    w = np.asarray(list(weights), dtype=np.float64)
    if w.shape != (n,):
        raise InputError(f"{where}: {w.size} weights given for {n} members")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise InputError(f"{where}: weights must be finite, >= 0 and not all 0, found {w.tolist()}")
    return w / w.sum()


def average(probs_list: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted average (weights normalised to sum 1) of (N, K) probability arrays, float32."""
    if len(probs_list) == 0:
        raise InputError("ensemble: expected at least one member, found none")
    arrays = [check_probs(p, f"ensemble member {i}") for i, p in enumerate(probs_list)]
    for i, a in enumerate(arrays[1:], start=1):
        if a.shape != arrays[0].shape:
            raise InputError(
                f"ensemble: member {i} has probabilities of shape {a.shape}, member 0 "
                f"{arrays[0].shape}; members must score the same clips and classes"
            )
    w = normalise_weights(weights, len(arrays))
    out = np.zeros_like(arrays[0])
    for wi, a in zip(w, arrays):
        out += wi * a
    return out.astype(np.float32)


def _pred_name(pred: Predictions, i: int) -> str:
    src = pred.source or {}
    for key in ("path", "checkpoint", "name", "model"):
        if isinstance(src.get(key), str):
            return f"member {i} ({src[key]})"
    return f"member {i}"


def ensemble_predictions(
    preds: Sequence[Predictions], weights: Sequence[float] | None = None
) -> Predictions:
    """Weighted probability average of prediction files of one task over the same clips."""
    from acoustic_lottery.evaluation.predict import Predictions

    if len(preds) == 0:
        raise InputError("ensemble: expected at least one member's predictions, found none")
    names = [_pred_name(p, i) for i, p in enumerate(preds)]
    first = preds[0]
    for name, p in zip(names[1:], preds[1:]):
        if p.task != first.task or list(p.class_names) != list(first.class_names):
            raise InputError(
                f"ensemble: {name} has task {p.task!r} with classes {p.class_names}, but "
                f"{names[0]} has task {first.task!r} with {first.class_names}"
            )
    check_same_clips([p.filename for p in preds], names)
    for name, p in zip(names[1:], preds[1:]):
        if not np.array_equal(p.label, first.label):
            i = int(np.flatnonzero(p.label != first.label)[0])
            raise InputError(
                f"ensemble: {name} labels row {i} ({p.filename[i]}) as {int(p.label[i])}, "
                f"{names[0]} as {int(first.label[i])}"
            )
    w = normalise_weights(weights, len(preds))
    probs = average([p.probs for p in preds], w)
    return Predictions(
        probs=probs,
        label=first.label.copy(),
        device=first.device.copy(),
        filename=first.filename.copy(),
        class_names=list(first.class_names),
        task=first.task,
        source={
            "kind": "ensemble",
            "weights": [float(x) for x in w],
            "members": [p.source for p in preds],
        },
        logits=None,
    )


@dataclass(frozen=True)
class MemberSpec:
    """One member of a system: a model's head, whether it is int8, and its score weight."""

    model: str
    task: str = "scene"
    quantized: bool = False
    weight: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "task": self.task,
            "quantized": self.quantized,
            "weight": self.weight,
        }


_SYSTEM_KEYS = ("name", "members", "fusion", "over_budget_ok")
_MEMBER_KEYS = ("model", "task", "head", "quantized", "weight")


def _member_from_dict(d: Any, where: str) -> MemberSpec:
    if not isinstance(d, Mapping):
        raise InputError(f"{where}: expected a mapping with key 'model', found {d!r}")
    for key in d:
        if key not in _MEMBER_KEYS:
            raise InputError(f"{where}: unknown key {key!r} (expected keys {list(_MEMBER_KEYS)})")
    model = d.get("model")
    if not isinstance(model, str) or not model:
        raise InputError(f"{where}.model: expected a non-empty model name, found {model!r}")
    task, head = d.get("task"), d.get("head")
    if task is not None and head is not None and task != head:
        raise InputError(f"{where}: 'task' ({task!r}) and its alias 'head' ({head!r}) disagree")
    task = task if task is not None else (head if head is not None else "scene")
    if task not in TASKS:
        key = "task" if "task" in d else "head"
        raise InputError(f"{where}.{key}: expected one of {list(TASKS)}, found {task!r}")
    quantized = d.get("quantized", False)
    if not isinstance(quantized, bool):
        raise InputError(f"{where}.quantized: expected true or false, found {quantized!r}")
    weight = d.get("weight", 1.0)
    if (
        isinstance(weight, bool)
        or not isinstance(weight, int | float)
        or not math.isfinite(weight)
        or weight <= 0
    ):
        raise InputError(f"{where}.weight: expected a finite number > 0, found {weight!r}")
    return MemberSpec(model=model, task=task, quantized=quantized, weight=float(weight))


def weights_by_quantization(
    members: Sequence[MemberSpec | Mapping[str, Any]],
    unquantized: float = 4.0,
    quantized: float = 1.0,
) -> list[float]:
    """Score weights by member kind: System (d) gives unquantized members 4x the weight."""
    for name, value in (("unquantized", unquantized), ("quantized", quantized)):
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"weights_by_quantization: {name} must be > 0, found {value!r}")
    out = []
    for i, m in enumerate(members):
        q = m.quantized if isinstance(m, MemberSpec) else m.get("quantized", False)
        if not isinstance(q, bool):
            raise InputError(f"members[{i}].quantized: expected true or false, found {q!r}")
        out.append(float(quantized if q else unquantized))
    return out


@dataclass(frozen=True)
class SystemSpec:
    """A Table 1 / submission system: members, fusion, and whether it may exceed the budget.

    fusion "two_stage": scene members averaged, super members averaged, then fused (needs
    at least one of each); "none": all members share one task and are averaged.
    """

    name: str
    members: tuple[MemberSpec, ...]
    fusion: str = "none"
    over_budget_ok: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(self.members))
        self.validate()

    def validate(self) -> None:
        where = f"system {self.name!r}"
        if not self.members:
            raise InputError(f"{where}.members: expected at least one member, found none")
        if self.fusion not in FUSIONS:
            raise InputError(
                f"{where}.fusion: expected one of {list(FUSIONS)}, found {self.fusion!r}"
            )
        tasks = {m.task for m in self.members}
        if self.fusion == "two_stage" and tasks != {"scene", "super"}:
            raise InputError(
                f"{where}.fusion: 'two_stage' needs at least one 'scene' and one 'super' "
                f"member, found tasks {sorted(tasks)}"
            )
        if self.fusion == "none" and len(tasks) > 1:
            raise InputError(
                f"{where}.fusion: 'none' averages members of one task, but the members have "
                f"tasks {sorted(tasks)}; use fusion 'two_stage'"
            )

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], where: str = "system", allow_extra: bool = False
    ) -> SystemSpec:
        """Validated spec; InputError names the key. Members may say `head` for `task`.

        fusion absent: "two_stage" when both tasks are present, else "none".
        allow_extra: keep unknown top-level keys (e.g. a Table 1 row's flags) in `extra`
        instead of rejecting them.
        """
        if not isinstance(d, Mapping):
            raise InputError(f"{where}: expected a mapping, found {type(d).__name__}")
        extra = {k: v for k, v in d.items() if k not in _SYSTEM_KEYS}
        if extra and not allow_extra:
            key = next(iter(extra))
            raise InputError(f"{where}: unknown key {key!r} (expected keys {list(_SYSTEM_KEYS)})")
        name = d.get("name", where)
        if not isinstance(name, str) or not name:
            raise InputError(f"{where}.name: expected a non-empty string, found {name!r}")
        raw = d.get("members")
        if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
            raise InputError(f"{where}.members: expected a non-empty list, found {raw!r}")
        members = tuple(_member_from_dict(m, f"{where}.members[{i}]") for i, m in enumerate(raw))
        tasks = {m.task for m in members}
        fusion = d.get("fusion", "two_stage" if len(tasks) > 1 else "none")
        if fusion not in FUSIONS:
            raise InputError(f"{where}.fusion: expected one of {list(FUSIONS)}, found {fusion!r}")
        ok = d.get("over_budget_ok", False)
        if not isinstance(ok, bool):
            raise InputError(f"{where}.over_budget_ok: expected true or false, found {ok!r}")
        try:
            return cls(name=name, members=members, fusion=fusion, over_budget_ok=ok, extra=extra)
        except InputError as e:
            raise InputError(str(e).replace(f"system {name!r}", where, 1)) from e

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "members": [m.to_dict() for m in self.members],
            "fusion": self.fusion,
            "over_budget_ok": self.over_budget_ok,
        }

    @property
    def models(self) -> list[str]:
        """Distinct member models in first-use order (an MTL model serving both heads once)."""
        return list(dict.fromkeys(m.model for m in self.members))

    @property
    def task(self) -> str:
        """The task of the system's output."""
        return "scene" if self.fusion == "two_stage" else self.members[0].task

    def with_weights(self, weights: Sequence[float]) -> SystemSpec:
        """The same system with new member weights (e.g. `weights_by_quantization`)."""
        if len(weights) != len(self.members):
            raise InputError(
                f"system {self.name!r}: {len(weights)} weights for {len(self.members)} members"
            )
        members = tuple(replace(m, weight=float(w)) for m, w in zip(self.members, weights))
        for i, m in enumerate(members):
            _member_from_dict(m.to_dict(), f"system {self.name!r}.members[{i}]")
        return replace(self, members=members)

    def _groups(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for i, m in enumerate(self.members):
            groups.setdefault(m.task, []).append(i)
        return groups

    def combine_probs(
        self, probs: Sequence[np.ndarray], index_map: Sequence[int] | None = None
    ) -> np.ndarray:
        """The system's output from its members' (N, K) probabilities, in member order.

        index_map (two-stage only): super-class column of each scene; None = the TAU map.
        """
        if len(probs) != len(self.members):
            raise InputError(
                f"system {self.name!r}: {len(probs)} probability arrays for "
                f"{len(self.members)} members"
            )
        avg = {
            task: average([probs[i] for i in idx], [self.members[i].weight for i in idx])
            for task, idx in self._groups().items()
        }
        if self.fusion == "two_stage":
            if index_map is None:
                from acoustic_lottery.labels import super_index_map

                index_map = super_index_map()
            return two_stage(avg["scene"], avg["super"], index_map)
        return avg[self.members[0].task]

    def combine(
        self, preds: Sequence[Predictions], index_map: Sequence[int] | None = None
    ) -> Predictions:
        """The system's predictions from its members' prediction files, in member order.

        Scene members are averaged, super members are averaged (weights normalised within
        each group), then two-stage fused if the system says so. index_map None: derived
        from the class names.
        """
        if len(preds) != len(self.members):
            raise InputError(
                f"system {self.name!r}: {len(preds)} prediction files for "
                f"{len(self.members)} members"
            )
        for i, (m, p) in enumerate(zip(self.members, preds)):
            if p.task != m.task:
                raise InputError(
                    f"system {self.name!r}: member {i} ({m.model}) is a {m.task!r} member but "
                    f"its predictions have task {p.task!r}"
                )
        names = [_pred_name(p, i) for i, p in enumerate(preds)]
        check_same_clips([p.filename for p in preds], names)
        avg = {
            task: ensemble_predictions(
                [preds[i] for i in idx], [self.members[i].weight for i in idx]
            )
            for task, idx in self._groups().items()
        }
        out = (
            fuse_predictions(avg["scene"], avg["super"], index_map)
            if self.fusion == "two_stage"
            else avg[self.members[0].task]
        )
        out.source = {
            "kind": "system",
            "system": self.to_dict(),
            "members": [p.source for p in preds],
        }
        return out
