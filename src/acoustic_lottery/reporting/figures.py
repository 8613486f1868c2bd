"""Figures 2 and 3 of the report: LTH strategies versus sparsity, and weight distributions.

Figure 2 ("empirical performance of different LTH masking strategies versus sparsity
level") plots accuracy and log loss against the fraction of prunable weights remaining,
on a log axis that runs from 100 % down to the sparsest ticket, as in the lottery-ticket
papers. Figure 3 shows, layer by layer, the weight values of the dense SIC student (a) and
of its LTH-pruned ticket (b); the report left the convolutions out "due to their
dimensional conflicts" and plotted BN and dense layers, which is the default here.

Everything is drawn on a `matplotlib.figure.Figure` with an Agg canvas: no pyplot, no
global backend, no display needed, and two figures built in one process never share
state. Each function returns the data it drew so tests (and readers) can check it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.io import atomic_path, read_json

__all__ = [
    "ARCH_NAMES",
    "CONTROL_STRATEGIES",
    "DPI",
    "STRATEGIES",
    "STRATEGY_LABELS",
    "figure2",
    "figure3",
    "load_points",
    "FIGURE_FORMATS",
    "figure_format",
    "layer_title",
    "save_figure",
    "select_layers",
    "validate_point",
]

DPI = 150

#: The report's three masks (Figure 2) and the two random controls of the LTH papers.
STRATEGIES: tuple[str, ...] = (
    "small_weights",
    "large_final",
    "global_small_weights",
    "random_mask",
    "random_reinit",
)
CONTROL_STRATEGIES: frozenset[str] = frozenset({"random_mask", "random_reinit"})
STRATEGY_LABELS: dict[str, str] = {
    "small_weights": "small weights",
    "large_final": "large final",
    "global_small_weights": "global small weights",
    "random_mask": "random mask (control)",
    "random_reinit": "random re-init (control)",
}
_STRATEGY_COLORS: dict[str, str] = {
    "small_weights": "#d62728",
    "large_final": "#1f77b4",
    "global_small_weights": "#2ca02c",
    "random_mask": "#7f7f7f",
    "random_reinit": "#9467bd",
}
_MODEL_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
#: What a lottery mask prunes: conv/linear weights (the report's reading) or every
#: stored value, BN included (the size-matched reading, pruning.scope).
SCOPES: tuple[str, ...] = ("weights", "all")

#: Display names of the architectures (panel titles of Figure 3).
ARCH_NAMES: dict[str, str] = {
    "sic": "Shallow Inception (SIC)",
    "lic": "Large Inception (LIC)",
    "baseline": "DCASE 2021 baseline",
    "fcnn": "FCNN",
    "resnet": "ResNet",
}
_ARCH_SHORT: dict[str, str] = {
    "sic": "SIC",
    "lic": "LIC",
    "baseline": "baseline",
    "fcnn": "FCNN",
    "resnet": "ResNet",
}

#: Candidate ticks (percent of weights remaining) of Figure 2's log axis.
_PERCENT_TICKS = (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)


# --------------------------------------------------------------------------------------
# shared helpers


def new_figure(width: float, height: float) -> Figure:
    """A Figure with its own Agg canvas: renders headless and touches no global state."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


#: What a figure file may be, by its extension (matplotlib's backends for each).
FIGURE_FORMATS: dict[str, str] = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


def figure_format(path: str | os.PathLike[str]) -> str:
    """The format a figure path's extension names; anything else is an error, never PNG
    bytes under a .pdf name."""
    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise InputError(
            f"{path}: a figure is written as {', '.join(FIGURE_FORMATS)} (by its extension), "
            f"not {suffix or 'a name without an extension'!r}"
        )
    return FIGURE_FORMATS[suffix]


