"""One lottery-ticket round of the report's Algorithm 1, as one resumable job.

Round t (t = 1..T) takes the previous round's trained weights θ_{t-1} (round 1: the dense
model's final.pt), its mask (round 1: none) and Θ0 (the dense run's init.pt), and

  1. builds the next mask from θ_{t-1} (steps 7–8): ``strategy`` prunes the fraction
     ``rate`` of the units still remaining (``rate`` given, or derived from a target
     sparsity reached after ``rounds`` rounds: r = 1 − (1 − s)^(1/T)); the units that
     keep every class of every head reachable are given back (`reachability`; counted
     in round.json's ``reachability.restored``);
  2. optionally replaces it by a control: ``random_mask`` (same per-tensor counts, random
     positions, then the same reachability guard) or ``random_reinit`` (same mask over a
     fresh initialisation); the round stops (UnreachableClassError naming head, classes
     and layer) if the mask still leaves a class constant or empties a layer;
  3. resets the survivors to Θ0 (step 9), or to the late-rewinding snapshot after k steps
     (``rewind="step"``, optionally with its optimizer state), pruned entries exactly 0;
  4. writes the mask as its own artifact (``mask.pt``), trains under it (step 10, the
     trainer keeps pruned entries at exactly 0 after every step and in every checkpoint);
  5. checks the invariants on the files written (pruned entries 0 in init.pt,
     checkpoint.pt and final.pt; init.pt equal to the rewound state bit for bit) and
     writes ``round.json``: settings, per-tensor and overall sparsity of the mask and as
     measured from final.pt's zeros, and the DCASE size of final.pt.

Each round is one Snakemake job, so a changed setting for round t re-runs t and later
only. Control rounds are side branches: they rebuild the winning mask of round t exactly
(deterministic) from the winning chain's round t−1, so their ``previous`` is the winning
chain's, never a control's. Seeds of the random parts are derived from
(``control_seed``, round, purpose), so one configured seed gives independent draws per
round.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.faults import failpoint
from acoustic_lottery.io import write_json
from acoustic_lottery.models.checkpoint import SPEC_KEYS, load_checkpoint
from acoustic_lottery.models.registry import build_model
from acoustic_lottery.models.size import size_report
from acoustic_lottery.pruning.masks import Mask, load_mask, mask_sparsity, model_sparsity, save_mask
from acoustic_lottery.pruning.reachability import check_reachable
from acoustic_lottery.pruning.rewind import reinit_state, rewind_state, rewind_to_snapshot
from acoustic_lottery.pruning.schedule import rate_per_round, sparsity_after
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
from acoustic_lottery.pruning.strategies import STRATEGIES, random_mask_like, seeded_generator
from acoustic_lottery.training.spec import TrainSpec
from acoustic_lottery.training.trainer import derive_seed, train

__all__ = [
    "CONTROLS",
    "OPTIMIZER_MODES",
    "REWIND_MODES",
    "MaskInvariantError",
    "dense_round_report",
    "masked_nonzero",
    "resolve_rate",
    "run_round",
]

REWIND_MODES: tuple[str, ...] = ("init", "step")
OPTIMIZER_MODES: tuple[str, ...] = ("reset", "rewind")
CONTROLS: tuple[str | None, ...] = (None, "random_mask", "random_reinit")

# Streams of derive_seed(control_seed, round, stream).
_RANDOM_STRATEGY, _RANDOM_MASK, _RANDOM_REINIT = 0, 1, 2


class MaskInvariantError(RuntimeError):
    """A written checkpoint holds a non-zero pruned entry, or init.pt is not the rewound
    state: a bug (or a foreign edit), never bad user input, so not an InputError."""


# ------------------------------------------------------------------------------ helpers


def resolve_rate(
    rate: float | None, target_sparsity: float | None, rounds: int | None, round_index: int
) -> float:
    """The per-round rate: given, or r = 1 − (1 − s)^(1/T) from a target after T rounds.

    Exactly one of ``rate`` / ``target_sparsity`` (the latter needs ``rounds``); a round
    beyond ``rounds`` would overshoot the target and is refused.
    """
    if (rate is None) == (target_sparsity is None):
        raise InputError(
            "lottery round: give either a per-round rate or a target sparsity with a number "
            f"of rounds, found rate={rate!r}, target_sparsity={target_sparsity!r}"
        )
    if rounds is not None and (isinstance(rounds, bool) or not isinstance(rounds, int)):
        raise InputError(f"lottery round: rounds must be an integer >= 1, found {rounds!r}")
    if rounds is not None and round_index > rounds:
        raise InputError(
            f"lottery round: round {round_index} of a {rounds}-round schedule; the schedule "
            "ends at its target"
        )
    if target_sparsity is not None:
        if rounds is None:
            raise InputError("lottery round: target_sparsity needs the number of rounds")
        return rate_per_round(target_sparsity, rounds)
    try:
        r = float(rate)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise InputError(f"lottery round: rate must be a number in [0, 1), found {rate!r}") from e
    if math.isnan(r) or not 0.0 <= r < 1.0:
        raise InputError(
            f"lottery round: rate (fraction of the remaining weights pruned) must be in "
            f"[0, 1), found {rate!r}"
        )
    return r


def masked_nonzero(state: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor]) -> dict:
    """Per tensor, how many pruned entries are NOT exactly zero (only tensors with any)."""
    out = {}
    for name, m in mask.items():
        t = state[name]
        n = int(torch.count_nonzero(t.detach().cpu()[~m.cpu()]).item())
        if n:
            out[name] = n
    return out


def _verify_zero(state: Mapping[str, torch.Tensor], mask: Mask, where: Path) -> None:
    bad = masked_nonzero(state, mask)
    if bad:
        raise MaskInvariantError(
            f"{where}: pruned entries are not exactly 0 in {len(bad)} tensor(s): "
            + ", ".join(f"{k} ({v})" for k, v in list(bad.items())[:5])
        )


def _bits(t: torch.Tensor) -> torch.Tensor:
    """Integer view of a float tensor: equality of bits, not of values (-0.0 != +0.0)."""
    if t.is_floating_point():
        return t.contiguous().view(
            {8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()]
        )
    return t


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b))


def _model_meta(ck: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ck[k] for k in SPEC_KEYS}


def _builder(meta: Mapping[str, Any], seed: int | None = 0) -> nn.Module:
    """The checkpoint's model. seed 0: a private RNG (only the structure is needed);
    None: torch's global RNG, which `reinit_state` forks and seeds."""
    return build_model(
        meta["arch"],
        meta["n_classes"],
        task=meta["task"],
        width=meta["width"],
        in_channels=meta["in_channels"],
        seed=seed,
    )


