"""A whole submitted system (Table 1's systems (a)-(d), any row) as one artifact file.

The members, their heads, int8 or float, score weights and the fusion go into one
`.alot` file (the format of `quantization.artifact`), sized by the DCASE rule, that
`acoustic-lottery predict` runs on a feature file or on WAV clips, with nothing else
at hand. Int8 members are taken from their models' own int8 artifacts (the files the
pipeline's int8 predictions come from), float members from their checkpoints (masks
applied), so the system's output is the pipeline's fused prediction.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from acoustic_lottery.errors import InputError
from acoustic_lottery.quantization.artifact import DeployableSystem, load_artifact, save_artifact
from acoustic_lottery.quantization.int8 import QuantizedState, float_state
from acoustic_lottery.systems.ensemble import SystemSpec


def _int8_state(path: Path, model: str, where: str) -> QuantizedState:
    loaded = load_artifact(path)
    if len(loaded.states) != 1:
        raise InputError(
            f"{where}: member {model}: {path} holds {len(loaded.states)} models, expected "
            "the one int8 model written by `acoustic-lottery quantize`"
        )
    (state,) = loaded.states.values()
    if not state.quantized:
        raise InputError(f"{where}: member {model}: {path} holds no int8 weights")
    return state


def _float_state(path: Path, features: Path | None, model: str, where: str) -> QuantizedState:
    from acoustic_lottery.models.checkpoint import load_model
    from acoustic_lottery.quantization.deploy import (
        _apply_checkpoint_mask,
        feature_spec,
        feature_spec_from_file,
    )

    net, meta = load_model(path)
    mask = _apply_checkpoint_mask(net, meta, f"{where}: member {model}: checkpoint {path}")
    if features is not None:
        spec = feature_spec_from_file(features)
    elif meta.get("feature_set") is not None:
        spec = feature_spec(str(meta["feature_set"]), source="defaults")
    else:
        raise InputError(f"{where}: member {model}: {path} names no feature_set; pass features")
    state = float_state(net)
    state.meta.update(features=spec, mask=mask, source={"checkpoint": str(path)})
    return state


#: How an int8 member's model is named inside the artifact when the same model is also a
#: float member (system (d) of the tiny config: SIC at 4x weight in float, 1x in int8).
INT8_SUFFIX = "@int8"


def export_system(
    spec: Mapping[str, Any],
    out: str | os.PathLike[str],
    *,
    int8: Mapping[str, str | os.PathLike[str]] | None = None,
    floats: Mapping[str, str | os.PathLike[str]] | None = None,
    features: Mapping[str, str | os.PathLike[str]] | None = None,
) -> dict[str, Any]:
    """Write the system `spec` (a row spec: name, members, fusion) as one artifact.

    int8: per model of a member marked quantized, its int8 artifact; floats: per model of
    a float member, its checkpoint. features: per float model, a feature file whose stored
    settings go into the artifact (so WAV clips are featurised as in training); without
    one, the defaults of the checkpoint's feature set. Returns the size breakdown.
    """
    where = f"export-system {spec.get('name', '?')}"
    system = SystemSpec.from_dict(spec, where, allow_extra=True)
    given = {True: dict(int8 or {}), False: dict(floats or {})}
    feats = {k: Path(v) for k, v in (features or {}).items()}
    needed = {True: {m.model for m in system.members if m.quantized},
              False: {m.model for m in system.members if not m.quantized}}  # fmt: skip
    for is_int8, option in ((True, "int8"), (False, "float")):
        missing = sorted(needed[is_int8] - set(given[is_int8]))
        extra = sorted(set(given[is_int8]) - needed[is_int8])
        if missing:
            raise InputError(f"{where}: no {option} source for member model(s) {missing}")
        if extra:
            raise InputError(f"{where}: {option} sources for non-members {extra}")
    both = needed[True] & needed[False]

    def stored_name(model: str, is_int8: bool) -> str:
        return model + INT8_SUFFIX if is_int8 and model in both else model

    states: dict[str, QuantizedState] = {}
    for is_int8 in (False, True):
        for model in sorted(needed[is_int8]):
            path = Path(given[is_int8][model])
            if not path.is_file():
                raise InputError(f"{where}: member {model}: {path}: no such file")
            states[stored_name(model, is_int8)] = (
                _int8_state(path, model, where)
                if is_int8
                else _float_state(path, feats.get(model), model, where)
            )
    members = tuple(replace(m, model=stored_name(m.model, m.quantized)) for m in system.members)
    system = replace(system, members=members)
    info = save_artifact(out, DeployableSystem(spec=system, states=states))
    return {
        "system": system.name,
        "fusion": system.fusion,
        "members": [m.to_dict() for m in system.members],
        "size_kb": info["dcase_kb"],
        "artifact": info,
    }


def checkpoint_artifact(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    features: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """A float checkpoint as a one-model artifact (for `predict` on WAV clips): the
    artifact is what stores the feature settings that turn audio into the model's input.
    """
    path = Path(checkpoint)
    where = f"predict {path}"
    state = _float_state(path, Path(features) if features else None, "model", where)
    name = str((state.arch or {}).get("arch", "model"))
    return save_artifact(out, state, name=name)
