"""Online augmentation: crop lengths, SpecAugment band widths, mixup label algebra."""

from __future__ import annotations

import numpy as np
import torch

from acoustic_lottery.training.online_augment import (
    crop_offsets,
    mixup,
    random_crop,
    sample_beta,
    spec_augment,
    uniform_int,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_uniform_int_covers_the_inclusive_range() -> None:
    draws = uniform_int(torch.full((20000,), 4), gen())
    counts = np.bincount(draws.numpy(), minlength=5)
    assert counts.shape == (5,) and counts.min() > 3500  # each of 0..4 about 4000 times
    assert uniform_int(torch.zeros(5, dtype=torch.int64), gen()).eq(0).all()


def test_random_crop_takes_contiguous_windows() -> None:
    b, t = 6, 30
    ramp = torch.arange(t, dtype=torch.float32).expand(b, 2, 3, t).clone()
    out = random_crop(ramp, 11, gen(1))
    assert out.shape == (b, 2, 3, 11)
    starts = out[:, 0, 0, 0]
    expect = starts[:, None] + torch.arange(11.0)
    assert torch.equal(out, expect[:, None, None, :].expand(b, 2, 3, 11))
    assert len(set(starts.tolist())) > 1  # offsets differ between clips
    assert torch.equal(random_crop(ramp, 11, gen(1)), out)  # seeded
    assert torch.equal(random_crop(ramp, t, gen(2)), ramp)  # full length = identity


def test_crop_offsets_respect_each_clip_length() -> None:
    lengths = [10, 50, 12] * 200
    off = crop_offsets(lengths, 10, gen(3))
    assert (off >= 0).all() and (off + 10 <= torch.tensor(lengths)).all()
    assert off[0::3].eq(0).all() and off[1::3].max() == 40


def test_spec_augment_zeroes_one_band_of_each_kind_per_clip_and_channel() -> None:
    b, c, f, t = 64, 3, 40, 60
    x = torch.ones(b, c, f, t)
    out = spec_augment(x, 12, 20, gen(4))
    assert torch.equal(spec_augment(x, 12, 20, gen(4)), out)
    zero = out == 0
    freq_zero = zero.all(dim=3)  # (b, c, f): whole rows zeroed
    time_zero = zero.all(dim=2)  # (b, c, t): whole columns zeroed
    fw = freq_zero.sum(-1)
    tw = time_zero.sum(-1)
    assert fw.max() <= 12 and tw.max() <= 20
    assert fw.min() == 0 and fw.max() >= 10  # widths spread over U{0..12}
    # Everything zeroed is in the frequency band or the time band, nothing else.
    assert torch.equal(zero, freq_zero[..., None] | time_zero[..., None, :])
    # Each band is contiguous.
    for row in freq_zero.reshape(-1, f):
        idx = torch.nonzero(row).flatten()
        if len(idx):
            assert idx[-1] - idx[0] + 1 == len(idx)
    # Channels get independent masks.
    assert not torch.equal(freq_zero[:, 0], freq_zero[:, 1])


def test_spec_augment_off_is_identity() -> None:
    x = torch.randn(2, 3, 8, 9, generator=gen(5))
    assert torch.equal(spec_augment(x, 0, 0, gen(6)), x)


def test_mixup_mixes_inputs_and_labels_with_the_same_lambda() -> None:
    b = 16
    x = torch.randn(b, 2, 4, 5, generator=gen(7))
    y10 = torch.nn.functional.one_hot(torch.arange(b) % 10, 10).float()
    y3 = torch.nn.functional.one_hot(torch.arange(b) % 3, 3).float()
    xm, ym, lam = mixup(x, {"scene": y10, "super": y3}, 0.4, gen(8))
    assert torch.allclose(ym["scene"].sum(1), torch.ones(b))
    assert torch.allclose(ym["super"].sum(1), torch.ones(b))
    # Recover the partner of each clip from the mixed input and check the labels follow.
    for i in range(b):
        partner = [
            j
            for j in range(b)
            if torch.allclose(xm[i], lam[i] * x[i] + (1 - lam[i]) * x[j], atol=1e-6)
        ]
        assert partner
        j = partner[0]
        assert torch.allclose(ym["scene"][i], lam[i] * y10[i] + (1 - lam[i]) * y10[j])
        assert torch.allclose(ym["super"][i], lam[i] * y3[i] + (1 - lam[i]) * y3[j])
    x2, y2, lam2 = mixup(x, {"scene": y10}, 0.0, gen(8))
    assert x2 is x and torch.equal(y2["scene"], y10) and lam2.eq(1).all()


def test_beta_draws_have_the_beta_moments() -> None:
    lam = sample_beta(0.4, 20000, gen(9)).double()
    assert ((lam >= 0) & (lam <= 1)).all()
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)) = 0.1389 for a = 0.4; U-shaped.
    assert abs(lam.mean() - 0.5) < 0.01
    assert abs(lam.var() - 1 / (4 * 1.8)) < 0.01
    assert ((lam < 0.1) | (lam > 0.9)).float().mean() > 0.4
    assert torch.equal(sample_beta(0.4, 5, gen(9)), sample_beta(0.4, 5, gen(9)))
