"""Rep-Mobile students: multi-branch convolutions trained wide, folded into one conv each.

Rep-Mobile (DCASE 2024 Task 1 winner, papers/001) builds a CP-Mobile-like network whose
convolutions are *re-parameterizable*: at training time every conv unit (a
`RepConvBlock`) runs several parallel branches whose outputs are summed — a k×k conv + BN,
a 1×1 conv + BN (padded to the k×k centre when folded), optionally 1×k / k×1 conv + BN
(ACNet-style asymmetric branches), optionally more than one parallel k×k / 1×1 conv + BN
(MobileOne-style over-parameterization), and an identity BN when input and output shapes
agree. All branches are linear up to the shared activation, so in eval mode (BN running
statistics) their sum is exactly ONE convolution with a bias: `reparameterize` builds it.
Training enjoys the richer optimisation landscape; inference costs one conv per unit, and
the DCASE 2024 complexity limits (128 kB parameters, 30 M MACs per 1 s clip, see
`systems.complexity`) apply to the folded model.

The paper's exact layers are not in our copy of it (abstract only), so the network is
designed here (docs/repmobile.md), modelled on CP-Mobile / the DCASE 2024 baseline:

    stem   RepConv 3×3 stride 2 (in -> 8), RepConv 3×3 (8 -> 24)
    stage  inverted residual blocks (expansion 2): RepConv 1×1 expand + ReLU,
           RepConv depthwise 3×3 + ReLU, RepConv 1×1 project (no activation),
           residual add when stride 1 and channels agree
    head   1×1 conv to the classes + BN + global average pooling (`heads.ConvHead`)

Two registered archs share `(heads, width, in_channels)` and state-dict layout up to the
folded units: "repmobile" (training form, multi-branch) and "repmobile_deploy" (inference
form: every `RepConvBlock` is one `conv` with a bias). A checkpoint of either form is
rebuilt by `models.checkpoint.load_model` from its arch name.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from acoustic_lottery.errors import InputError
from acoustic_lottery.models.bn_fold import fold_bn
from acoustic_lottery.models.heads import ConvHead, HeadedModel, batch_norm, scale_width

#: Arch names in the registry: the multi-branch training form and its folded twin.
TRAIN_ARCH = "repmobile"
DEPLOY_ARCH = "repmobile_deploy"

Kernel = tuple[int, int]


def _pair(value: int | Sequence[int], what: str) -> Kernel:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in pair):
        raise InputError(f"RepConvBlock {what}: expected an int or a pair of ints, found {value!r}")
    return int(pair[0]), int(pair[1])


class ConvBN(nn.Sequential):
    """One training-time branch: a bias-free conv followed by its own BN."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Kernel,
        stride: Kernel,
        groups: int,
    ) -> None:
        super().__init__()
        # A strided 1x1 conv is the same as subsampling, then a 1x1 conv. Written that way
        # because torch 2.13's oneDNN backward of a strided 1x1 conv on channels_last CPU
        # tensors with 3 input channels corrupts the heap (reproduced without this code).
        self.subsample = tuple(stride) if tuple(kernel) == (1, 1) else (1, 1)
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel,
            stride=(1, 1) if self.subsample != (1, 1) else stride,
            padding=(kernel[0] // 2, kernel[1] // 2),
            groups=groups,
            bias=False,
        )
        self.bn = batch_norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.subsample != (1, 1):
            x = x[:, :, :: self.subsample[0], :: self.subsample[1]]
        return self.bn(self.conv(x))


