"""Classification heads, the multi-head wrapper and the small building blocks all models share.

Every model in the zoo is a `HeadedModel`: a shared trunk and one head per task, so the
single-task models ("scene", "super") and the multi-task model ("mtl") differ only in the
heads, and the two-stage fusion / MTL code can treat every model alike through
`model.heads` and `split_heads`.

Batch normalisation everywhere uses the Keras defaults of the published systems (eps 1e-3,
moving-average momentum 0.99, i.e. PyTorch momentum 0.01).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from acoustic_lottery.errors import InputError

#: Keras BatchNormalization defaults (the 2020/2021 systems were written in Keras).
BN_EPS = 1e-3
#: PyTorch momentum = 1 - Keras momentum (0.99).
BN_MOMENTUM = 0.01

#: Head sizes of the tasks of the TAU data (10 scenes, 3 super-classes).
SCENE_CLASSES = 10
SUPER_CLASSES = 3
TASKS: tuple[str, ...] = ("scene", "super", "mtl")


def batch_norm(channels: int, affine: bool = True) -> nn.BatchNorm2d:
    """BatchNorm2d with the Keras defaults of the published systems."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM, affine=affine)


def scale_width(channels: int, width: float, minimum: int = 4) -> int:
    """Channels times the width multiplier, rounded, never below `minimum`."""
    return max(minimum, int(round(channels * width)))


def init_weights(module: nn.Module) -> None:
    """He-normal convolutions (as Keras' he_normal in D20), zero biases, unit BN scales.

    Uses the global torch RNG, so `torch.manual_seed` (or `build_model(seed=...)`) makes
    the initial weights Θ0 reproducible, which the lottery-ticket rewinding relies on.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ConvBNReLU(nn.Sequential):
    """Conv (no bias: the BN shift replaces it and folds into it for int8) + BN + ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        relu: bool = True,
    ) -> None:
        k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                k,
                stride=stride,
                padding=(k[0] // 2, k[1] // 2),
                bias=False,
            ),
            batch_norm(out_channels),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ConvHead(nn.Module):
    """1×1 conv to the classes + BN + global average pooling (the D20 FCNN-style head).

    Costs (C + 4)·K stored values for C input channels and K classes.
    """

    def __init__(self, in_channels: int, n_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, n_classes, 1, bias=False)
        self.bn = batch_norm(n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)).mean(dim=(2, 3))


def resolve_heads(task: str, n_classes: int | None = None) -> list[tuple[str, int]]:
    """The heads of a task; `n_classes` (None = from the task) is checked against it.

    scene: [("scene", n_classes or 10)] (any n_classes >= 2, for other data sets);
    super: [("super", 3)] (n_classes, if given, must be 3);
    mtl:   [("scene", n_classes or 10), ("super", 3)] (n_classes is the scene head size).
    """
    if task not in TASKS:
        raise InputError(f"model task: expected one of {list(TASKS)}, found {task!r}")
    if n_classes is not None:
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise InputError(
                f"model n_classes: expected an integer >= 2 (or None), found {n_classes!r}"
            )
        if task == "super" and n_classes != SUPER_CLASSES:
            raise InputError(
                f"model n_classes: task 'super' has {SUPER_CLASSES} classes "
                f"(indoor, outdoor, transportation), found n_classes={n_classes}"
            )
    if task == "super":
        return [("super", SUPER_CLASSES)]
    scene = [("scene", n_classes if n_classes is not None else SCENE_CLASSES)]
    return scene + [("super", SUPER_CLASSES)] if task == "mtl" else scene


def split_heads(logits: torch.Tensor, heads: Sequence[tuple[str, int]]) -> dict[str, torch.Tensor]:
    """Cut concatenated logits (B, sum of head sizes) back into one tensor per head."""
    sizes = [int(n) for _, n in heads]
    if logits.dim() < 1 or logits.shape[-1] != sum(sizes):
        raise InputError(
            f"split_heads: logits of shape {tuple(logits.shape)} do not match heads "
            f"{list(heads)}: expected last dimension {sum(sizes)}"
        )
    parts = torch.split(logits, sizes, dim=-1)
    return {name: part for (name, _), part in zip(heads, parts)}


class HeadedModel(nn.Module):
    """A trunk shared by one head per task; forward returns the heads' logits concatenated.

    State-dict names are `trunk.*` and `head.<task>.*`, so an MTL model and its single-task
    sibling share the trunk's parameter names.
    """

    def __init__(
        self,
        trunk: nn.Module,
        heads: Sequence[tuple[str, int]],
        make_head: Callable[[int], nn.Module],
        in_channels: int,
    ) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = nn.ModuleDict({name: make_head(n) for name, n in heads})
        self.heads: list[tuple[str, int]] = [(name, int(n)) for name, n in heads]
        self.in_channels = in_channels
        self.spec: dict[str, object] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise InputError(
                f"model input: expected (batch, {self.in_channels}, freq, time), "
                f"found shape {tuple(x.shape)}"
            )
        features = self.trunk(x)
        return torch.cat([self.head[name](features) for name, _ in self.heads], dim=1)
