"""HDF5 feature files: one per (split, copy), written in a stream, read by rows or whole.

Layout (docs/CONTRACTS.md, "Feature files"):

* `features` float32 (N, C, F, T), chunked one clip per chunk so training can read
  random clips without touching the rest of the file;
* `label10`, `label3` int64 (N,) (-1 when unlabelled);
* `filename`, `device`, `city`, `identifier` variable-length UTF-8 strings (N,);
* attributes `feature_set`, `params` (JSON), `split`, `copy`, `scenes` (JSON),
  `super_classes` (JSON), `code_version`, `librosa_version`, `torch_version`.

Files are built under a temporary name and renamed only when complete, so a crashed
extraction never leaves a file that looks finished. `FeatureFile` keeps only the
metadata in memory and reads feature rows on demand: the features of the real data set
(TAU 2020 Mobile: 13,965 training clips of 650 KB, 9.1 GB, six times that with the
augmented copies) do not fit in memory, so training and prediction read batches.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
import pandas as pd

from acoustic_lottery import __version__
from acoustic_lottery.errors import InputError
from acoustic_lottery.faults import failpoint
from acoustic_lottery.io import atomic_path
from acoustic_lottery.labels import SCENES, SUPER_CLASSES

__all__ = [
    "FEATURES",
    "INT_COLUMNS",
    "JSON_ATTRS",
    "REQUIRED_ATTRS",
    "STRING_COLUMNS",
    "FeatureFile",
    "FeatureSet",
    "FeatureWriter",
    "open_features",
    "read_feature_attrs",
    "read_features",
    "write_features",
]

FEATURES = "features"
INT_COLUMNS: tuple[str, ...] = ("label10", "label3")
STRING_COLUMNS: tuple[str, ...] = ("filename", "device", "city", "identifier")
META_COLUMNS: tuple[str, ...] = INT_COLUMNS + STRING_COLUMNS
#: Attributes stored as JSON text and decoded on read.
JSON_ATTRS: tuple[str, ...] = ("params", "scenes", "super_classes")
REQUIRED_ATTRS: tuple[str, ...] = (
    "feature_set",
    "params",
    "split",
    "copy",
    "scenes",
    "super_classes",
    "code_version",
    "librosa_version",
    "torch_version",
)
FEATURE_SETS: tuple[str, ...] = ("lmfb", "baseline")
COPIES: tuple[str, ...] = ("orig", "pitch", "speed", "noise", "mix", "speccorr", "reverb")

_STR = h5py.string_dtype(encoding="utf-8")
#: Attribute listing the extra attributes stored as JSON (decoded on read, then dropped).
_EXTRA_JSON = "json_attrs"
_META_CHUNK = 1024


@dataclass
class FeatureSet:
    """A feature file in memory: features, labels and per-clip metadata, aligned by row."""

    x: np.ndarray
    label10: np.ndarray
    label3: np.ndarray
    filename: np.ndarray
    device: np.ndarray
    city: np.ndarray
    identifier: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.x.shape[0])


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def _complete_attrs(attrs: Mapping[str, Any], path: Path) -> dict[str, str]:
    """Fill the defaults every file carries and encode everything as HDF5 string attributes."""
    out: dict[str, Any] = {
        "scenes": list(SCENES),
        "super_classes": list(SUPER_CLASSES),
        "code_version": __version__,
        "librosa_version": _package_version("librosa"),
        "torch_version": _package_version("torch"),
    }
    out.update(attrs)
    for key in ("feature_set", "params", "split", "copy"):
        if key not in out:
            raise InputError(f"{path}: feature file attribute {key!r} is required but not given")
    if out["feature_set"] not in FEATURE_SETS:
        raise InputError(
            f"{path}: attribute feature_set must be one of {FEATURE_SETS}, "
            f"found {out['feature_set']!r}"
        )
    if out["copy"] not in COPIES:
        raise InputError(f"{path}: attribute copy must be one of {COPIES}, found {out['copy']!r}")
    encoded: dict[str, str] = {}
    extra_json: list[str] = []
    for key, value in out.items():
        if key == _EXTRA_JSON:
            raise InputError(f"{path}: attribute name {_EXTRA_JSON!r} is reserved")
        if key in JSON_ATTRS:
            if isinstance(value, str):
                try:
                    json.loads(value)
                except json.JSONDecodeError as exc:
                    raise InputError(
                        f"{path}: attribute {key!r} must be JSON, found {value!r}"
                    ) from exc
                encoded[key] = str(value)
            else:
                encoded[key] = json.dumps(value, sort_keys=True)
        elif isinstance(value, str):
            # str() drops subclasses such as torch's TorchVersion that h5py cannot store.
            encoded[key] = str(value)
        else:
            # Extra attributes (a seed, a clip length, a gain) are stored as JSON text and
            # listed, so that reading gives back numbers and lists, not their text.
            encoded[key] = json.dumps(value, sort_keys=True)
            extra_json.append(key)
    if extra_json:
        encoded[_EXTRA_JSON] = json.dumps(sorted(extra_json))
    return encoded


def _meta_columns(meta: pd.DataFrame | Mapping[str, Any], n: int, where: str) -> dict[str, Any]:
    """Pull the stored metadata columns out of `meta`, checking names and lengths."""
    cols: dict[str, Any] = {}
    for name in META_COLUMNS:
        if name not in meta:
            raise InputError(f"{where}: metadata column {name!r} is missing")
        values = meta[name]
        values = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
        if len(values) != n:
            raise InputError(
                f"{where}: metadata column {name!r} has {len(values)} rows, expected {n} "
                f"(one per feature row)"
            )
        if name in INT_COLUMNS:
            cols[name] = np.asarray(values, dtype=np.int64)
        else:
            cols[name] = np.asarray([str(v) for v in values], dtype=object)
    return cols


class FeatureWriter:
    """Stream clips into a new feature file; the file appears only if the block succeeds.

    ``with FeatureWriter(path, attrs) as w: w.append(x_batch, meta_rows)`` — datasets are
    created on the first append (or from `feature_shape` for a file with no rows) and
    grow by the batch; memory use does not depend on the number of clips.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        attrs: Mapping[str, Any],
        feature_shape: tuple[int, int, int] | None = None,
    ) -> None:
        self.path = Path(path)
        self.attrs = _complete_attrs(attrs, self.path)
        self.feature_shape = tuple(feature_shape) if feature_shape is not None else None
        self.n_rows = 0
        self._stack: contextlib.ExitStack | None = None
        self._file: h5py.File | None = None

    def __enter__(self) -> FeatureWriter:
        stack = contextlib.ExitStack()
        tmp = stack.enter_context(atomic_path(self.path))
        self._file = stack.enter_context(h5py.File(tmp, "w"))
        self._stack = stack
        if self.feature_shape is not None:
            self._create(self.feature_shape)
        return self

    def _create(self, shape: tuple[int, ...]) -> None:
        assert self._file is not None
        if len(shape) != 3:
            raise InputError(f"{self.path}: feature shape must be (C, F, T), found {shape}")
        self.feature_shape = tuple(int(s) for s in shape)
        f = self._file
        f.create_dataset(
            FEATURES,
            shape=(0, *self.feature_shape),
            maxshape=(None, *self.feature_shape),
            dtype=np.float32,
            chunks=(1, *self.feature_shape) if all(self.feature_shape) else None,
        )
        for name in INT_COLUMNS:
            f.create_dataset(
                name, shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(_META_CHUNK,)
            )
        for name in STRING_COLUMNS:
            f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=_STR, chunks=(_META_CHUNK,))

    def append(self, x_batch: np.ndarray, meta_rows: pd.DataFrame | Mapping[str, Any]) -> None:
        """Add `len(x_batch)` clips and their metadata rows (same order)."""
        if self._file is None:
            raise RuntimeError("FeatureWriter.append called outside its `with` block")
        x = np.asarray(x_batch, dtype=np.float32)
        if x.ndim != 4:
            raise InputError(f"{self.path}: feature batch must be (B, C, F, T), found {x.shape}")
        if FEATURES not in self._file:
            self._create(x.shape[1:])
        if tuple(x.shape[1:]) != self.feature_shape:
            raise InputError(
                f"{self.path}: feature batch of shape {x.shape[1:]} does not match the file's "
                f"{self.feature_shape}"
            )
        b = x.shape[0]
        cols = _meta_columns(meta_rows, b, str(self.path))
        start, stop = self.n_rows, self.n_rows + b
        ds = self._file[FEATURES]
        ds.resize(stop, axis=0)
        ds[start:stop] = x
        for name, values in cols.items():
            d = self._file[name]
            d.resize(stop, axis=0)
            d[start:stop] = values
        self.n_rows = stop
        failpoint("features.write")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        assert self._stack is not None and self._file is not None
        stack, self._stack = self._stack, None
        try:
            if exc_type is None:
                if FEATURES not in self._file:
                    raise InputError(
                        f"{self.path}: no rows were written and no feature shape was given"
                    )
                self._file.attrs.update(self.attrs)
        except BaseException as err:
            self._file = None
            if not stack.__exit__(type(err), err, err.__traceback__):
                raise
            return False
        self._file = None
        return bool(stack.__exit__(exc_type, exc, tb))


