"""Streaming extraction of one split (or one augmented copy) into an HDF5 feature file.

DataLoader worker processes each take a batch of clips, decode it, apply the offline
augmentation (a `wave_transform`) and compute its features with torch (one thread per
worker); the main process writes every batch straight to the `FeatureWriter`, in
order: memory stays flat whatever the number of clips. Spectrum correction plugs in as
an `stft_gain`. With workers=0 the main process does everything itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from acoustic_lottery import __version__
from acoustic_lottery.errors import InputError
from acoustic_lottery.features.baseline import BaselineExtractor, BaselineFeatureConfig
from acoustic_lottery.features.lmfb import LogMelConfig, LogMelExtractor, config_from_dict
from acoustic_lottery.features.store import META_COLUMNS, FeatureWriter
from acoustic_lottery.io import progress
from acoustic_lottery.labels import SCENES, SUPER_CLASSES

__all__ = [
    "FEATURE_SETS",
    "PRECISIONS",
    "WaveTransform",
    "build_extractor",
    "config_summary",
    "default_threads",
    "expected_frames",
    "extract_split",
    "make_config",
]

log = logging.getLogger(__name__)

#: feature_set name -> (config class, extractor class)
FEATURE_SETS: dict[str, tuple[type, type]] = {
    "lmfb": (LogMelConfig, LogMelExtractor),
    "baseline": (BaselineFeatureConfig, BaselineExtractor),
}
PRECISIONS: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}

#: (wave, row position in `meta`) -> new wave of the same length. Must be picklable
#: (a module-level function or a dataclass instance) for worker processes.
WaveTransform = Callable[[np.ndarray, int], np.ndarray]


def _check_feature_set(feature_set: str) -> None:
    if feature_set not in FEATURE_SETS:
        raise InputError(
            f"feature set must be one of {sorted(FEATURE_SETS)}, found {feature_set!r}"
        )


def make_config(
    feature_set: str, overrides: Mapping[str, Any] | None = None, source: str = "params"
) -> Any:
    """The default config of `feature_set` with `overrides` applied (unknown keys refused)."""
    _check_feature_set(feature_set)
    cls = FEATURE_SETS[feature_set][0]
    return config_from_dict(cls, dict(overrides or {}), source=source)


def build_extractor(feature_set: str, cfg: Any = None, precision: str = "float32") -> Any:
    """A batched torch extractor for `feature_set` (`cfg=None`: the published settings)."""
    _check_feature_set(feature_set)
    cfg_cls, ext_cls = FEATURE_SETS[feature_set]
    if cfg is None:
        cfg = cfg_cls()
    if not isinstance(cfg, cfg_cls):
        raise InputError(
            f"feature set {feature_set!r} needs a {cfg_cls.__name__}, found {type(cfg).__name__}"
        )
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {sorted(PRECISIONS)}, found {precision!r}")
    return ext_cls(cfg, dtype=PRECISIONS[precision])


def default_threads(workers: int) -> int:
    """Torch threads of each process that computes features.

    With workers, each worker process computes the features of its batches with one
    thread (DataLoader sets that in its workers; a process per core is what workers are
    for, and 2 OpenMP threads competing with busy processes lost up to 3x in the
    benchmark, because a parallel region waits for its slowest, preempted thread).
    With workers=0 the main process uses the cores, at most 4 (the batched STFT of a
    few clips gains little beyond that).
    """
    if workers > 0:
        return 1
    return max(1, min(4, os.cpu_count() or 1))


class _ClipDataset(Dataset):
    """Decodes one clip per item in a worker; load errors travel back as messages."""

    def __init__(
        self,
        paths: list[str],
        sample_rate: int,
        seconds: float | None,
        wave_transform: WaveTransform | None,
    ) -> None:
        self.paths = paths
        self.sample_rate = sample_rate
        self.seconds = seconds
        self.wave_transform = wave_transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | None, str | None]:
        # Imported here so that the rest of this module (and its tests) never depends on
        # the audio reader being importable at module load.
        from acoustic_lottery.data.audio import load_audio

        path = self.paths[index]
        try:
            y = load_audio(path, sample_rate=self.sample_rate, seconds=self.seconds)
        except InputError as exc:
            return index, None, str(exc)
        if self.wave_transform is not None:
            n = len(y)
            y = np.asarray(self.wave_transform(y, index), dtype=np.float32)
            if y.ndim != 1 or len(y) != n:
                return (
                    index,
                    None,
                    f"{path}: wave_transform returned shape {y.shape}, expected ({n},) "
                    f"(transforms must keep the clip length)",
                )
            if not np.all(np.isfinite(y)):
                return index, None, f"{path}: wave_transform produced non-finite samples"
        return index, np.ascontiguousarray(y, dtype=np.float32), None


class _Batch:
    """A batch of decoded clips: row positions, the stacked waves or the reason why not."""

    def __init__(self, items: list[tuple[int, np.ndarray | None, str | None]]) -> None:
        self.idx = [i for i, _, _ in items]
        self.errors = [e for _, _, e in items if e is not None]
        self.lengths = [0 if y is None else len(y) for _, y, _ in items]
        self.wave: torch.Tensor | None = None
        if not self.errors and len(set(self.lengths)) == 1:
            self.wave = torch.from_numpy(np.stack([y for _, y, _ in items]))  # type: ignore[misc]

    def checked_wave(self, paths: list[str]) -> torch.Tensor:
        """The (B, samples) batch, or InputError naming the file that broke it."""
        if self.errors:
            raise InputError(self.errors[0])
        if self.wave is None:
            detail = ", ".join(
                f"{Path(paths[i]).name}: {n}" for i, n in zip(self.idx, self.lengths)
            )
            raise InputError(
                f"clips in one feature file must have the same length; pass seconds= to cut "
                f"or pad them (samples: {detail})"
            )
        return self.wave


class _Features:
    """What a worker hands back: row positions and their features, or why there are none."""

    def __init__(self, idx: list[int], x: torch.Tensor | None, error: str | None) -> None:
        self.idx = idx
        self.x = x  # a tensor travels to the main process through shared memory
        self.error = error

    def checked(self) -> np.ndarray:
        """The (B, C, F, T) features, or InputError naming the file that broke the batch."""
        if self.error is not None or self.x is None:
            raise InputError(self.error or "no features")
        return self.x.numpy()


class _BatchDataset(Dataset):
    """Item b: the clips of batch b decoded, transformed and turned into features.

    Computing in the workers rather than in the main process keeps every core busy
    (the main process only writes) and sends features, 2.7x smaller than the waves of
    10 s clips, through shared memory instead of the waves.
    """

    def __init__(
        self,
        clips: _ClipDataset,
        batch_size: int,
        extractor: Any,
        stft_gain: np.ndarray | None,
    ) -> None:
        self.clips = clips
        self.batch_size = batch_size
        self.extractor = extractor
        self.stft_gain = stft_gain

    def __len__(self) -> int:
        return -(-len(self.clips) // self.batch_size)

    def __getitem__(self, b: int) -> _Features:
        stop = min(len(self.clips), (b + 1) * self.batch_size)
        batch = _Batch([self.clips[i] for i in range(b * self.batch_size, stop)])
        try:
            wave = batch.checked_wave(self.clips.paths)
            with torch.inference_mode():
                x = self.extractor(wave, self.stft_gain)
        except InputError as exc:
            return _Features(batch.idx, None, str(exc))
        return _Features(batch.idx, x, None)


def _as_is(item: _Features) -> _Features:
    return item


def _check_meta(meta: pd.DataFrame) -> None:
    missing = [c for c in ("path", *META_COLUMNS) if c not in meta.columns]
    if missing:
        raise InputError(
            f"split table lacks column(s) {missing}; expected the table of data.tau.read_split"
        )


def extract_split(
    meta: pd.DataFrame,
    out_path: str | os.PathLike[str],
    feature_set: str,
    cfg: Any = None,
    *,
    seconds: float | None,
    sample_rate: int = 44100,
    batch_size: int = 16,
    workers: int = 2,
    wave_transform: WaveTransform | None = None,
    stft_gain: np.ndarray | None = None,
    copy: str = "orig",
    split: str = "train",
    attrs_extra: Mapping[str, Any] | None = None,
    precision: str = "float32",
    threads: int | None = None,
) -> int:
    """Compute features for every row of `meta` (in order) into `out_path`; returns N.

    `stft_gain` (n_fft/2+1,) multiplies the complex STFT of every clip (spectrum
    correction); `wave_transform(y, row_position)` changes the waveform first (offline
    augmentation, seeded from the row position). `workers` processes decode and compute
    features, one torch thread each; with workers=0 the main process does, with
    `threads` torch threads (default: `default_threads`; ignored with workers).
    """
    _check_meta(meta)
    cfg = make_config(feature_set) if cfg is None else cfg
    extractor = build_extractor(feature_set, cfg, precision)
    if cfg.sample_rate != sample_rate:
        raise InputError(
            f"feature config sample_rate {cfg.sample_rate} differs from sample_rate={sample_rate}"
        )
    if batch_size < 1 or workers < 0:
        raise InputError(
            f"batch_size must be >= 1 and workers >= 0, found {batch_size} and {workers}"
        )
    if stft_gain is not None:
        stft_gain = np.asarray(stft_gain, dtype=np.float64)
        n_bins = cfg.n_fft // 2 + 1
        if stft_gain.shape != (n_bins,):
            raise InputError(
                f"stft_gain must have shape ({n_bins},) for n_fft={cfg.n_fft}, "
                f"found {stft_gain.shape}"
            )
    n = len(meta)
    paths = [str(p) for p in meta["path"]]

    attrs: dict[str, Any] = {
        "feature_set": feature_set,
        "params": cfg.to_dict(),
        "split": split,
        "copy": copy,
        "scenes": list(SCENES),
        "super_classes": list(SUPER_CLASSES),
        "code_version": __version__,
        "librosa_version": librosa.__version__,
        "torch_version": torch.__version__,
        "sample_rate": sample_rate,
        "seconds": seconds,
        "precision": precision,
    }
    if stft_gain is not None:
        attrs["stft_gain"] = [float(g) for g in stft_gain.astype(np.float32)]
    attrs.update(attrs_extra or {})

    feature_shape = None
    if seconds is not None:
        n_samples = int(round(seconds * sample_rate))
        feature_shape = (
            extractor.n_channels,
            extractor.n_features,
            extractor.n_output_frames(n_samples),
        )
    elif n == 0:
        raise InputError(f"{out_path}: no clips to extract and no seconds= to size the file")

    clips = _ClipDataset(paths, sample_rate, seconds, wave_transform)
    loader = DataLoader(
        _BatchDataset(clips, batch_size, extractor, stft_gain),
        batch_size=None,  # an item is a whole batch
        shuffle=False,
        num_workers=workers,
        collate_fn=_as_is,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
    )
    n_threads = threads if threads is not None else default_threads(workers)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n_threads)))
    bar = progress(iter(()), desc=f"features {split}/{copy}", total=n, unit="clip")
    written = 0
    try:
        with FeatureWriter(out_path, attrs, feature_shape=feature_shape) as writer:
            if n:
                for batch in loader:
                    writer.append(batch.checked(), meta.iloc[batch.idx])
                    written += len(batch.idx)
                    bar.update(len(batch.idx))  # type: ignore[attr-defined]
            if written != n:  # pragma: no cover - DataLoader guarantees every index once
                raise RuntimeError(f"{out_path}: wrote {written} of {n} clips")
    finally:
        torch.set_num_threads(previous_threads)
        with contextlib.suppress(AttributeError):
            bar.close()  # type: ignore[attr-defined]
        del loader
    log.info("wrote %d clips of %s features to %s", written, feature_set, out_path)
    return written


def config_summary(cfg: Any) -> str:
    """One line naming the non-default fields of a config (for logs)."""
    default = type(cfg)()
    changed = {
        f.name: getattr(cfg, f.name)
        for f in dataclasses.fields(cfg)
        if getattr(cfg, f.name) != getattr(default, f.name)
    }
    return f"{type(cfg).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


def expected_frames(feature_set: str, cfg: Any, seconds: float) -> int:
    """Frames per clip of `seconds` (lmfb 10 s -> 423, baseline 10 s -> 500)."""
    extractor_cfg = cfg if cfg is not None else make_config(feature_set)
    return int(extractor_cfg.n_output_frames(int(round(seconds * extractor_cfg.sample_rate))))
