"""Data layer: the TAU Urban Acoustic Scenes layout, audio I/O and a synthetic data set.

`tau` reads the evaluation-setup CSVs into one validated table, `audio` loads clips the
way every feature extractor expects them (mono float32 at one sample rate), and
`synthetic` writes a small data set in the exact TAU layout so the whole pipeline runs
without the 30 GB download.
"""
