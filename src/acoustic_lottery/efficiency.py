"""The DCASE 2024 data-efficiency study: configuration -> jobs, subset features, the table.

DCASE 2024 Task 1 trains one system per nested train subset (5, 10, 25, 50, 100 % of the
split) and ranks systems by macro-averaged class-wise accuracy, averaged over the subsets,
under limits of 128 kB parameter memory and 30 M MACs per 1 s clip. The study here
compares Rep-Mobile students trained on each subset plainly, with knowledge distillation,
and with distillation followed by progressive pruning (papers/001).

The configuration key ``data_efficiency`` (schema `STUDY_SCHEMA`) names the systems; this
module turns it into what the workflow's jobs need (training and fine-tuning specs,
`prune-progressive` options, teachers per subset, labels), checks the study before any job
runs (cross references, the progressive schedule against the epochs, and the planned
complexity of every system's inference form, like Table 1's planned 2021 size budget),
copies a subset's rows out of a feature file, and builds the per-system JSON and the
results table.

Teachers follow the DCASE 2024 rule that every part of a system, teachers included, sees
only its subset: with ``teacher_data: subset`` (default) the teacher model named by a
system is trained again on each subset. ``teacher_data: full`` uses the teacher trained
on the whole train split instead (cheaper; outside the challenge rule, for comparison).

No torch at import time: the Snakefile imports this module while building the DAG. Only
`check_study` (planned complexity, progressive plans) imports torch, lazily.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from acoustic_lottery.configuration import merge, validate_config
from acoustic_lottery.errors import InputError
from acoustic_lottery.io import atomic_path, progress, read_json, write_json
from acoustic_lottery.labels import SCENES

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "STUDY_KEY",
    "STUDY_SCHEMA",
    "StudyPaths",
    "build_system",
    "check_study",
    "dense_source",
    "final_stage",
    "finetune_spec",
    "fraction_key",
    "fraction_keys",
    "has_study",
    "progressive_args",
    "pruned_systems",
    "select_features",
    "student_spec",
    "study_config",
    "subset_teachers",
    "system_config",
    "system_label",
    "system_names",
    "system_spec",
    "table_frame",
    "teacher_arg",
    "teacher_of",
    "teacher_spec",
    "train_systems",
    "write_system",
    "write_table",
]

STUDY_KEY = "data_efficiency"
#: Students of the study are Rep-Mobile models on the 3-channel LMFB features.
STUDENT_FEATURES = "lmfb"
#: Keys of a training spec a model, a system or the study may override.
TRAINING_KEYS: tuple[str, ...] = (
    "epochs",
    "batch_size",
    "lr_max",
    "lr_min",
    "momentum",
    "weight_decay",
    "cycle_epochs",
    "cycle_mult",
    "mixup_alpha",
    "specaug_freq",
    "specaug_time",
    "crop_frames",
    "seed",
    "device",
    "bn_momentum",
    "mtl_weights",
    "amp",
    "workers",
    "resident_mb",
)
_TRAINING_OVERRIDES = {"type": "object", "propertyNames": {"enum": list(TRAINING_KEYS)}}
_COPIES = ["orig", "pitch", "speed", "noise", "mix", "speccorr", "reverb"]

#: JSON schema of the ``data_efficiency`` block (defaults filled by `study_config`). The
#: same block belongs in workflow/schemas/config.schema.yaml under ``properties``.
STUDY_SCHEMA: dict[str, Any] = {
    "description": (
        "DCASE 2024 data-efficiency study: Rep-Mobile systems trained on each nested train "
        "subset, macro class accuracy per subset, DCASE 2024 complexity limits checked"
    ),
    "type": "object",
    "additionalProperties": False,
    "required": ["systems"],
    "properties": {
        "fractions": {
            "description": "train subsets in percent of the train split (nested)",
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
            "default": [5, 10, 25, 50, 100],
        },
        "seed": {
            "description": "seed of the subset sampling",
            "type": "integer",
            "minimum": 0,
            "default": 0,
        },
        "teacher_data": {
            "description": (
                "subset: every teacher is trained again on each subset (DCASE 2024 rule); "
                "full: the teacher trained on the whole train split"
            ),
            "enum": ["subset", "full"],
            "default": "subset",
        },
        "training": {
            "description": "overrides of the top-level training keys for every study model",
            **_TRAINING_OVERRIDES,
            "default": {},
        },
        "complexity": {
            "description": "DCASE 2024 limits, checked on each deployed (folded) model",
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {
                "max_kb": {"type": "number", "exclusiveMinimum": 0, "default": 128},
                "max_macs": {"type": "number", "exclusiveMinimum": 0, "default": 30000000},
                "frames": {"type": "integer", "minimum": 1, "default": 44},
                "bands": {"type": "integer", "minimum": 1, "default": 128},
                "dtype": {"enum": [None, "float32", "float16", "int8"], "default": None},
            },
        },
        "systems": {
            "description": "named systems (table rows), each trained on every subset",
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": "^[A-Za-z][A-Za-z0-9_]*$"},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "label": {"type": "string", "minLength": 1},
                    "arch": {"enum": ["repmobile"], "default": "repmobile"},
                    "width": {
                        "type": "number",
                        "exclusiveMinimum": 0,
                        "maximum": 8,
                        "default": 1.0,
                    },
                    "copies": {
                        "type": "array",
                        "minItems": 1,
                        "uniqueItems": True,
                        "items": {"enum": _COPIES},
                        "default": ["orig"],
                    },
                    "teacher": {
                        "description": "a models.<name> with a scene head (distillation)",
                        "type": "string",
                    },
                    "distillation": {
                        "type": "object",
                        "propertyNames": {
                            "enum": ["temperature", "hard_weight", "soft_weight", "t2_scaling"]
                        },
                        "default": {},
                    },
                    "training": {**_TRAINING_OVERRIDES, "default": {}},
                    "progressive": {
                        "description": (
                            "progressive pruning (prune-progressive) of the dense model of "
                            "`base` (another system; default: this system's own dense model)"
                        ),
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "base": {"type": "string"},
                            "target_sparsity": {
                                "type": "number",
                                "exclusiveMinimum": 0,
                                "exclusiveMaximum": 1,
                                "default": 0.5,
                            },
                            "steps": {"type": "integer", "minimum": 1, "default": 3},
                            "strategy": {
                                "enum": [
                                    "small_weights",
                                    "large_final",
                                    "global_small_weights",
                                    "random",
                                ],
                                "default": "small_weights",
                            },
                            "ramp": {"enum": ["cubic", "linear"], "default": "cubic"},
                            "scope": {"enum": ["weights", "all"], "default": "weights"},
                            "start_fraction": {"type": "number", "minimum": 0, "maximum": 1},
                            "end_fraction": {"type": "number", "minimum": 0, "maximum": 1},
                            "training": {**_TRAINING_OVERRIDES, "default": {}},
                        },
                    },
                },
            },
        },
    },
}

_PERCENT = " %"


# ------------------------------------------------------------------------ configuration


def has_study(config: Mapping[str, Any]) -> bool:
    """True when the configuration asks for the data-efficiency study."""
    return bool(config.get(STUDY_KEY))


def fraction_key(fraction: float) -> str:
    """``5`` for 5 (%), ``2.5`` for 2.5: the text of `data.subsets.subset_filename`."""
    f = float(fraction)
    return f"{int(f)}" if f.is_integer() else f"{f:g}"


def study_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The validated ``data_efficiency`` block, defaults filled, cross references checked.

    InputError naming the key for: no block, unknown keys or wrong types (schema), a
    teacher that is not a model with a scene head, a pruning base that is not a dense
    system of the same architecture and width, or two fractions with the same file name.
    """
    if not has_study(config):
        raise InputError(f"config: key '{STUDY_KEY}' is missing: the study is not configured")
    key = json.dumps(
        [config.get(k) for k in (STUDY_KEY, "models", "training", "distillation")],
        sort_keys=True,
        default=str,
    )
    if key not in _CACHE:
        if len(_CACHE) > 16:
            _CACHE.clear()
        _CACHE[key] = _study_config(config)
    return copy.deepcopy(_CACHE[key])


