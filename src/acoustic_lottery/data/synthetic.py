"""A seeded synthetic acoustic-scene data set in the exact TAU Urban Acoustic Scenes layout.

Why: the real TAU 2020 Mobile development set is 30 GB and cannot be fetched here, but
every stage of the pipeline (feature extraction, spectrum correction on time-aligned
device pairs, two-stage fusion on super-classes, per-device metrics on unseen devices)
needs data with the same structure. This generator writes that structure with scenes
that are *learnable but not trivial*:

* scenes of one super-class share their main traits (indoor: reverberant babble;
  outdoor: broadband wind/traffic with bird and voice events; transportation: engine
  hum with harmonics and rhythmic rattles) and differ in finer ones (hum frequency,
  event rates, spectral tilt, beeps, chimes, brakes);
* every recording is drawn with its own random levels, timings and fundamental
  frequencies, and every place (city-location) has its own colouring, with the
  places of the evaluation split unseen in training;
* each segment is rendered once as the device-"a" signal and passed through fixed
  per-device models (EQ, band limits, gain, noise floor, mild saturation) to give the
  time-aligned parallel clips of devices b, c and s1-s6 that TAU has.

See docs/synthetic_dataset.md for the full description.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import fft as sp_fft

from acoustic_lottery.data.audio import write_wav
from acoustic_lottery.errors import InputError
from acoustic_lottery.io import (
    TMP_MARK,
    atomic_path,
    progress,
    read_json,
    remove_stale_temporaries,
    write_json,
)
from acoustic_lottery.labels import DEVICES, SCENE_TO_SUPER, SCENES, SUPER_CLASSES, TRAIN_DEVICES

log = logging.getLogger(__name__)

FORMAT = "acoustic-lottery-synthetic/1"
SUMMARY_NAME = "synthetic.json"
LAYOUTS: tuple[str, ...] = ("tau2020", "tau2022")
#: Six of the TAU 2020 cities (the names only flavour the file names).
DEFAULT_CITIES: tuple[str, ...] = ("barcelona", "helsinki", "lisbon", "london", "lyon", "paris")

# Stream keys of the SeedSequence spawn tree: every random draw is a pure function of
# (seed, what is drawn), independent of generation order.
_KEY_PLAN, _KEY_DEVICE, _KEY_LOCATION, _KEY_RECORDING, _KEY_DEVICE_NOISE = 1, 2, 3, 4, 5

_ABSENT_DB = -50.0  # components blended below this level are not rendered
_CITY_RE = re.compile(r"^[a-z][a-z_]*$")


# --------------------------------------------------------------------------------------
# Configuration


@dataclass
class SyntheticConfig:
    """What to generate; every field is a config key of the `generate` verb.

    Segment counts are *recordings* per scene: in the tau2020 layout one recording is
    one clip of `clip_seconds`; in the tau2022 layout one recording is
    `subsegments_per_segment` consecutive clips of `clip_seconds` (TAU 2022 cuts each
    10 s segment into ten 1 s subsegments).
    """

    seed: int = 0
    clip_seconds: float = 1.0
    sample_rate: int = 44100
    layout: str = "tau2020"
    train_segments_per_scene: int = 54
    train_parallel_fraction: float = 0.15
    eval_segments_per_scene: int = 10
    cities: list[str] = field(default_factory=lambda: list(DEFAULT_CITIES))
    difficulty: float = 0.0
    subsegments_per_segment: int = 10
    #: Places (city-location) per scene in each split; None: one place per segment.
    #: The segments of a split are dealt to its places in turn, so a value above the
    #: split's segments per scene is an error (a place without a segment does not exist).
    train_places_per_scene: int | None = None
    eval_places_per_scene: int | None = None
    #: Scales every device's departure from flat (EQ peaks, tilt, band limits, gain,
    #: noise floor, saturation): 1 is the drawn devices, 0 makes every device flat.
    device_severity: float = 0.4

    def validate(self) -> None:
        """InputError naming the key if a value is out of range (before any work)."""

        def bad(key: str, expected: str, value: Any) -> InputError:
            return InputError(f"synthetic config key {key!r}: expected {expected}, got {value!r}")

        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise bad("seed", "a non-negative integer", self.seed)
        if not isinstance(self.clip_seconds, (int, float)) or not 0.05 <= self.clip_seconds <= 60:
            raise bad("clip_seconds", "a number of seconds in [0.05, 60]", self.clip_seconds)
        if not isinstance(self.sample_rate, int) or not 8000 <= self.sample_rate <= 192000:
            raise bad("sample_rate", "an integer in [8000, 192000]", self.sample_rate)
        if self.layout not in LAYOUTS:
            raise bad("layout", f"one of {', '.join(LAYOUTS)}", self.layout)
        for key in ("train_segments_per_scene", "eval_segments_per_scene"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(key, "a positive integer", value)
        frac = self.train_parallel_fraction
        if not isinstance(frac, (int, float)) or not 0.0 <= frac <= 1.0:
            raise bad("train_parallel_fraction", "a fraction in [0, 1]", frac)
        if not isinstance(self.difficulty, (int, float)) or not 0.0 <= self.difficulty <= 1.0:
            raise bad("difficulty", "a number in [0, 1]", self.difficulty)
        sev = self.device_severity
        if isinstance(sev, bool) or not isinstance(sev, (int, float)) or not 0.0 <= sev <= 1.0:
            raise bad("device_severity", "a number in [0, 1]", sev)
        for key, segments_key in (
            ("train_places_per_scene", "train_segments_per_scene"),
            ("eval_places_per_scene", "eval_segments_per_scene"),
        ):
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(key, "a positive integer or null (one place per segment)", value)
            if value > getattr(self, segments_key):
                raise bad(
                    key,
                    f"at most {segments_key} ({getattr(self, segments_key)}): every place "
                    "holds at least one segment",
                    value,
                )
        n_sub = self.subsegments_per_segment
        if isinstance(n_sub, bool) or not isinstance(n_sub, int) or not 1 <= n_sub <= 100:
            raise bad("subsegments_per_segment", "an integer in [1, 100]", n_sub)
        if not isinstance(self.cities, (list, tuple)) or not self.cities:
            raise bad("cities", "a non-empty list of city names", self.cities)
        for city in self.cities:
            if not isinstance(city, str) or not _CITY_RE.match(city):
                raise bad("cities", "lower-case names of letters and '_' (no '-')", city)
        if len(set(self.cities)) != len(self.cities):
            raise bad("cities", "distinct city names", self.cities)

    def places_per_scene(self, split: str) -> int:
        """Places (city-location) per scene of `split` ("train" or "evaluate")."""
        if split == "train":
            places, segments = self.train_places_per_scene, self.train_segments_per_scene
        elif split == "evaluate":
            places, segments = self.eval_places_per_scene, self.eval_segments_per_scene
        else:
            raise ValueError(f"unknown split {split!r}: expected 'train' or 'evaluate'")
        return segments if places is None else places

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SyntheticConfig:
        """Build from a config mapping; unknown keys are an error (typos would be silent)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(
                f"synthetic config: unknown key(s) {unknown}: expected some of {sorted(known)}"
            )
        cfg = cls(**values)
        if isinstance(cfg.cities, tuple):
            cfg.cities = list(cfg.cities)
        cfg.validate()
        return cfg


# --------------------------------------------------------------------------------------
# Scene descriptions
#
# Levels are in dB relative to the stationary background ("bed"), except level_db
# (dBFS RMS of the stationary part). Rates are events per second. A component at or
# below _ABSENT_DB is absent.

