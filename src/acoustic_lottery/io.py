"""Small I/O helpers: atomic outputs, JSON, progress bars.

Every output goes through `atomic_path` so an interrupted job never leaves a file
that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


#: Marks the temporary sibling of an output: `.<name>.<random>.tmp<suffix>`.
TMP_MARK = ".tmp"


def stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Temporary siblings of `path` left by writers that were killed before renaming."""
    path = Path(path)
    prefix = f".{path.name}."
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return []
    return [
        Path(e.path)
        for e in entries
        if e.name.startswith(prefix) and TMP_MARK in e.name[len(prefix) :]
    ]


def remove_stale_temporaries(path: str | os.PathLike[str]) -> int:
    """Delete what a killed writer of `path` left behind; the number removed.

    Safe because one output has one writer at a time (Snakemake locks outputs, and a job
    owns its outputs), so a temporary of `path` that exists when its writer starts is dead.
    """
    removed = 0
    for stale in stale_temporaries(path):
        with contextlib.suppress(FileNotFoundError):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            else:
                stale.unlink()
            removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], suffix: str | None = None, *, clean_stale: bool = True
) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it to `path` only if the block succeeds.

    Leftover temporaries of `path` from a killed writer are removed first (at TAU scale
    they are gigabytes); `clean_stale=False` skips that directory scan for writers of
    thousands of files into a fresh directory.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if clean_stale:
        remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.",
        suffix=TMP_MARK + (suffix if suffix is not None else path.suffix),
        dir=path.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            # mkstemp makes 0600 files; give the result the permissions of a normal file
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_torch(path: str | os.PathLike[str], obj: Any) -> None:
    """torch.save `obj` atomically and byte-reproducibly.

    torch.save to a *path* records the file's name inside the zip archive, so saving via a
    random temporary name gives different bytes for the same tensors; through an open
    file the archive name is fixed.
    """
    import torch  # deferred: most verbs never write torch files

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


#: zip entry time of reproducible archives (the earliest a zip can store).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def write_npz(path: str | os.PathLike[str], **arrays: Any) -> None:
    """An uncompressed .npz (what np.savez writes) with fixed entry times.

    np.savez stamps each entry with the current time, so equal arrays give unequal files.
    """
    import numpy as np

    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON atomically, sorted and indented so diffs between runs are readable."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def progress(iterable: Iterable[T], desc: str, total: int | None = None, **kw: Any) -> Iterable[T]:
    """A tqdm bar on stderr; silent when ACOUSTIC_LOTTERY_PROGRESS=0 (tests, CI logs)."""
    disable = os.environ.get("ACOUSTIC_LOTTERY_PROGRESS", "1") == "0"
    return tqdm(iterable, desc=desc, total=total, disable=disable, dynamic_ncols=True, **kw)
