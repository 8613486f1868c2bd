"""Validate a pipeline configuration against its JSON schema, filling defaults.

Why our own pass rather than a bare `jsonschema.validate`: users need the exact key
(`training.epochz`), what was expected and, for a misspelling, the key they meant.
References between models that go round in a circle (a teacher cycle) are named here
too, before Snakemake would report only a bare CyclicGraphException, and so is a
`teacher_fusion` that names no 3-class model or has no scene teacher to fuse into.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from acoustic_lottery.errors import InputError


def load_yaml(path: str | Path) -> Any:
    """Read YAML safely; a syntax error names the file and the line."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError as exc:
        raise InputError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from exc


def _with_defaults(validator_class: type) -> type:
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema) -> Iterator[Any]:
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _key(path: Any) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "(top level)"


def _describe(error: jsonschema.ValidationError, source: str) -> str:
    key = _key(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in allowed]
        msgs = []
        for name in unknown:
            full = name if key == "(top level)" else f"{key}.{name}"
            hint = difflib.get_close_matches(name, allowed, n=1)
            did = f"; did you mean '{hint[0]}'?" if hint else ""
            msgs.append(
                f"{source}: unknown config key '{full}'{did} (allowed: {', '.join(allowed)})"
            )
        if msgs:
            return "\n".join(msgs)
    if error.validator == "required":
        return f"{source}: config key '{key}': {error.message}"
    if error.validator == "enum":
        return (
            f"{source}: config key '{key}': expected one of {error.validator_value}, "
            f"got {error.instance!r}"
        )
    return f"{source}: config key '{key}': {error.message}"


#: Keys of a model entry that name another model it is built from: its job needs that
#: model's checkpoint (a teacher, a fusion teacher: `teacher_fusion`), its Θ0 (a lottery
#: base), its masks (the chain a control copies) or its trained weights (a progressive base).
_MODEL_REFERENCES = (("lottery", "base"), ("lottery", "control_of"), ("progressive", "base"))


def _model_references(models: dict) -> dict[str, list[tuple[str, str]]]:
    """(key, referenced model) per model, in config order; unknown names are left out."""
    refs: dict[str, list[tuple[str, str]]] = {}
    for name, m in models.items():
        if not isinstance(m, dict):
            continue
        out: list[tuple[str, str]] = []
        teacher = m.get("teacher")
        if isinstance(teacher, str):
            out.append(("teacher", teacher))
        elif isinstance(teacher, dict):
            out += [(f"teacher.{head}", t) for head, t in teacher.items()]
        if isinstance(m.get("teacher_fusion"), str):
            out.append(("teacher_fusion", m["teacher_fusion"]))
        for section, key in _MODEL_REFERENCES:
            sub = m.get(section)
            if isinstance(sub, dict) and isinstance(sub.get(key), str):
                out.append((f"{section}.{key}", sub[key]))
        refs[name] = [(key, t) for key, t in out if isinstance(t, str) and t in models]
    return refs


def model_cycle(models: dict) -> list[tuple[str, str, str]] | None:
    """A cycle of model references as (model, key, next model) hops, or None.

    The cycle starts at its model that comes first in the config, so the message is
    the same whichever model the search happened to start from.
    """
    refs = _model_references(models)
    state: dict[str, int] = {}  # 1: on the current path, 2: no cycle through it
    path: list[tuple[str, str, str]] = []

    def visit(name: str) -> list[tuple[str, str, str]] | None:
        state[name] = 1
        for key, target in refs.get(name, []):
            path.append((name, key, target))
            if state.get(target) == 1:
                start = next(i for i, hop in enumerate(path) if hop[0] == target)
                return path[start:]
            if target not in state:
                found = visit(target)
                if found:
                    return found
            path.pop()
        state[name] = 2
        return None

    order = {name: i for i, name in enumerate(models)}
    for name in models:
        if name not in state:
            cycle = visit(name)
            if cycle:
                first = min(range(len(cycle)), key=lambda i: order[cycle[i][0]])
                return cycle[first:] + cycle[:first]
    return None


def describe_cycle(cycle: list[tuple[str, str, str]], source: str = "config") -> str:
    """`config: models.a.teacher -> b -> a forms a cycle; ...` (each key named if they differ)."""
    keys = {key for _, key, _ in cycle}
    if len(keys) == 1:
        chain = f"models.{cycle[0][0]}.{cycle[0][1]} -> " + " -> ".join(t for _, _, t in cycle)
    else:
        chain = ", ".join(f"models.{name}.{key} -> {t}" for name, key, t in cycle)
    if all(key.startswith("teacher") for key in keys):
        why = "a model cannot (indirectly) teach itself"
    else:
        why = (
            "a model cannot (indirectly) be built from itself (its teacher, lottery base, "
            "control_of and progressive base must be trained first)"
        )
    return f"{source}: {chain} forms a cycle; {why}"


def scene_teacher(model: dict) -> str | None:
    """The teacher of a model entry's scene head, or None (a str teacher teaches its task)."""
    teacher = model.get("teacher")
    if isinstance(teacher, dict):
        return teacher.get("scene")
    if isinstance(teacher, str) and model.get("task", "scene") == "scene":
        return teacher
    return None


def check_teacher_fusion(models: dict, source: str = "config") -> None:
    """Every `teacher_fusion` names a model with a 'super' head and has a scene teacher.

    Why here: a wrong name would otherwise surface as a missing file in the middle of a
    run, and a fusion into nothing would silently train as plain distillation.
    """
    for name, m in models.items():
        fusion = m.get("teacher_fusion") if isinstance(m, dict) else None
        if fusion is None:
            continue
        key = f"{source}: models.{name}.teacher_fusion"
        if fusion not in models:
            raise InputError(
                f"{key}: '{fusion}' is not defined under 'models' "
                f"(defined: {', '.join(sorted(models)) or 'none'})"
            )
        task = models[fusion].get("task", "scene")
        if task not in ("super", "mtl"):
            raise InputError(
                f"{key}: '{fusion}' has task {task!r} and no 'super' head; expected a 3-class "
                "model (task super or mtl) whose probabilities multiply the scene teacher's"
            )
        if scene_teacher(m) is None:
            raise InputError(
                f"{key}: '{name}' has no scene teacher to fuse '{fusion}' into "
                f"(models.{name}.teacher is {m.get('teacher')!r} for task "
                f"{m.get('task', 'scene')!r}); teacher_fusion needs a teacher of the scene head"
            )


def validate_config(config: dict, schema: dict | str | Path, source: str = "config") -> dict:
    """Return a validated deep copy of `config` with schema defaults filled in.

    Raises InputError listing every problem, each naming its key, or naming a cycle of
    references between models (teacher, teacher_fusion, lottery base/control_of,
    progressive base), or a teacher_fusion without a 3-class model or a scene teacher.
    """
    if isinstance(schema, str | Path):
        schema = load_yaml(schema)
    if not isinstance(config, dict):
        raise InputError(
            f"{source}: expected a mapping at the top level, got {type(config).__name__}"
        )
    instance = copy.deepcopy(config)
    validator = _Validator(schema)
    # Defaults are filled while validating; a second pass checks the filled values.
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if not errors:
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        raise InputError(
            "invalid configuration:\n" + "\n".join(_describe(e, source) for e in errors)
        )
    models = instance.get("models")
    if isinstance(models, dict):
        cycle = model_cycle(models)
        if cycle:
            raise InputError(describe_cycle(cycle, source))
        check_teacher_fusion(models, source)
    return instance


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge: `override` wins; used for model-level training overrides."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
