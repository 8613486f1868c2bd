"""Pure-Python helpers the workflow uses to turn the configuration into job parameters.

No torch here: the Snakefile imports this module while building the DAG, which must
stay fast (`snakemake -n` on the whole table takes seconds).
"""

from __future__ import annotations

import json
import re
from typing import Any

from acoustic_lottery.configuration import merge
from acoustic_lottery.errors import InputError

#: Feature-set name of each model input kind.
FEATURE_SETS = ("lmfb", "baseline")


def model_config(config: dict, name: str) -> dict:
    """The validated `models.<name>` entry; an unknown name is an error naming it."""
    models = config.get("models", {})
    if name not in models:
        raise InputError(
            f"config: model '{name}' is not defined under 'models' "
            f"(defined: {', '.join(sorted(models)) or 'none'})"
        )
    return models[name]


def teachers_of(config: dict, name: str) -> dict[str, str]:
    """Teacher model per student head, checked: a teacher must exist and predict that head."""
    m = model_config(config, name)
    teacher = m.get("teacher")
    if not teacher:
        return {}
    if isinstance(teacher, str):
        heads = heads_of(config, name)
        if len(heads) != 1:
            raise InputError(
                f"config: models.{name}.teacher: a multi-task student needs a mapping "
                "{scene: teacher, super: teacher}"
            )
        teacher = {heads[0]: teacher}
    for head, t in teacher.items():
        if head not in heads_of(config, name):
            raise InputError(f"config: models.{name}.teacher: the student has no '{head}' head")
        if head not in heads_of(config, t):
            raise InputError(
                f"config: models.{name}.teacher.{head}: teacher '{t}' has no '{head}' head"
            )
        if t == name:
            raise InputError(f"config: models.{name}.teacher: a model cannot teach itself")
    return dict(teacher)


def teacher_fusion_of(config: dict, name: str) -> str | None:
    """The 3-class model fused two-stage into the scene teacher of `name`, or None.

    Row 1's fusion P10 · P3[:, map] as the teacher (report §3.3); checked: the fusion
    model predicts the 'super' head and the student has a scene teacher.
    """
    fusion = model_config(config, name).get("teacher_fusion")
    if fusion is None:
        return None
    if "scene" not in teachers_of(config, name):
        raise InputError(
            f"config: models.{name}.teacher_fusion: '{name}' has no scene teacher to fuse "
            f"'{fusion}' into"
        )
    if "super" not in heads_of(config, fusion):
        raise InputError(
            f"config: models.{name}.teacher_fusion: '{fusion}' has no 'super' head "
            "(expected a 3-class model)"
        )
    return fusion


def train_spec(config: dict, name: str) -> dict:
    """The full training spec of a model: global training keys, then the model's overrides."""
    m = model_config(config, name)
    spec = merge(config.get("training", {}), m.get("training", {}))
    spec.update(arch=m["arch"], task=m["task"], width=m["width"], feature_set=m["features"])
    if teachers_of(config, name):
        spec["kd"] = merge(config.get("distillation", {}), m.get("distillation", {}))
    return spec


def spec_json(spec: dict[str, Any]) -> str:
    """Canonical JSON, so that Snakemake's params change detection is stable."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def heads_of(config: dict, name: str) -> list[str]:
    task = model_config(config, name)["task"]
    return ["scene", "super"] if task == "mtl" else [task]


def table_rows(config: dict) -> dict[str, dict]:
    """Every system to build, by row name: `rowN` from `table1."N"`, `systemX` from
    `systems.X`. The names are those of the result files (results/<ds>/table1/rowN.json);
    the config keys are those of the DVC stages (table1@N, system@X)."""
    rows: dict[str, dict] = {}
    for section, prefix in (("table1", "row"), ("systems", "system")):
        for key, row in (config.get(section) or {}).items():
            if not isinstance(key, str):
                raise InputError(
                    f"config: {section}: key {key!r} must be a quoted string "
                    f'("{key}": ...): DVC drops unquoted numeric keys from its stage list'
                )
            rows[prefix + key] = row
    return rows


def row_config_key(row_name: str) -> str:
    """Where a row lives in the config: `rowN` -> `table1.N`, `systemX` -> `systems.X`."""
    if row_name.startswith("system"):
        return "systems." + row_name.removeprefix("system")
    return "table1." + row_name.removeprefix("row")


_ROW_KEY = re.compile(r"^([0-9]+)([a-z]*)$")


def _row_parts(row_name: str) -> tuple[int, str]:
    match = _ROW_KEY.match(row_name.removeprefix("row"))
    if match is None:
        raise InputError(f"row {row_name!r}: expected rowN or rowN<letter> (e.g. row5, row5m)")
    return int(match.group(1)), match.group(2)


def row_index(row_name: str) -> int | None:
    """Table 1 index of `rowN` (and of its variant `rowNm`); None for a submitted system."""
    return None if row_name.startswith("system") else _row_parts(row_name)[0]


def row_variant(row_name: str) -> str:
    """The letter of a variant row (`row5m` -> "m": our addition beside the report's
    row 5, e.g. a moderate-sparsity ticket); "" for the report's own rows and systems."""
    return "" if row_name.startswith("system") else _row_parts(row_name)[1]


