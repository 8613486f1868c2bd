"""Feature extraction: LMFB (log-mel + deltas) and the DCASE 2021 baseline features.

Submodules are imported explicitly (`features.lmfb`, `features.baseline`,
`features.store`, `features.extract`) so that reading a feature file does not pull in
torch and librosa.
"""
