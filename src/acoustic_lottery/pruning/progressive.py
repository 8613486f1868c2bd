"""Rep-Mobile-style progressive pruning: many small magnitude prunes while fine-tuning.

Rep-Mobile (papers/001) prunes "the model multiple times in small amounts" instead of
once, and reports it beats one-shot pruning; its exact schedule is not published. Here a
trained dense model is fine-tuned for ``spec.epochs`` epochs and pruned ``n_steps``
times on the ramp of `schedule.progressive_steps` (cubic by default, Zhu & Gupta 2017)
between ``start_fraction`` and ``end_fraction`` of the run. There is NO rewinding: every
prune builds its mask from the CURRENT weights and training simply continues from them
(same learning-rate schedule, same momentum unless ``reset_optimizer``).

How it is run: prune events sit on epoch boundaries, and the run is cut there into
phases, each an ordinary `training.trainer.train` call into ``out_dir/phases/phase_KK``:
phase k starts at global step e_k·steps_per_epoch from phase k−1's final weights with
the new mask applied and phase k−1's optimizer state, and ends at the next prune epoch.
Because the trainer's batches, augmentation, dropout and learning rate are pure
functions of (seed, epoch, batch, global step), the chain of phases computes exactly
what one uninterrupted run with prune hooks would; the trainer needs no change.

Per-layer strategies (``small_weights``, ``random``) hit the schedule's cumulative
sparsity EXACTLY per tensor: unit tensor l with N_l prunable units keeps
round_half_up((1 − s_k)·N_l) of them (at least ``min_keep``), whatever rounding the
earlier steps did. ``global_small_weights`` and ``large_final`` hit the overall unit
count (``large_final`` up to its per-layer rounding). Masks are nested: a unit once
pruned stays pruned (the strategies only prune survivors). Every prune keeps every class
of every head reachable (`reachability`): the few units a class's logit needs are given
back from the previous mask, so a tensor may keep slightly more than its exact count.

Restarting: an interrupted phase resumes from its checkpoint.pt (the trainer's own
resume), and a finished phase whose inputs are unchanged is reused from its
``phase.json`` record. The top-level outputs are removed at the start and written at the
end, ``final.pt`` last, so a crash never leaves a finished-looking result.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.io import (
    TMP_MARK,
    atomic_path,
    read_json,
    remove_stale_temporaries,
    write_json,
)
from acoustic_lottery.models.checkpoint import SPEC_KEYS, load_checkpoint, save_checkpoint
from acoustic_lottery.models.registry import build_model
from acoustic_lottery.models.size import size_report
from acoustic_lottery.pruning.lottery import MaskInvariantError, masked_nonzero
from acoustic_lottery.pruning.masks import Mask, mask_sparsity, model_sparsity, save_mask
from acoustic_lottery.pruning.reachability import check_reachable
from acoustic_lottery.pruning.schedule import PRESET_NAMES, RAMPS, preset, progressive_steps
from acoustic_lottery.pruning.scope import (
    SCOPES,
    Groups,
    build_scoped_mask,
    check_scope_mask,
    expand_mask,
    full_scope_mask,
    leader_mask,
    prunable_groups,
    reachable_leaders,
)
from acoustic_lottery.pruning.strategies import (
    STRATEGIES,
    random_prune,
    seeded_generator,
    small_weights,
)
from acoustic_lottery.training.schedule import check_epochs
from acoustic_lottery.training.spec import TrainSpec
from acoustic_lottery.training.trainer import derive_seed, digest, file_id, train

__all__ = [
    "OUTPUTS",
    "PER_LAYER_STRATEGIES",
    "plan_progressive",
    "progressive_settings",
    "run_progressive",
    "step_mask",
]

log = logging.getLogger(__name__)

OUTPUTS: tuple[str, ...] = ("final.pt", "progressive.json", "history.csv", "mask.pt")
"""Top-level outputs, in the order they are removed at the start (final.pt first)."""

PER_LAYER_STRATEGIES: tuple[str, ...] = ("small_weights", "random")
"""Strategies whose per-tensor counts are set exactly from the cumulative target."""

_PRESET = "progressive"
_RANDOM_STREAM = 7  # derive_seed(seed, _RANDOM_STREAM, prune index): the random strategy
_KNOWN = set(preset(_PRESET)) | {"name", "description"}


# ------------------------------------------------------------------------------ settings


def progressive_settings(settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``progressive`` preset with ``settings`` applied, validated.

    Accepts a full preset dict (``schedule.preset("progressive", ...)``, its ``name`` and
    ``description`` are ignored) or just the keys to change. Rewinding is refused: this
    job never rewinds, a lottery round does.
    """
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise InputError(
            f"progressive settings: expected a mapping of preset keys, found "
            f"{type(settings).__name__}"
        )
    name = settings.get("name", _PRESET)
    if name != _PRESET:
        hint = f" (known presets: {list(PRESET_NAMES)})" if name not in PRESET_NAMES else ""
        raise InputError(
            f"progressive settings: key 'name' is {name!r}; progressive pruning takes the "
            f"{_PRESET!r} preset{hint}"
        )
    unknown = sorted(str(k) for k in settings if k not in _KNOWN)
    if unknown:
        raise InputError(
            f"progressive settings: unknown key(s) {unknown}; expected some of {sorted(_KNOWN)}"
        )
    p = preset(_PRESET, **{k: v for k, v in settings.items() if k not in ("name", "description")})
    if p["rewind"] is not None:
        raise InputError(
            f"progressive settings: key 'rewind' is {p['rewind']!r}; progressive pruning "
            "continues from the current weights (null), rewinding is a lottery round's job"
        )
    if p["strategy"] not in STRATEGIES:
        raise InputError(
            f"progressive settings: key 'strategy': expected one of {sorted(STRATEGIES)}, "
            f"found {p['strategy']!r}"
        )
    if p["ramp"] not in RAMPS:
        raise InputError(
            f"progressive settings: key 'ramp': expected one of {list(RAMPS)}, found {p['ramp']!r}"
        )
    for key in ("reset_optimizer", "distillation"):
        if not isinstance(p[key], bool):
            raise InputError(
                f"progressive settings: key {key!r}: expected a boolean, found {p[key]!r}"
            )
    for key in ("n_steps", "min_keep"):
        v = p[key]
        lo = 1 if key == "n_steps" else 0
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise InputError(
                f"progressive settings: key {key!r}: expected an integer >= {lo}, found {v!r}"
            )
    for key in ("target_sparsity", "start_fraction", "end_fraction"):
        v = p[key]
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or not 0.0 <= v <= 1.0 or (key == "target_sparsity" and v >= 1.0):
            hi = "1)" if key == "target_sparsity" else "1]"
            raise InputError(
                f"progressive settings: key {key!r}: expected a number in [0, {hi}, found {v!r}"
            )
    if not p["start_fraction"] < p["end_fraction"]:
        raise InputError(
            "progressive settings: expected start_fraction < end_fraction, found "
            f"{p['start_fraction']} and {p['end_fraction']}"
        )
    return p