#: Validated study blocks by configuration content: the workflow asks for them per job.
_CACHE: dict[str, dict[str, Any]] = {}


def _study_config(config: Mapping[str, Any]) -> dict[str, Any]:
    checked = validate_config({STUDY_KEY: config[STUDY_KEY]}, _WRAPPED_SCHEMA)
    study = checked[STUDY_KEY]
    keys = [fraction_key(f) for f in study["fractions"]]
    if len(set(keys)) != len(keys):
        raise InputError(
            f"config: {STUDY_KEY}.fractions: expected distinct percentages, found "
            f"{study['fractions']}"
        )
    study["fractions"] = sorted(float(f) for f in study["fractions"])
    models = config.get("models", {})
    for name, system in study["systems"].items():
        where = f"config: {STUDY_KEY}.systems.{name}"
        teacher = system.get("teacher")
        if teacher is not None:
            _check_teacher(models, teacher, f"{where}.teacher", study["teacher_data"])
        prog = system.get("progressive")
        if prog is not None and prog.get("base") is not None:
            base = prog["base"]
            if base == name:
                raise InputError(
                    f"{where}.progressive.base: a system cannot start from itself; leave "
                    "'base' out to prune this system's own dense model"
                )
            if base not in study["systems"]:
                raise InputError(
                    f"{where}.progressive.base: '{base}' is not a system of the study "
                    f"(systems: {', '.join(study['systems'])})"
                )
            other = study["systems"][base]
            if other.get("progressive") is not None:
                raise InputError(
                    f"{where}.progressive.base: '{base}' is itself pruned; name a dense system"
                )
            for key in ("arch", "width"):
                if other[key] != system[key]:
                    raise InputError(
                        f"{where}.{key} is {system[key]!r} but its pruning base '{base}' has "
                        f"{other[key]!r}: the mask needs the same architecture"
                    )
    return study