_BASE: dict[str, float] = {
    "level_db": -28.0,
    "bed_tilt": -4.0,  # dB per octave
    "bed_lp": 10000.0,  # Hz, where the background rolls off
    "wind_db": -60.0,
    "gust": 0.3,
    "traffic_db": -60.0,
    "traffic_fc": 300.0,
    "babble_db": -60.0,
    "babble_mod": 0.3,
    "hum_db": -60.0,
    "hum_f0_lo": 40.0,
    "hum_f0_hi": 80.0,
    "hum_decay": 3.0,  # dB per harmonic
    "whine_db": -60.0,
    "whine_lo": 400.0,
    "whine_hi": 1200.0,
    "hvac_db": -60.0,
    "music_p": 0.0,
    "music_db": -8.0,
    "rt60_lo": 0.1,
    "rt60_hi": 0.3,
    "wet": 0.0,
    "rattle_reg": 0.0,
    "rattle_f_lo": 500.0,
    "rattle_f_hi": 2500.0,
    "bird_f_lo": 2500.0,
    "bird_f_hi": 6000.0,
    "beep_f_lo": 800.0,
    "beep_f_hi": 3000.0,
    "squeal_f_lo": 2500.0,
    "squeal_f_hi": 6000.0,
    "bell_f_lo": 700.0,
    "bell_f_hi": 1400.0,
    "floor_f_lo": 300.0,
    "floor_f_hi": 1500.0,
}

EVENTS: tuple[str, ...] = (
    "chirp",
    "voice",
    "footstep",
    "beep",
    "chime",
    "squeal",
    "horn",
    "passby",
    "suitcase",
    "bell",
    "rattle",
    "clack",
    "rumble",
)
_EVENT_DB = {
    "chirp": -2.0,
    "voice": 0.0,
    "footstep": -2.0,
    "beep": -4.0,
    "chime": -2.0,
    "squeal": -4.0,
    "horn": 2.0,
    "passby": 3.0,
    "suitcase": -4.0,
    "bell": 0.0,
    "rattle": -3.0,
    "clack": 0.0,
    "rumble": 2.0,
}
for _e in EVENTS:
    _BASE[f"{_e}_rate"] = 0.0
    _BASE[f"{_e}_db"] = _EVENT_DB[_e]

_SCENE_TRAITS: dict[str, dict[str, float]] = {
    # ---- indoor: reverberant, babble bed, steady
    "airport": {
        "level_db": -29, "bed_tilt": -5.0, "bed_lp": 7000, "babble_db": 0, "babble_mod": 0.12,
        "hvac_db": -12, "traffic_db": -24, "traffic_fc": 150, "rt60_lo": 1.4, "rt60_hi": 2.4,
        "wet": 0.55, "chime_rate": 0.10, "voice_rate": 0.25, "voice_db": -3,
        "footstep_rate": 0.3, "suitcase_rate": 0.6, "beep_rate": 0.03, "music_p": 0.15,
    },
    "shopping_mall": {
        "level_db": -27, "bed_tilt": -4.0, "bed_lp": 9000, "babble_db": 0, "babble_mod": 0.18,
        "hvac_db": -16, "music_p": 0.7, "music_db": -6, "rt60_lo": 0.9, "rt60_hi": 1.6,
        "wet": 0.45, "voice_rate": 0.5, "footstep_rate": 0.6, "beep_rate": 0.10,
        "beep_f_lo": 2000, "beep_f_hi": 3500, "chime_rate": 0.02, "suitcase_rate": 0.1,
    },
    "metro_station": {
        "level_db": -28, "bed_tilt": -6.0, "bed_lp": 7000, "babble_db": -4,
        "babble_mod": 0.22, "hvac_db": -12, "hum_db": -14, "hum_f0_lo": 90, "hum_f0_hi": 140,
        "rt60_lo": 1.6, "rt60_hi": 2.8, "wet": 0.6, "rumble_rate": 0.2, "rumble_db": 4,
        "squeal_rate": 0.12, "beep_rate": 0.15, "beep_f_lo": 1000, "beep_f_hi": 2000,
        "chime_rate": 0.08, "footstep_rate": 0.5, "voice_rate": 0.2, "clack_rate": 0.1,
    },
    # ---- transportation: engine hum with harmonics, rhythmic rattles, muffled
    "bus": {
        "level_db": -23, "bed_tilt": -8.0, "bed_lp": 5000, "hum_db": 4, "hum_f0_lo": 25,
        "hum_f0_hi": 45, "hum_decay": 2.0, "rattle_rate": 3.5, "rattle_reg": 0.2,
        "rattle_db": -2, "rattle_f_lo": 800, "rattle_f_hi": 3000, "babble_db": -12,
        "babble_mod": 0.4, "voice_rate": 0.25, "beep_rate": 0.06, "beep_f_lo": 1500,
        "beep_f_hi": 2500, "horn_rate": 0.02, "passby_rate": 0.05, "rt60_lo": 0.2,
        "rt60_hi": 0.4, "wet": 0.15, "traffic_db": -8, "traffic_fc": 200,
    },
    "metro": {
        "level_db": -20, "bed_tilt": -6.0, "bed_lp": 6500, "hum_db": 2, "hum_f0_lo": 90,
        "hum_f0_hi": 160, "hum_decay": 4.0, "whine_db": -2, "whine_lo": 500,
        "whine_hi": 1500, "clack_rate": 1.2, "rattle_reg": 0.6, "clack_db": 2,
        "rattle_rate": 2.0, "squeal_rate": 0.1, "traffic_db": 2, "traffic_fc": 400,
        "babble_db": -14, "chime_rate": 0.04, "beep_rate": 0.04, "rt60_lo": 0.2,
        "rt60_hi": 0.4, "wet": 0.15,
    },
    "tram": {
        "level_db": -24, "bed_tilt": -6.5, "bed_lp": 7000, "hum_db": 0, "hum_f0_lo": 45,
        "hum_f0_hi": 80, "hum_decay": 3.0, "whine_db": -8, "whine_lo": 250, "whine_hi": 800,
        "clack_rate": 0.8, "rattle_reg": 0.5, "rattle_rate": 1.5, "bell_rate": 0.08,
        "bell_db": 2, "squeal_rate": 0.08, "babble_db": -12, "voice_rate": 0.2,
        "traffic_db": -8, "rt60_lo": 0.2, "rt60_hi": 0.4, "wet": 0.12,
    },
    # ---- outdoor: broadband wind / traffic, birds and voices, open (dry)
    "park": {
        "level_db": -37, "bed_tilt": -2.5, "bed_lp": 15000, "wind_db": 2, "gust": 0.7,
        "traffic_db": -10, "traffic_fc": 200, "chirp_rate": 1.5, "chirp_db": 0,
        "voice_rate": 0.08, "footstep_rate": 0.15, "horn_rate": 0.005, "rt60_lo": 0.05,
        "rt60_hi": 0.15, "wet": 0.03,
    },
    "public_square": {
        "level_db": -31, "bed_tilt": -3.0, "bed_lp": 13000, "wind_db": -2, "gust": 0.5,
        "traffic_db": -3, "traffic_fc": 250, "babble_db": -6, "babble_mod": 0.45,
        "voice_rate": 0.7, "footstep_rate": 0.5, "chirp_rate": 0.4, "passby_rate": 0.04,
        "horn_rate": 0.01, "bell_rate": 0.01, "rt60_lo": 0.1, "rt60_hi": 0.5, "wet": 0.1,
    },
    "street_pedestrian": {
        "level_db": -29, "bed_tilt": -3.5, "bed_lp": 12000, "wind_db": -6, "gust": 0.4,
        "traffic_db": -4, "traffic_fc": 300, "babble_db": -4, "babble_mod": 0.45,
        "voice_rate": 1.0, "footstep_rate": 1.2, "footstep_db": 0, "chirp_rate": 0.15,
        "passby_rate": 0.1, "horn_rate": 0.02, "suitcase_rate": 0.05, "rt60_lo": 0.1,
        "rt60_hi": 0.4, "wet": 0.08,
    },
    "street_traffic": {
        "level_db": -23, "bed_tilt": -4.5, "bed_lp": 10000, "wind_db": -6, "traffic_db": 4,
        "traffic_fc": 400, "hum_db": -8, "hum_f0_lo": 25, "hum_f0_hi": 60,
        "passby_rate": 0.7, "passby_db": 4, "horn_rate": 0.05, "voice_rate": 0.1,
        "footstep_rate": 0.15, "chirp_rate": 0.05, "rt60_lo": 0.05, "rt60_hi": 0.2,
        "wet": 0.05,
    },
}  # fmt: skip


