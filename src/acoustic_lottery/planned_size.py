"""Sizes known before training, so the budget is checked when the DAG is built.

A dense model's DCASE size follows from its architecture alone; a lottery chain's from
the sparsity its schedule reaches (the pruned share of the values in its scope); an int8
member stores one byte per value. These are plans: the row job reports the size measured
on the trained (pruned, quantized) model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from pathlib import Path

from acoustic_lottery import pipeline
from acoustic_lottery.errors import InputError
from acoustic_lottery.systems.budget import check_budget, system_size_kb

__all__ = [
    "KNOWN_VALUES",
    "check_row_budgets",
    "count_dense_values",
    "dense_values",
    "known_values_key",
    "planned_size_kb",
    "write_known_values",
]

#: Counts of the architectures the shipped and test configs use, so that building the
#: DAG (every `snakemake` call, and every SLURM job, which builds it again) needs no
#: torch: importing it and building the models cost 2.3 s a call. Any other
#: architecture or width is counted with torch. tests/test_planned_size.py holds each
#: entry equal to the model it names; `python -m acoustic_lottery.planned_size` rewrites
#: the file after an architecture changes.
KNOWN_VALUES = files("acoustic_lottery") / "resources" / "dense_values.json"


def known_values_key(arch: str, task: str, width: float) -> str:
    return f"{arch}/{task}/{float(width)!r}"


@cache
def _known() -> dict[str, list[int]]:
    return json.loads(KNOWN_VALUES.read_text())


def count_dense_values(arch: str, task: str, width: float) -> tuple[int, int]:
    """The counts of `dense_values`, from the model built with torch."""
    from acoustic_lottery.models.registry import build_model
    from acoustic_lottery.models.size import size_report

    model = build_model(arch, task=task, width=width, seed=0)
    total = int(size_report(model)["params"])
    weights = sum(
        p.numel() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1
    )
    return int(weights), total - int(weights)


@cache
def dense_values(arch: str, task: str, width: float) -> tuple[int, int]:
    """(values in the pruning scope 'weights', all other stored values) of a dense model."""
    known = _known().get(known_values_key(arch, task, width))
    if known is not None:
        return int(known[0]), int(known[1])
    return count_dense_values(arch, task, width)


def write_known_values(models: Iterable[tuple[str, str, float]], path: Path) -> dict:
    """Count each (arch, task, width) with torch and write the table (sorted keys)."""
    table = {known_values_key(a, t, w): list(count_dense_values(a, t, w)) for a, t, w in models}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(dict(sorted(table.items())), indent=1) + "\n")
    tmp.replace(path)
    return table


def planned_size_kb(config: dict, name: str, quantized: bool = False) -> float:
    """Planned DCASE size (KB) of a model as configured: float32, or int8 when quantized."""
    m = pipeline.model_config(config, name)
    weights, other = dense_values(m["arch"], m["task"], float(m["width"]))
    values = float(weights + other)
    if pipeline.is_lottery(config, name):
        s = pipeline.lottery_settings(config, name)
        kept = (1.0 - s["rate"]) ** s["rounds"]
        values = weights * kept + (other * kept if s["scope"] == "all" else other)
    return values * (1 if quantized else 4) / 1024.0


def check_row_budgets(config: dict) -> dict[str, float]:
    """Planned size of every Table 1 row; a row over budget_kb without over_budget_ok is an
    InputError naming each member's size."""
    out = {}
    for row_name, row in pipeline.table_rows(config).items():
        sizes: dict[str, float] = {}
        for member in pipeline.row_members(config, row_name):
            key = member["model"] + (" (int8)" if member.get("quantized") else "")
            sizes[key] = planned_size_kb(config, member["model"], member.get("quantized", False))
        dtype = row.get("size_dtype", "float32")
        if dtype == "float16":
            sizes = {k: v / 2 for k, v in sizes.items()}
        if row.get("over_budget_ok", False):  # the row report says it is over budget
            out[row_name] = system_size_kb(sizes, pipeline.row_config_key(row_name))
            continue
        try:
            out[row_name] = check_budget(
                pipeline.row_config_key(row_name), sizes, budget_kb=config.get("budget_kb", 128)
            )
        except InputError as exc:
            raise InputError(f"config: {exc} (sizes planned from the configuration)") from None
    return out


def models_of_configs(
    paths: Iterable[Path], schema: Path, overlays: Iterable[Path] = ()
) -> set[tuple[str, str, float]]:
    """(arch, task, width) of every model of each config file and of the first file with
    each overlay merged over it (as `--configfile` does), validated against `schema`."""
    from acoustic_lottery.configuration import load_yaml, merge, validate_config

    paths = list(paths)
    raws = [(str(p), load_yaml(p)) for p in paths]
    raws += [(f"{paths[0]} + {o}", merge(raws[0][1], load_yaml(o))) for o in overlays]
    found: set[tuple[str, str, float]] = set()
    for source, raw in raws:
        cfg = validate_config(raw, schema, source=source)
        for name in cfg.get("models", {}):
            m = pipeline.model_config(cfg, name)
            found.add((m["arch"], m["task"], float(m["width"])))
    return found


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m acoustic_lottery.planned_size",
        description="Rewrite the table of parameter counts the DAG build reads.",
    )
    parser.add_argument("configs", nargs="+", type=Path, help="whole config files")
    parser.add_argument(
        "--overlay", type=Path, action="append", default=[], help="merged over the first"
    )
    parser.add_argument("--schema", type=Path, default=Path("workflow/schemas/config.schema.yaml"))
    parser.add_argument("--out", type=Path, default=Path(str(KNOWN_VALUES)))
    args = parser.parse_args(argv)
    table = write_known_values(
        sorted(models_of_configs(args.configs, args.schema, args.overlay)), args.out
    )
    print(f"{args.out}: {len(table)} architectures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