def plan_progressive(settings: Mapping[str, Any], epochs: int) -> dict[str, Any]:
    """Prune epochs and cumulative targets of a fine-tuning run of ``epochs`` epochs.

    Returns a JSON-able dict: ``epochs``, ``prune_epochs`` (list[int]), ``targets``
    (cumulative sparsity after each prune), ``rates`` (fraction of the survivors each
    prune removes), ``phases`` (list of [first_epoch, end_epoch)).

    `schedule.progressive_steps` in units of whole epochs (steps_per_epoch = 1): prune k
    happens at the END of epoch e_k (before epoch e_k + 1 starts). The window is
    [round(start_fraction·epochs), round(end_fraction·epochs)]; it must hold ``n_steps``
    epochs, and the last prune must leave at least one epoch to recover.
    """
    p = progressive_settings(settings)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 2:
        raise InputError(
            f"progressive pruning: spec key 'epochs' must be an integer >= 2 (fine-tuning "
            f"before and after the prunes), found {epochs!r}"
        )
    start, end = p["start_fraction"] * epochs, p["end_fraction"] * epochs
    t0, t1 = int(round(start)), int(round(end))
    n = p["n_steps"]
    if t1 - t0 < n:
        raise InputError(
            f"progressive pruning: n_steps={n} prunes need at least {n} epochs between "
            f"start_fraction·epochs = {start:g} and end_fraction·epochs = {end:g} (epochs="
            f"{epochs}), found {t1 - t0}; prunes happen at epoch boundaries: train longer, "
            "widen the window or prune fewer times"
        )
    steps = progressive_steps(
        p["target_sparsity"], n, start, end, 1, ramp=p["ramp"], initial_sparsity=0.0
    )
    prune_epochs = [s.step for s in steps]
    if prune_epochs[-1] >= epochs:
        raise InputError(
            f"progressive pruning: the last prune falls at the end of epoch {prune_epochs[-1]} "
            f"of {epochs}, leaving no epoch to recover; lower end_fraction "
            f"({p['end_fraction']}) or train longer"
        )
    bounds = [0, *prune_epochs, epochs]
    return {
        "epochs": epochs,
        "prune_epochs": prune_epochs,
        "targets": [s.sparsity for s in steps],
        "rates": [s.rate for s in steps],
        "phases": [[bounds[i], bounds[i + 1]] for i in range(len(bounds) - 1)],
    }