def scene_traits(difficulty: float) -> dict[str, dict[str, float]]:
    """Per-scene numeric traits after blending toward the super-class mean.

    `difficulty` d moves every trait a fraction 0.3·d of the way to the mean of its
    super-class (so siblings become more confusable: a tram gets some of the bus's
    rattle, an airport some of the metro station's beeps) and shifts every component
    by -8·(d - 0.5) dB against the stationary background (+4 dB at d = 0, -4 dB at
    d = 1). d also widens the random spread of places and recordings (see
    `_place_params` and `_render_recording`).
    """
    full = {s: {**_BASE, **_SCENE_TRAITS[s]} for s in SCENES}
    blend = 0.3 * difficulty
    shift = -8.0 * (difficulty - 0.5)
    out: dict[str, dict[str, float]] = {}
    for scene in SCENES:
        siblings = [s for s in SCENES if SCENE_TO_SUPER[s] == SCENE_TO_SUPER[scene]]
        traits = {}
        for key, value in full[scene].items():
            mean = float(np.mean([full[s][key] for s in siblings]))
            v = (1.0 - blend) * float(value) + blend * mean
            if key.endswith("_db") and key != "level_db" and v > _ABSENT_DB:
                v += shift
            traits[key] = v
        out[scene] = traits
    return out


# --------------------------------------------------------------------------------------
# Signal helpers (all vectorised; the large transforms run in float32)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=key))


def _db(x: float) -> float:
    return 10.0 ** (x / 20.0)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-30))


def _complex_noise(rng: np.random.Generator, k: int) -> np.ndarray:
    """k complex64 values with independent zero-mean, unit-variance real and imaginary parts.

    Uniform rather than Gaussian parts: three times cheaper to draw, and after the inverse
    FFT every time sample is a sum of thousands of them, hence Gaussian all the same.
    """
    u = rng.random(2 * k, dtype=np.float32)
    u -= np.float32(0.5)
    u *= np.float32(math.sqrt(12.0))
    return u.view(np.complex64)


def _spec_rms(spec: np.ndarray, n: int) -> float:
    """RMS of irfft(spec, n) without transforming back (Parseval)."""
    power = np.abs(spec) ** 2
    total = 2.0 * float(np.sum(power)) - float(power[0])
    if n % 2 == 0:
        total -= float(power[-1])
    return math.sqrt(max(total, 1e-30)) / n


class _Grid:
    """Frequency grid of one recording length, with cached shapes used by many parts."""

    def __init__(self, n: int, sr: int) -> None:
        self.n = n
        self.sr = sr
        self.f = np.fft.rfftfreq(n, 1.0 / sr)
        self.ln_f = np.log(np.maximum(self.f, 1e-3))
        self.oct = np.log2(np.maximum(self.f, 10.0) / 1000.0)  # octaves re 1 kHz
        self.t = np.arange(n) / sr

    # Shapes via exp/log of the cached log-frequency: several times faster than powers.
    def highpass(self, fc: float, order: int = 2) -> np.ndarray:
        return 1.0 / np.sqrt(1.0 + np.exp(2 * order * (math.log(fc) - self.ln_f)))

    def lowpass(self, fc: float, order: int = 2) -> np.ndarray:
        return 1.0 / np.sqrt(1.0 + np.exp(2 * order * (self.ln_f - math.log(fc))))

    def tilt(self, db_per_oct: float) -> np.ndarray:
        return np.exp((db_per_oct * math.log(10.0) / 20.0) * self.oct)

    def bump(self, fc: float, width_oct: float) -> np.ndarray:
        return np.exp(-0.5 * ((self.oct - math.log2(fc / 1000.0)) / width_oct) ** 2)

    def noise(self, rng: np.random.Generator, mag: np.ndarray) -> np.ndarray:
        """Noise with magnitude spectrum `mag`, unit RMS (float32, one inverse FFT)."""
        x = sp_fft.irfft(_complex_noise(rng, len(self.f)) * mag.astype(np.float32), self.n)
        return x / np.float32(_rms(x))

    def lines(
        self, rng: np.random.Generator, f0: float, n_harm: int, decay_db: float, width: float
    ) -> np.ndarray:
        """Magnitude spectrum of narrow noise lines at the harmonics of f0 (a hum)."""
        df = self.f[1] - self.f[0]
        mag = np.zeros_like(self.f)
        for k in range(1, n_harm + 1):
            fk = k * f0
            if fk >= 0.45 * self.sr:
                break
            bw = max(1.5 * df, width * (1.0 + 0.01 * fk))
            lo = int(max(0, (fk - 4 * bw) / df))
            hi = int(min(len(self.f), (fk + 4 * bw) / df + 2))
            amp = _db(-decay_db * (k - 1) + rng.normal(0.0, 2.0))
            mag[lo:hi] += amp * np.exp(-0.5 * ((self.f[lo:hi] - fk) / bw) ** 2) / math.sqrt(bw)
        return mag

    def smooth_eq_db(self, rng: np.random.Generator, n_bumps: int, gain_db: float) -> np.ndarray:
        """A smooth random gain curve over log frequency (sum of Gaussian bumps), in dB."""
        curve = np.zeros_like(self.f)
        for _ in range(n_bumps):
            fc = math.exp(rng.uniform(math.log(80.0), math.log(14000.0)))
            curve += rng.normal(0.0, gain_db) * self.bump(fc, rng.uniform(0.4, 1.8))
        return curve


def _slow_envelope(
    rng: np.random.Generator, t: np.ndarray, f_lo: float, f_hi: float, k: int = 4
) -> np.ndarray:
    """Smooth random signal in [-1, 1] from k sinusoids between f_lo and f_hi Hz.

    Evaluated every 2 ms and interpolated: it varies at a few hertz at most.
    """
    freqs = rng.uniform(f_lo, f_hi, size=(k, 1))
    phases = rng.uniform(0.0, 2 * math.pi, size=(k, 1))
    amps = rng.uniform(0.5, 1.0, size=(k, 1))
    coarse = np.arange(0.0, t[-1] + 0.004, 0.002)
    s = np.sum(amps * np.sin(2 * math.pi * freqs * coarse[None, :] + phases), axis=0)
    return np.interp(t, coarse, s / float(np.sum(amps)))


def _fade(n: int, sr: int, attack: float = 0.005, release: float = 0.01) -> np.ndarray:
    env = np.ones(n)
    a = min(n, max(1, int(attack * sr)))
    r = min(n, max(1, int(release * sr)))
    env[:a] *= np.linspace(0.0, 1.0, a)
    env[n - r :] *= np.linspace(1.0, 0.0, r)
    return env