class RepConvBlock(nn.Module):
    """A conv unit that trains as parallel branches and folds into one conv for inference.

    kernel_size: the folded kernel (odd). branches: kernel shapes of the conv + BN
    branches (each odd and no larger than kernel_size; default k×k and 1×1, or two 1×1
    for a pointwise unit); repeat a shape for MobileOne-style over-parameterization, add
    (1, k) and (k, 1) for ACNet-style branches. identity: an identity-BN branch; None =
    whenever stride is 1 and in_channels == out_channels. groups: as for nn.Conv2d
    (groups = channels makes a depthwise unit). activation: ReLU after the sum.
    deploy: build the folded form directly (one `conv` with a bias), e.g. to load a
    re-parameterized checkpoint.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int | Sequence[int] = 1,
        groups: int = 1,
        *,
        branches: Sequence[Sequence[int] | int] | None = None,
        identity: bool | None = None,
        activation: bool = True,
        deploy: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int):
            raise InputError(
                f"RepConvBlock kernel_size: expected an odd int, found {kernel_size!r}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise InputError(f"RepConvBlock kernel_size: expected an odd int, found {kernel_size}")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise InputError(
                f"RepConvBlock groups: expected a divisor of in_channels={in_channels} and "
                f"out_channels={out_channels}, found {groups}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = _pair(stride, "stride")
        self.groups = groups
        if branches is None:
            branches = [(1, 1), (1, 1)] if kernel_size == 1 else [(kernel_size,) * 2, (1, 1)]
        shapes = [_pair(b, "branches") for b in branches]
        for kh, kw in shapes:
            if kh % 2 == 0 or kw % 2 == 0 or kh > kernel_size or kw > kernel_size or kh < 1:
                raise InputError(
                    f"RepConvBlock branches: expected odd kernel shapes no larger than "
                    f"{kernel_size}x{kernel_size}, found {kh}x{kw}"
                )
        shapes_allow_identity = self.stride == (1, 1) and in_channels == out_channels
        if identity is None:
            identity = shapes_allow_identity
        elif identity and not shapes_allow_identity:
            raise InputError(
                f"RepConvBlock identity: needs stride 1 and in_channels == out_channels, found "
                f"stride {self.stride}, {in_channels} -> {out_channels} channels"
            )
        if not shapes and not identity:
            raise InputError("RepConvBlock: expected at least one branch, found none")
        self.branch_kernels: tuple[Kernel, ...] = tuple(shapes)
        self.has_identity = bool(identity)
        self.act: nn.Module = nn.ReLU(inplace=True) if activation else nn.Identity()
        self.deploy = False
        self.branches = nn.ModuleList(
            ConvBN(in_channels, out_channels, shape, self.stride, groups) for shape in shapes
        )
        self.identity: nn.BatchNorm2d | None = batch_norm(in_channels) if identity else None
        if deploy:
            self._make_deploy_conv()

    def _make_deploy_conv(self) -> nn.Conv2d:
        """Swap the branches for the single folded conv (weights to be filled in)."""
        ref = next(iter(self.parameters()), None)
        self.conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.kernel_size // 2,
            groups=self.groups,
            bias=True,
            device=ref.device if ref is not None else None,
            dtype=ref.dtype if ref is not None else None,
        )
        del self.branches
        del self.identity
        self.deploy = True
        return self.conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.act(self.conv(x))
        out = self.branches[0](x) if len(self.branches) else self.identity(x)
        for branch in list(self.branches)[1:]:
            out = out + branch(x)
        if self.identity is not None and len(self.branches):
            out = out + self.identity(x)
        return self.act(out)

    def fused_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The one conv (kernel, bias) equal to the branch sum under BN running statistics.

        Folds each conv + BN, pads 1×1 / 1×k / k×1 kernels to the k×k centre (same output
        positions for odd kernels at any stride) and writes the identity as a centre-tap
        kernel; summed in float64 so the folded model matches to float32 rounding.
        """
        if self.deploy:
            return self.conv.weight.detach().clone(), self.conv.bias.detach().clone()
        k = self.kernel_size
        per_group = self.in_channels // self.groups
        kernel = torch.zeros(self.out_channels, per_group, k, k, dtype=torch.float64)
        bias = torch.zeros(self.out_channels, dtype=torch.float64)
        for branch, (kh, kw) in zip(self.branches, self.branch_kernels):
            w, b = fold_bn(branch.conv.weight.detach().double().cpu(), _cpu_bn(branch.bn))
            top, left = (k - kh) // 2, (k - kw) // 2
            kernel[:, :, top : top + kh, left : left + kw] += w
            bias += b
        if self.identity is not None:
            eye = torch.zeros(self.out_channels, per_group, k, k, dtype=torch.float64)
            channels = torch.arange(self.out_channels)
            eye[channels, channels % per_group, k // 2, k // 2] = 1.0
            w, b = fold_bn(eye, _cpu_bn(self.identity))
            kernel += w
            bias += b
        return kernel, bias

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Replace the branches by their folded conv in place (no-op if already folded)."""
        if self.deploy:
            return
        ref = next(iter(self.parameters()))
        kernel, bias = self.fused_kernel_bias()
        conv = self._make_deploy_conv()
        conv.weight.copy_(kernel.to(device=ref.device, dtype=ref.dtype))
        conv.bias.copy_(bias.to(device=ref.device, dtype=ref.dtype))

    def extra_repr(self) -> str:
        shapes = ", ".join(f"{kh}x{kw}" for kh, kw in self.branch_kernels)
        form = "deploy" if self.deploy else f"branches=[{shapes}], identity={self.has_identity}"
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, groups={self.groups}, {form}"
        )


def _cpu_bn(bn: nn.BatchNorm2d) -> nn.BatchNorm2d:
    """The BN itself when on CPU, else a CPU copy (folding runs in float64 on the CPU)."""
    return bn if bn.running_var.device.type == "cpu" else copy.deepcopy(bn).cpu()


class RepInvertedResidual(nn.Module):
    """MobileNetV2 inverted residual made of three RepConvBlocks (expand, depthwise, project).

    Every unit folds to one conv; the residual add (stride 1, same channels) spans the
    three units and stays an addition in the inference form.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: Kernel,
        expansion: float,
        *,
        dw_branches: Sequence[Sequence[int] | int] | None = None,
        deploy: bool = False,
    ) -> None:
        super().__init__()
        hidden = max(1, int(round(in_channels * expansion)))
        self.expand = RepConvBlock(in_channels, hidden, 1, deploy=deploy)
        self.depthwise = RepConvBlock(
            hidden, hidden, 3, stride, groups=hidden, branches=dw_branches, deploy=deploy
        )
        self.project = RepConvBlock(hidden, out_channels, 1, activation=False, deploy=deploy)
        self.residual = tuple(stride) == (1, 1) and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return out + x if self.residual else out