# --------------------------------------------------------------------------------- masks


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _kept_for(target: float, total: int, remaining: int, min_keep: int) -> int:
    """Units to keep so the tensor's sparsity is ``target`` (never un-prunes, >= min_keep)."""
    want = _round_half_up((1.0 - target) * total)
    return min(remaining, max(want, min(min_keep, remaining)))


def step_mask(
    strategy: str,
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    prev_mask: Mapping[str, torch.Tensor] | None,
    target: float,
    *,
    scope: str = "weights",
    exclude_first: bool = False,
    exclude_last: bool = False,
    min_keep: int = 1,
    generator: torch.Generator | None = None,
    restored: dict[str, int] | None = None,
) -> Mask:
    """The mask of one prune event: bring the scope's sparsity to ``target`` from ``state``.

    ``target`` is cumulative (fraction of ALL the scope's units pruned, not of the
    survivors), so rounding never accumulates over many small steps. Per-layer strategies
    hit it per tensor; the global ones on the total unit count, plus the units given back
    so that every class stays reachable (counted per leader in ``restored`` when given).
    The result is a subset of ``prev_mask`` (None = nothing pruned yet).
    """
    if strategy not in STRATEGIES:
        raise InputError(
            f"pruning strategy: unknown {strategy!r}; expected one of {sorted(STRATEGIES)}"
        )
    if not isinstance(target, int | float) or not 0.0 <= float(target) < 1.0:
        raise InputError(f"progressive step: target sparsity must be in [0, 1), found {target!r}")
    groups = prunable_groups(model, scope, exclude_first=exclude_first, exclude_last=exclude_last)
    if not groups:
        raise InputError(f"pruning scope {scope!r}: the model has no prunable tensor")
    if prev_mask is None:
        prev_mask = full_scope_mask(state, groups)
    check_scope_mask(prev_mask, groups, state, "previous mask")
    prev = leader_mask(prev_mask, groups)
    if strategy in PER_LAYER_STRATEGIES:
        new: Mask = {}
        for leader, m in prev.items():
            remaining = int(m.sum().item())
            kept = _kept_for(float(target), m.numel(), remaining, min_keep)
            rate = (remaining - kept) / remaining if remaining else 0.0
            one = {leader: state[leader]}
            if strategy == "small_weights":
                out = small_weights(one, {leader: m}, rate, min_keep=min_keep)
            else:
                out = random_prune(one, {leader: m}, rate, generator=generator, min_keep=min_keep)
            got = int(out[leader].sum().item())
            if got != kept:  # the strategy's own rounding must reproduce the exact count
                raise MaskInvariantError(
                    f"progressive step: {leader!r} keeps {got} units, expected {kept}"
                )
            new[leader] = out[leader]
        # Every class stays reachable (a few units given back from prev; see reachability).
        return expand_mask(reachable_leaders(model, state, new, prev, restored), groups)
    total = sum(m.numel() for m in prev.values())
    remaining = sum(int(m.sum().item()) for m in prev.values())
    kept = min(remaining, _round_half_up((1.0 - float(target)) * total))
    rate = (remaining - kept) / remaining if remaining else 0.0
    return build_scoped_mask(
        strategy,
        model,
        state,
        prev_mask,
        rate,
        scope=scope,
        exclude_first=exclude_first,
        exclude_last=exclude_last,
        min_keep=min_keep,
        generator=generator,
        restored=restored,
    )


# ------------------------------------------------------------------------------- helpers