def _filter(x: np.ndarray, sr: int, shape: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Zero-phase FFT filter of a short signal with magnitude shape(freqs).

    Zero-padded to a fast FFT length (event lengths are random and often prime).
    """
    n = len(x)
    m = sp_fft.next_fast_len(n, real=True)
    f = np.fft.rfftfreq(m, 1.0 / sr)
    spec = sp_fft.rfft(np.asarray(x, dtype=np.float32), m)
    return sp_fft.irfft(spec * shape(f).astype(np.float32), m)[:n]


def _shaped_noise(
    rng: np.random.Generator, n: int, sr: int, shape: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """n samples of noise with magnitude spectrum shape(freqs), unit RMS (one inverse FFT)."""
    m = sp_fft.next_fast_len(n, real=True)
    f = np.fft.rfftfreq(m, 1.0 / sr)
    x = sp_fft.irfft(_complex_noise(rng, len(f)) * shape(f).astype(np.float32), m)[:n]
    return x / np.float32(_rms(x))


def _harmonics(phase: np.ndarray, amps: np.ndarray | list[float]) -> np.ndarray:
    """sum_k amps[k-1] * sin(k * phase), by the Chebyshev recurrence (one sin, one cos).

    The phase is wrapped to [0, 2 pi) in float64 and the rest runs in float32, whose
    vectorised sin/cos are over ten times faster.
    """
    cycles = np.asarray(phase) * (0.5 / math.pi)
    wrapped = ((cycles - np.floor(cycles)) * (2.0 * math.pi)).astype(np.float32)
    s_prev = np.zeros_like(wrapped)
    s_k = np.sin(wrapped)
    two_c = np.float32(2.0) * np.cos(wrapped)
    out = np.float32(amps[0]) * s_k
    for a in amps[1:]:
        s_prev, s_k = s_k, two_c * s_k - s_prev
        if a:
            out += np.float32(a) * s_k
    return out


def _band(fc: float, width_oct: float) -> Callable[[np.ndarray], np.ndarray]:
    def shape(f: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * (np.log2(np.maximum(f, 10.0) / fc) / width_oct) ** 2)

    return shape


def _lowpass(fc: float, order: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    def shape(f: np.ndarray) -> np.ndarray:
        return 1.0 / np.sqrt(1.0 + (f / fc) ** (2 * order))

    return shape


def _sweep_phase(freq: np.ndarray, sr: int) -> np.ndarray:
    return 2 * math.pi * np.cumsum(freq) / sr


# --------------------------------------------------------------------------------------
# Events: each returns a short signal (unit RMS); `p` holds the place's parameters.


def _ev_chirp(rng: np.random.Generator, sr: int, p: dict[str, float]) -> np.ndarray:
    parts = []
    for _ in range(int(rng.integers(2, 8))):
        n = int(rng.uniform(0.02, 0.12) * sr)
        f_start = p["bird_f"] * rng.uniform(0.8, 1.25)
        f_end = f_start * rng.uniform(0.5, 1.3)
        ph = _sweep_phase(np.linspace(f_start, f_end, n), sr)
        parts.append(_harmonics(ph, [1.0, 0.2]) * np.hanning(n))
        parts.append(np.zeros(int(rng.uniform(0.03, 0.12) * sr)))
    return np.concatenate(parts)


def _ev_voice(rng: np.random.Generator, sr: int, p: dict[str, float]) -> np.ndarray:
    n = int(rng.uniform(0.3, 1.2) * sr)
    t = np.arange(n) / sr
    vibrato = np.sin(
        (2 * math.pi * rng.uniform(1.0, 3.0) * t + rng.uniform(0, 6.3)).astype(np.float32)
    )
    f0 = rng.uniform(90.0, 260.0) * (1.0 + 0.08 * vibrato.astype(np.float64))
    saw = 2.0 * np.mod(np.cumsum(f0) / sr, 1.0) - 1.0
    formants = [
        (rng.uniform(300, 800), 1.0),
        (rng.uniform(900, 2200), 0.5),
        (rng.uniform(2300, 3200), 0.25),
    ]

    def shape(f: np.ndarray) -> np.ndarray:
        lf = np.log2(np.maximum(f, 10.0))
        env = 0.02 + sum(
            a * np.exp(-0.5 * ((lf - math.log2(fc)) / 0.15) ** 2) for fc, a in formants
        )
        return env * (1.0 / np.sqrt(1.0 + (80.0 / np.maximum(f, 1.0)) ** 4))

    x = _filter(saw, sr, shape)
    syll_phase = (2 * math.pi * rng.uniform(3.0, 6.0) * t + rng.uniform(0, 6.3)).astype(np.float32)
    syll = np.maximum(np.float32(0.0), np.sin(syll_phase))
    return x * syll**1.5 * _fade(n, sr, 0.02, 0.05)


def _burst(
    rng: np.random.Generator, sr: int, seconds: float, tau: float, fc: float, width: float
) -> np.ndarray:
    """A decaying band-limited noise burst (impacts, rattles, steps)."""
    n = max(8, int(seconds * sr))
    env = np.exp(-np.arange(n) / (tau * sr))
    return _shaped_noise(rng, n, sr, _band(fc, width)) * env


def _ev_footstep(rng: np.random.Generator, sr: int, p: dict[str, float]) -> np.ndarray:
    steps = int(rng.integers(2, 6))
    interval = rng.uniform(0.45, 0.6)
    n = int((steps * interval + 0.1) * sr)
    x = np.zeros(n)
    for i in range(steps):
        burst = _burst(rng, sr, 0.04, rng.uniform(0.005, 0.015), p["floor_f"], 1.2)
        start = int((i * interval + rng.uniform(0.0, 0.04)) * sr)
        x[start : start + len(burst)] += rng.uniform(0.5, 1.0) * burst
    return x


def _ev_beep(rng: np.random.Generator, sr: int, p: dict[str, float]) -> np.ndarray:
    parts = []
    f = p["beep_f"]
    for _ in range(int(p["beep_n"])):
        n = int(p["beep_len"] * sr)
        ph = 2 * math.pi * f * np.arange(n) / sr
        parts.append(_harmonics(ph, [1.0, 0.0, 0.3]) * _fade(n, sr, 0.003, 0.003))
        parts.append(np.zeros(int(0.1 * sr)))
    return np.concatenate(parts)


@functools.lru_cache(maxsize=256)
def _bell_note(
    sr: int, f: float, dur: float, partials: tuple[float, ...], decays: tuple[float, ...]
) -> np.ndarray:
    """A struck, decaying note with the given partial ratios (cached: places reuse theirs)."""
    n = int(dur * sr)
    t = np.arange(n) / sr
    amps = np.linspace(1.0, 0.3, len(partials))
    x = np.zeros(n)
    for ratio, amp, tau in zip(partials, amps, decays):
        m = min(n, int(6.0 * tau * sr))  # beyond 6 tau the partial is below -50 dB
        x[:m] += amp * np.sin(2 * math.pi * f * ratio * t[:m]) * np.exp(-t[:m] / tau)
    x *= _fade(n, sr, 0.002, 0.02)
    x.setflags(write=False)
    return x


def _ev_chime(rng: np.random.Generator, sr: int, p: dict[str, float]) -> np.ndarray:
    notes = [p["chime_f"] * r for r in (1.0, 0.8409, 0.6674, 1.0)[: int(p["chime_n"])]]
    gap = rng.uniform(0.25, 0.4)
    n = int((gap * len(notes) + 0.8) * sr)
    x = np.zeros(n)
    for i, f in enumerate(notes):
        note = _bell_note(sr, f, 0.8, (1.0, 2.0, 3.0), (0.4, 0.25, 0.15))
        start = int(i * gap * sr)
        x[start : start + len(note)] += note[: n - start]
    return x


def _ev_squeal(rng: np.random.Generator, sr: int, p: dict[str, float]) -> np.ndarray:
    n = int(rng.uniform(0.2, 1.0) * sr)
    t = np.arange(n) / sr
    freq = p["squeal_f"] * rng.uniform(0.9, 1.1) * (1.0 + 0.01 * np.sin(2 * math.pi * 6 * t))
    env = np.clip(np.sin(math.pi * t / t[-1]), 0.0, 1.0) ** 0.5
    return _harmonics(_sweep_phase(freq, sr), [1.0, 0.3]) * env


def _ev_horn(rng: np.random.Generator, sr: int, p: dict[str, float]) -> np.ndarray:
    n = int(rng.uniform(0.15, 0.6) * sr)
    t = np.arange(n) / sr
    f0 = rng.uniform(300.0, 480.0)
    x = np.zeros(n)
    for f in (f0, 1.26 * f0):
        k = np.arange(1, int(3000.0 / f) + 1)
        x += _harmonics(2 * math.pi * f * t, list(1.0 / k))  # a band-limited sawtooth
    return x * _fade(n, sr, 0.01, 0.03)


def _ev_passby(rng: np.random.Generator, sr: int, p: dict[str, float]) -> np.ndarray:
    dur = rng.uniform(0.8, 3.0)
    n = int(dur * sr)
    t = np.arange(n) / sr
    f0 = rng.uniform(25.0, 90.0) * (1.0 - 0.06 * np.tanh((t - dur / 2) / 0.2))
    engine = _harmonics(_sweep_phase(f0, sr), [1.0 / k for k in range(1, 9)])
    fc = rng.uniform(800.0, 3000.0)
    tyres = _shaped_noise(rng, n, sr, lambda f: _lowpass(fc, 2)(f) + 0.5 * _band(1000.0, 0.7)(f))
    x = tyres + rng.uniform(0.5, 1.5) * engine / _rms(engine)
    return x / (1.0 + ((t - dur / 2) / (dur / 6)) ** 2)


def _ev_suitcase(rng: np.random.Generator, sr: int, p: dict[str, float]) -> np.ndarray:
    n = int(rng.uniform(0.5, 2.0) * sr)
    x = np.zeros(n)
    step = max(1, int(sr / rng.uniform(8.0, 20.0)))
    idx = np.arange(int(rng.integers(0, step)), n, step)
    x[idx] = rng.uniform(0.5, 1.0, size=len(idx))
    clicks = _filter(x, sr, _band(p["floor_f"] * 1.5, 1.0))
    clicks /= _rms(clicks)
    rumble = _shaped_noise(rng, n, sr, _lowpass(400.0, 2))
    return (clicks + 0.5 * rumble) * _fade(n, sr, 0.05, 0.05)


def _ev_bell(rng: np.random.Generator, sr: int, p: dict[str, float]) -> np.ndarray:
    strikes = int(rng.integers(1, 4))
    gap = rng.uniform(0.15, 0.25)
    n = int((strikes * gap + 1.0) * sr)
    x = np.zeros(n)
    note = _bell_note(sr, p["bell_f"], 1.0, (1.0, 2.76, 5.40, 8.93), (0.8, 0.5, 0.3, 0.2))
    for i in range(strikes):
        start = int(i * gap * sr)
        x[start : start + len(note)] += note[: n - start]
    return x


def _ev_rattle(rng: np.random.Generator, sr: int, p: dict[str, float]) -> np.ndarray:
    dur = rng.uniform(0.01, 0.04)
    return _burst(rng, sr, dur, 0.3 * dur, p["rattle_f"] * rng.uniform(0.8, 1.25), 0.8)


def _ev_clack(rng: np.random.Generator, sr: int, p: dict[str, float]) -> np.ndarray:
    gap = int(rng.uniform(0.08, 0.15) * sr)
    first = _burst(rng, sr, 0.08, 0.03, p["clack_f"], 1.0)
    second = _burst(rng, sr, 0.08, 0.03, p["clack_f"], 1.0)
    x = np.zeros(gap + len(second))
    x[: len(first)] += rng.uniform(0.7, 1.0) * first
    x[gap:] += rng.uniform(0.7, 1.0) * second
    return x


def _ev_rumble(rng: np.random.Generator, sr: int, p: dict[str, float]) -> np.ndarray:
    n = int(rng.uniform(1.5, 4.0) * sr)
    t = np.arange(n) / sr
    return _shaped_noise(rng, n, sr, _band(110.0, 1.0)) * np.sin(math.pi * t / t[-1]) ** 2


_EVENT_FUNCS: dict[str, Callable[[np.random.Generator, int, dict[str, float]], np.ndarray]] = {
    "chirp": _ev_chirp,
    "voice": _ev_voice,
    "footstep": _ev_footstep,
    "beep": _ev_beep,
    "chime": _ev_chime,
    "squeal": _ev_squeal,
    "horn": _ev_horn,
    "passby": _ev_passby,
    "suitcase": _ev_suitcase,
    "bell": _ev_bell,
    "rattle": _ev_rattle,
    "clack": _ev_clack,
    "rumble": _ev_rumble,
}


def _onsets(
    rng: np.random.Generator, rate: float, seconds: float, regularity: float, lead: float
) -> np.ndarray:
    """Event start times in seconds in [-lead, seconds): Poisson or quasi-periodic."""
    if rate <= 0:
        return np.zeros(0)
    span = seconds + lead
    if regularity < 0.05:
        return rng.uniform(-lead, seconds, size=rng.poisson(rate * span))
    period = 1.0 / rate
    jitter = (1.0 - regularity) * period
    count = int(span / period) + 2
    steps = period + rng.uniform(-0.5 * jitter, 0.5 * jitter, size=count)
    times = -lead + rng.uniform(0.0, period) + np.concatenate(([0.0], np.cumsum(steps[:-1])))
    return times[times < seconds]


def _music(rng: np.random.Generator, grid: _Grid, p: dict[str, float]) -> np.ndarray:
    """Background music: three voices of notes from one major scale, harmonic timbre."""
    sr, n = grid.sr, grid.n
    x = np.zeros(n)
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    harm = [1.0 / k**1.5 for k in range(1, 5)]
    for low, high in ((36, 52), (52, 67), (64, 79)):
        pos = -int(rng.uniform(0.0, 0.4) * sr)
        while pos < n:
            m = int(rng.uniform(0.2, 0.6) * sr)
            midi = p["music_key"] + scale[rng.integers(0, 7)] + 12 * rng.integers(0, 3) + 36
            while midi > high:
                midi -= 12
            while midi < low:
                midi += 12
            f = 440.0 * 2.0 ** ((midi - 69) / 12.0)
            a, b = max(pos, 0), min(pos + m, n)
            if b > a:
                tt = (np.arange(a, b) - pos) / sr
                note = _harmonics(2 * math.pi * f * tt, harm)
                x[a:b] += note * np.exp(-tt / 0.35) * np.minimum(1.0, tt / 0.01)
            pos += m
    return x / _rms(x)


# --------------------------------------------------------------------------------------
# Places (city-location) and recordings


def _place_params(
    seed: int, scene_idx: int, city_idx: int, location: int, traits: dict[str, float], d: float
) -> dict[str, Any]:
    """Traits fixed for one place: its colouring, room, vehicle and event flavours."""
    rng = _rng(seed, _KEY_LOCATION, scene_idx, city_idx, location)
    sigma = 1.0 + 1.5 * d

    def uni(key: str) -> float:
        return float(rng.uniform(traits[f"{key}_lo"], traits[f"{key}_hi"]))

    p: dict[str, Any] = {
        "level_db": traits["level_db"] + rng.normal(0.0, 2.5),
        "tilt": traits["bed_tilt"] + rng.normal(0.0, 1.0),
        "bed_lp": traits["bed_lp"] * math.exp(rng.normal(0.0, 0.25)),
        "eq_seed": int(rng.integers(0, 2**31)),
        "eq_gain": 1.5 + 2.0 * d,
        "rt60": float(rng.uniform(traits["rt60_lo"], traits["rt60_hi"])),
        "hum_f0": uni("hum_f0"),
        "whine_f": uni("whine"),
        "hvac_f0": float(rng.uniform(40.0, 250.0)),
        "music": bool(rng.uniform() < traits["music_p"]),
        "music_key": int(rng.integers(0, 12)),
        "bird_f": uni("bird_f"),
        "floor_f": uni("floor_f"),
        "beep_f": uni("beep_f"),
        "beep_n": int(rng.integers(1, 4)),
        "beep_len": float(rng.uniform(0.08, 0.25)),
        "chime_f": float(rng.uniform(500.0, 1000.0)),
        "chime_n": int(rng.integers(2, 5)),
        "squeal_f": uni("squeal_f"),
        "bell_f": uni("bell_f"),
        "rattle_f": uni("rattle_f"),
        "clack_f": float(rng.uniform(150.0, 600.0)),
        "traffic_fc": traits["traffic_fc"] * math.exp(rng.normal(0.0, 0.3)),
    }
    for comp in ("wind", "traffic", "babble", "hum", "whine", "hvac", "music"):
        p[f"{comp}_db"] = traits[f"{comp}_db"] + rng.normal(0.0, sigma)
    for ev in EVENTS:
        p[f"{ev}_rate"] = traits[f"{ev}_rate"] * math.exp(rng.normal(0.0, 0.3 + 0.3 * d))
        p[f"{ev}_db"] = traits[f"{ev}_db"] + rng.normal(0.0, sigma)
    return p


def _render_recording(
    rng: np.random.Generator,
    grid: _Grid,
    traits: dict[str, float],
    place: dict[str, Any],
    d: float,
) -> np.ndarray:
    """Spectrum (rfft) of one recording as device "a" would capture it before its own model."""
    sr, n, t = grid.sr, grid.n, grid.t
    seconds = n / sr
    sigma = 1.0 + 1.5 * d

    def level(key: str) -> float | None:
        db = place[key]
        if db <= _ABSENT_DB:
            return None
        return _db(db + rng.normal(0.0, sigma))

    # Stationary part: background bed and the continuous sources.
    tilt = place["tilt"] + rng.normal(0.0, 0.5 + 0.5 * d)
    bed_mag = grid.tilt(tilt) * grid.highpass(30.0) * grid.lowpass(place["bed_lp"], 2)
    steady_mag = bed_mag / math.sqrt(float(np.mean(bed_mag**2)))
    g = level("hum_db")
    if g is not None:
        f0 = place["hum_f0"] * rng.uniform(0.93, 1.07)
        lines = grid.lines(rng, f0, 14, traits["hum_decay"], 0.8)
        steady_mag = steady_mag + g * lines / math.sqrt(float(np.mean(lines**2)) + 1e-30)
    g = level("hvac_db")
    if g is not None:
        lines = grid.lines(rng, place["hvac_f0"], 4, 6.0, 0.5)
        steady_mag = steady_mag + g * lines / math.sqrt(float(np.mean(lines**2)) + 1e-30)
    x = grid.noise(rng, steady_mag)

    g = level("wind_db")
    if g is not None:
        mag = grid.lowpass(rng.uniform(150.0, 400.0), 2) * grid.highpass(15.0, 1)
        gust = np.exp(traits["gust"] * 1.5 * _slow_envelope(rng, t, 0.1, 1.5))
        x += g * grid.noise(rng, mag) * gust / _rms(gust)
    g = level("traffic_db")
    if g is not None:
        mag = grid.bump(place["traffic_fc"], 1.5) + 0.1 * grid.tilt(-3.0)
        env = 1.0 + 0.3 * _slow_envelope(rng, t, 0.05, 0.5)
        x += g * grid.noise(rng, mag) * env
    g = level("babble_db")
    if g is not None:
        mag = (grid.bump(450.0, 1.2) + 0.3 * grid.bump(2500.0, 0.8)) * grid.highpass(100.0)
        env = np.maximum(0.0, 1.0 + traits["babble_mod"] * 1.5 * _slow_envelope(rng, t, 2.0, 7.0))
        x += g * grid.noise(rng, mag) * env / _rms(env)
    g = level("whine_db")
    if g is not None:
        f_start = place["whine_f"] * rng.uniform(0.9, 1.1)
        freq = f_start * np.exp(rng.uniform(-0.3, 0.3) * t)
        ph = _sweep_phase(freq, sr) + rng.uniform(0, 6.3)
        w = _harmonics(ph, [1.0, 0.5, 0.25])
        x += g * w / _rms(w)
    if place["music"]:
        g = level("music_db")
        if g is not None:
            x += g * _music(rng, grid, place)

    # Transient events on top of the stationary part.
    for ev in EVENTS:
        rate = place[f"{ev}_rate"] * math.exp(rng.normal(0.0, 0.4))
        if rate <= 1e-4:
            continue
        regular = traits["rattle_reg"] if ev in ("rattle", "clack") else 0.0
        for onset in _onsets(rng, rate, seconds, regular, lead=1.0):
            sig = _EVENT_FUNCS[ev](rng, sr, place)
            sig = sig * (_db(place[f"{ev}_db"] + rng.normal(0.0, sigma)) / _rms(sig))
            start = int(round(onset * sr))
            a, b = max(start, 0), min(start + len(sig), n)
            if b > a:
                x[a:b] += sig[a - start : b - start]

    spec = sp_fft.rfft(x)
    # Room: exponentially decaying noise tail, applied circularly so the clip starts
    # "already reverberant" as a cut from a longer recording would.
    if traits["wet"] > 0.01:
        rt60 = place["rt60"] * rng.uniform(0.9, 1.1)
        ir = (rng.random(n, dtype=np.float32) - np.float32(0.5)) * np.exp(-6.9 * t / rt60).astype(
            np.float32
        )
        ir_spec = sp_fft.rfft(ir) * grid.lowpass(rng.uniform(3000.0, 8000.0), 1).astype(np.float32)
        ir_spec /= math.sqrt(float(np.mean(np.abs(ir_spec) ** 2)))
        wet = min(0.9, traits["wet"] * rng.uniform(0.8, 1.2))
        spec = spec * ((1.0 - wet) + wet * ir_spec).astype(np.complex64)
    # Place colouring and level.
    eq = grid.smooth_eq_db(_rng(place["eq_seed"]), 4, place["eq_gain"])
    spec = spec * (10.0 ** (eq / 20.0)).astype(np.float32)
    level_db = place["level_db"] + rng.normal(0.0, 2.0)
    return spec * np.float32(_db(level_db) / _spec_rms(spec, n))


# --------------------------------------------------------------------------------------
# Devices


#: Device a's band limits and noise floor: where `DeviceModel.scaled` moves devices to.
_FLAT_HIGHPASS_HZ, _FLAT_LOWPASS_HZ, _FLAT_NOISE_DBFS = 20.0, 20000.0, -85.0


@dataclass(frozen=True)
class DeviceModel:
    """A recording device: smooth EQ, band limits, gain, noise floor and soft saturation.

    Fixed per device (drawn from the data-set seed and the device's index), so the ratio
    of a device's spectrum to device a's is the same for every segment: the property
    spectrum correction estimates from time-aligned pairs.
    """

    name: str
    peaks: tuple[tuple[float, float, float], ...]  # (centre Hz, gain dB, width octaves)
    tilt_db_oct: float
    highpass_hz: float
    lowpass_hz: float
    gain_db: float
    noise_dbfs: float
    noise_tilt: float
    drive: float  # 0 = linear; k > 0 applies tanh(k x) / k

    @classmethod
    def draw(cls, seed: int, device: str, severity: float = 1.0) -> DeviceModel:
        """The model of `device` under data-set `seed`; "a" is the near-flat reference.

        A pure function of (seed, the device's index in DEVICES, severity): every
        device other than a is drawn from one and the same distribution, so the
        devices unseen in training (s4-s6) are no harder by construction than the
        seen ones (b, c, s1-s3). `severity` scales the drawn departure from flat
        (`scaled`).
        """
        rng = _rng(seed, _KEY_DEVICE, DEVICES.index(device))
        return cls._draw(rng, device).scaled(severity)

    @classmethod
    def _draw(cls, rng: np.random.Generator, device: str) -> DeviceModel:
        if device == "a":
            peaks = tuple(
                (float(math.exp(rng.uniform(math.log(100), math.log(12000)))),
                 float(rng.normal(0.0, 0.7)), float(rng.uniform(0.5, 1.5)))
                for _ in range(2)
            )  # fmt: skip
            return cls(
                "a", peaks, 0.0, _FLAT_HIGHPASS_HZ, _FLAT_LOWPASS_HZ, 0.0, _FLAT_NOISE_DBFS,
                -3.0, 0.0,
            )  # fmt: skip
        peaks = tuple(
            (float(math.exp(rng.uniform(math.log(100), math.log(10000)))),
             float(rng.choice([-1.0, 1.0]) * rng.uniform(4.0, 12.0)),
             float(rng.uniform(0.2, 1.0)))
            for _ in range(int(rng.integers(4, 8)))
        )  # fmt: skip
        return cls(
            name=device,
            peaks=peaks,
            tilt_db_oct=float(rng.uniform(-2.0, 2.0)),
            highpass_hz=float(math.exp(rng.uniform(math.log(100), math.log(700)))),
            lowpass_hz=float(math.exp(rng.uniform(math.log(4000), math.log(14000)))),
            gain_db=float(rng.uniform(-6.0, 2.0)),
            noise_dbfs=float(rng.uniform(-65.0, -48.0)),
            noise_tilt=float(rng.uniform(-4.0, 0.0)),
            drive=float(rng.uniform(0.0, 2.0)),
        )

    def scaled(self, severity: float) -> DeviceModel:
        """This device with its departure from flat scaled by `severity` (in [0, 1]).

        EQ peak gains, tilt, gain and saturation drive are multiplied by `severity`;
        the band limits move toward the full band (20 Hz - 20 kHz, device a's) on a
        log-frequency scale; the noise floor moves toward a's -85 dBFS in dB. 1 returns
        the model unchanged (the same object: byte-identical audio), 0 a flat device.
        """
        if not 0.0 <= severity <= 1.0:
            raise ValueError(f"device severity must be in [0, 1], got {severity!r}")
        if severity == 1.0:
            return self

        def toward(flat: float, value: float) -> float:
            return flat + severity * (value - flat)

        def toward_log(flat: float, value: float) -> float:
            return math.exp(toward(math.log(flat), math.log(value)))

        return dataclasses.replace(
            self,
            peaks=tuple((fc, severity * gain, width) for fc, gain, width in self.peaks),
            tilt_db_oct=severity * self.tilt_db_oct,
            highpass_hz=toward_log(_FLAT_HIGHPASS_HZ, self.highpass_hz),
            lowpass_hz=toward_log(_FLAT_LOWPASS_HZ, self.lowpass_hz),
            gain_db=severity * self.gain_db,
            noise_dbfs=toward(_FLAT_NOISE_DBFS, self.noise_dbfs),
            drive=severity * self.drive,
        )

    def response(self, grid: _Grid) -> np.ndarray:
        """Linear magnitude response on the grid (EQ x band limits x gain)."""
        db = self.tilt_db_oct * grid.oct + self.gain_db
        for fc, gain, width in self.peaks:
            db = db + gain * grid.bump(fc, width)
        nyq_guard = min(self.lowpass_hz, 0.49 * grid.sr)
        return 10.0 ** (db / 20.0) * grid.highpass(self.highpass_hz, 2) * grid.lowpass(nyq_guard, 4)

    def noise_shape(self, grid: _Grid) -> np.ndarray:
        """Noise-floor magnitude spectrum scaled so its RMS in time is noise_dbfs."""
        shape = grid.tilt(self.noise_tilt) * grid.lowpass(0.49 * grid.sr, 4)
        # irfft of complex Gaussian spec * m has E[x^2] ~= 4 sum(m^2) / n^2.
        scale = _db(self.noise_dbfs) * grid.n / (2.0 * math.sqrt(float(np.sum(shape**2))))
        return shape * scale

    def apply(
        self, rng: np.random.Generator, spec: np.ndarray, grid: _Grid, response: np.ndarray,
        noise: np.ndarray,
    ) -> np.ndarray:  # fmt: skip
        """Time signal of this device for a recording's spectrum."""
        floor = _complex_noise(rng, len(spec)) * noise
        y = sp_fft.irfft(spec * response + floor, grid.n)
        if self.drive > 0:
            y = np.tanh(self.drive * y) / self.drive
        return y


# --------------------------------------------------------------------------------------
# Plan: which recordings exist, where, and on which devices


@dataclass(frozen=True)
class Recording:
    """One segment (recording) of a scene at a place, and the devices it exists on."""

    split: str  # "train" | "evaluate"
    scene: str
    city: str
    location: int
    segment: int
    devices: tuple[str, ...]


def plan(cfg: SyntheticConfig) -> list[Recording]:
    """All recordings: disjoint places (and so segments) for train and evaluate.

    Train: every segment on device a, a fraction `train_parallel_fraction` also on
    b, c, s1-s3 (so a dominates, as in TAU: 10,215 a vs 750 each). Evaluate: every
    segment on all nine devices (balanced, with s4-s6 unseen in training).

    Each scene of a split has `cfg.places_per_scene(split)` places, spread over the
    cities in turn (a city holds as many locations as it is dealt), and the split's
    segments are dealt to its places in turn, so places differ by one segment at most.
    """
    rng = _rng(cfg.seed, _KEY_PLAN)
    cities = list(cfg.cities)
    next_location = dict.fromkeys(cities, 0)
    next_segment = dict.fromkeys(cities, 0)
    out: list[Recording] = []
    for scene in SCENES:
        for split, n_seg in (
            ("train", cfg.train_segments_per_scene),
            ("evaluate", cfg.eval_segments_per_scene),
        ):
            n_loc = cfg.places_per_scene(split)
            if not 1 <= n_loc <= n_seg:  # validate() names the key; plan() may get raw configs
                raise InputError(
                    f"synthetic config: {n_loc} {split} places per scene for {n_seg} segments"
                )
            first = int(rng.integers(0, len(cities)))
            places = []
            for j in range(n_loc):
                city = cities[(first + j) % len(cities)]
                places.append((city, next_location[city]))
                next_location[city] += 1
            if split == "train":
                n_par = int(round(cfg.train_parallel_fraction * n_seg))
                parallel = set(rng.choice(n_seg, size=n_par, replace=False).tolist())
            for i in range(n_seg):
                city, location = places[i % n_loc]
                if split == "train":
                    devices = TRAIN_DEVICES if i in parallel else ("a",)
                else:
                    devices = DEVICES
                out.append(Recording(split, scene, city, location, next_segment[city], devices))
                next_segment[city] += 1
    return out


def clip_name(rec: Recording, device: str, subsegment: int | None) -> str:
    """TAU file name: 2020 ``scene-city-loc-seg-dev.wav``, 2022 adds the subsegment."""
    if subsegment is None:
        return f"{rec.scene}-{rec.city}-{rec.location}-{rec.segment}-{device}.wav"
    return f"{rec.scene}-{rec.city}-{rec.location}-{rec.segment}-{subsegment}-{device}.wav"


# --------------------------------------------------------------------------------------
# Writing


def _write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with atomic_path(path) as tmp:
        lines = ["\t".join(header)] + ["\t".join(r) for r in rows]
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _summary(cfg: SyntheticConfig, clips: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Counts per split, device and scene (clips as (split, device, scene))."""
    splits: dict[str, Any] = {}
    for split in ("train", "evaluate"):
        rows = [c for c in clips if c[0] == split]
        dev = Counter(r[1] for r in rows)
        sc = Counter(r[2] for r in rows)
        splits[split] = {
            "clips": len(rows),
            "devices": {d: dev.get(d, 0) for d in DEVICES},
            "scenes": {s: sc.get(s, 0) for s in SCENES},
        }
    splits["test"] = json.loads(json.dumps(splits["evaluate"]))
    return {
        "format": FORMAT,
        "config": dataclasses.asdict(cfg),
        "clips": len(clips),
        "scenes": list(SCENES),
        "super_classes": list(SUPER_CLASSES),
        "splits": splits,
    }


def _is_complete(root: Path) -> bool:
    return (root / SUMMARY_NAME).is_file()


def check_generator_owns(root: str | os.PathLike[str]) -> None:
    """Refuse, before a workflow schedules anything, a data set path the generator did not make.

    A workflow deletes a rule's output directory before rerunning the rule (Snakemake does
    for `directory()` outputs, e.g. under --forcerun), so the guard inside `generate` comes
    too late: a real data set configured by mistake as the synthetic one would be gone.
    A missing or empty directory, or one holding the generator's synthetic.json, is fine.
    """
    root = Path(root)
    if not root.exists():
        return
    if not root.is_dir():
        raise InputError(
            f"dataset.path {root}: exists and is not a directory; the synthetic generator "
            "writes a data set directory there. Choose another dataset.path."
        )
    if not any(root.iterdir()):
        return
    summary = root / SUMMARY_NAME
    try:
        made = read_json(summary) if summary.is_file() else None
    except (OSError, ValueError):
        made = None
    if not isinstance(made, dict) or "config" not in made:
        raise InputError(
            f"dataset.path {root}: a non-empty directory without the generator's "
            f"{SUMMARY_NAME}, so not a synthetic data set; with dataset.kind 'synthetic' "
            "the workflow would delete and regenerate it. Point dataset.path at a new "
            "directory, or set dataset.kind to the real data set's kind (tau2020, tau2022)."
        )


def generate(
    root: Path, cfg: SyntheticConfig, overwrite: bool = False, workers: int | None = None
) -> dict[str, Any]:
    """Write the synthetic data set to `root` in the TAU layout; return the summary.

    The whole directory is built next to `root` and renamed into place when complete,
    so an interrupted run never leaves a half data set. An existing complete data set
    is replaced only with `overwrite=True`; a non-empty directory that is not one is
    never touched.
    """
    cfg.validate()
    root = Path(os.path.abspath(root))
    if root.exists():
        if not root.is_dir():
            raise InputError(f"{root}: exists and is not a directory: expected a data set dir")
        if any(root.iterdir()):
            if not _is_complete(root):
                raise InputError(
                    f"{root}: non-empty directory without {SUMMARY_NAME}: refusing to replace "
                    "something that is not a synthetic data set; choose another --out"
                )
            if not overwrite:
                raise InputError(
                    f"{root}: a synthetic data set already exists; pass overwrite=True "
                    "(--overwrite) to replace it"
                )
    root.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(root)  # half-built data sets of killed runs
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=TMP_MARK, dir=root.parent))
    try:
        summary = _generate_into(tmp, cfg, workers)
        if root.exists():
            trash = Path(
                tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".old" + TMP_MARK, dir=root.parent)
            )
            os.replace(root, trash / "old")
            os.replace(tmp, root)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _generate_into(out: Path, cfg: SyntheticConfig, workers: int | None = None) -> dict[str, Any]:
    sr = cfg.sample_rate
    d = float(cfg.difficulty)
    clip_n = int(round(cfg.clip_seconds * sr))
    tau22 = cfg.layout == "tau2022"
    n_sub = cfg.subsegments_per_segment if tau22 else 1
    grid = _Grid(clip_n * n_sub, sr)
    traits = scene_traits(d)
    models = {dev: DeviceModel.draw(cfg.seed, dev, cfg.device_severity) for dev in DEVICES}
    responses = {dev: m.response(grid).astype(np.float32) for dev, m in models.items()}
    noises = {dev: m.noise_shape(grid).astype(np.float32) for dev, m in models.items()}
    recordings = plan(cfg)
    city_idx = {c: i for i, c in enumerate(cfg.cities)}
    places: dict[tuple[str, str, int], dict[str, Any]] = {}
    for rec in recordings:
        key = (rec.scene, rec.city, rec.location)
        if key not in places:
            s_idx, c_idx = SCENES.index(rec.scene), city_idx[rec.city]
            places[key] = _place_params(cfg.seed, s_idx, c_idx, rec.location, traits[rec.scene], d)
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True)

    def render(rec: Recording) -> list[tuple[str, str]]:
        """Render one recording on all its devices and write the clips; (name, device)."""
        s_idx, c_idx = SCENES.index(rec.scene), city_idx[rec.city]
        rng = _rng(cfg.seed, _KEY_RECORDING, s_idx, c_idx, rec.location, rec.segment)
        place = places[(rec.scene, rec.city, rec.location)]
        spec = _render_recording(rng, grid, traits[rec.scene], place, d)
        written = []
        nrng = _rng(cfg.seed, _KEY_DEVICE_NOISE, s_idx, c_idx, rec.location, rec.segment)
        for dev in rec.devices:
            y = models[dev].apply(nrng, spec, grid, responses[dev], noises[dev])
            peak = float(np.max(np.abs(y)))
            if peak > 0.99:  # rare: a loud event on a loud device; keep it unclipped
                y = y * (0.99 / peak)
            for k in range(n_sub):
                name = clip_name(rec, dev, k if tau22 else None)
                write_wav(audio_dir / name, y[k * clip_n : (k + 1) * clip_n], sr)
                written.append((name, dev))
        return written

    # Every recording draws from its own seeded streams, so threads (numpy's FFTs,
    # random fills and libsndfile release the GIL) change nothing in the output.
    n_workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    split_rows: dict[str, list[list[str]]] = {"train": [], "evaluate": []}
    meta_rows: list[list[str]] = []
    clips: list[tuple[str, str, str]] = []
    with ThreadPoolExecutor(max_workers=max(1, n_workers)) as pool:
        results = pool.map(render, recordings) if n_workers > 1 else map(render, recordings)
        for rec, written in zip(
            recordings, progress(results, desc="synthetic recordings", total=len(recordings))
        ):
            for name, dev in written:
                filename = f"audio/{name}"
                split_rows[rec.split].append([filename, rec.scene])
                meta_rows.append([filename, rec.scene, f"{rec.city}-{rec.location}", dev])
                clips.append((rec.split, dev, rec.scene))

    setup = out / "evaluation_setup"
    _write_tsv(setup / "fold1_train.csv", ["filename", "scene_label"], sorted(split_rows["train"]))
    evaluate = sorted(split_rows["evaluate"])
    _write_tsv(setup / "fold1_evaluate.csv", ["filename", "scene_label"], evaluate)
    _write_tsv(setup / "fold1_test.csv", ["filename"], [[r[0]] for r in evaluate])
    _write_tsv(
        out / "meta.csv",
        ["filename", "scene_label", "identifier", "source_label"],
        sorted(meta_rows),
    )
    summary = _summary(cfg, clips)
    write_json(out / SUMMARY_NAME, summary)
    return summary