def write_features(
    path: str | os.PathLike[str],
    x: np.ndarray | Iterable[np.ndarray],
    meta: pd.DataFrame,
    attrs: Mapping[str, Any],
) -> int:
    """Write a whole feature file: `x` is an (N, C, F, T) array or an iterable of batches.

    Returns the number of rows written; it must equal len(meta).
    """
    n_meta = len(meta)
    with FeatureWriter(path, attrs) as writer:
        if isinstance(x, np.ndarray):
            if x.ndim != 4:
                raise InputError(f"{path}: features must be (N, C, F, T), found {x.shape}")
            writer.feature_shape = tuple(int(s) for s in x.shape[1:])
            writer._create(writer.feature_shape)
            batches: Iterable[np.ndarray] = (x[i : i + 256] for i in range(0, len(x), 256))
        else:
            batches = x
        for batch in batches:
            start = writer.n_rows
            b = len(batch)
            if start + b > n_meta:
                raise InputError(f"{path}: more feature rows than the {n_meta} metadata rows")
            writer.append(batch, meta.iloc[start : start + b])
        if writer.n_rows != n_meta:
            raise InputError(
                f"{path}: {writer.n_rows} feature rows written but metadata has {n_meta} rows"
            )
    return n_meta


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise InputError(f"{path}: feature file not found")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 feature file ({exc})") from exc


