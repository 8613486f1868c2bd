"""Atomic, reproducible writers: what a killed writer leaves is swept by the next one, and
equal content gives equal bytes whatever the temporary name or the clock."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from acoustic_lottery.io import (
    atomic_path,
    remove_stale_temporaries,
    stale_temporaries,
    write_npz,
    write_torch,
)


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    out.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_the_next_writer_removes_what_a_killed_writer_left(tmp_path: Path) -> None:
    out = tmp_path / "orig.h5"
    # what SIGKILL leaves: the temporaries of atomic_path (file) and of a directory writer
    (tmp_path / ".orig.h5.abc123.tmp.h5").write_bytes(b"x" * 100)
    (tmp_path / ".orig.h5.def456.tmp").mkdir()
    (tmp_path / ".orig.h5.def456.tmp" / "part").write_text("y")
    keep = [tmp_path / ".other.h5.abc.tmp.h5", tmp_path / "orig.h5.bak", tmp_path / ".orig.h5"]
    for k in keep:
        k.write_text("not ours")
    assert len(stale_temporaries(out)) == 2
    with atomic_path(out) as tmp:
        tmp.write_text("new")
    assert out.read_text() == "new"
    assert stale_temporaries(out) == []
    assert all(k.exists() for k in keep)  # other outputs' temporaries and look-alikes stay
    assert remove_stale_temporaries(tmp_path / "missing" / "x.pt") == 0


def test_no_sweep_when_asked_not_to(tmp_path: Path) -> None:
    stale = tmp_path / ".a.wav.zz.tmp.wav"
    stale.write_text("x")
    with atomic_path(tmp_path / "a.wav", clean_stale=False) as tmp:
        tmp.write_text("wav")
    assert stale.exists()


def test_torch_files_are_byte_reproducible(tmp_path: Path) -> None:
    """torch.save to a path would store the random temporary name inside the archive."""
    obj = {"w": torch.arange(12.0).reshape(3, 4), "meta": {"epoch": 2, "name": "sic"}}
    write_torch(tmp_path / "a.pt", obj)
    write_torch(tmp_path / "b.pt", obj)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    back = torch.load(tmp_path / "a.pt", weights_only=True)
    assert torch.equal(back["w"], obj["w"]) and back["meta"] == obj["meta"]


def test_npz_files_are_byte_reproducible_and_load_with_numpy(tmp_path: Path) -> None:
    arrays = {"devices": np.array(["b", "c"]), "coefficients": np.linspace(0, 1, 8)}
    write_npz(tmp_path / "a.npz", **arrays)
    time.sleep(2.1)  # zip stores seconds / 2: np.savez would differ now
    write_npz(tmp_path / "b.npz", **arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
        assert list(z["devices"]) == ["b", "c"]
        np.testing.assert_array_equal(z["coefficients"], arrays["coefficients"])