def row_order(row_name: str) -> tuple[bool, int, str, str]:
    """Rows 0-22 in order, each followed by its variants, then the systems (a)-(d)."""
    index = row_index(row_name)
    return (index is None, index or 0, row_variant(row_name), row_name)


def row_members(config: dict, row_name: str) -> list[dict]:
    """Members of a Table 1 row, each checked against its model's heads."""
    row = table_rows(config)[row_name]
    for i, member in enumerate(row["members"]):
        heads = heads_of(config, member["model"])
        if member["head"] not in heads:
            raise InputError(
                f"config: {row_config_key(row_name)}.members[{i}]: model '{member['model']}' has "
                f"head(s) {heads}, not '{member['head']}'"
            )
    return row["members"]


def row_flags(config: dict, row_name: str) -> dict[str, bool]:
    """What a row actually uses, derived from its configuration (not copied from the paper)."""
    row = table_rows(config)[row_name]
    models = [model_config(config, m["model"]) for m in row["members"]]
    return {
        "tsl": any(m.get("teacher") for m in models),
        "lth": any(m.get("lottery") for m in models),
        "two_stage": row["fusion"] == "two_stage",
        "mtl": any(m["task"] == "mtl" for m in models),
        "quant": any(m.get("quantized") for m in row["members"]),
        "aug": any(set(m.get("copies", ["orig"])) - {"orig"} for m in models),
    }


def row_spec(config: dict, row_name: str) -> dict:
    """Everything the row job needs besides its input files, as one JSON-able dict."""
    row = table_rows(config)[row_name]
    return {
        "name": row_name,
        "index": row_index(row_name),
        "variant": row_variant(row_name),
        "system": row_name.removeprefix("system") if row_name.startswith("system") else None,
        "members": row_members(config, row_name),
        "fusion": row["fusion"],
        "size_dtype": row["size_dtype"],
        "flags": row_flags(config, row_name),
        "dataset": config["dataset"]["name"],
    }


# ------------------------------------------------------------------ lottery chains

#: Settings of a lottery round that are passed to `acoustic-lottery lottery-round`.
ROUND_KEYS = (
    "strategy",
    "rate",
    "scope",
    "exclude_first",
    "exclude_last",
    "rewind",
    "optimizer",
    "control_seed",
)

#: What a lottery model gets when neither it nor its preset says otherwise. The preset
#: `acoustic_lottery` is the report's choice: small weights per layer over the conv /
#: linear weights (scope "weights": BN and biases kept), rewind to Θ0, T = 2 rounds to
#: 99.33 % of the weights; `acoustic_lottery_size_matched` is its scope-"all" variant.
LOTTERY_DEFAULTS: dict[str, Any] = {
    "preset": "acoustic_lottery",
    "scope": "weights",
    "exclude_first": False,
    "exclude_last": False,
    "optimizer": "reset",
    "control_seed": 0,
}


def is_lottery(config: dict, name: str) -> bool:
    return bool(model_config(config, name).get("lottery"))


def _winning_chain(config: dict, name: str) -> str:
    """The chain whose masks a control copies (itself for a winning chain)."""
    lot = model_config(config, name)["lottery"]
    of = lot.get("control_of")
    if lot.get("control") and not of:
        raise InputError(f"config: models.{name}.lottery.control needs control_of (a chain)")
    if of and not lot.get("control"):
        raise InputError(
            f"config: models.{name}.lottery.control_of needs control (random_mask or random_reinit)"
        )
    if not of:
        return name
    if not is_lottery(config, of) or model_config(config, of)["lottery"].get("control"):
        raise InputError(
            f"config: models.{name}.lottery.control_of: '{of}' is not a winning lottery chain"
        )
    return of


