"""HDF5 feature files: round trip, streaming, atomicity, clear errors on bad files."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from acoustic_lottery.errors import InputError
from acoustic_lottery.features.store import (
    FeatureWriter,
    read_feature_attrs,
    read_features,
    write_features,
)
from acoustic_lottery.labels import SCENES, SUPER_CLASSES


def _meta(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "filename": [f"audio/bus-lyon-{i}-0-a.wav" for i in range(n - 1)]
            + ["audio/café-ü.wav"],
            "label10": np.arange(n) % 10,
            "label3": [-1] + [i % 3 for i in range(1, n)],
            "device": ["a", "b", "s1", "s6", "c"][:n] + ["a"] * max(0, n - 5),
            "city": ["lyon"] * n,
            "identifier": [f"lyon-{i}" for i in range(n)],
            "segment": [str(i) for i in range(n)],
            "scene": ["bus"] * n,
        }
    )


def _attrs(**extra):
    base = {"feature_set": "lmfb", "params": {"n_mels": 4, "eps": 1e-8}, "split": "train"}
    base["copy"] = "orig"
    base.update(extra)
    return base


def test_round_trip_array(tmp_path):
    x = np.random.default_rng(0).standard_normal((7, 3, 4, 5)).astype(np.float32)
    meta = _meta(7)
    path = tmp_path / "f.h5"
    assert write_features(path, x, meta, _attrs(seed=3, gain=[1.0, 2.5], note="12")) == 7
    fs = read_features(path)
    assert len(fs) == 7
    np.testing.assert_array_equal(fs.x, x)
    assert fs.x.dtype == np.float32
    np.testing.assert_array_equal(fs.label10, meta["label10"].to_numpy())
    np.testing.assert_array_equal(fs.label3, meta["label3"].to_numpy())
    assert fs.label10.dtype == np.int64
    assert list(fs.filename) == list(meta["filename"])
    assert fs.filename[-1] == "audio/café-ü.wav" and isinstance(fs.filename[-1], str)
    assert list(fs.device) == list(meta["device"])
    assert list(fs.identifier) == list(meta["identifier"])
    assert fs.attrs["params"] == {"n_mels": 4, "eps": 1e-8}
    assert fs.attrs["scenes"] == list(SCENES)
    assert fs.attrs["super_classes"] == list(SUPER_CLASSES)
    assert fs.attrs["split"] == "train" and fs.attrs["copy"] == "orig"
    assert fs.attrs["code_version"] and fs.attrs["torch_version"] and fs.attrs["librosa_version"]
    assert fs.attrs["seed"] == 3  # extra non-string attributes round-trip through JSON
    assert fs.attrs["gain"] == [1.0, 2.5] and fs.attrs["note"] == "12"
    assert "json_attrs" not in fs.attrs
    assert read_feature_attrs(path) == fs.attrs
    with h5py.File(path) as f:  # strings are variable-length UTF-8, one clip per chunk
        assert h5py.check_string_dtype(f["filename"].dtype).encoding == "utf-8"
        assert f["features"].chunks == (1, 3, 4, 5)


def test_streaming_writer_in_batches(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 1, 2, 3)).astype(np.float32)
    meta = _meta(9)
    path = tmp_path / "s.h5"
    with FeatureWriter(path, _attrs(feature_set="baseline")) as w:
        for s in range(0, 9, 4):
            w.append(x[s : s + 4], meta.iloc[s : s + 4])
        assert not path.exists()  # only a temporary file so far
    assert path.exists()
    fs = read_features(path)
    np.testing.assert_array_equal(fs.x, x)
    assert list(fs.city) == ["lyon"] * 9
    # write_features accepts an iterable of batches too.
    write_features(tmp_path / "it.h5", (x[s : s + 2] for s in range(0, 9, 2)), meta, _attrs())
    np.testing.assert_array_equal(read_features(tmp_path / "it.h5").x, x)


def test_empty_file_with_declared_shape(tmp_path):
    path = tmp_path / "e.h5"
    with FeatureWriter(path, _attrs(), feature_shape=(3, 4, 5)):
        pass
    fs = read_features(path)
    assert fs.x.shape == (0, 3, 4, 5) and fs.filename.shape == (0,)


def test_exception_inside_writer_leaves_nothing(tmp_path):
    path = tmp_path / "a.h5"
    x = np.zeros((2, 1, 2, 2), dtype=np.float32)
    with pytest.raises(RuntimeError, match="boom"), FeatureWriter(path, _attrs()) as w:
        w.append(x, _meta(2))
        raise RuntimeError("boom")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []
    # An existing good file survives a failed rewrite untouched.
    write_features(path, x, _meta(2), _attrs())
    with pytest.raises(InputError), FeatureWriter(path, _attrs()) as w:
        w.append(np.ones((1, 1, 2, 2), dtype=np.float32), _meta(1))
        w.append(np.ones((1, 1, 3, 2), dtype=np.float32), _meta(1))  # wrong shape
    assert read_features(path).x.sum() == 0
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"]


def test_row_count_and_metadata_checks(tmp_path):
    x = np.zeros((3, 1, 2, 2), dtype=np.float32)
    with pytest.raises(InputError, match="metadata has 4 rows"):
        write_features(tmp_path / "m.h5", x, _meta(4), _attrs())
    with pytest.raises(InputError, match="'device' is missing"):
        write_features(tmp_path / "m.h5", x, _meta(3).drop(columns="device"), _attrs())
    with pytest.raises(InputError, match="'copy' is required"):
        write_features(
            tmp_path / "m.h5", x, _meta(3), {"feature_set": "lmfb", "params": {}, "split": "x"}
        )
    with pytest.raises(InputError, match="feature_set must be one of"):
        write_features(tmp_path / "m.h5", x, _meta(3), _attrs(feature_set="mfcc"))
    assert not (tmp_path / "m.h5").exists()


def test_missing_dataset_is_named(tmp_path):
    path = tmp_path / "bad.h5"
    write_features(path, np.zeros((2, 1, 2, 2), dtype=np.float32), _meta(2), _attrs())
    with h5py.File(path, "a") as f:
        del f["label3"]
    with pytest.raises(InputError, match=r"bad\.h5.*'label3'"):
        read_features(path)


def test_misaligned_or_missing_attrs_or_not_hdf5(tmp_path):
    path = tmp_path / "m.h5"
    write_features(path, np.zeros((2, 1, 2, 2), dtype=np.float32), _meta(2), _attrs())
    with h5py.File(path, "a") as f:
        del f["city"]
        f.create_dataset("city", data=np.array(["x"], dtype=object), dtype=h5py.string_dtype())
        del f.attrs["torch_version"]
    with pytest.raises(InputError, match="'city' has shape"):
        read_features(path)
    with pytest.raises(InputError, match="torch_version"):
        read_feature_attrs(path)
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(InputError, match=r"junk\.h5.*not a readable HDF5"):
        read_features(junk)
    with pytest.raises(InputError, match="not found"):
        read_features(tmp_path / "nope.h5")
