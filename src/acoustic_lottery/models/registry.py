"""`build_model`: the one way to make a model, so checkpoints can rebuild it from its spec.

Every model carries `model.spec = {arch, task, n_classes, width, in_channels}` (exactly the
arguments that rebuild it) and `model.heads` (see `heads.resolve_heads`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from acoustic_lottery.errors import InputError
from acoustic_lottery.models.baseline import build_baseline
from acoustic_lottery.models.fcnn import build_fcnn
from acoustic_lottery.models.heads import HeadedModel, init_weights, resolve_heads
from acoustic_lottery.models.inception import build_lic, build_sic
from acoustic_lottery.models.repmobile import build_repmobile_deploy, build_repmobile_train
from acoustic_lottery.models.resnet import build_resnet

Builder = Callable[[Sequence[tuple[str, int]], float, int], HeadedModel]

_BUILDERS: dict[str, Builder] = {
    "baseline": build_baseline,
    "sic": build_sic,
    "lic": build_lic,
    "fcnn": build_fcnn,
    "resnet": build_resnet,
    "repmobile": build_repmobile_train,  # multi-branch training form
    "repmobile_deploy": build_repmobile_deploy,  # re-parameterized (folded) form
}
ARCHS: tuple[str, ...] = tuple(_BUILDERS)

#: Input channels when `in_channels` is not given: the baseline eats 1-channel
#: 40-band log-mels, every other model 3-channel (log-mel, delta, delta-delta) features.
DEFAULT_IN_CHANNELS: dict[str, int] = {"baseline": 1}


def default_in_channels(arch: str) -> int:
    """Input channels of the feature set an architecture was published with."""
    return DEFAULT_IN_CHANNELS.get(arch, 3)


def build_model(
    arch: str,
    n_classes: int | None = None,
    *,
    task: str = "scene",
    width: float = 1.0,
    in_channels: int | None = None,
    seed: int | None = None,
) -> HeadedModel:
    """Build `arch` for `task` with He-initialised weights.

    n_classes: None = from the task (scene 10, super 3, mtl 10 + 3); given, it must agree
    with the task (see `heads.resolve_heads`). in_channels: None = 1 for "baseline" (its
    40-band single-channel features), 3 otherwise. seed: if given, the initial weights come
    from a private RNG seeded with it (the global torch RNG is left untouched); if None,
    from the global RNG, so `torch.manual_seed` makes them reproducible.
    """
    if arch not in _BUILDERS:
        raise InputError(f"model arch: expected one of {list(ARCHS)}, found {arch!r}")
    heads = resolve_heads(task, n_classes)
    if (
        isinstance(width, bool)
        or not isinstance(width, int | float)
        or not (math.isfinite(width) and width > 0)
    ):
        raise InputError(f"model width: expected a positive number, found {width!r}")
    if in_channels is None:
        in_channels = default_in_channels(arch)
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise InputError(f"model in_channels: expected an integer >= 1, found {in_channels!r}")

    def make() -> HeadedModel:
        model = _BUILDERS[arch](heads, float(width), in_channels)
        init_weights(model)
        return model

    if seed is None:
        model = make()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = make()
    model.spec = {
        "arch": arch,
        "task": task,
        "n_classes": heads[0][1],
        "width": float(width),
        "in_channels": in_channels,
    }
    return model
