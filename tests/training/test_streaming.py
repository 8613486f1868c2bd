"""Bounded-memory training and prediction, data-loader workers, mixed precision.

The trainer reads batches from the HDF5 files when the features exceed
`resident_mb`; the batches (clips, crops, SpecAugment, mixup) must be exactly those of
the in-memory run, and the memory used must be that of a batch, not of the file.
"""

from __future__ import annotations

import pickle
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from acoustic_lottery.evaluation.predict import predict, read_predictions
from acoustic_lottery.features.store import FeatureFile, open_features
from acoustic_lottery.models.checkpoint import load_checkpoint
from acoustic_lottery.training.spec import TrainSpec
from acoustic_lottery.training.trainer import load_train_data, train

from .test_trainer import write_features

# The baseline on 1 x 40 x 64 clips: 240 clips are 2.4 MiB of features.
SPEC = {
    "arch": "baseline",
    "feature_set": "baseline",
    "epochs": 2,
    "cycle_epochs": 1,
    "batch_size": 8,
    "specaug_freq": 6,
    "specaug_time": 8,
    "crop_frames": 48,
    "threads": 2,
}
N, SHAPE = 240, (1, 40, 64)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACOUSTIC_LOTTERY_PROGRESS", "0")


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A feature file chunked one clip per chunk, like the extractor writes them."""
    path = tmp_path_factory.mktemp("stream") / "train.h5"
    write_features(path, N, SHAPE)
    with h5py.File(path, "a") as f:  # rewrite the features chunked by clip
        x = f["features"][()]
        del f["features"]
        f.create_dataset("features", data=x, chunks=(1, *SHAPE))
    return path


def _state(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out / "final.pt")["state_dict"]


def _same_state(a: Path, b: Path) -> None:
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_streamed_training_equals_in_memory_training(tmp_path: Path, big: Path) -> None:
    train(TrainSpec.from_dict(SPEC), [big], tmp_path / "mem")
    train(TrainSpec.from_dict({**SPEC, "resident_mb": 0}), [big], tmp_path / "stream")
    _same_state(tmp_path / "mem", tmp_path / "stream")
    assert (tmp_path / "mem" / "history.csv").read_bytes() == (
        tmp_path / "stream" / "history.csv"
    ).read_bytes()


def test_resident_mb_decides_what_is_read_into_memory(big: Path) -> None:
    mem = load_train_data(TrainSpec.from_dict(SPEC), [big])
    assert not mem.streaming and mem.resident[0].shape == (N, *SHAPE)
    stream = load_train_data(TrainSpec.from_dict({**SPEC, "resident_mb": 1}), [big])
    assert stream.streaming and stream.resident == [None]
    idx = np.array([5, 3, 200, 3])
    for a, b in zip(mem.clips(idx), stream.clips(idx)):
        np.testing.assert_array_equal(a, b)


def _peak_numpy_bytes(fn) -> int:  # noqa: ANN001 - a thunk
    """Peak of Python/numpy allocations while fn runs (torch's allocator is not traced,
    numpy's is: every array read from the HDF5 file counts)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_training_and_prediction_stay_below_a_cap_smaller_than_the_file(
    tmp_path: Path, big: Path
) -> None:
    file_bytes = N * int(np.prod(SHAPE)) * 4  # 2.4 MiB of float32 features
    spec = TrainSpec.from_dict({**SPEC, "epochs": 1, "resident_mb": 1})  # cap 1 MiB
    peak_train = _peak_numpy_bytes(lambda: train(spec, [big], tmp_path / "s"))
    assert peak_train < file_bytes / 3, (peak_train, file_bytes)
    peak_pred = _peak_numpy_bytes(
        lambda: predict(tmp_path / "s" / "final.pt", big, tmp_path / "p.h5", batch_size=16)
    )
    assert peak_pred < file_bytes / 3, (peak_pred, file_bytes)
    assert read_predictions(tmp_path / "p.h5").n == N
    # the measurement can fail: reading the file whole shows up in it
    whole = _peak_numpy_bytes(lambda: open_features(big).read_slice(0, N))
    assert whole >= file_bytes


def test_loader_workers_give_the_same_model(tmp_path: Path, big: Path) -> None:
    spec = {**SPEC, "resident_mb": 0}
    train(TrainSpec.from_dict(spec), [big], tmp_path / "w0")
    train(TrainSpec.from_dict({**spec, "workers": 2}), [big], tmp_path / "w2")
    _same_state(tmp_path / "w0", tmp_path / "w2")


def test_runtime_keys_do_not_block_a_resume(tmp_path: Path, big: Path) -> None:
    """A run killed for memory may resume with fewer workers or a smaller cap."""
    spec = TrainSpec.from_dict({**SPEC, "epochs": 3})
    train(spec, [big], tmp_path / "a")
    train(spec, [big], tmp_path / "b", keep_checkpoint=True)
    ck = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert "workers" not in ck["fingerprint"]["spec"]
    assert "resident_mb" not in ck["fingerprint"]["spec"]
    out = train(spec.replace(resident_mb=0, workers=1), [big], tmp_path / "b")
    assert out["resumed_from_epoch"] == 3
    _same_state(tmp_path / "a", tmp_path / "b")


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 clips: fp16 on a CPU is emulated and slow, 8 steps are enough to run the path."""
    return write_features(tmp_path_factory.mktemp("amp") / "train.h5", 64, SHAPE)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_trains_on_cpu(tmp_path: Path, small: Path, amp: str) -> None:
    base = {**SPEC, "epochs": 1}
    off = train(TrainSpec.from_dict(base), [small], tmp_path / "off")
    on = train(
        TrainSpec.from_dict({**base, "amp": amp}), [small], tmp_path / amp, keep_checkpoint=True
    )
    assert np.isfinite(on["final_loss"])
    state = _state(tmp_path / amp)
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    # reduced precision changes the numbers (the autocast path really ran) ...
    ref = _state(tmp_path / "off")
    assert any(not torch.equal(state[k], ref[k]) for k in ref if ref[k].is_floating_point())
    # ... but not the run: same loss to within reduced-precision noise
    assert abs(on["final_loss"] - off["final_loss"]) < 0.25 * off["final_loss"]
    scaler = load_checkpoint(tmp_path / amp / "checkpoint.pt").get("scaler")
    if amp == "fp16":  # the loss scale is saved, so a resumed fp16 run continues it
        assert scaler["scale"] > 0
    else:
        assert scaler is None


def test_amp_and_loader_keys_are_validated() -> None:
    from acoustic_lottery.errors import InputError

    with pytest.raises(InputError, match="key 'amp'"):
        TrainSpec.from_dict({**SPEC, "amp": "fp8"})
    with pytest.raises(InputError, match="key 'workers'"):
        TrainSpec.from_dict({**SPEC, "workers": -1})
    with pytest.raises(InputError, match="key 'resident_mb'"):
        TrainSpec.from_dict({**SPEC, "resident_mb": 1.5})


def test_feature_file_pickles_without_its_handle(big: Path) -> None:
    ff = open_features(big)
    first = ff.read_rows([0])
    clone = pickle.loads(pickle.dumps(ff))
    assert isinstance(clone, FeatureFile) and clone._file is None
    np.testing.assert_array_equal(clone.read_rows([0]), first)