def lottery_settings(config: dict, name: str) -> dict[str, Any]:
    """Chain settings: the preset's, then the model's keys; `rounds` and `rate` resolved.

    A control chain takes every setting of the chain it controls, plus its control.
    """
    from acoustic_lottery.lottery_presets import preset

    winning = _winning_chain(config, name)
    lot = dict(model_config(config, winning)["lottery"])
    base = lot.get("base")
    if not base:
        raise InputError(f"config: models.{winning}.lottery.base: name the dense model (round 0)")
    if is_lottery(config, base):
        raise InputError(f"config: models.{winning}.lottery.base: '{base}' is itself a chain")
    mine, theirs = model_config(config, winning), model_config(config, base)
    for key in ("arch", "task", "width", "features"):
        if mine[key] != theirs[key]:
            raise InputError(
                f"config: models.{winning}.{key} is {mine[key]!r} but its lottery base "
                f"'{base}' has {theirs[key]!r}: Θ0 must come from the same architecture"
            )
    name_ = lot.get("preset", LOTTERY_DEFAULTS["preset"])
    if name_ == "progressive":
        raise InputError(
            f"config: models.{winning}.lottery.preset: 'progressive' has no rounds; "
            "use models.<name>.progressive"
        )
    overrides = {k: lot[k] for k in ("rounds", "rate", "target_sparsity") if k in lot}
    p = preset(name_, **overrides)
    out = {
        **LOTTERY_DEFAULTS,
        "strategy": p["strategy"],
        "rewind": p["rewind"],
        "scope": p.get("scope", LOTTERY_DEFAULTS["scope"]),
    }
    out.update({k: v for k, v in lot.items() if k not in ("control", "control_of")})
    out.update(rounds=int(p["rounds"]), rate=float(p["rate"]), base=base, preset=name_)
    if "optimizer" not in lot and not p.get("reset_optimizer", True):
        out["optimizer"] = "rewind"
    if out["rewind"] != "init":
        raise InputError(
            f"config: models.{winning}.lottery.rewind: the DAG rewinds to Θ0 ('init'); late "
            "rewinding is available through `acoustic-lottery lottery-round --rewind step`"
        )
    ctl = model_config(config, name)["lottery"]
    out["control"] = ctl.get("control")
    out["chain"] = winning
    if out["control"] and "control_seed" in ctl:
        out["control_seed"] = ctl["control_seed"]
    return out


def lottery_rounds(config: dict, name: str) -> int:
    return lottery_settings(config, name)["rounds"]


def round_settings(config: dict, name: str, t: int) -> dict[str, Any]:
    """The settings of round t alone (per_round overrides applied), for the round's params.

    Only round t's own settings: a change to round 3 re-runs rounds 3 and later (through
    their inputs), never rounds 1 and 2.
    """
    s = lottery_settings(config, name)
    if not 1 <= t <= s["rounds"]:
        raise InputError(f"config: models.{name}: round {t} is outside 1..{s['rounds']}")
    out = {k: s[k] for k in ROUND_KEYS}
    per_round = {str(k): v for k, v in s.get("per_round", {}).items()}  # YAML keys: ints
    unknown = sorted(k for k in per_round if not k.isdigit() or not 1 <= int(k) <= s["rounds"])
    if unknown:
        raise InputError(
            f"config: models.{s['chain']}.lottery.per_round: round(s) {unknown} are not in "
            f"1..{s['rounds']}"
        )
    out.update(per_round.get(str(t), {}))
    out["control"] = s["control"]
    out["round"] = t
    return out


def round_args(settings: dict[str, Any]) -> list[str]:
    """Command-line arguments of `lottery-round` for one round's settings.

    A list of separate arguments: rules quote each one for the shell (`{params.x:q}`), so
    no config value is ever parsed by the shell.
    """
    args = [
        "--strategy",
        str(settings["strategy"]),
        "--rate",
        repr(settings["rate"]),
        "--scope",
        str(settings["scope"]),
        "--optimizer",
        str(settings["optimizer"]),
        "--control-seed",
        str(settings["control_seed"]),
    ]
    if settings["exclude_first"]:
        args.append("--exclude-first")
    if settings["exclude_last"]:
        args.append("--exclude-last")
    if settings.get("control"):
        args += ["--control", str(settings["control"])]
    return args


def round_spec(config: dict, name: str, t: int) -> dict:
    """Training spec of round t: the chain's own spec, with a per-round `epochs` override."""
    spec = train_spec(config, _winning_chain(config, name))
    epochs = round_settings(config, name, t).get("epochs")
    if epochs is not None:
        spec["epochs"] = epochs
    return spec


# ------------------------------------------------------------- progressive pruning


def is_progressive(config: dict, name: str) -> bool:
    return bool(model_config(config, name).get("progressive"))


def progressive_base(config: dict, name: str) -> str:
    """The dense model a progressive run fine-tunes (same architecture, never a chain)."""
    base = model_config(config, name)["progressive"]["base"]
    b = model_config(config, base)
    if is_lottery(config, base) or is_progressive(config, base):
        raise InputError(f"config: models.{name}.progressive.base: '{base}' is not a dense model")
    mine = model_config(config, name)
    for key in ("arch", "task", "width", "features"):
        if mine[key] != b[key]:
            raise InputError(
                f"config: models.{name}.{key} is {mine[key]!r} but its progressive base "
                f"'{base}' has {b[key]!r}"
            )
    return base


def progressive_args(config: dict, name: str) -> list[str]:
    """Command-line arguments of `prune-progressive` (one list item each, quoted by the
    rule); what is not set comes from the preset."""
    p = model_config(config, name)["progressive"]
    flags = {
        "target_sparsity": "--target-sparsity",
        "steps": "--steps",
        "strategy": "--strategy",
        "scope": "--scope",
        "ramp": "--ramp",
        "start_fraction": "--start-fraction",
        "end_fraction": "--end-fraction",
    }
    args = [a for key, flag in flags.items() if key in p for a in (flag, str(p[key]))]
    if p.get("reset_optimizer"):
        args.append("--reset-optimizer")
    return args
