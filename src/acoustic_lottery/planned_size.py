"""Sizes known before training, so the budget is checked when the DAG is built.

A dense model's DCASE size follows from its architecture alone; a lottery chain's from
the sparsity its schedule reaches (the pruned share of the values in its scope); an int8
member stores one byte per value. These are plans: the row job reports the size measured
on the trained (pruned, quantized) model.
"""

from __future__ import annotations

from functools import cache

from acoustic_lottery import pipeline
from acoustic_lottery.errors import InputError
from acoustic_lottery.systems.budget import check_budget, system_size_kb

__all__ = ["check_row_budgets", "dense_values", "planned_size_kb"]


@cache
def dense_values(arch: str, task: str, width: float) -> tuple[int, int]:
    """(values in the pruning scope 'weights', all other stored values) of a dense model."""
    from acoustic_lottery.models.registry import build_model
    from acoustic_lottery.models.size import size_report

    model = build_model(arch, task=task, width=width, seed=0)
    total = int(size_report(model)["params"])
    weights = sum(
        p.numel() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1
    )
    return int(weights), total - int(weights)


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
