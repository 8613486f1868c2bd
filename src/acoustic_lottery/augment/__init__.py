"""Offline augmented copies of the training split (report §2.1).

`waveform` holds the waveform augmentations (pitch shift, speed change, random noise,
mix audios, reverberation), `speccorr` the spectrum correction of device-a clips, `copies` the
builders that write each augmented copy as its own feature file.
"""

from __future__ import annotations

AUGMENT_KINDS: tuple[str, ...] = ("pitch", "speed", "noise", "mix", "speccorr", "reverb")

__all__ = ["AUGMENT_KINDS"]