def _check_teacher(models: Mapping[str, Any], teacher: str, where: str, data: str) -> None:
    if teacher not in models:
        raise InputError(
            f"{where}: '{teacher}' is not defined under 'models' "
            f"(defined: {', '.join(sorted(models)) or 'none'})"
        )
    m = models[teacher]
    if m.get("task", "scene") not in ("scene", "mtl"):
        raise InputError(
            f"{where}: teacher '{teacher}' has task {m.get('task')!r}: expected a model "
            "with a scene head (task scene or mtl)"
        )
    if m.get("features", "lmfb") != STUDENT_FEATURES:
        raise InputError(
            f"{where}: teacher '{teacher}' uses features {m.get('features')!r}: expected "
            f"{STUDENT_FEATURES!r}, the students' features (the teacher sees the same batches)"
        )
    if data == "subset" and (m.get("lottery") or m.get("teacher")):
        kind = "a lottery chain" if m.get("lottery") else "taught by another model"
        raise InputError(
            f"{where}: teacher '{teacher}' is {kind}; with teacher_data: subset the teacher is "
            "trained again on each subset, which needs a plain dense model (or use "
            "teacher_data: full)"
        )


_WRAPPED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {STUDY_KEY: STUDY_SCHEMA},
}


def fraction_keys(config: Mapping[str, Any]) -> list[str]:
    """The subsets' names (``5``, ``10``, ...) in increasing order."""
    return [fraction_key(f) for f in study_config(config)["fractions"]]


def system_names(config: Mapping[str, Any]) -> list[str]:
    """The study's systems in configuration order (the table's row order)."""
    return list(study_config(config)["systems"])


def system_config(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """One system's settings (defaults filled); an unknown name is an error naming it."""
    systems = study_config(config)["systems"]
    if name not in systems:
        raise InputError(
            f"config: {STUDY_KEY}.systems: no system '{name}' (systems: {', '.join(systems)})"
        )
    return systems[name]


def teacher_of(config: Mapping[str, Any], name: str) -> str | None:
    """The teacher model of a system, or None."""
    return system_config(config, name).get("teacher")


def subset_teachers(config: Mapping[str, Any]) -> list[str]:
    """Teacher models trained on every subset (none with ``teacher_data: full``)."""
    study = study_config(config)
    if study["teacher_data"] != "subset":
        return []
    return sorted({s["teacher"] for s in study["systems"].values() if s.get("teacher")})


def final_stage(config: Mapping[str, Any], name: str) -> str:
    """``pruned`` for a system with progressive pruning, else ``dense``."""
    return "pruned" if system_config(config, name).get("progressive") is not None else "dense"


def dense_source(config: Mapping[str, Any], name: str) -> str:
    """The system whose dense model a pruned system starts from (itself when no base)."""
    prog = system_config(config, name).get("progressive")
    if prog is None:
        return name
    return prog.get("base") or name


def train_systems(config: Mapping[str, Any]) -> list[str]:
    """Systems that need a dense training job of their own."""
    return sorted({dense_source(config, n) for n in system_names(config)})


def pruned_systems(config: Mapping[str, Any]) -> list[str]:
    """Systems with progressive pruning, in configuration order."""
    return [n for n in system_names(config) if final_stage(config, n) == "pruned"]


class StudyPaths:
    """Where the study's files live under ``results/<ds>/``, for the workflow's rules.

    Layout: subset lists ``subsets/split<p>.csv`` (+ ``summary.json``); subset features
    ``features/<fs>/train/subset<p>/<copy>.h5``; per system and subset
    ``efficiency_runs/<system>/p<p>/`` with ``dense/`` (trained), ``pruned/`` (pruned
    systems), ``deploy.pt``, ``complexity.json``, ``evaluate.h5``, ``metrics.json``;
    teachers trained on a subset ``efficiency_runs/teachers/<model>/p<p>/``; the systems'
    results ``efficiency/<system>.json`` (a directory of their own, like ``table1/``, so
    DVC can own them as metrics); the table ``efficiency.md`` / ``efficiency.csv``.
    ``final_checkpoint`` maps a model name to its checkpoint when teachers come from the
    whole train split.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        results: str,
        final_checkpoint: Any = None,
    ) -> None:
        self.config = config
        self.results = results
        self.runs = f"{results}/efficiency_runs"
        self.systems = f"{results}/efficiency"
        self.subsets = f"{results}/subsets"
        self.final_checkpoint = final_checkpoint or (lambda m: f"{results}/models/{m}/final.pt")

    def system_json(self, system: str) -> str:
        """A system's results over the subsets (the study's counterpart of a Table 1 row)."""
        return f"{self.systems}/{system}.json"

    def targets(self) -> list[str]:
        """The table, or nothing when the configuration has no study."""
        if not has_study(self.config):
            return []
        return [f"{self.results}/efficiency.md", f"{self.results}/efficiency.csv"]

    def subset_features(self, fs: str, copies: Sequence[str], p: str) -> list[str]:
        return [f"{self.results}/features/{fs}/train/subset{p}/{c}.h5" for c in copies]

    def teacher_checkpoint(self, teacher: str, p: str) -> str:
        if study_config(self.config)["teacher_data"] == "subset":
            return f"{self.runs}/teachers/{teacher}/p{p}/final.pt"
        return str(self.final_checkpoint(teacher))

    def teacher_inputs(self, teacher: str, p: str) -> list[str]:
        return self.subset_features(
            teacher_features(self.config, teacher), teacher_copies(self.config, teacher), p
        )

    def student_inputs(self, system: str, p: str) -> dict[str, Any]:
        """Training files of a system's student on subset p, and its teacher (if any)."""
        s = system_config(self.config, system)
        inputs: dict[str, Any] = {"train": self.subset_features(STUDENT_FEATURES, s["copies"], p)}
        if s.get("teacher"):
            inputs["teacher_scene"] = self.teacher_checkpoint(s["teacher"], p)
        return inputs

    def prune_inputs(self, system: str, p: str) -> dict[str, Any]:
        inputs = self.student_inputs(system, p)
        inputs["dense"] = f"{self.runs}/{dense_source(self.config, system)}/p{p}/dense/final.pt"
        return inputs

    def final(self, system: str, p: str) -> str:
        """The trained model of a system on subset p (dense, or pruned)."""
        return f"{self.runs}/{system}/p{p}/{final_stage(self.config, system)}/final.pt"

    def system_inputs(self, system: str) -> dict[str, list[str]]:
        fr = fraction_keys(self.config)
        inputs = {
            "metrics": [f"{self.runs}/{system}/p{p}/metrics.json" for p in fr],
            "complexity": [f"{self.runs}/{system}/p{p}/complexity.json" for p in fr],
        }
        if final_stage(self.config, system) == "pruned":
            inputs["pruning"] = [f"{self.runs}/{system}/p{p}/pruned/progressive.json" for p in fr]
        return inputs

    def pairs(self, option: str, files: Sequence[str]) -> list[str]:
        """``--option 5=FILE 10=FILE ...`` in subset order (the inputs' order), as arguments."""
        fr = fraction_keys(self.config)
        if len(files) != len(fr):
            raise InputError(f"{option}: {len(files)} files for the {len(fr)} subsets {fr}")
        return [option, *(f"{p}={f}" for p, f in zip(fr, files))]

    def pruning_arg(self, input: Any) -> list[str]:
        return self.pairs("--pruning", input.pruning) if _named(input, "pruning") else []


