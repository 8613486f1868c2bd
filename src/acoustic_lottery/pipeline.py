"""Pure-Python helpers the workflow uses to turn the configuration into job parameters.

No torch here: the Snakefile imports this module while building the DAG, which must
stay fast (`snakemake -n` on the whole table takes seconds).
"""

from __future__ import annotations

import json
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


def row_index(row_name: str) -> int:
    return int(row_name.removeprefix("row"))


def row_members(config: dict, row_name: str) -> list[dict]:
    """Members of a Table 1 row, each checked against its model's heads."""
    row = config["table1"][row_name]
    for i, member in enumerate(row["members"]):
        heads = heads_of(config, member["model"])
        if member["head"] not in heads:
            raise InputError(
                f"config: table1.{row_name}.members[{i}]: model '{member['model']}' has "
                f"head(s) {heads}, not '{member['head']}'"
            )
    return row["members"]


def row_flags(config: dict, row_name: str) -> dict[str, bool]:
    """What a row actually uses, derived from its configuration (not copied from the paper)."""
    row = config["table1"][row_name]
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
    row = config["table1"][row_name]
    return {
        "name": row_name,
        "index": row_index(row_name),
        "members": row_members(config, row_name),
        "fusion": row["fusion"],
        "size_dtype": row["size_dtype"],
        "flags": row_flags(config, row_name),
        "dataset": config["dataset"]["name"],
    }
