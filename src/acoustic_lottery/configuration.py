"""Validate a pipeline configuration against its JSON schema, filling defaults.

Why our own pass rather than a bare `jsonschema.validate`: users need the exact key
(`training.epochz`), what was expected and, for a misspelling, the key they meant.
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


def validate_config(config: dict, schema: dict | str | Path, source: str = "config") -> dict:
    """Return a validated deep copy of `config` with schema defaults filled in.

    Raises InputError listing every problem, each naming its key.
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