def _decode_attrs(f: h5py.File, path: Path) -> dict[str, Any]:
    missing = [k for k in REQUIRED_ATTRS if k not in f.attrs]
    if missing:
        raise InputError(f"{path}: feature file lacks attribute(s) {missing}")
    raw = {k: (v.decode("utf-8") if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    json_keys = set(JSON_ATTRS)
    if _EXTRA_JSON in raw:
        try:
            json_keys.update(json.loads(raw.pop(_EXTRA_JSON)))
        except (TypeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: attribute {_EXTRA_JSON!r} is not a JSON list") from exc
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in json_keys:
            try:
                value = json.loads(value)
            except (TypeError, json.JSONDecodeError) as exc:
                raise InputError(f"{path}: attribute {key!r} is not valid JSON: {value!r}") from exc
        out[key] = value
    return out


def read_feature_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The attributes of a feature file (JSON ones decoded) without loading any data."""
    path = Path(path)
    with _open(path) as f:
        return _decode_attrs(f, path)


class FeatureFile:
    """An open feature file: metadata and attributes in memory, features read on demand.

    Rows are read clip by clip (`h5py`'s fancy indexing is ~40x slower than one
    `read_direct` per chunk for a random batch), contiguous runs in one call. The HDF5
    handle is opened lazily and reopened in a forked or spawned process (data-loader
    workers): an h5py handle must not cross a fork. Pickling drops the handle.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: h5py.File | None = None
        self._pid: int | None = None
        with _open(self.path) as f:
            for name in (FEATURES, *META_COLUMNS):
                if name not in f:
                    raise InputError(f"{self.path}: feature file lacks dataset {name!r}")
            ds = f[FEATURES]
            if ds.ndim != 4:
                raise InputError(
                    f"{self.path}: dataset 'features' must be 4-D (N, C, F, T), found shape "
                    f"{ds.shape}"
                )
            if ds.dtype not in (np.float32, np.float16):
                raise InputError(
                    f"{self.path}: dataset 'features' must be float32 or float16, found {ds.dtype}"
                )
            n = ds.shape[0]
            for name in META_COLUMNS:
                if f[name].shape != (n,):
                    raise InputError(
                        f"{self.path}: dataset {name!r} has shape {f[name].shape}, expected ({n},)"
                    )
            self.shape: tuple[int, int, int, int] = tuple(int(v) for v in ds.shape)  # type: ignore[assignment]
            self.stored_dtype = np.dtype(ds.dtype)
            self.attrs = _decode_attrs(f, self.path)
            ints = {name: f[name][()].astype(np.int64, copy=False) for name in INT_COLUMNS}
            strs = {
                name: np.asarray(f[name].asstr()[()], dtype=object).reshape(n)
                for name in STRING_COLUMNS
            }
        self.label10: np.ndarray = ints["label10"]
        self.label3: np.ndarray = ints["label3"]
        self.filename: np.ndarray = strs["filename"]
        self.device: np.ndarray = strs["device"]
        self.city: np.ndarray = strs["city"]
        self.identifier: np.ndarray = strs["identifier"]

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of the features once read (float32), the memory a whole read costs."""
        return int(np.prod(self.shape, dtype=np.int64)) * 4

    def _dataset(self) -> h5py.Dataset:
        if self._file is None or self._pid != os.getpid():
            self._file = _open(self.path)
            self._pid = os.getpid()
        return self._file[FEATURES]

    def read_rows(self, rows: np.ndarray | Iterable[int]) -> np.ndarray:
        """Features of `rows` (any order, repeats allowed) as float32 (len(rows), C, F, T)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = self.shape[0]
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            bad = int(rows[(rows < 0) | (rows >= n)][0])
            raise InputError(f"{self.path}: row {bad} is outside the file's {n} clips")
        uniq, inverse = np.unique(rows, return_inverse=True)
        buf = np.empty((len(uniq), *self.shape[1:]), dtype=self.stored_dtype)
        ds = self._dataset()
        # runs of consecutive rows: [starts[k], stops[k]) in the file -> buf[offs[k]:]
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        for run in np.split(np.arange(len(uniq)), breaks) if len(uniq) else []:
            lo, hi = int(uniq[run[0]]), int(uniq[run[-1]]) + 1
            ds.read_direct(buf, np.s_[lo:hi], np.s_[int(run[0]) : int(run[-1]) + 1])
        out = buf.astype(np.float32, copy=False)
        return out if np.array_equal(uniq, rows) else out[inverse]

    def read_slice(self, start: int, stop: int) -> np.ndarray:
        """Features of rows start..stop-1 as float32."""
        start, stop = max(0, int(start)), min(self.shape[0], int(stop))
        return self.read_rows(np.arange(start, stop))

    def batches(self, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
        """(start row, features) of consecutive batches: memory of one batch, not the file."""
        for s in range(0, self.shape[0], batch_size):
            yield s, self.read_slice(s, s + batch_size)

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._pid = None

    def __enter__(self) -> FeatureFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"] = None
        state["_pid"] = None
        return state

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def open_features(path: str | os.PathLike[str]) -> FeatureFile:
    """Open a feature file for reading by rows (metadata checked and loaded, no features)."""
    return FeatureFile(path)


def read_features(path: str | os.PathLike[str]) -> FeatureSet:
    """Load a whole feature file, checking every dataset is present and row-aligned.

    For files that may not fit in memory, use `open_features` and read batches.
    """
    with FeatureFile(path) as ff:
        x = ff.read_slice(0, len(ff))
        return FeatureSet(
            x=x,
            label10=ff.label10,
            label3=ff.label3,
            filename=ff.filename,
            device=ff.device,
            city=ff.city,
            identifier=ff.identifier,
            attrs=ff.attrs,
        )
