"""Waveform augmentations of the offline training copies (report §2.1, D20; reverb §3.3).

Each function is pure numpy/librosa and takes its random numbers from an explicit
`numpy.random.Generator`, so a copy can be rebuilt bit for bit. Every transform keeps
the clip length: the feature extractor expects fixed-size clips.

`WaveTransform` bundles one augmentation kind with a base seed; the feature extractor
calls it as `transform(y, index)` inside DataLoader workers. The per-clip generator is
derived from (seed, kind, index) only, so the result of a clip does not depend on which
worker handles it or in which order clips are drawn.

Choices taken from D20's scripts (MihawkHu/DCASE2020_task1, data_augmentation/):
- "speed change" there is `librosa.effects.time_stretch` (a phase vocoder: duration
  changes by 1/rate, pitch is kept), then the clip is repeated when short and cut to
  its original length. That is the default here (`method="stretch"`); a resampling
  speed change (duration and pitch change together, like a tape played faster) is
  available as `method="resample"`.
- random noise is added only where the waveform is not exactly zero (D20:
  `np.where(y != 0, y + 0.01·n, 0)`), so zero padding of short clips stays silent.
- mix audios draws a partner of the same scene, never the clip itself.

Reverberation (`reverb`) is not in D20's scripts: the report trained the teachers of
rows 1-2 on reverberation-augmented data (§3.3) without saying how. Here a clip is
convolved with a seeded synthetic room impulse response (a direct-path impulse plus
exponentially decaying Gaussian noise of a drawn RT60, at a drawn wet gain), cut to the
clip length and rescaled to the clip's RMS (or peak), so levels stay comparable.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from acoustic_lottery.errors import InputError

#: Augmentation kinds that act on the waveform (spectrum correction acts on the STFT).
WAVE_KINDS: tuple[str, ...] = ("pitch", "speed", "noise", "mix", "reverb")

#: Default parameters of each kind (D20 / report §2.1).
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "pitch": {"max_steps": 4.0},
    "speed": {"rate_min": 0.5, "rate_max": 2.0, "method": "stretch"},
    "noise": {"std": 0.01, "keep_zeros": True},
    "mix": {"gain_min": 0.5, "gain_max": 1.0},
    "reverb": {
        "rt60_min": 0.3,
        "rt60_max": 1.0,
        "wet_min": 0.3,
        "wet_max": 0.8,
        "match": "rms",
    },
}

SPEED_METHODS: tuple[str, ...] = ("stretch", "resample")
#: What a reverberated clip is rescaled to match of the dry clip.
REVERB_MATCH: tuple[str, ...] = ("rms", "peak")
#: ln(10^3): the amplitude of a response falls by 60 dB (a factor 1000) over one RT60.
_LN_1000 = 3.0 * float(np.log(10.0))


def _as_wave(y: np.ndarray, name: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise InputError(f"{name}: expected a non-empty 1-D waveform, found shape {y.shape}")
    return y.astype(np.float32, copy=False)


def clip_rng(seed: int, index: int, kind: str = "") -> np.random.Generator:
    """Generator of one clip, derived from (seed, kind, index) only.

    Independent of worker scheduling and call order; different kinds draw different
    streams, so the pitch and the speed copy of a clip are not correlated. crc32 (not
    `hash`) keeps the kind code stable across processes.
    """
    if seed < 0 or index < 0:
        raise InputError(f"seed and index must be >= 0, found seed={seed}, index={index}")
    code = zlib.crc32(kind.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([int(seed), code, int(index)]))


# --------------------------------------------------------------------------- pitch


def sample_pitch_steps(rng: np.random.Generator, max_steps: float = 4.0) -> float:
    """n_steps ~ U(-max_steps, max_steps) semitones (D20: U(-4, 4))."""
    return float(rng.uniform(-max_steps, max_steps))


def pitch_shift(y: np.ndarray, sample_rate: int, n_steps: float) -> np.ndarray:
    """Shift the pitch by `n_steps` semitones (frequencies × 2^(n/12)), same length."""
    import librosa

    y = _as_wave(y)
    if n_steps == 0:
        return y.copy()
    out = librosa.effects.pitch_shift(y, sr=sample_rate, n_steps=float(n_steps))
    return librosa.util.fix_length(out, size=y.size).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- speed


def sample_speed_rate(
    rng: np.random.Generator, rate_min: float = 0.5, rate_max: float = 2.0
) -> float:
    """rate ~ U(rate_min, rate_max) (D20: U(0.5, 2)); rate > 1 is faster (shorter)."""
    return float(rng.uniform(rate_min, rate_max))


def change_speed(
    y: np.ndarray, rate: float, *, sample_rate: int = 44100, method: str = "stretch"
) -> np.ndarray:
    """Play `y` at `rate` times the speed: the output lasts len(y)/rate samples.

    Before tiling/cutting (see `speed_change` for the length-keeping version).
    `method="stretch"` (D20) keeps the pitch; `"resample"` shifts it by the same factor.
    """
    import librosa

    y = _as_wave(y)
    if rate <= 0:
        raise InputError(f"speed rate must be > 0, found {rate}")
    if method == "stretch":
        out = librosa.effects.time_stretch(y, rate=float(rate))
    elif method == "resample":
        out = librosa.resample(y, orig_sr=float(sample_rate), target_sr=sample_rate / rate)
    else:
        raise InputError(f"speed method: expected one of {SPEED_METHODS}, found {method!r}")
    return np.asarray(out, dtype=np.float32)


def tile_to_length(y: np.ndarray, length: int) -> np.ndarray:
    """Repeat `y` until it has `length` samples, then cut (D20 concatenates and cuts)."""
    y = _as_wave(y)
    reps = -(-length // y.size)
    return np.tile(y, reps)[:length].copy() if reps > 1 else y[:length].copy()


def speed_change(
    y: np.ndarray, rate: float, *, sample_rate: int = 44100, method: str = "stretch"
) -> np.ndarray:
    """Speed change that keeps the clip length: change speed, tile if short, cut."""
    y = _as_wave(y)
    return tile_to_length(change_speed(y, rate, sample_rate=sample_rate, method=method), y.size)


# --------------------------------------------------------------------------- noise


def add_noise(
    y: np.ndarray, rng: np.random.Generator, std: float = 0.01, *, keep_zeros: bool = True
) -> np.ndarray:
    """y + std·N(0, 1); with `keep_zeros` exact zeros (padding) stay zero, as in D20."""
    y = _as_wave(y)
    noise = rng.standard_normal(y.size)
    out = y.astype(np.float64) + std * noise
    if keep_zeros:
        out = np.where(y != 0.0, out, 0.0)
    return out.astype(np.float32)


# --------------------------------------------------------------------------- mix


def sample_mix_gains(
    rng: np.random.Generator, gain_min: float = 0.5, gain_max: float = 1.0
) -> tuple[float, float]:
    """Two independent gains ~ U(gain_min, gain_max) (D20: U(0.5, 1))."""
    g = rng.uniform(gain_min, gain_max, size=2)
    return float(g[0]), float(g[1])


def mix_audio(y: np.ndarray, y2: np.ndarray, gain1: float, gain2: float) -> np.ndarray:
    """gain1·y + gain2·y2, with y2 cut or zero-padded to the length of y."""
    y = _as_wave(y)
    y2 = _as_wave(y2, "y2")
    if y2.size != y.size:
        y2 = np.pad(y2[: y.size], (0, max(0, y.size - y2.size)))
    return (gain1 * y.astype(np.float64) + gain2 * y2.astype(np.float64)).astype(np.float32)


def choose_partner(rng: np.random.Generator, group_size: int, self_position: int) -> int:
    """Position of a random other member of a group of `group_size` (never `self_position`)."""
    if group_size < 2:
        raise InputError(f"mix: a partner needs a group of >= 2 clips, found {group_size}")
    j = int(rng.integers(0, group_size - 1))
    return j + 1 if j >= self_position else j


def same_scene_groups(
    scenes: Sequence[str], paths: Sequence[str]
) -> tuple[dict[str, list[str]], list[str], list[int]]:
    """Group clip paths by scene: (scene -> paths, scene of each clip, position in group).

    Stored once per scene rather than one partner list per clip: for 14 k clips the
    per-clip lists would be ~20 M strings to pickle into every worker.
    """
    if len(scenes) != len(paths):
        raise InputError(f"mix: {len(scenes)} scenes for {len(paths)} paths")
    groups: dict[str, list[str]] = {}
    positions: list[int] = []
    for scene, path in zip(scenes, paths):
        members = groups.setdefault(str(scene), [])
        positions.append(len(members))
        members.append(str(path))
    for scene, members in groups.items():
        if len(members) < 2:
            raise InputError(
                f"mix: scene {scene!r} needs >= 2 training clips to draw a partner, "
                f"found {len(members)} ({members[0]})"
            )
    return groups, [str(s) for s in scenes], positions


# --------------------------------------------------------------------------- reverb


def sample_reverb(
    rng: np.random.Generator,
    rt60_min: float = 0.3,
    rt60_max: float = 1.0,
    wet_min: float = 0.3,
    wet_max: float = 0.8,
) -> tuple[float, float]:
    """(RT60 in seconds, wet gain): RT60 ~ U(rt60_min, rt60_max), wet ~ U(wet_min, wet_max)."""
    rt60 = float(rng.uniform(rt60_min, rt60_max))
    wet = float(rng.uniform(wet_min, wet_max))
    return rt60, wet


def room_impulse_response(
    rt60: float, sample_rate: int, rng: np.random.Generator, *, wet: float = 1.0
) -> np.ndarray:
    """A synthetic room response: h[0] = 1 (direct path), then a reverberant tail.

    The tail is Gaussian noise under the envelope exp(-ln(1000)·t/RT60) (its level falls
    60 dB per RT60), one RT60 long, scaled to energy wet² relative to the direct path;
    wet 0 gives the dry impulse.
    """
    if not rt60 > 0:
        raise InputError(f"reverb rt60 must be > 0 seconds, found {rt60}")
    if not wet >= 0:
        raise InputError(f"reverb wet gain must be >= 0, found {wet}")
    n = max(2, int(round(rt60 * sample_rate)))
    t = np.arange(1, n, dtype=np.float64) / sample_rate
    tail = rng.standard_normal(n - 1) * np.exp(-_LN_1000 * t / rt60)
    h = np.zeros(n, dtype=np.float64)
    h[0] = 1.0
    h[1:] = wet * tail / np.sqrt(np.sum(tail**2))
    return h


def reverberate(y: np.ndarray, h: np.ndarray, *, match: str = "rms") -> np.ndarray:
    """y convolved with h (FFT), cut to len(y), rescaled to the RMS or peak of y."""
    from scipy.signal import fftconvolve

    y = _as_wave(y)
    if match not in REVERB_MATCH:
        raise InputError(f"reverb match: expected one of {REVERB_MATCH}, found {match!r}")
    dry = y.astype(np.float64)
    wet = fftconvolve(dry, np.asarray(h, dtype=np.float64))[: y.size]
    if match == "rms":
        ref, now = np.sqrt(np.mean(dry**2)), np.sqrt(np.mean(wet**2))
    else:
        ref, now = np.max(np.abs(dry)), np.max(np.abs(wet))
    if now > 0:
        wet *= ref / now
    return wet.astype(np.float32)


def _load_partner(path: str, sample_rate: int, seconds: float | None) -> np.ndarray:
    from acoustic_lottery.data.audio import load_audio

    return load_audio(path, sample_rate=sample_rate, seconds=seconds)


def resolve_params(kind: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults of `kind` updated by `params`; unknown keys or bad ranges are errors."""
    if kind not in DEFAULT_PARAMS:
        raise InputError(f"augmentation kind: expected one of {WAVE_KINDS}, found {kind!r}")
    out = dict(DEFAULT_PARAMS[kind])
    for key, value in (params or {}).items():
        if key not in out:
            raise InputError(
                f"augmentation params of {kind!r}: unknown key {key!r} "
                f"(expected some of {sorted(out)})"
            )
        out[key] = value
    if kind == "pitch" and not float(out["max_steps"]) >= 0:
        raise InputError(f"pitch max_steps must be >= 0, found {out['max_steps']}")
    if kind == "speed":
        if not 0 < float(out["rate_min"]) <= float(out["rate_max"]):
            raise InputError(
                f"speed rates: expected 0 < rate_min <= rate_max, "
                f"found {out['rate_min']}, {out['rate_max']}"
            )
        if out["method"] not in SPEED_METHODS:
            raise InputError(
                f"speed method: expected one of {SPEED_METHODS}, found {out['method']!r}"
            )
    if kind == "noise" and not float(out["std"]) >= 0:
        raise InputError(f"noise std must be >= 0, found {out['std']}")
    if kind == "mix" and not 0 <= float(out["gain_min"]) <= float(out["gain_max"]):
        raise InputError(
            f"mix gains: expected 0 <= gain_min <= gain_max, "
            f"found {out['gain_min']}, {out['gain_max']}"
        )
    if kind == "reverb":
        for key in ("rt60_min", "rt60_max", "wet_min", "wet_max"):
            v = out[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
                raise InputError(f"reverb {key}: expected a number, found {v!r}")
        if not 0 < float(out["rt60_min"]) <= float(out["rt60_max"]):
            raise InputError(
                f"reverb rt60: expected 0 < rt60_min <= rt60_max (seconds), "
                f"found {out['rt60_min']}, {out['rt60_max']}"
            )
        if not 0 <= float(out["wet_min"]) <= float(out["wet_max"]):
            raise InputError(
                f"reverb wet gains: expected 0 <= wet_min <= wet_max, "
                f"found {out['wet_min']}, {out['wet_max']}"
            )
        if out["match"] not in REVERB_MATCH:
            raise InputError(
                f"reverb match: expected one of {REVERB_MATCH}, found {out['match']!r}"
            )
    return out


@dataclass
class WaveTransform:
    """Picklable `transform(y, index)` for the feature extractor's workers.

    For "mix", `groups` maps each scene to its training clip paths, and `clip_scene[i]`
    / `clip_position[i]` locate clip i (row i of the split) in its group; build it with
    `WaveTransform.for_split`. `last_draw` records what the last call drew (for tests
    and logging; each worker process has its own copy).
    """

    kind: str
    seed: int
    sample_rate: int = 44100
    seconds: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, list[str]] | None = None
    clip_scene: list[str] | None = None
    clip_position: list[int] | None = None
    loader: Callable[[str, int, float | None], np.ndarray] | None = None
    last_draw: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.params = resolve_params(self.kind, self.params)
        if self.kind == "mix" and (
            self.groups is None or self.clip_scene is None or self.clip_position is None
        ):
            raise InputError("mix: WaveTransform needs same-scene groups (use for_split)")

    @classmethod
    def for_split(
        cls,
        kind: str,
        meta: Any,
        *,
        seed: int,
        sample_rate: int = 44100,
        seconds: float | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> WaveTransform:
        """Transform for the rows of a split table (columns `scene`, `path`)."""
        groups = scenes = positions = None
        if kind == "mix":
            for col in ("scene", "path"):
                if col not in meta.columns:
                    raise InputError(f"mix: split table lacks column {col!r}")
            groups, scenes, positions = same_scene_groups(
                list(meta["scene"]), [str(p) for p in meta["path"]]
            )
        return cls(
            kind=kind,
            seed=int(seed),
            sample_rate=int(sample_rate),
            seconds=seconds,
            params=dict(params or {}),
            groups=groups,
            clip_scene=scenes,
            clip_position=positions,
        )

    def describe(self) -> dict[str, Any]:
        """JSON-able description stored with the copy (kind, seed, parameters)."""
        return {"kind": self.kind, "seed": self.seed, "params": dict(self.params)}

    def describe_json(self) -> str:
        return json.dumps(self.describe(), sort_keys=True)

    def partner_path(self, index: int, rng: np.random.Generator) -> str:
        """Draw the same-scene partner of clip `index` from `rng`."""
        assert self.groups is not None and self.clip_scene is not None
        assert self.clip_position is not None
        if not 0 <= index < len(self.clip_scene):
            raise InputError(f"mix: clip index {index} outside 0..{len(self.clip_scene) - 1}")
        members = self.groups[self.clip_scene[index]]
        return members[choose_partner(rng, len(members), self.clip_position[index])]

    def __call__(self, y: np.ndarray, index: int) -> np.ndarray:
        rng = clip_rng(self.seed, index, self.kind)
        p = self.params
        if self.kind == "pitch":
            n_steps = sample_pitch_steps(rng, float(p["max_steps"]))
            self.last_draw = {"n_steps": n_steps}
            return pitch_shift(y, self.sample_rate, n_steps)
        if self.kind == "speed":
            rate = sample_speed_rate(rng, float(p["rate_min"]), float(p["rate_max"]))
            self.last_draw = {"rate": rate}
            return speed_change(y, rate, sample_rate=self.sample_rate, method=p["method"])
        if self.kind == "noise":
            self.last_draw = {"std": float(p["std"])}
            return add_noise(y, rng, float(p["std"]), keep_zeros=bool(p["keep_zeros"]))
        if self.kind == "reverb":
            # fixed draw order: RT60, wet gain, then the tail's noise
            rt60, wet = sample_reverb(
                rng,
                float(p["rt60_min"]),
                float(p["rt60_max"]),
                float(p["wet_min"]),
                float(p["wet_max"]),
            )
            self.last_draw = {"rt60": rt60, "wet": wet}
            h = room_impulse_response(rt60, self.sample_rate, rng, wet=wet)
            return reverberate(y, h, match=str(p["match"]))
        # mix: partner first, then the two gains (fixed draw order = reproducible)
        partner = self.partner_path(index, rng)
        g1, g2 = sample_mix_gains(rng, float(p["gain_min"]), float(p["gain_max"]))
        load = self.loader or _load_partner
        y2 = load(partner, self.sample_rate, self.seconds)
        self.last_draw = {"partner": partner, "gain1": g1, "gain2": g2}
        return mix_audio(y, y2, g1, g2)