def _check_same_model(a: Mapping[str, Any], pa: Path, b: Mapping[str, Any], pb: Path) -> None:
    ma, mb = _model_meta(a), _model_meta(b)
    if ma != mb:
        differ = [k for k in SPEC_KEYS if ma[k] != mb[k]]
        raise InputError(
            f"{pb}: a {mb} model, but {pa} is a {ma} model (differ in {differ}); every round "
            "of a lottery chain must use one architecture"
        )
    sa, sb = a["state_dict"], b["state_dict"]
    if set(sa) != set(sb) or any(sa[k].shape != sb[k].shape for k in sa):
        raise InputError(f"{pb}: its state_dict does not have the tensors of {pa}")


def _check_spec(spec: TrainSpec, meta: Mapping[str, Any], where: Path) -> None:
    for key in ("arch", "task", "width"):
        if getattr(spec, key) != meta[key]:
            raise InputError(
                f"lottery round: spec key {key!r} is {getattr(spec, key)!r}, but {where} has "
                f"{key}={meta[key]!r}"
            )


def _sparsity_summary(mask: Mask, state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    return {"mask": mask_sparsity(mask), "measured": model_sparsity(state, names=list(mask))}


def _size(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    rep = size_report(state)
    keys = ("rule", "params", "nonzero", "bytes", "kb", "dense_bytes", "dense_kb", "sparsity")
    out = {k: rep[k] for k in keys}
    out["layers"] = [
        {k: layer[k] for k in ("name", "params", "nonzero", "kb")} for layer in rep["layers"]
    ]
    return out


def _load_previous_mask(
    path: Path | None,
    round_index: int,
    previous: Mapping[str, Any],
    previous_path: Path,
    groups: Groups,
) -> Mask | None:
    stored = previous.get("mask")
    if path is None:
        if round_index > 1:
            raise InputError(
                f"lottery round {round_index}: needs the previous round's mask (--previous-mask)"
            )
        if isinstance(stored, Mapping) and stored:
            raise InputError(
                f"lottery round 1: {previous_path} was trained under a mask, but round 1 "
                "starts from the dense model (give its final.pt, or the previous mask)"
            )
        return None
    mask = load_mask(path)
    check_scope_mask(mask, groups, previous["state_dict"], f"previous mask {path}")
    if isinstance(stored, Mapping) and stored:
        same = set(stored) == set(mask) and all(torch.equal(stored[k], mask[k]) for k in mask)
        if not same:
            raise InputError(
                f"previous mask {path}: differs from the mask {previous_path} was trained under "
                "(mask and weights of different rounds?)"
            )
    bad = masked_nonzero(previous["state_dict"], mask)
    if bad:
        raise InputError(
            f"{previous_path}: {sum(bad.values())} weights pruned by {path} are not 0 "
            f"(e.g. {next(iter(bad))}): the weights were not trained under that mask"
        )
    return mask


# ------------------------------------------------------------------------------- rounds


def run_round(
    *,
    round_index: int,
    spec: TrainSpec | Mapping[str, Any],
    train_files: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    theta0: str | os.PathLike[str],
    previous: str | os.PathLike[str],
    previous_mask: str | os.PathLike[str] | None,
    strategy: str,
    rate: float | None = None,
    target_sparsity: float | None = None,
    rounds: int | None = None,
    scope: str = "weights",
    exclude_first: bool = False,
    exclude_last: bool = False,
    rewind: str = "init",
    rewind_checkpoint: str | os.PathLike[str] | None = None,
    optimizer: str = "reset",
    control: str | None = None,
    control_seed: int = 0,
    teachers: Mapping[str, str | os.PathLike[str]] | None = None,
    min_keep: int = 1,
    teacher_fusion: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Run lottery round ``round_index`` into ``out_dir``; return the round report.

    Writes out_dir/mask.pt (the mask trained under), the trainer's init.pt (the rewound
    start), checkpoint.pt, final.pt, history.csv, and round.json (the returned dict).
    ``optimizer="rewind"`` with ``rewind="init"`` equals a reset (SGD holds no state at
    step 0); with ``rewind="step"`` it loads the snapshot's momentum buffers.
    ``teachers`` / ``teacher_fusion`` are the trainer's (a fusion teacher makes the scene
    teacher two-stage).
    """
    if isinstance(round_index, bool) or not isinstance(round_index, int) or round_index < 1:
        raise InputError(f"lottery round: round must be an integer >= 1, found {round_index!r}")
    if strategy not in STRATEGIES:
        raise InputError(
            f"lottery round: strategy {strategy!r}; expected one of {sorted(STRATEGIES)}"
        )
    if scope not in SCOPES:
        raise InputError(f"lottery round: scope {scope!r}; expected one of {list(SCOPES)}")
    if rewind not in REWIND_MODES:
        raise InputError(f"lottery round: rewind {rewind!r}; expected one of {list(REWIND_MODES)}")
    if optimizer not in OPTIMIZER_MODES:
        raise InputError(
            f"lottery round: optimizer {optimizer!r}; expected one of {list(OPTIMIZER_MODES)}"
        )
    if control not in CONTROLS:
        raise InputError(f"lottery round: control {control!r}; expected one of {list(CONTROLS)}")
    if isinstance(control_seed, bool) or not isinstance(control_seed, int) or control_seed < 0:
        raise InputError(
            f"lottery round: control_seed must be an integer >= 0, found {control_seed!r}"
        )
    if (rewind == "step") != (rewind_checkpoint is not None):
        raise InputError(
            "lottery round: rewind 'step' needs a rewind checkpoint (rewind.pt) and rewind "
            f"'init' takes none; found rewind={rewind!r}, rewind_checkpoint={rewind_checkpoint!r}"
        )
    r = resolve_rate(rate, target_sparsity, rounds, round_index)
    spec = TrainSpec.from_dict(spec) if not isinstance(spec, TrainSpec) else spec
    # The rounds restart from Θ0 / the snapshot; they need no snapshot of their own.
    spec = spec.replace(rewind_step=None)
    out = Path(out_dir)
    theta0_path, previous_path = Path(theta0), Path(previous)
    mask_in = Path(previous_mask) if previous_mask is not None else None

    theta0_ck = load_checkpoint(theta0_path)
    previous_ck = load_checkpoint(previous_path)
    if int(theta0_ck["global_step"]) != 0:
        raise InputError(
            f"{theta0_path}: Θ0 must be recorded before any optimizer step (the dense run's "
            f"init.pt), this checkpoint is at step {theta0_ck['global_step']}"
        )
    _check_same_model(theta0_ck, theta0_path, previous_ck, previous_path)
    _check_spec(spec, theta0_ck, theta0_path)
    meta = _model_meta(theta0_ck)
    model = _builder(meta)
    groups = prunable_groups(model, scope, exclude_first=exclude_first, exclude_last=exclude_last)
    if not groups:
        raise InputError(f"lottery round: the {meta['arch']!r} model has nothing to prune")
    prev = _load_previous_mask(mask_in, round_index, previous_ck, previous_path, groups)

    # Steps 7-8: the winning mask from the previous round's trained weights; units every
    # class needs are given back (reachability), counted in `restored`.
    gen = seeded_generator(derive_seed(control_seed, round_index, _RANDOM_STRATEGY))
    restored: dict[str, int] = {}
    control_restored: dict[str, int] = {}
    winning = build_scoped_mask(
        strategy,
        model,
        previous_ck["state_dict"],
        prev,
        r,
        scope=scope,
        exclude_first=exclude_first,
        exclude_last=exclude_last,
        min_keep=min_keep,
        generator=gen if strategy == "random" else None,
        restored=restored,
    )

    # Step 9: the state to restart from (Θ0, the snapshot, or the re-init control).
    start_step, optimizer_state, snapshot_ck = 0, None, None
    source_state = theta0_ck["state_dict"]
    if rewind == "step":
        snap_path = Path(rewind_checkpoint)  # type: ignore[arg-type]
        snapshot_ck = load_checkpoint(snap_path)
        _check_same_model(theta0_ck, theta0_path, snapshot_ck, snap_path)
        source_state = snapshot_ck["state_dict"]
        start_step = int(snapshot_ck["global_step"])
        if optimizer == "rewind":
            if not isinstance(snapshot_ck.get("optimizer"), Mapping):
                raise InputError(
                    f"{snap_path}: optimizer 'rewind' needs the optimizer state saved with the "
                    "snapshot (a trainer's rewind.pt), this checkpoint has none"
                )
            optimizer_state = snapshot_ck["optimizer"]

    mask = winning
    control_info: dict[str, Any] = {"control": control, "control_seed": control_seed}
    if control == "random_mask":
        seed = derive_seed(control_seed, round_index, _RANDOM_MASK)
        shuffled = random_mask_like(leader_mask(winning, groups), seeded_generator(seed))
        # Random positions can cut every path to a class: give back the fewest units.
        shuffled = reachable_leaders(
            model, previous_ck["state_dict"], shuffled, None, control_restored
        )
        mask = expand_mask(shuffled, groups)
        control_info["derived_seed"] = seed
    if control == "random_reinit":
        seed = derive_seed(control_seed, round_index, _RANDOM_REINIT)
        start = reinit_state(lambda: _builder(meta, None), seed, mask)
        if all(
            _same_bits(start[k][mask[k]], theta0_ck["state_dict"][k][mask[k]])
            for k in mask
            if mask[k].any()
        ):
            raise InputError(
                f"lottery round: control_seed {control_seed} re-initialises to the very "
                "weights of Θ0; choose another seed"
            )
        control_info["derived_seed"] = seed
    elif rewind == "step":
        start = rewind_to_snapshot(source_state, mask)
    else:
        start = rewind_state(source_state, mask)

    # The invariant: every class of every head reachable, no layer emptied.
    check_reachable(model, mask, f"lottery round {round_index} ({strategy}, scope {scope})")

    # Step 10: the mask as its own artifact, then train under it.
    mask_path = out / "mask.pt"
    save_mask(mask_path, mask)
    failpoint("lottery.mask")
    summary = train(
        spec,
        train_files,
        out,
        teachers=teachers,
        teacher_fusion=teacher_fusion,
        masks=mask,
        init_state=start,
        start_step=start_step,
        optimizer_state=optimizer_state,
    )

    paths = {k: Path(v) for k, v in summary["paths"].items() if v is not None}
    states = {}
    for name in ("init", "final"):  # the trainer removes checkpoint.pt when done
        ck = load_checkpoint(paths[name])
        _verify_zero(ck["state_dict"], mask, paths[name])
        states[name] = ck["state_dict"]
    mismatched = [
        k for k in start if k in states["init"] and not _same_bits(start[k], states["init"][k])
    ]
    if mismatched or set(start) != set(states["init"]):
        raise MaskInvariantError(
            f"{paths['init']}: the round did not start from the rewound state "
            f"(differs in {mismatched[:5]})"
        )

    report: dict[str, Any] = {
        "round": round_index,
        "strategy": strategy,
        "rate": r,
        "target_sparsity": target_sparsity,
        "rounds": rounds,
        "expected_sparsity": sparsity_after(r, round_index),
        "scope": scope,
        "exclude_first": exclude_first,
        "exclude_last": exclude_last,
        "min_keep": min_keep,
        **control_info,
        "rewind": rewind,
        "start_step": start_step,
        "optimizer": optimizer,
        "model": meta,
        "spec": spec.to_dict(),
        "weights_remaining": _remaining(mask),
        "reachability": {
            "restored": restored,  # given back to the winning mask
            "restored_total": sum(restored.values()),
            "control_restored": control_restored,  # and to a random_mask control's
        },
        "sparsity": _sparsity_summary(mask, states["final"]),
        "size": _size(states["final"]),
        "train": {k: summary[k] for k in ("epochs", "steps", "final_loss", "final_train_acc")},
        "paths": {
            "theta0": str(theta0_path),
            "previous": str(previous_path),
            "previous_mask": None if mask_in is None else str(mask_in),
            "rewind_checkpoint": None if rewind_checkpoint is None else str(rewind_checkpoint),
            "mask": str(mask_path),
            **{k: str(v) for k, v in paths.items() if k != "checkpoint"},
            **({"teacher_fusion": str(teacher_fusion)} if teacher_fusion is not None else {}),
        },
    }
    write_json(out / "round.json", report)
    return report


def _remaining(mask: Mask) -> float:
    s = mask_sparsity(mask)
    return s["kept"] / s["total"] if s["total"] else 1.0


def dense_round_report(
    final_ckpt: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    scope: str = "weights",
    exclude_first: bool = False,
    exclude_last: bool = False,
) -> dict[str, Any]:
    """Round 0 (the dense model) in the format of round.json: the 100 % point of Figure 2.

    Its ``strategy`` is None: the dense model belongs to every strategy's curve.
    """
    path = Path(final_ckpt)
    ck = load_checkpoint(path)
    meta = _model_meta(ck)
    groups = prunable_groups(
        _builder(meta), scope, exclude_first=exclude_first, exclude_last=exclude_last
    )
    mask = full_scope_mask(ck["state_dict"], groups)
    report = {
        "round": 0,
        "strategy": None,
        "rate": 0.0,
        "scope": scope,
        "exclude_first": exclude_first,
        "exclude_last": exclude_last,
        "control": None,
        "model": meta,
        # the dense model's training seed: Figure 2 draws the dense bases of several
        # seeds as a band
        "seed": (ck.get("spec") or {}).get("seed"),
        "weights_remaining": 1.0,
        "sparsity": _sparsity_summary(mask, ck["state_dict"]),
        "size": _size(ck["state_dict"]),
        "paths": {"final": str(path)},
    }
    write_json(out, report)
    return report
