"""`params.yaml`: the experiment knobs that `dvc exp run -S` edits, laid over config.yaml.

Why a second file: DVC applies `-S key=value` by loading the params file, applying the
override with Hydra and writing the file back. config.yaml shares settings between models
through YAML anchors and merge keys, which that round trip expands (a 266-line diff for
one value), and Hydra refuses a key the file does not hold unless it is spelled `+key`
(a model's training keys are mostly inherited, so they are absent). params.yaml is
plain YAML without anchors that already holds every knob, empty (null: "as config.yaml"):
`-S training.epochs=3` and `-S models.sic.training.epochs=3` both change one line.

Precedence: config.yaml (or --configfile), then params.yaml's non-null values, then
`--config` on the command line. The cost of `null` meaning "unset": a knob whose value
should be null (e.g. crop_frames) is set in config.yaml, not here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from acoustic_lottery.configuration import load_yaml, merge
from acoustic_lottery.errors import InputError

#: The file DVC's `-S` edits by default, beside config.yaml in the working directory.
PARAMS_FILE = "params.yaml"

#: The global training keys listed in params.yaml (all of `training` a config sets).
GLOBAL_KEYS: tuple[str, ...] = (
    "epochs",
    "batch_size",
    "lr_max",
    "lr_min",
    "momentum",
    "mixup_alpha",
    "specaug_freq",
    "specaug_time",
    "crop_frames",
    "seed",
    "bn_momentum",
)

#: The per-model training keys listed for every model (the ones an experiment varies).
MODEL_KEYS: tuple[str, ...] = ("epochs", "batch_size", "lr_max", "seed")


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _drop_nulls(tree: Any) -> Any:
    if not isinstance(tree, Mapping):
        return tree
    kept = {k: _drop_nulls(v) for k, v in tree.items() if v is not None}
    return {k: v for k, v in kept.items() if not (isinstance(v, dict) and not v)}


def set_values(params: Mapping[str, Any]) -> dict[str, Any]:
    """The params that are set (non-null), as a nested dict."""
    return _drop_nulls(params)


def apply_params(
    config: Mapping[str, Any],
    params: Mapping[str, Any] | None,
    *,
    source: str = PARAMS_FILE,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`config` with the non-null values of `params` laid over it, then `overrides` (the
    command line's --config, which must win) again on top.

    Only `training` and `models.<name>.training` may be set; a set value for a model the
    configuration does not have is an error naming it (a typo would otherwise change
    nothing). Types and ranges are the schema's business (validate_config, afterwards).
    """
    if params is None:
        return dict(config)
    if not isinstance(params, Mapping):
        raise InputError(f"{source}: expected a mapping, found {type(params).__name__}")
    unknown = sorted(set(params) - {"training", "models"})
    if unknown:
        raise InputError(
            f"{source}: unknown top-level key(s) {unknown}; expected training and models"
        )
    chosen = set_values(params)
    models = chosen.get("models", {})
    if not isinstance(models, Mapping):
        raise InputError(f"{source}: models: expected a mapping of model names")
    for name, entry in models.items():
        if name not in config.get("models", {}):
            raise InputError(
                f"{source}: models.{name}: no such model in the configuration "
                f"(models: {', '.join(sorted(config.get('models', {})))})"
            )
        if not isinstance(entry, Mapping) or set(entry) - {"training"}:
            raise InputError(
                f"{source}: models.{name}: only `training` may be set here, found "
                f"{sorted(entry) if isinstance(entry, Mapping) else entry!r}"
            )
    out = merge(dict(config), chosen)
    return merge(out, dict(overrides)) if overrides else out


def load_params(path: str | os.PathLike[str] = PARAMS_FILE) -> dict[str, Any] | None:
    """params.yaml if it exists (a working directory without one has no overrides)."""
    p = Path(path)
    return load_yaml(p) if p.exists() else None


def render_params(config: Mapping[str, Any]) -> str:
    """The params.yaml for `config`: every knob present and unset, in block style with
    empty values, which is how DVC's YAML round trip (ruamel) writes them back, so `-S`
    changes exactly the line of its key (tests/test_experiment_params.py runs it)."""
    lines = [
        "# Experiment knobs laid over config.yaml (src/acoustic_lottery/experiment_params.py).",
        "# Empty: as config.yaml. `dvc exp run -S <key>=<value>` edits one line here:",
        "#   dvc exp run -S 'models.sic.training.epochs=3' 'table1@3'",
        "#   dvc exp run -S 'training.lr_max=0.05'",
        "# After adding a model: acoustic-lottery params-file (rewrites this file)",
        "training:",
        *(f"  {k}:" for k in GLOBAL_KEYS),
        "models:",
    ]
    for name in config.get("models", {}):
        lines += [f"  {name}:", "    training:", *(f"      {k}:" for k in MODEL_KEYS)]
    return "\n".join(lines) + "\n"


def check_params_file(config: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """Keys `render_params(config)` would list that `params` lacks (so `-S` would need
    `+`), and keys it lists that the template does not know."""
    want = set(_leaves(yaml.safe_load(render_params(config))))
    have = set(_leaves(params))
    return sorted(f"missing {k}" for k in want - have) + sorted(
        f"unexpected {k}" for k in have - want
    )