@dataclass(frozen=True)
class StageSpec:
    """One stage: `blocks` inverted residuals to `channels`; the first has `stride`."""

    channels: int
    blocks: int
    stride: Kernel = (1, 1)


@dataclass(frozen=True)
class RepMobileSpec:
    """Channels and depth of a Rep-Mobile network (before the width multiplier)."""

    stem: tuple[int, int]
    stages: tuple[StageSpec, ...]
    expansion: float = 2.0


#: Named depth variants. "base" is the registered default (arch "repmobile"); the others
#: are reachable through `build_repmobile(..., variant=...)`.
VARIANTS: dict[str, RepMobileSpec] = {
    "small": RepMobileSpec(
        stem=(8, 24),
        stages=(StageSpec(24, 1), StageSpec(32, 1, (2, 2)), StageSpec(40, 1, (2, 1))),
    ),
    "base": RepMobileSpec(
        stem=(8, 24),
        stages=(StageSpec(24, 2), StageSpec(32, 2, (2, 2)), StageSpec(40, 1, (2, 1))),
    ),
    "deep": RepMobileSpec(
        stem=(8, 24),
        stages=(StageSpec(24, 3), StageSpec(32, 3, (2, 2)), StageSpec(40, 2, (2, 1))),
    ),
}
DEFAULT_VARIANT = "base"


def build_repmobile(
    heads: Sequence[tuple[str, int]],
    width: float = 1.0,
    in_channels: int = 3,
    *,
    variant: str = DEFAULT_VARIANT,
    deploy: bool = False,
    asymmetric: bool = False,
) -> HeadedModel:
    """A Rep-Mobile student; `deploy` builds the folded inference form directly.

    width scales every channel count (at least 4). variant: a key of VARIANTS (depth).
    asymmetric: add 1×3 and 3×1 branches to every 3×3 unit (ACNet-style; training form only
    — the folded form is the same either way).
    """
    if variant not in VARIANTS:
        raise InputError(f"repmobile variant: expected one of {list(VARIANTS)}, found {variant!r}")
    spec = VARIANTS[variant]
    extra = [(1, 3), (3, 1)] if asymmetric else []
    full = [(3, 3), (1, 1), *extra]
    stem0, stem1 = (scale_width(c, width) for c in spec.stem)
    layers: list[nn.Module] = [
        RepConvBlock(in_channels, stem0, 3, 2, branches=full, deploy=deploy),
        RepConvBlock(stem0, stem1, 3, 1, branches=full, deploy=deploy),
    ]
    channels = stem1
    for stage in spec.stages:
        out = scale_width(stage.channels, width)
        for i in range(stage.blocks):
            stride = stage.stride if i == 0 else (1, 1)
            layers.append(
                RepInvertedResidual(
                    channels, out, stride, spec.expansion, dw_branches=full, deploy=deploy
                )
            )
            channels = out
    trunk = nn.Sequential(*layers)
    return HeadedModel(trunk, heads, lambda n: ConvHead(channels, n), in_channels)