def teacher_arg(input: Any) -> list[str]:
    """``--teacher scene=CKPT`` when the job's inputs hold a teacher, else nothing."""
    return ["--teacher", f"scene={input.teacher_scene}"] if _named(input, "teacher_scene") else []


def _named(files: Any, name: str) -> bool:
    """Whether a Snakemake input list has an entry called `name` (`in` tests its values)."""
    return name in list(files.keys())


def _base_spec(config: Mapping[str, Any], study: Mapping[str, Any], own: Mapping) -> dict:
    """Global training keys, then the study's overrides, then the model's own."""
    return merge(merge(config.get("training", {}), study.get("training", {})), own)


def student_spec(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Training spec of a system's dense student (with ``kd`` when it has a teacher)."""
    study = study_config(config)
    s = system_config(config, name)
    spec = _base_spec(config, study, s.get("training", {}))
    spec.update(arch=s["arch"], task="scene", width=float(s["width"]))
    spec["feature_set"] = STUDENT_FEATURES
    if s.get("teacher"):
        spec["kd"] = merge(config.get("distillation", {}), s.get("distillation", {}))
    return spec


def finetune_spec(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Spec of a pruned system's fine-tuning run: its student spec plus the pruning's
    ``training`` overrides (e.g. fewer epochs, a lower learning rate)."""
    prog = system_config(config, name).get("progressive")
    if prog is None:
        raise InputError(f"config: {STUDY_KEY}.systems.{name}: has no 'progressive' settings")
    return merge(student_spec(config, name), prog.get("training", {}))


def teacher_spec(config: Mapping[str, Any], teacher: str) -> dict[str, Any]:
    """Spec of a teacher trained on a subset: its model's spec under the study's overrides."""
    study = study_config(config)
    models = config.get("models", {})
    _check_teacher(models, teacher, f"config: models.{teacher}", "subset")
    m = models[teacher]
    spec = _base_spec(config, study, m.get("training", {}))
    spec.update(
        arch=m["arch"],
        task=m.get("task", "scene"),
        width=float(m.get("width", 1.0)),
        feature_set=m.get("features", "lmfb"),
    )
    return spec


def teacher_copies(config: Mapping[str, Any], teacher: str) -> list[str]:
    """Training copies of a teacher model (its ``copies``)."""
    return list(config.get("models", {}).get(teacher, {}).get("copies", ["orig"]))


def teacher_features(config: Mapping[str, Any], teacher: str) -> str:
    return str(config.get("models", {}).get(teacher, {}).get("features", "lmfb"))


def progressive_args(config: Mapping[str, Any], name: str) -> list[str]:
    """Command-line arguments of `prune-progressive` for a pruned system (quoted by the rule)."""
    prog = system_config(config, name).get("progressive")
    if prog is None:
        raise InputError(f"config: {STUDY_KEY}.systems.{name}: has no 'progressive' settings")
    args = [
        "--target-sparsity",
        repr(float(prog["target_sparsity"])),
        "--steps",
        str(int(prog["steps"])),
        "--strategy",
        str(prog["strategy"]),
        "--ramp",
        str(prog["ramp"]),
        "--scope",
        str(prog["scope"]),
    ]
    for key in ("start_fraction", "end_fraction"):
        if prog.get(key) is not None:
            args += [f"--{key.replace('_', '-')}", repr(float(prog[key]))]
    return args


def _progressive_settings(prog: Mapping[str, Any], has_teacher: bool) -> dict[str, Any]:
    """The `pruning.progressive` preset overrides `prune-progressive` derives from the args."""
    out = {
        "target_sparsity": float(prog["target_sparsity"]),
        "n_steps": int(prog["steps"]),
        "strategy": prog["strategy"],
        "ramp": prog["ramp"],
        "distillation": has_teacher,
    }
    for key in ("start_fraction", "end_fraction"):
        if prog.get(key) is not None:
            out[key] = float(prog[key])
    return out


def system_label(config: Mapping[str, Any], name: str) -> str:
    """The table's row label: the configured ``label``, or one derived from the settings."""
    s = system_config(config, name)
    if s.get("label"):
        return str(s["label"])
    text = "Rep-Mobile"
    if float(s["width"]) != 1.0:
        text += f" (width {float(s['width']):g})"
    if s.get("teacher"):
        text += f" + KD ({s['teacher']})"
    prog = s.get("progressive")
    if prog is not None:
        text += f" + progressive pruning ({100 * float(prog['target_sparsity']):g} %)"
    return text


def system_spec(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """What `efficiency-system` needs besides its input files, as one JSON-able dict."""
    study = study_config(config)
    s = system_config(config, name)
    prog = s.get("progressive")
    return {
        "name": name,
        "label": system_label(config, name),
        "dataset": config.get("dataset", {}).get("name", ""),
        "fractions": [fraction_key(f) for f in study["fractions"]],
        "arch": s["arch"],
        "width": float(s["width"]),
        "teacher": s.get("teacher"),
        "teacher_data": study["teacher_data"] if s.get("teacher") else None,
        "progressive": None
        if prog is None
        else {k: v for k, v in prog.items() if k != "training"}
        | {"base": dense_source(config, name)},
        "flags": {"kd": bool(s.get("teacher")), "pruned": prog is not None},
    }


def check_study(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check the study before any job runs; returns the planned figures per system.

    - planned complexity of each system's inference form (`repmobile_deploy` at its width)
      against the configured DCASE 2024 limits: over a limit is an InputError naming the
      system and both figures (the measured check runs again on every trained model);
    - for a pruned system, the progressive schedule against its fine-tuning epochs
      (`pruning.progressive.plan_progressive`).
    Imports torch (lazily): call it from the workflow, not from torch-free code paths.
    """
    from acoustic_lottery.models.registry import build_model
    from acoustic_lottery.pruning.progressive import plan_progressive
    from acoustic_lottery.systems.complexity import check_complexity

    study = study_config(config)
    limits = study["complexity"]
    dtype_bytes = _dtype_bytes(limits["dtype"])
    out: dict[str, Any] = {}
    cache: dict[tuple[str, float], dict[str, Any]] = {}
    for name, s in study["systems"].items():
        key = (s["arch"], float(s["width"]))
        if key not in cache:
            model = build_model(f"{s['arch']}_deploy", task="scene", width=key[1], seed=0)
            cache[key] = check_complexity(
                model,
                (3, int(limits["bands"]), int(limits["frames"])),
                dtype_bytes=dtype_bytes,
                count_zeros=True,
                max_bytes=int(round(float(limits["max_kb"]) * 1000)),
                max_macs=int(round(float(limits["max_macs"]))),
                name=f"config: {STUDY_KEY}.systems.{name} (planned, {s['arch']} width {key[1]:g})",
            )
        rep = cache[key]
        planned: dict[str, Any] = {
            k: rep[k] for k in ("params", "param_bytes", "param_kb", "macs", "ok")
        }
        prog = s.get("progressive")
        if prog is not None:
            epochs = int(finetune_spec(config, name)["epochs"])
            try:
                planned["plan"] = plan_progressive(
                    _progressive_settings(prog, bool(s.get("teacher"))), epochs
                )
            except InputError as exc:
                raise InputError(f"config: {STUDY_KEY}.systems.{name}.progressive: {exc}") from None
        out[name] = planned
    return out


def _dtype_bytes(dtype: str | None) -> dict[str, int] | None:
    sizes = {"float32": 4, "float16": 2, "int8": 1}
    return None if dtype is None else {"*": sizes[dtype]}


# ----------------------------------------------------------------------- subset features


def select_features(
    features: str | os.PathLike[str],
    subset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    missing: str = "error",
    batch_size: int = 256,
) -> dict[str, Any]:
    """Copy the rows of the clips listed in `subset` from `features` into `out`.

    Why a copy rather than an index: training reads whole feature files, and the subset's
    file then carries its own provenance (attribute ``subset``). Rows keep the source
    order and are streamed in batches, so memory does not grow with the split.
    ``missing``: a listed clip absent from `features` is an InputError naming both files
    and the first lines (``error``), or is left out with the count recorded (``skip``,
    for copies that hold only some clips, e.g. ``speccorr``: device-a clips only).
    A listed ``scene_label`` that disagrees with the row's label is always an error.
    Returns {"rows", "listed", "skipped", "features", "subset", "out"}.
    """
    import h5py
    import numpy as np

    from acoustic_lottery.data.subsets import read_subset_list
    from acoustic_lottery.features.store import (
        FEATURES,
        INT_COLUMNS,
        STRING_COLUMNS,
        FeatureWriter,
        read_feature_attrs,
    )

    if missing not in ("error", "skip"):
        raise InputError(f"select-features: missing must be 'error' or 'skip', found {missing!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"select-features: batch_size must be an integer >= 1, found {batch_size}")
    features, subset, out = Path(features), Path(subset), Path(out)
    listed = read_subset_list(subset)
    attrs = read_feature_attrs(features)  # checks the file and its attributes
    with h5py.File(features, "r") as f:
        for name in (FEATURES, *INT_COLUMNS, *STRING_COLUMNS):
            if name not in f:
                raise InputError(f"{features}: feature file lacks dataset {name!r}")
        n = int(f[FEATURES].shape[0])
        meta = {c: f[c][()].astype(np.int64) for c in INT_COLUMNS}
        meta.update({c: np.asarray(f[c].asstr()[()], dtype=object) for c in STRING_COLUMNS})
        index: dict[str, int] = {}
        for i, name in enumerate(meta["filename"]):
            if name in index:
                raise InputError(
                    f"{features}: filename {name!r} is stored in rows {index[name]} and {i}; "
                    "cannot select by name"
                )
            index[name] = i
        rows: list[int] = []
        absent: list[tuple[int, str]] = []
        scenes = list(SCENES)
        for line, name, scene in listed:
            i = index.get(name)
            if i is None:
                absent.append((line, name))
                continue
            if scene is not None:
                label = int(meta["label10"][i])
                stored = scenes[label] if 0 <= label < len(scenes) else f"label {label}"
                if scene != stored:
                    raise InputError(
                        f"{subset}, line {line}: scene_label {scene!r} for {name!r}, but "
                        f"{features} labels it {stored!r}"
                    )
            rows.append(i)
        if absent and missing == "error":
            shown = ", ".join(f"line {ln}: {nm}" for ln, nm in absent[:5])
            more = ", ..." if len(absent) > 5 else ""
            raise InputError(
                f"{subset}: {len(absent)} listed clips are not in the feature file {features} "
                f"({n} rows): expected every listed clip there; found {shown}{more}"
            )
        if not rows:
            raise InputError(
                f"{subset}: none of its {len(listed)} listed clips is in {features} ({n} rows): "
                "expected at least one (a fraction too small for this data set?)"
            )
        rows.sort()
        selected = np.asarray(rows, dtype=np.int64)
        attrs = dict(attrs)
        attrs["subset"] = {
            "file": str(subset),
            "source": str(features),
            "listed": len(listed),
            "rows": len(rows),
            "skipped": len(absent),
        }
        ds = f[FEATURES]
        shape = tuple(int(s) for s in ds.shape[1:])
        starts = range(0, len(selected), batch_size)
        with FeatureWriter(out, attrs, feature_shape=shape) as writer:
            for start in progress(starts, desc=f"select {out.name}", total=len(starts)):
                idx = selected[start : start + batch_size]
                writer.append(ds[idx], {c: v[idx] for c, v in meta.items()})
    return {
        "rows": len(rows),
        "listed": len(listed),
        "skipped": len(absent),
        "features": str(features),
        "subset": str(subset),
        "out": str(out),
    }


# ------------------------------------------------------------------- per-system results


_COMPLEXITY_KEYS: tuple[str, ...] = (
    "params",
    "nonzero",
    "param_bytes",
    "param_kb",
    "macs",
    "max_bytes",
    "max_macs",
    "ok",
)


def _load(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: {what} file not found")
    try:
        data = read_json(p)
    except ValueError as exc:
        raise InputError(f"{p}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{p}: expected a JSON object ({what}), found {type(data).__name__}")
    return data


def _need(data: Mapping[str, Any], keys: Sequence[str], path: Any, what: str) -> None:
    absent = [k for k in keys if k not in data]
    if absent:
        raise InputError(f"{path}: {what} lacks key(s) {absent}")


def _by_fraction(
    files: Mapping[str, str | os.PathLike[str]], fractions: Sequence[str], option: str
) -> dict[str, Path]:
    got = {fraction_key(float(k)): Path(v) for k, v in files.items()}
    if sorted(got, key=float) != sorted(fractions, key=float):
        raise InputError(
            f"{option}: expected one file for each subset {list(fractions)}, found "
            f"{sorted(got, key=float)}"
        )
    return got


def build_system(
    spec: Mapping[str, Any],
    metrics: Mapping[str, str | os.PathLike[str]],
    complexity: Mapping[str, str | os.PathLike[str]],
    pruning: Mapping[str, str | os.PathLike[str]] | None = None,
) -> dict[str, Any]:
    """One system's results over the subsets (the study's counterpart of a Table 1 row).

    `metrics`, `complexity` and `pruning` map a subset (``"5"``) to the `evaluate`,
    `complexity` and `prune-progressive` JSON of the model trained on it; every subset of
    ``spec["fractions"]`` needs a metrics and a complexity file (and a pruning report when
    the system is pruned). Accuracies are in percent; the mean is over the subsets (the
    DCASE 2024 ranking averages the subsets' macro class accuracies).
    """
    _need(spec, ("name", "label", "fractions", "flags"), "efficiency-system --spec", "spec")
    fractions = [fraction_key(float(f)) for f in spec["fractions"]]
    m_files = _by_fraction(metrics, fractions, "--metrics")
    c_files = _by_fraction(complexity, fractions, "--complexity")
    pruned = bool(spec["flags"].get("pruned"))
    p_files = _by_fraction(pruning or {}, fractions if pruned else [], "--pruning")
    per: dict[str, Any] = {}
    for key in fractions:
        m = _load(m_files[key], "metrics")
        _need(
            m,
            ("task", "n", "accuracy", "macro_class_accuracy", "log_loss"),
            m_files[key],
            "metrics",
        )
        if m["task"] != "scene":
            raise InputError(
                f"{m_files[key]}: metrics of task {m['task']!r}: expected 'scene' (10 classes)"
            )
        c = _load(c_files[key], "complexity")
        _need(c, _COMPLEXITY_KEYS, c_files[key], "complexity report")
        entry: dict[str, Any] = {
            "fraction": float(key),
            "n_evaluated": int(m["n"]),
            "macro_class_accuracy_pct": 100.0 * float(m["macro_class_accuracy"]),
            "accuracy_pct": 100.0 * float(m["accuracy"]),
            "log_loss": float(m["log_loss"]),
            "complexity": {k: c[k] for k in _COMPLEXITY_KEYS},
            "files": {"metrics": str(m_files[key]), "complexity": str(c_files[key])},
            "pruning": None,
        }
        if pruned:
            p = _load(p_files[key], "pruning report")
            _need(p, ("sparsity", "weights_remaining"), p_files[key], "pruning report")
            entry["pruning"] = {
                "sparsity": float(p["sparsity"]["sparsity"]),
                "weights_remaining": float(p["weights_remaining"]),
                "prunable": int(p["sparsity"]["total"]),
            }
            entry["files"]["pruning"] = str(p_files[key])
        per[key] = entry
    macro = [per[k]["macro_class_accuracy_pct"] for k in fractions]
    return {
        "system": spec["name"],
        "label": spec["label"],
        "dataset": spec.get("dataset", ""),
        "spec": dict(spec),
        "flags": dict(spec["flags"]),
        "fractions": fractions,
        "subsets": per,
        "mean_macro_class_accuracy_pct": float(sum(macro) / len(macro)),
        "complexity_ok": all(per[k]["complexity"]["ok"] for k in fractions),
        "max_param_bytes": max(per[k]["complexity"]["param_bytes"] for k in fractions),
        "max_macs": max(per[k]["complexity"]["macs"] for k in fractions),
    }


def write_system(
    spec: Mapping[str, Any],
    metrics: Mapping[str, str | os.PathLike[str]],
    complexity: Mapping[str, str | os.PathLike[str]],
    out: str | os.PathLike[str],
    pruning: Mapping[str, str | os.PathLike[str]] | None = None,
) -> dict[str, Any]:
    """`build_system`, written as JSON (atomically); returns it."""
    result = build_system(spec, metrics, complexity, pruning)
    write_json(out, result)
    return result


# ------------------------------------------------------------------------------- table


def _load_system(path: str | os.PathLike[str]) -> dict[str, Any]:
    data = _load(path, "system result")
    _need(
        data,
        ("system", "label", "fractions", "subsets", "mean_macro_class_accuracy_pct", "flags"),
        path,
        "system result (from efficiency-system)",
    )
    return data


def table_frame(systems: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Long-format table: one row per (system, subset) with accuracy, complexity, pruning.

    Every system must cover the same subsets (the columns of the Markdown table).
    """
    import pandas as pd

    if not systems:
        raise InputError("efficiency table: expected at least one system result, found none")
    names = [s["system"] for s in systems]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"efficiency table: system(s) {dup} given more than once")
    fractions = list(systems[0]["fractions"])
    records = []
    for s in systems:
        if list(s["fractions"]) != fractions:
            raise InputError(
                f"efficiency table: system '{s['system']}' covers subsets {s['fractions']}, "
                f"but '{systems[0]['system']}' covers {fractions}: expected the same subsets"
            )
        for key in fractions:
            e = s["subsets"][key]
            c = e["complexity"]
            p = e.get("pruning") or {}
            records.append(
                {
                    "system": s["system"],
                    "label": s["label"],
                    "fraction": float(key),
                    "macro_class_accuracy": round(e["macro_class_accuracy_pct"], 2),
                    "accuracy": round(e["accuracy_pct"], 2),
                    "log_loss": round(e["log_loss"], 4),
                    "n_evaluated": e["n_evaluated"],
                    "kd": bool(s["flags"].get("kd")),
                    "pruned": bool(s["flags"].get("pruned")),
                    "sparsity": None if not p else round(p["sparsity"], 4),
                    "params": c["params"],
                    "nonzero": c["nonzero"],
                    "param_kb": round(c["param_kb"], 3),
                    "macs": c["macs"],
                    "max_kb": c["max_bytes"] / 1000,
                    "max_macs": c["max_macs"],
                    "complexity_ok": bool(c["ok"]),
                }
            )
    return pd.DataFrame.from_records(records)


def _pct(v: float) -> str:
    return f"{v:.1f}"


def _markdown(systems: Sequence[Mapping[str, Any]], clips: Mapping[str, int] | None) -> str:
    fractions = list(systems[0]["fractions"])
    dataset = systems[0].get("dataset") or ""

    def head(key: str) -> str:
        text = f"{key}{_PERCENT}"
        if clips and key in clips:
            text += f" ({clips[key]:,} clips)"
        return text

    lines = [
        f"# Data-efficiency study{f' ({dataset})' if dataset else ''}",
        "",
        "Macro-averaged class-wise accuracy (%) on the evaluate split of a model trained on "
        "each nested train subset (DCASE 2024 Task 1 setting); Mean = average over the subsets.",
        "",
        "| System | " + " | ".join(head(k) for k in fractions) + " | Mean |",
        "|---|" + "---:|" * (len(fractions) + 1),
    ]
    for s in systems:
        cells = [_pct(s["subsets"][k]["macro_class_accuracy_pct"]) for k in fractions]
        lines.append(
            f"| {s['label']} | "
            + " | ".join(cells)
            + f" | {_pct(s['mean_macro_class_accuracy_pct'])} |"
        )
    lines += [
        "",
        "Accuracy (%, all clips):",
        "",
        "| System | " + " | ".join(f"{k}{_PERCENT}" for k in fractions) + " |",
        "|---|" + "---:|" * len(fractions),
    ]
    for s in systems:
        cells = [_pct(s["subsets"][k]["accuracy_pct"]) for k in fractions]
        lines.append(f"| {s['label']} | " + " | ".join(cells) + " |")
    first = systems[0]["subsets"][fractions[0]]["complexity"]
    lines += [
        "",
        "Complexity of the deployed (re-parameterized) models, DCASE 2024 limits: "
        f"{first['max_bytes'] / 1000:g} kB parameter memory (every stored value), "
        f"{first['max_macs'] / 1e6:g} M MACs per 1 s clip (largest over the subsets' models):",
        "",
        "| System | Parameters | Non-zero | Memory (kB) | MACs (M) | Pruned (training form) "
        "| Within limits |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for s in systems:
        entries = [s["subsets"][k] for k in fractions]
        c = max((e["complexity"] for e in entries), key=lambda c: (c["param_bytes"], c["macs"]))
        macs = max(e["complexity"]["macs"] for e in entries)
        sparsity = [e["pruning"]["sparsity"] for e in entries if e.get("pruning")]
        pruned = f"{100 * min(sparsity):.1f} %" if sparsity else "-"
        ok = all(e["complexity"]["ok"] for e in entries)
        lines.append(
            f"| {s['label']} | {c['params']:,} | {c['nonzero']:,} | {c['param_kb']:.2f} | "
            f"{macs / 1e6:.2f} | {pruned} | {'yes' if ok else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def write_table(
    system_files: Sequence[str | os.PathLike[str]],
    out_md: str | os.PathLike[str],
    out_csv: str | os.PathLike[str],
    subsets_summary: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """The study's table as Markdown (accuracy per subset, complexity) and long CSV.

    `subsets_summary` (the `subsets --summary` JSON) adds each subset's clip count to the
    column headers. Returns the CSV's DataFrame.
    """
    systems = [_load_system(p) for p in system_files]
    frame = table_frame(systems)
    clips = None
    if subsets_summary is not None:
        summary = _load(subsets_summary, "subsets summary")
        _need(summary, ("subsets",), subsets_summary, "subsets summary")
        clips = {
            fraction_key(float(v["fraction"])): int(v["clips"]) for v in summary["subsets"].values()
        }
        frame["train_clips"] = [clips.get(fraction_key(f)) for f in frame["fraction"]]
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    with atomic_path(out_md) as tmp:
        tmp.write_text(_markdown(systems, clips), encoding="utf-8")
    return frame