def save_figure(fig: Figure, out: str | os.PathLike[str]) -> Path:
    """Write `fig` in the format its extension names (PNG at `DPI`), atomically, so a
    crash never leaves a truncated image. PDF and SVG carry no creation date and SVG no
    random ids, so the same figure is the same bytes."""
    out = Path(out)
    fmt = figure_format(out)
    metadata = {"png": None, "pdf": {"CreationDate": None}, "svg": {"Date": None}}[fmt]
    # svg.hashsalt: SVG element ids are otherwise random per process
    with atomic_path(out, suffix=out.suffix) as tmp, rc_context({"svg.hashsalt": "al"}):
        fig.savefig(tmp, dpi=DPI, format=fmt, metadata=metadata)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _pct(x: float) -> str:
    """Percent tick label: 100, 50, 0.67, 0.05 (two significant digits below 10)."""
    return f"{x:g}" if x >= 10 else f"{float(f'{x:.2g}'):g}"


# --------------------------------------------------------------------------------------
# Figure 2


def validate_point(point: Any, where: str, *, require_log_loss: bool = True) -> dict[str, Any]:
    """Check one lottery point; return a clean copy with `source` set to `where`.

    Required: strategy (one of STRATEGIES), weights_remaining in (0, 1], accuracy in
    [0, 100] (percent) and, unless `require_log_loss` is False, a non-negative log_loss.
    Optional keys (size_kb, round, model) are type-checked when present.
    """
    if not isinstance(point, Mapping):
        raise InputError(
            f"{where}: expected a JSON object (lottery point), found {type(point).__name__}"
        )
    for key in ("strategy", "weights_remaining", "accuracy"):
        if key not in point:
            raise InputError(f"{where}: missing key {key!r} (lottery point)")
    strategy = point["strategy"]
    if strategy not in STRATEGIES:
        raise InputError(
            f"{where}: key 'strategy' is {strategy!r}; expected one of {list(STRATEGIES)}"
        )
    wr = point["weights_remaining"]
    if not _is_number(wr) or not 0.0 < wr <= 1.0:
        raise InputError(
            f"{where}: key 'weights_remaining' is {wr!r}; expected a fraction in (0, 1] "
            "(1 = dense, 0.0067 = 99.33 % pruned)"
        )
    acc = point["accuracy"]
    if not _is_number(acc) or not 0.0 <= acc <= 100.0:
        raise InputError(f"{where}: key 'accuracy' is {acc!r}; expected a percentage in [0, 100]")
    log_loss = point.get("log_loss")
    if log_loss is None and require_log_loss:
        raise InputError(f"{where}: missing key 'log_loss' (lottery point)")
    if log_loss is not None and (not _is_number(log_loss) or log_loss < 0):
        raise InputError(f"{where}: key 'log_loss' is {log_loss!r}; expected a non-negative number")
    size_kb = point.get("size_kb")
    if size_kb is not None and (not _is_number(size_kb) or size_kb < 0):
        raise InputError(f"{where}: key 'size_kb' is {size_kb!r}; expected a non-negative number")
    rnd = point.get("round")
    if rnd is not None and (isinstance(rnd, bool) or not isinstance(rnd, int) or rnd < 0):
        raise InputError(f"{where}: key 'round' is {rnd!r}; expected a non-negative integer")
    model = point.get("model", "")
    if not isinstance(model, str):
        raise InputError(f"{where}: key 'model' is {model!r}; expected a string")
    scope = point.get("scope") or "weights"
    if scope not in SCOPES:
        raise InputError(f"{where}: key 'scope' is {scope!r}; expected one of {list(SCOPES)}")
    seed = point.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise InputError(f"{where}: key 'seed' is {seed!r}; expected a non-negative integer")
    return {
        "strategy": strategy,
        "weights_remaining": float(wr),
        "accuracy": float(acc),
        "log_loss": None if log_loss is None else float(log_loss),
        "size_kb": None if size_kb is None else float(size_kb),
        "round": rnd,
        "model": model,
        "scope": scope,
        "seed": seed,
        "source": where,
    }