def build_repmobile_train(
    heads: Sequence[tuple[str, int]], width: float = 1.0, in_channels: int = 3
) -> HeadedModel:
    """Registry builder of arch "repmobile": the multi-branch training form."""
    return build_repmobile(heads, width, in_channels)


def build_repmobile_deploy(
    heads: Sequence[tuple[str, int]], width: float = 1.0, in_channels: int = 3
) -> HeadedModel:
    """Registry builder of arch "repmobile_deploy": the folded form a checkpoint reloads into."""
    return build_repmobile(heads, width, in_channels, deploy=True)


def rep_blocks(model: nn.Module) -> list[RepConvBlock]:
    """Every RepConvBlock of a model, in module order."""
    return [m for m in model.modules() if isinstance(m, RepConvBlock)]


def reparameterize(model: nn.Module) -> nn.Module:
    """A folded copy of `model`: each RepConvBlock becomes one conv with a bias (eval mode).

    The input model is left untouched. Uses the BN running statistics, so the copy equals
    the training-form model in eval mode (to float32 rounding). A `spec` with arch
    "repmobile" becomes "repmobile_deploy", so `save_checkpoint` / `load_model` rebuild the
    folded form. Raises InputError when the model has no RepConvBlock.
    """
    blocks = rep_blocks(model)
    if not blocks:
        spec = getattr(model, "spec", {}) or {}
        raise InputError(
            f"reparameterize: expected a model with RepConvBlock units (arch {TRAIN_ARCH!r}), "
            f"found none in arch {spec.get('arch', type(model).__name__)!r}"
        )
    folded = copy.deepcopy(model)
    folded.eval()
    for block in rep_blocks(folded):
        block.switch_to_deploy()
    spec = getattr(model, "spec", None)
    if isinstance(spec, dict) and spec.get("arch") == TRAIN_ARCH:
        folded.spec = {**spec, "arch": DEPLOY_ARCH}
    return folded


def max_output_diff(
    a: nn.Module, b: nn.Module, input_shape: Sequence[int], *, batch: int = 4, seed: int = 0
) -> float:
    """Max |a(x) - b(x)| over a seeded N(0, 1) batch of `input_shape` (C, F, T), eval mode.

    The check that a folded model computes what its training form computes.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *(int(s) for s in input_shape)), generator=gen)
    modes = (a.training, b.training)
    try:
        a.eval()
        b.eval()
        with torch.no_grad():
            ya = a(x.to(_device_of(a)))
            yb = b(x.to(_device_of(b)))
    finally:
        a.train(modes[0])
        b.train(modes[1])
    return float((ya.double().cpu() - yb.double().cpu()).abs().max().item())


def _device_of(model: nn.Module) -> torch.device:
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def block_structure(model: nn.Module) -> list[dict[str, object]]:
    """One row per RepConvBlock: name, channels, kernel, stride, groups, form, branches."""
    rows = []
    for name, m in model.named_modules():
        if isinstance(m, RepConvBlock):
            rows.append(
                {
                    "name": name,
                    "in": m.in_channels,
                    "out": m.out_channels,
                    "kernel": m.kernel_size,
                    "stride": list(m.stride),
                    "groups": m.groups,
                    "form": "deploy" if m.deploy else "train",
                    "branches": [f"{kh}x{kw}" for kh, kw in m.branch_kernels]
                    + (["identity"] if m.has_identity else []),
                    "convs": sum(isinstance(c, nn.Conv2d) for c in m.modules()),
                }
            )
    return rows


__all__ = [
    "DEFAULT_VARIANT",
    "DEPLOY_ARCH",
    "TRAIN_ARCH",
    "VARIANTS",
    "ConvBN",
    "RepConvBlock",
    "RepInvertedResidual",
    "RepMobileSpec",
    "StageSpec",
    "block_structure",
    "build_repmobile",
    "build_repmobile_deploy",
    "build_repmobile_train",
    "max_output_diff",
    "rep_blocks",
    "reparameterize",
]
