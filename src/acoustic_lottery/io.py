"""Small I/O helpers: atomic outputs, JSON, progress bars.

Every output goes through `atomic_path` so an interrupted job never leaves a file
that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it to `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.",
        suffix=suffix if suffix is not None else ".tmp" + path.suffix,
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