def load_points(
    points: Sequence[Mapping[str, Any] | str | os.PathLike[str]],
    *,
    require_log_loss: bool = True,
) -> list[dict[str, Any]]:
    """Validate points given as dicts or as JSON files (a point, or a list of points).

    Error messages name the file (and the list index) of the offending point, so a bad
    round in a 20-file Figure 2 is found at once.
    """
    out: list[dict[str, Any]] = []
    for i, item in enumerate(points):
        if isinstance(item, str | os.PathLike):
            path = Path(item)
            if not path.is_file():
                raise InputError(f"lottery point file {path}: no such file")
            try:
                obj = read_json(path)
            except (OSError, ValueError) as exc:
                raise InputError(f"lottery point file {path}: not valid JSON ({exc})") from exc
            if isinstance(obj, list):
                if not obj:
                    raise InputError(f"lottery point file {path}: empty list, expected points")
                out.extend(
                    validate_point(p, f"{path} [{j}]", require_log_loss=require_log_loss)
                    for j, p in enumerate(obj)
                )
            else:
                out.append(validate_point(obj, str(path), require_log_loss=require_log_loss))
        else:
            where = item.get("source") if isinstance(item, Mapping) else None
            where = where if isinstance(where, str) and where else f"points[{i}]"
            out.append(validate_point(item, where, require_log_loss=require_log_loss))
    return out


