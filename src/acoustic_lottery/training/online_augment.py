"""Online augmentation of training batches: random crop, SpecAugment, mixup (D20 recipe).

Every function takes an explicit `torch.Generator`, so a batch's augmentation depends
only on the seed the trainer derives for it, never on global RNG state: a resumed run
augments each batch exactly as an uninterrupted one.

* random crop: one offset per clip, uniform over the valid positions;
* SpecAugment: per clip and per channel, one frequency mask of width U{0..max_freq}
  and one time mask of width U{0..max_time}, both uniformly placed and set to zero;
* mixup: λ ~ Beta(α, α) per clip, each clip mixed with a random partner of the same
  batch (a permutation), on inputs and on (soft) labels alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "crop_offsets",
    "mixup",
    "random_crop",
    "sample_beta",
    "spec_augment",
    "uniform_int",
]


def uniform_int(high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Integers uniform in {0..high} (inclusive, elementwise); high >= 0, any shape."""
    high = high.to(torch.int64)
    if (high < 0).any():
        raise ValueError("uniform_int: upper bounds must be >= 0")
    u = torch.rand(high.shape, generator=generator, dtype=torch.float64)
    # floor(u·(high+1)) is uniform on {0..high}; min() guards u's float edge.
    return torch.minimum(torch.floor(u * (high + 1).double()).to(torch.int64), high)


def crop_offsets(
    n_frames: Sequence[int] | torch.Tensor, frames: int, generator: torch.Generator
) -> torch.Tensor:
    """Start frame of a `frames`-long random crop of each clip (clips may differ in length)."""
    lengths = torch.as_tensor(n_frames, dtype=torch.int64)
    if (lengths < frames).any():
        short = int(lengths.min())
        raise ValueError(f"crop of {frames} frames asked from a clip of only {short} frames")
    return uniform_int(lengths - frames, generator)


def random_crop(x: torch.Tensor, frames: int, generator: torch.Generator) -> torch.Tensor:
    """Crop (B, C, F, T) to (B, C, F, frames) at an independent random offset per clip."""
    b, _, _, t = x.shape
    offsets = crop_offsets([t] * b, frames, generator)
    idx = offsets[:, None] + torch.arange(frames)  # (B, frames)
    idx = idx[:, None, None, :].expand(-1, x.shape[1], x.shape[2], -1).to(x.device)
    return torch.gather(x, 3, idx)


def _band_mask(
    size: int, max_width: int, shape: tuple[int, int], generator: torch.Generator
) -> torch.Tensor:
    """Bool (B, C, size): one band per (clip, channel) of width U{0..max_width}."""
    width = uniform_int(torch.full(shape, min(max_width, size), dtype=torch.int64), generator)
    start = uniform_int(size - width, generator)
    pos = torch.arange(size)
    return (pos >= start[..., None]) & (pos < (start + width)[..., None])


def spec_augment(
    x: torch.Tensor, max_freq: int, max_time: int, generator: torch.Generator
) -> torch.Tensor:
    """Zero one frequency band and one time band per clip and channel (new tensor).

    Widths are drawn from U{0..max} (a width larger than the axis is clipped to it);
    max 0 switches that mask off without consuming random numbers.
    """
    b, c, f, t = x.shape
    keep = torch.ones((b, c, f, t), dtype=torch.bool)
    if max_freq > 0:
        keep &= ~_band_mask(f, max_freq, (b, c), generator)[..., :, None]
    if max_time > 0:
        keep &= ~_band_mask(t, max_time, (b, c), generator)[..., None, :]
    return x * keep.to(device=x.device, dtype=x.dtype)


def sample_beta(alpha: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """n draws of Beta(α, α), float32, driven by `generator`.

    torch's Beta sampler takes no generator, so a numpy Generator seeded from the torch
    generator draws them: still a pure function of the torch generator's state.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, dtype=torch.int64))
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.beta(alpha, alpha, size=n).astype(np.float32))


def mixup(
    x: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    alpha: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Mix each clip with a random partner: x' = λx + (1−λ)x[π], same λ and π for labels.

    targets: head name -> (B, K) one-hot or soft labels (all heads share λ and π, so an
    MTL model sees consistent scene and super-class targets). Returns (x', targets', λ).
    alpha 0 returns the inputs unchanged with λ = 1.
    """
    b = x.shape[0]
    if alpha <= 0:
        return x, dict(targets), torch.ones(b)
    lam = sample_beta(alpha, b, generator)
    perm = torch.randperm(b, generator=generator)
    lam_x = lam.to(device=x.device, dtype=x.dtype).view(b, *([1] * (x.dim() - 1)))
    perm_d = perm.to(x.device)
    x_mix = lam_x * x + (1.0 - lam_x) * x[perm_d]
    mixed = {}
    for name, y in targets.items():
        lam_y = lam.to(device=y.device, dtype=y.dtype).view(b, 1)
        mixed[name] = lam_y * y + (1.0 - lam_y) * y[perm.to(y.device)]
    return x_mix, mixed, lam