class _DropEpochWarning(logging.Filter):
    """Phases end off the cosine cycle ends by design; the whole run is checked once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("epochs=%d does not end at a cosine cycle end")


@contextlib.contextmanager
def _quiet_epoch_check() -> Iterator[None]:
    logger = logging.getLogger("acoustic_lottery.training.schedule")
    flt = _DropEpochWarning()
    logger.addFilter(flt)
    try:
        yield
    finally:
        logger.removeFilter(flt)


def _size(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    rep = size_report(state)
    keys = ("rule", "params", "nonzero", "bytes", "kb", "dense_bytes", "dense_kb", "sparsity")
    out = {k: rep[k] for k in keys}
    out["layers"] = [
        {k: layer[k] for k in ("name", "params", "nonzero", "kb")} for layer in rep["layers"]
    ]
    return out


def _achieved(mask: Mask, state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    ms = mask_sparsity(mask)
    measured = model_sparsity(state, names=list(mask))
    return {
        "layers": {
            name: {k: e[k] for k in ("total", "kept", "sparsity")}
            for name, e in ms["layers"].items()
        },
        "total": ms["total"],
        "kept": ms["kept"],
        "sparsity": ms["sparsity"],
        "measured_sparsity": measured["sparsity"],
    }


def _write_history(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    columns = ["epoch", "step", "phase", "sparsity"]
    for row in rows:
        columns += [k for k in row if k not in columns]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in columns})


def _read_history(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [dict(r) for r in csv.DictReader(fh)]


def _phase_done(phase_dir: Path, key: str) -> dict[str, Any] | None:
    """The phase record if this very phase (same inputs) already finished, else None."""
    record_path = phase_dir / "phase.json"
    if not record_path.is_file():
        return None
    try:
        record = read_json(record_path)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != key:
        return None
    if not all((phase_dir / f).is_file() for f in ("final.pt", "checkpoint.pt", "history.csv")):
        return None
    return record


# ------------------------------------------------------------------------------------ run


def run_progressive(
    spec: TrainSpec | Mapping[str, Any],
    train_files: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    dense_checkpoint: str | os.PathLike[str],
    preset_settings: Mapping[str, Any] | None = None,
    teachers: Mapping[str, str | os.PathLike[str]] | None = None,
    *,
    scope: str = "weights",
    exclude_first: bool = False,
    exclude_last: bool = False,
    keep_phases: bool = False,
    teacher_fusion: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Fine-tune ``dense_checkpoint`` for ``spec.epochs`` epochs, pruning progressively.

    ``preset_settings``: the ``progressive`` preset or keys to change in it (strategy,
    target_sparsity, n_steps, ramp, start_fraction, end_fraction, reset_optimizer,
    distillation, min_keep). ``teachers`` (head -> checkpoint) turn on distillation and
    need ``spec.kd``; ``teacher_fusion`` (a 3-class checkpoint) is fused two-stage into the
    scene teacher (see `training.trainer.train`). Writes into ``out_dir``: phases/phase_KK/
    (one trainer run per phase; the resume state, removed at the end unless
    ``keep_phases``), mask.pt, history.csv, progressive.json (the returned report) and
    final.pt (carries the mask, pruned entries exactly 0).
    """
    settings = progressive_settings(preset_settings)
    spec = TrainSpec.from_dict(spec) if not isinstance(spec, TrainSpec) else spec
    if scope not in SCOPES:
        raise InputError(f"progressive pruning: scope {scope!r}; expected one of {list(SCOPES)}")
    teachers = {h: Path(p) for h, p in (teachers or {}).items()}
    if teachers and not settings["distillation"]:
        raise InputError(
            f"progressive pruning: teachers given for {sorted(teachers)} but the settings "
            "say distillation: false"
        )
    if teachers and spec.kd is None:
        raise InputError(
            f"progressive pruning: teachers given for {sorted(teachers)} but the spec has no "
            "'kd' settings (temperature, hard_weight, soft_weight)"
        )
    if settings["distillation"] and not teachers:
        log.warning("progressive pruning without a teacher: fine-tuning on the labels only")
    fusion = Path(teacher_fusion) if teacher_fusion is not None else None
    if fusion is not None and "scene" not in teachers:
        raise InputError(
            f"progressive pruning: fusion teacher {fusion} is fused into the scene teacher's "
            f"probabilities, but no scene teacher was given (teachers: {sorted(teachers)})"
        )
    files = [Path(f) for f in train_files]
    for f in files:
        if not f.is_file():
            raise InputError(f"progressive pruning: training feature file {f}: no such file")
    plan = plan_progressive(settings, spec.epochs)
    check_epochs(spec)  # the whole run should end at a learning-rate minimum

    dense_path = Path(dense_checkpoint)
    dense = load_checkpoint(dense_path)
    for key in ("arch", "task", "width"):
        if getattr(spec, key) != dense[key]:
            raise InputError(
                f"progressive pruning: spec key {key!r} is {getattr(spec, key)!r}, but "
                f"{dense_path} has {key}={dense[key]!r}"
            )
    if dense.get("feature_set") != spec.feature_set:
        raise InputError(
            f"progressive pruning: spec feature_set {spec.feature_set!r}, but {dense_path} "
            f"was trained on {dense.get('feature_set')!r}"
        )
    if isinstance(dense.get("mask"), Mapping) and dense["mask"]:
        raise InputError(
            f"progressive pruning: {dense_path} was trained under a mask; progressive pruning "
            "starts from a dense model"
        )
    meta = {k: dense[k] for k in SPEC_KEYS}
    model = build_model(
        meta["arch"],
        meta["n_classes"],
        task=meta["task"],
        width=meta["width"],
        in_channels=meta["in_channels"],
        seed=0,  # structure only; weights come from the checkpoints
    )
    groups: Groups = prunable_groups(
        model, scope, exclude_first=exclude_first, exclude_last=exclude_last
    )
    if not groups:
        raise InputError(f"progressive pruning: the {meta['arch']!r} model has nothing to prune")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:  # never leave a finished-looking result of an earlier run
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    phase_root = out / "phases"
    remove_stale_temporaries(phase_root)  # a removal killed half-way
    n_phases = len(plan["phases"])
    stale = [d for d in phase_root.glob("phase_*") if d.is_dir()] if phase_root.is_dir() else []
    for d in stale:
        if d.name not in {f"phase_{k:02d}" for k in range(n_phases)}:
            shutil.rmtree(d)

    base_spec = spec.replace(rewind_step=None)
    inputs = {
        "train_files": [file_id(f) for f in files],
        "teachers": {h: file_id(p) for h, p in sorted(teachers.items())},
        "settings": {k: v for k, v in settings.items() if k != "description"},
        "scope": [scope, exclude_first, exclude_last],
    }
    if fusion is not None:  # only then: phases of runs without one keep their key
        inputs["teacher_fusion"] = file_id(fusion)
    state: dict[str, torch.Tensor] = dict(dense["state_dict"])
    mask: Mask | None = None
    opt_state: Mapping[str, Any] | None = None
    steps_per_epoch = 0  # known once phase 0 (dense fine-tuning, always first) has run
    history: list[dict[str, Any]] = []
    steps_report: list[dict[str, Any]] = []
    phases_report: list[dict[str, Any]] = []

    for k, (first_epoch, end_epoch) in enumerate(plan["phases"]):
        step_info: dict[str, Any] | None = None
        if k > 0:
            # Prune event k: from the weights trained so far, no rewinding.
            target = plan["targets"][k - 1]
            gen = None
            if settings["strategy"] == "random":
                gen = seeded_generator(derive_seed(spec.seed, _RANDOM_STREAM, k))
            restored: dict[str, int] = {}
            new = step_mask(
                settings["strategy"],
                model,
                state,
                mask,
                target,
                scope=scope,
                exclude_first=exclude_first,
                exclude_last=exclude_last,
                min_keep=settings["min_keep"],
                generator=gen,
                restored=restored,
            )
            if mask is not None and any(bool((new[n] & ~mask[n]).any()) for n in mask):
                raise MaskInvariantError(f"prune {k}: the new mask revives pruned entries")
            check_reachable(model, new, f"progressive prune {k}")
            mask = new
            step_info = {
                "step": k,
                "epoch": first_epoch,
                "global_step": first_epoch * steps_per_epoch,
                "target_sparsity": target,
                "schedule_rate": plan["rates"][k - 1],
                "reachability_restored": sum(restored.values()),
            }
        phase_spec = base_spec.replace(epochs=end_epoch)
        start_step = 0 if k == 0 else first_epoch * steps_per_epoch
        init_state = state
        phase_opt = None if settings["reset_optimizer"] else opt_state
        key = digest(
            {
                **inputs,
                "spec": phase_spec.to_dict(),
                "init": init_state,
                "mask": mask,
                "optimizer": phase_opt,
                "start_step": start_step,
                "phase": k,
            }
        )
        phase_dir = phase_root / f"phase_{k:02d}"
        record = _phase_done(phase_dir, key)
        if record is None:
            with _quiet_epoch_check():  # checked once for the whole run above
                summary = train(
                    phase_spec,
                    files,
                    phase_dir,
                    teachers=teachers or None,
                    teacher_fusion=fusion,
                    masks=mask,
                    init_state=init_state,
                    start_step=start_step,
                    optimizer_state=phase_opt,
                    keep_checkpoint=True,  # the next phase continues its momentum
                )
            record = {
                "key": key,
                "phase": k,
                "epochs": [first_epoch, end_epoch],
                "start_step": start_step,
                "steps": summary["steps"],
                "steps_per_epoch": summary["steps_per_epoch"],
                "final_loss": summary["final_loss"],
                "final_train_acc": summary["final_train_acc"],
            }
            write_json(phase_dir / "phase.json", record)
        else:
            log.info(
                "phase %d (epochs %d-%d) already done: reusing %s",
                k,
                first_epoch,
                end_epoch,
                phase_dir,
            )
        if k == 0:
            steps_per_epoch = int(record["steps_per_epoch"])
        final_ck = load_checkpoint(phase_dir / "final.pt")
        state = dict(final_ck["state_dict"])
        if mask is not None:
            bad = masked_nonzero(state, mask)
            if bad:
                raise MaskInvariantError(
                    f"{phase_dir / 'final.pt'}: pruned entries not 0 in {sorted(bad)[:5]}"
                )
        opt_state = load_checkpoint(phase_dir / "checkpoint.pt").get("optimizer")
        sparsity_now = mask_sparsity(mask)["sparsity"] if mask is not None else 0.0
        for row in _read_history(phase_dir / "history.csv"):
            history.append({**row, "phase": k, "sparsity": sparsity_now})
        if step_info is not None and mask is not None:
            step_info["achieved"] = _achieved(mask, state)
            step_info["size_kb"] = size_report(state)["kb"]
            steps_report.append(step_info)
        phases_report.append(
            {
                "phase": k,
                "epochs": [first_epoch, end_epoch],
                "final_loss": record["final_loss"],
                "final_train_acc": record["final_train_acc"],
            }
        )

    assert mask is not None  # the plan has at least one prune
    final_model = model
    final_model.load_state_dict(state, strict=True)
    report: dict[str, Any] = {
        "method": "progressive",
        "settings": {k: v for k, v in settings.items() if k != "description"},
        "scope": scope,
        "exclude_first": exclude_first,
        "exclude_last": exclude_last,
        "distillation": bool(teachers),
        "model": meta,
        "spec": base_spec.to_dict(),
        "plan": plan,
        "steps_per_epoch": steps_per_epoch,
        "steps": steps_report,
        "phases": phases_report,
        "sparsity": _achieved(mask, state),
        "weights_remaining": 1.0 - mask_sparsity(mask)["sparsity"],
        "size": _size(state),
        "train": {
            "epochs": spec.epochs,
            "global_step": spec.epochs * steps_per_epoch,
            "final_loss": phases_report[-1]["final_loss"],
            "final_train_acc": phases_report[-1]["final_train_acc"],
        },
        "paths": {
            "dense": str(dense_path),
            "teachers": {h: str(p) for h, p in sorted(teachers.items())},
            "teacher_fusion": str(fusion) if fusion is not None else None,
            **{n.split(".")[0]: str(out / n) for n in OUTPUTS},
        },
    }
    save_mask(out / "mask.pt", mask)
    _write_history(out / "history.csv", history)
    write_json(out / "progressive.json", report)
    save_checkpoint(
        out / "final.pt",
        final_model,
        {
            "feature_set": spec.feature_set,
            "spec": base_spec.to_dict(),
            "epoch": spec.epochs,
            "global_step": spec.epochs * steps_per_epoch,
        },
        mask=mask,
        pruning={
            "method": "progressive",
            "strategy": settings["strategy"],
            "target_sparsity": settings["target_sparsity"],
            "scope": scope,
            "dense": str(dense_path),
        },
    )
    if not keep_phases:
        _discard(phase_root)
    return report


def _discard(phase_root: Path) -> None:
    """Remove the phases' resume state once final.pt exists.

    Their checkpoints hold host paths and file times, and are no result. Renamed to a
    temporary name first, so a kill during the removal never leaves a phase that looks
    finished (the next writer of phases/ sweeps the leftover).
    """
    if not phase_root.is_dir():
        return
    trash = phase_root.with_name(f".{phase_root.name}.{os.getpid()}{TMP_MARK}")
    os.replace(phase_root, trash)
    shutil.rmtree(trash, ignore_errors=True)