def _aggregate(rows: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Mean (and range) per sparsity level, ordered 100 % -> sparsest.

    A level is the points of one round whose weights remaining agree within 5 %: seeds of
    one round differ by the few weights the reachability repair gave back. x is the
    level's mean weights remaining.
    """
    levels: list[list[dict[str, Any]]] = []
    for r in sorted(rows, key=lambda r: r["weights_remaining"], reverse=True):
        last = levels[-1][-1] if levels else None
        if (
            last is not None
            and last.get("round") == r.get("round")
            and last["weights_remaining"] <= 1.05 * r["weights_remaining"]
        ):
            levels[-1].append(r)
        else:
            levels.append([r])
    xs = [float(np.mean([r["weights_remaining"] for r in g])) for g in levels]
    acc, acc_lo, acc_hi, ll, n = [], [], [], [], []
    for g in levels:
        a = [r["accuracy"] for r in g]
        losses = [r["log_loss"] for r in g if r["log_loss"] is not None]
        acc.append(float(np.mean(a)))
        acc_lo.append(float(min(a)))
        acc_hi.append(float(max(a)))
        ll.append(float(np.mean(losses)) if losses else float("nan"))
        n.append(len(g))
    return {
        "weights_remaining": [float(x) for x in xs],
        "x_percent": [100.0 * x for x in xs],
        "accuracy": acc,
        "accuracy_min": acc_lo,
        "accuracy_max": acc_hi,
        "log_loss": ll,
        "n": n,
    }


def _percent_axis(ax: Any, lo: float, hi: float) -> None:
    """Log x axis in percent, 100 % on the left, sparser to the right, readable ticks."""
    ax.set_xscale("log")
    left, right = hi * 1.25, lo / 1.25
    ax.set_xlim(left, right)  # left > right: inverted, weights decrease to the right
    ticks = [float(t) for t in _PERCENT_TICKS if right <= t <= left]
    for end in (lo, hi):  # label the extreme points unless a round tick sits close by
        if all(max(end, t) / min(end, t) >= 1.3 for t in ticks):
            ticks.append(float(f"{end:.2g}"))
    ax.xaxis.set_major_locator(FixedLocator(sorted(ticks, reverse=True)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _pct(v)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("weights remaining (%)  — log scale")
    ax.grid(True, which="major", alpha=0.35)


def figure2(
    points: Sequence[Mapping[str, Any] | str | os.PathLike[str]],
    out_png: str | os.PathLike[str],
    *,
    title: str | None = None,
    paper_points: Sequence[Mapping[str, Any] | str | os.PathLike[str]] | None = None,
) -> dict[str, Any]:
    """Accuracy and log loss versus weights remaining, one line per strategy (Figure 2).

    points: lottery point dicts or JSON files. Repeated (strategy, scope, model, weights
    remaining) points (seeds) are averaged and their accuracy range drawn as an error bar.
    Random controls are dashed; points at 100 % weights give a dense reference line, with
    the range over the dense bases' seeds as a band; scope-"all" points (every stored
    value pruned) are drawn as separate black crosses.
    paper_points: optional reference values (log_loss optional) drawn as open markers.

    Returns {"series": {label: {strategy, model, weights_remaining, x_percent, accuracy,
    accuracy_min, accuracy_max, log_loss, n, linestyle, color}}, "dense": {model:
    {accuracy, log_loss}}, "paper": {...}, "xlim": (left, right), "out": path}.
    """
    rows = load_points(points)
    if not rows:
        raise InputError("figure2: no lottery points given")
    paper_rows = load_points(paper_points, require_log_loss=False) if paper_points else []

    models = sorted({r["model"] for r in rows})
    multi_model = len(models) > 1
    markers = {m: _MODEL_MARKERS[i % len(_MODEL_MARKERS)] for i, m in enumerate(models)}

    series: dict[str, dict[str, Any]] = {}
    for model in models:
        for scope in SCOPES:
            for strategy in STRATEGIES:
                sel = [
                    r
                    for r in rows
                    if r["model"] == model and r["strategy"] == strategy and r["scope"] == scope
                ]
                if scope != "weights":  # the dense point belongs to the weights lines
                    sel = [r for r in sel if r["weights_remaining"] < 1.0]
                if not sel:
                    continue
                label = STRATEGY_LABELS[strategy]
                if scope != "weights":
                    label = f"{label}, all values (size-matched)"
                if multi_model:
                    label = f"{model or '?'}: {label}"
                data = _aggregate(sel)
                data.update(
                    strategy=strategy,
                    model=model,
                    scope=scope,
                    linestyle=(
                        "none"
                        if scope != "weights"
                        else "--"
                        if strategy in CONTROL_STRATEGIES
                        else "-"
                    ),
                    color="black" if scope != "weights" else _STRATEGY_COLORS[strategy],
                    marker="X" if scope != "weights" else markers[model],
                )
                series[label] = data

    dense: dict[str, dict[str, float]] = {}
    for model in models:
        full = [r for r in rows if r["model"] == model and r["weights_remaining"] == 1.0]
        if full:
            # one value per dense base: every chain of a seed repeats its base's point
            per_seed = {}
            for r in full:
                per_seed.setdefault(r["seed"], r)
            bases = list(per_seed.values())
            acc = [r["accuracy"] for r in bases]
            losses = [r["log_loss"] for r in bases if r["log_loss"] is not None]
            dense[model] = {
                "accuracy": float(np.mean(acc)),
                "accuracy_min": float(min(acc)),
                "accuracy_max": float(max(acc)),
                "log_loss": float(np.mean(losses)) if losses else float("nan"),
                "log_loss_min": float(min(losses)) if losses else float("nan"),
                "log_loss_max": float(max(losses)) if losses else float("nan"),
                "n": len(bases),
            }

    paper: dict[str, dict[str, Any]] = {}
    for strategy in STRATEGIES:
        sel = [r for r in paper_rows if r["strategy"] == strategy]
        if sel:
            paper[f"report: {STRATEGY_LABELS[strategy]}"] = {
                **_aggregate(sel),
                "strategy": strategy,
                "color": _STRATEGY_COLORS[strategy],
            }

    all_wr = [r["weights_remaining"] for r in rows + paper_rows]
    lo, hi = 100.0 * min(all_wr), 100.0 * max(all_wr)

    fig = new_figure(12.5, 5.0)
    ax_acc, ax_ll = fig.subplots(1, 2)
    panels = ((ax_acc, "accuracy", "accuracy (%)"), (ax_ll, "log_loss", "log loss"))
    for ax, key, ylabel in panels:
        _percent_axis(ax, lo, hi)
        ax.set_ylabel(ylabel)
        for label, s in series.items():
            y = np.asarray(s[key], dtype=float)
            if key == "log_loss" and np.isnan(y).all():
                continue
            ax.plot(
                s["x_percent"],
                y,
                linestyle=s["linestyle"],
                marker=s["marker"],
                color=s["color"],
                markersize=5 if s["scope"] == "weights" else 8,
                linewidth=1.6,
                label=label,
            )
            if key == "accuracy" and max(s["n"]) > 1:
                yerr = np.array(
                    [
                        np.subtract(s["accuracy"], s["accuracy_min"]),
                        np.subtract(s["accuracy_max"], s["accuracy"]),
                    ]
                )
                ax.errorbar(
                    s["x_percent"],
                    s["accuracy"],
                    yerr=yerr,
                    fmt="none",
                    ecolor=s["color"],
                    elinewidth=1,
                    capsize=2,
                    alpha=0.7,
                )
        for model, d in dense.items():
            value = d[key]
            if math.isnan(value):
                continue
            name = f"dense {model} (100 %)" if multi_model else "dense (100 % weights)"
            if d["n"] > 1:
                name += f", range of {d['n']} seeds"
                ax.axhspan(d[f"{key}_min"], d[f"{key}_max"], color="black", alpha=0.1, zorder=0)
            ax.axhline(value, color="black", linestyle=":", linewidth=1.1, label=name, zorder=1)
        for label, p in paper.items():
            y = np.asarray(p[key], dtype=float)
            if np.isnan(y).all():
                continue
            ax.plot(
                p["x_percent"],
                y,
                linestyle="none",
                marker="*",
                markersize=10,
                markerfacecolor="none",
                markeredgecolor=p["color"],
                label=label,
            )
    ax_acc.set_title("(a) accuracy", loc="left", fontsize=11)
    ax_ll.set_title("(b) log loss", loc="left", fontsize=11)
    handles, labels = ax_acc.get_legend_handles_labels()
    ax_acc.legend(handles, labels, loc="lower left", fontsize=8.5, framealpha=0.9)
    seeds = {r["seed"] for r in rows if r["seed"] is not None}
    if title is None:
        title = "LTH masking strategies versus sparsity level"
        if len(seeds) > 1:
            title += f" (mean and range of {len(seeds)} training seeds)"
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    out = save_figure(fig, out_png)
    return {
        "series": series,
        "dense": dense,
        "paper": paper,
        "seeds": sorted(seeds),
        "xlim": tuple(float(v) for v in ax_acc.get_xlim()),
        "out": str(out),
    }


# --------------------------------------------------------------------------------------
# Figure 3

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_KIND_COLORS = {"weight": "#1f77b4", "bias": "#ff7f0e"}
LAYER_CHOICES: tuple[str, ...] = ("non_conv", "all")


def _describe(module: nn.Module, previous: nn.Module | None = None) -> str:
    if isinstance(module, _BN_TYPES):
        if isinstance(previous, _CONV_TYPES) and previous.out_channels == module.num_features:
            return f"BN of {_describe(previous)}"
        if isinstance(previous, nn.Linear) and previous.out_features == module.num_features:
            return f"BN of {_describe(previous)}"
        return f"BN ({module.num_features} ch)"
    if isinstance(module, _CONV_TYPES):
        k = "×".join(str(v) for v in module.kernel_size)
        return f"conv {k}, {module.in_channels}→{module.out_channels}"
    if isinstance(module, nn.Linear):
        return f"linear {module.in_features}→{module.out_features}"
    return type(module).__name__


def select_layers(model: nn.Module, layers: str = "non_conv") -> list[dict[str, Any]]:
    """The layers Figure 3 shows, in registration order, with the tensors of each.

    non_conv (the report's choice): every BN layer (γ = weight, β = bias) and every Linear
    weight; a model without any Linear layer (SIC ends in a 1×1 conv head) also gets its
    head convolutions (modules under `head.`, else the last conv), the classifier the
    report's dense layer corresponds to. all: every conv, linear and BN layer.
    Returns [{"name", "kind" ("bn"|"conv"|"linear"), "label", "tensors": {kind: name}}].
    """
    if layers not in LAYER_CHOICES:
        raise InputError(f"figure3 layers: expected one of {list(LAYER_CHOICES)}, found {layers!r}")
    modules = [(n, m) for n, m in model.named_modules() if n]
    has_linear = any(isinstance(m, nn.Linear) for _, m in modules)
    convs = [n for n, m in modules if isinstance(m, _CONV_TYPES)]
    head_convs = {n for n in convs if n.startswith("head.")} or set(convs[-1:])
    out: list[dict[str, Any]] = []
    previous: nn.Module | None = None  # the conv/linear a BN normalises, for its label
    for name, m in modules:
        before, previous = previous, (m if isinstance(m, (*_CONV_TYPES, nn.Linear)) else previous)
        if isinstance(m, _BN_TYPES):
            kind = "bn"
        elif isinstance(m, nn.Linear):
            kind = "linear"
        elif isinstance(m, _CONV_TYPES):
            if layers == "non_conv" and (has_linear or name not in head_convs):
                continue
            kind = "conv"
        else:
            continue
        tensors = {}
        if getattr(m, "weight", None) is not None:
            tensors["weight"] = f"{name}.weight"
        if kind == "bn" and getattr(m, "bias", None) is not None:
            tensors["bias"] = f"{name}.bias"
        if tensors:
            label = _describe(m, before)
            out.append({"name": name, "kind": kind, "label": label, "tensors": tensors})
    if not out:
        raise InputError(f"figure3: the model has no layers to plot for layers={layers!r}")
    return out


def _xlim(values: list[np.ndarray]) -> tuple[float, float]:
    """Common x range of a layer over both models, padded; never empty."""
    vals = np.concatenate([v for v in values if v.size]) if any(v.size for v in values) else None
    if vals is None:
        return -1.0, 1.0
    lo, hi = float(vals.min()), float(vals.max())
    span = hi - lo
    if span <= 0:
        span = max(abs(lo) * 0.2, 1e-3)
        return lo - span / 2, hi + span / 2
    return lo - 0.05 * span, hi + 0.05 * span


def _model_title(meta: Mapping[str, Any]) -> tuple[str, str]:
    arch = str(meta.get("arch", "model"))
    return ARCH_NAMES.get(arch, arch), _ARCH_SHORT.get(arch, arch)


_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_BRANCH_NAMES = {
    "branch1": "1×1 branch",
    "branch3": "3×3 branch",
    "branch5": "5×5 branch",
    "branch_pool": "pool branch",
}


def _humanize(class_name: str) -> str:
    words = re.findall(r"[A-Z][a-z]+|[A-Z]+(?![a-z])|[a-z]+|\d+", class_name)
    return " ".join([words[0], *(w.lower() for w in words[1:])]) if words else class_name


def layer_title(model: nn.Module, name: str) -> str:
    """Where a layer sits, in words (e.g. "Inception block 1 › 3×3 branch › layer 2"),
    for a reader who does not know the module paths (`trunk.2.branch3.1.1`)."""
    modules = dict(model.named_modules())
    parts = name.split(".")
    tokens: list[str] = []
    for i, part in enumerate(parts[:-1]):  # the leaf itself is the panel's second line
        path = ".".join(parts[: i + 1])
        module, parent = modules[path], modules[".".join(parts[:i])] if i else model
        if part in ("trunk", "branches"):  # "branches.0" reads "branch 1"
            continue
        if not part.isdigit():
            tokens.append(_BRANCH_NAMES.get(part, part.replace("_", " ")))
        elif not isinstance(module, (*_CONTAINERS, *_CONV_TYPES, *_BN_TYPES)) and (
            type(module).__name__ not in ("ConvBNReLU", "ConvBN")
        ):
            same = [c for c in parent.children() if type(c) is type(module)]
            tokens.append(f"{_humanize(type(module).__name__)} {same.index(module) + 1}")
        elif isinstance(parent, nn.ModuleList):
            tokens.append(f"branch {int(part) + 1}")
        else:
            tokens.append(f"layer {int(part) + 1}")
    if not tokens and parts[-1].isdigit():  # a layer directly in the trunk
        tokens.append(f"layer {int(parts[-1]) + 1}")
    return " › ".join(tokens) or parts[-1]


def figure3(
    dense_ckpt: str | os.PathLike[str],
    pruned_ckpt: str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    *,
    layers: str = "non_conv",
    bins: int = 40,
) -> dict[str, Any]:
    """Layer-wise weight histograms of a dense student (a) and its LTH ticket (b) (Figure 3).

    Each selected layer is one small panel, at the same grid position in (a) and (b) and
    with the same x range and bins in both, so a layer is compared at a glance. (b) shows
    only the non-zero values and states each layer's fraction of zeros; its title gives
    the overall sparsity by the DCASE size rule (all stored values, as the report's
    "99.33 %" = 503 KB -> 3.4 KB).

    Returns {"dense": {...}, "pruned": {...}, "layers": [{name, kind, label, tensors,
    xlim, bin_edges, dense_counts, pruned_counts, zero_fraction, tensor_zero_fraction,
    n_values, n_nonzero}], "out": path}.
    """
    from acoustic_lottery.models.checkpoint import load_model
    from acoustic_lottery.models.size import size_report

    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
        raise InputError(f"figure3 bins: expected an integer >= 2, found {bins!r}")
    dense_model, dense_meta = load_model(dense_ckpt)
    pruned_model, pruned_meta = load_model(pruned_ckpt)
    dense_state = dense_model.state_dict()
    pruned_state = pruned_model.state_dict()
    shapes_d = {k: tuple(v.shape) for k, v in dense_state.items()}
    shapes_p = {k: tuple(v.shape) for k, v in pruned_state.items()}
    if shapes_d != shapes_p:
        diff = sorted(set(shapes_d.items()) ^ set(shapes_p.items()))[:3]
        raise InputError(
            f"figure3: checkpoints {dense_ckpt} ({dense_meta.get('arch')!r}) and {pruned_ckpt} "
            f"({pruned_meta.get('arch')!r}) are not the same architecture; first differing "
            f"entries {diff}"
        )
    selected = select_layers(dense_model, layers)

    def values(state: Mapping[str, torch.Tensor], key: str) -> np.ndarray:
        return state[key].detach().cpu().double().flatten().numpy()

    rows: list[dict[str, Any]] = []
    for layer in selected:
        d = {kind: values(dense_state, key) for kind, key in layer["tensors"].items()}
        p = {kind: values(pruned_state, key) for kind, key in layer["tensors"].items()}
        p_nz = {kind: v[v != 0] for kind, v in p.items()}
        lo, hi = _xlim(list(d.values()) + list(p_nz.values()))
        edges = np.linspace(lo, hi, bins + 1)
        n_values = sum(v.size for v in p.values())
        n_nonzero = sum(v.size for v in p_nz.values())
        rows.append(
            {
                **layer,
                "title": layer_title(dense_model, layer["name"]),
                "xlim": (lo, hi),
                "bin_edges": edges,
                "dense_counts": {k: np.histogram(v, edges)[0] for k, v in d.items()},
                "pruned_counts": {k: np.histogram(v, edges)[0] for k, v in p_nz.items()},
                "tensor_zero_fraction": {
                    k: float((v == 0).mean()) if v.size else 0.0 for k, v in p.items()
                },
                "zero_fraction": 1.0 - n_nonzero / n_values if n_values else 0.0,
                "n_values": n_values,
                "n_nonzero": n_nonzero,
            }
        )

    def summary(model: nn.Module, meta: Mapping[str, Any], path: Any) -> dict[str, Any]:
        rep = size_report(model)
        long_name, short = _model_title(meta)
        return {
            "path": str(path),
            "arch": meta.get("arch"),
            "name": long_name,
            "short": short,
            "params": rep["params"],
            "nonzero": rep["nonzero"],
            "sparsity": rep["sparsity"],
            "kb": rep["kb"],
            "dense_kb": rep["dense_kb"],
        }

    dense_info = summary(dense_model, dense_meta, dense_ckpt)
    pruned_info = summary(pruned_model, pruned_meta, pruned_ckpt)
    compression = dense_info["kb"] / pruned_info["kb"] if pruned_info["kb"] > 0 else float("inf")
    pruned_info["compression"] = compression
    dense_title = f"(a) {dense_info['name']} student — dense, {dense_info['kb']:.1f} KB non-zero"
    pruned_title = (
        f"(b) LTH-pruned {pruned_info['short']} student "
        f"({100 * pruned_info['sparsity']:.2f} % pruned, {pruned_info['kb']:.1f} KB non-zero, "
        f"{compression:.0f}× smaller)"
    )

    n = len(rows)
    ncols = min(n, 5 if n <= 20 else 7)
    nrows = math.ceil(n / ncols)
    cell_w, cell_h = 2.75, 1.75
    fig = new_figure(ncols * cell_w + 0.4, 2 * nrows * cell_h + 1.6)
    sub_a, sub_b = fig.subfigures(2, 1, hspace=0.04)
    for sub, which, ttl in ((sub_a, "dense", dense_title), (sub_b, "pruned", pruned_title)):
        sub.suptitle(ttl, fontsize=12, x=0.01, ha="left", fontweight="bold")
        axes = np.atleast_1d(sub.subplots(nrows, ncols, squeeze=False)).ravel()
        for ax in axes[n:]:
            ax.set_visible(False)
        for ax, row in zip(axes, rows):
            counts = row[f"{which}_counts"]
            edges = row["bin_edges"]
            for kind, c in counts.items():
                name = (
                    "BN γ (weight)"
                    if row["kind"] == "bn" and kind == "weight"
                    else ("BN β (bias)" if kind == "bias" else "conv / linear weight")
                )
                color = _KIND_COLORS[kind] if row["kind"] == "bn" else "#2ca02c"
                ax.stairs(c, edges, fill=True, alpha=0.55, color=color, label=name)
                ax.stairs(c, edges, color=color, linewidth=0.8)
            ax.set_xlim(*row["xlim"])
            top = max((int(c.max()) for c in counts.values() if c.size), default=0)
            ax.set_ylim(0, max(top, 1) * 1.4)  # head room for the annotation box
            ax.yaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
            ax.set_title(
                f"{row['title']}\n{row['label']}",
                fontsize=7.5,
                pad=2,
                linespacing=1.1,
            )
            ax.tick_params(labelsize=6.5, length=2, pad=1)
            ax.xaxis.set_major_locator(FixedLocator(_nice_ticks(*row["xlim"])))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.grid(True, alpha=0.25, linewidth=0.5)
            ax.set_xlabel("parameter value", fontsize=6.5, labelpad=1)
            ax.set_ylabel("count", fontsize=6.5, labelpad=1)
            if which == "pruned":
                if row["n_nonzero"] == 0:
                    ax.text(
                        0.5,
                        0.5,
                        "all zero",
                        transform=ax.transAxes,
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="0.4",
                    )
                text = f"zeros {100 * row['zero_fraction']:.1f} %"
                if row["zero_fraction"] >= 0.5:
                    text += f" ({row['n_nonzero']} left)"
                color = "#b2182b" if row["zero_fraction"] >= 0.5 else "0.25"
            else:
                text = f"n = {row['n_values']}"
                color = "0.25"
            ax.text(
                0.97,
                0.93,
                text,
                transform=ax.transAxes,
                ha="right",
                va="top",
                fontsize=7,
                color=color,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            )
        sub.subplots_adjust(
            left=0.04,
            right=0.99,
            top=0.86 if nrows == 1 else 0.9,
            bottom=0.08,
            hspace=0.75,
            wspace=0.28,
        )
    # one legend for the whole figure: the colours mean the same in every panel
    handles, labels = [], []
    for ax in fig.get_axes():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(
            handles,
            labels,
            loc="upper right",
            ncol=len(labels),
            fontsize=8,
            frameon=False,
            bbox_to_anchor=(0.995, 0.999),
        )
    out = save_figure(fig, out_png)
    return {"dense": dense_info, "pruned": pruned_info, "layers": rows, "out": str(out)}


def _nice_ticks(lo: float, hi: float) -> list[float]:
    """Three or so round ticks inside (lo, hi): small panels cannot hold more."""
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / 3))
    for mult in (1, 2, 2.5, 5, 10):
        if span / (step * mult) <= 4:
            step *= mult
            break
    start = math.ceil(lo / step) * step
    ticks = []
    t = start
    while t <= hi + 1e-12 * abs(hi):
        ticks.append(round(t, 12) + 0.0)
        t += step
    return ticks
