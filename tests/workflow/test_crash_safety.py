"""Crash safety of the real DAG: SIGKILL the whole Snakemake process group at named points
(features, training, lottery, quantization, table), recover with the documented command,
and get every result byte for byte as an uninterrupted run in another checkout got it.
Also: a real data set is never the generator's to delete. (That no config string
reaches a shell is tested on every tiny run: test_snakemake.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import pytest
import torch
import yaml

from acoustic_lottery.faults import ENV, ENV_DIR, POINTS

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CRASH = Path(__file__).with_name("crash_config.yaml")  # every kind of job, ~1 min
MINI = Path(__file__).with_name("mini_config.yaml")

#: Where the killed reproduction is frozen and killed. Every run arms all the points not
#: yet hit; the first job to reach one freezes there (so does any other job that reaches
#: one before the kill), the process group is killed, and the next run arms the rest.
KILLS = (
    "features.write",
    "train.step@2",
    "train.checkpoint",
    "lottery.mask",
    "quantize.write",
    "table.write",
)


def checkout(dest: Path) -> Path:
    """A copy of this checkout's files (what a clone holds), at another path."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, (p.decode() for p in listed)):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def run_until_killed(
    work: Path, points: list[str], markers: Path, env: dict[str, str], timeout: float = 420
) -> list[str]:
    """Start the documented command with `points` armed; SIGKILL its process group once a
    job freezes at one. The points hit (every job frozen at the kill)."""
    markers.mkdir(parents=True, exist_ok=True)
    env = {**env, ENV: ",".join(points), ENV_DIR: str(markers)}
    log_path = work / f"run_{len(list(work.glob('run_*.log')))}.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [str(BIN / "snakemake"), "--cores", "2"],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, with every job it starts
    )
    deadline = time.monotonic() + timeout
    try:
        while not any(markers.iterdir()):
            if proc.poll() is not None:
                raise AssertionError(
                    f"snakemake ended (exit {proc.returncode}) before any job reached one of "
                    f"{points}:\n" + log_path.read_text()[-3000:]
                )
            assert time.monotonic() < deadline, f"no job reached {points} in {timeout} s"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    hit = {m.name.removesuffix(".reached") for m in markers.iterdir()}
    for m in markers.iterdir():
        m.unlink()
    return [p for p in points if p.partition("@")[0] in hit]


def unreadable_results(results: Path) -> list[str]:
    """Result files that look finished but are not whole (none may exist after a kill)."""
    bad = []
    for f in results.rglob("*"):
        if not f.is_file() or f.name.startswith("."):
            continue
        try:
            if f.suffix == ".h5":
                with h5py.File(f, "r") as h:
                    list(h.keys())
            elif f.suffix == ".pt":
                torch.load(f, map_location="cpu", weights_only=True)
            elif f.suffix == ".json":
                json.loads(f.read_text())
            elif f.suffix in (".alot", ".npz"):
                zipfile.ZipFile(f).testzip() if f.suffix == ".npz" else f.read_bytes()
        except Exception as e:  # noqa: BLE001 - any failure to read is the finding
            bad.append(f"{f.relative_to(results)}: {type(e).__name__}")
    return bad


def result_files(work: Path) -> dict[str, bytes]:
    root = work / "results"
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="session")
def straight_run(tmp_path_factory, smk) -> Path:
    """The crash config's DAG, uninterrupted, from this checkout's Snakefile."""
    work = tmp_path_factory.mktemp("straight")
    shutil.copy(CRASH, work / "config.yaml")
    smk(work, "--cores", "2")
    return work


@pytest.fixture(scope="session")
def killed_run(tmp_path_factory, smk, smk_env) -> tuple[Path, list[dict]]:
    """The same DAG in a second checkout, killed at each point of KILLS, then finished."""
    work = checkout(tmp_path_factory.mktemp("clone") / "second" / "acoustic-lottery")
    shutil.copy(CRASH, work / "config.yaml")
    markers = work.parent / "markers"
    after_each: list[dict] = []
    armed = list(KILLS)
    while armed:
        hit = run_until_killed(work, armed, markers, smk_env())
        armed = [p for p in armed if p not in hit]
        after_each.append({"points": hit, "unreadable": unreadable_results(work / "results")})
        # The documented recovery (docs/reproduce.md): remove the stale lock, rerun.
        smk(work, "--unlock", snakefile=work / "Snakefile")
    smk(work, "--cores", "2", snakefile=work / "Snakefile")
    return work, after_each


@pytest.mark.slow
def test_a_kill_at_any_point_leaves_nothing_that_looks_finished(killed_run):
    _, after_each = killed_run
    assert sorted(p for a in after_each for p in a["points"]) == sorted(KILLS)
    assert {p.partition("@")[0] for p in KILLS} == set(POINTS)  # every point exercised
    for a in after_each:
        assert a["unreadable"] == [], a


@pytest.mark.slow
def test_killed_and_resumed_run_equals_an_uninterrupted_one_in_another_checkout(
    killed_run, straight_run
):
    """Every file under results/, byte for byte: two checkouts at different paths, one run
    straight through, one killed six times; so no clock time, host path or file time is
    in any result, and resuming changes nothing."""
    work, _ = killed_run
    assert work.resolve() != straight_run.resolve()
    killed, straight = result_files(work), result_files(straight_run)
    assert any(n.endswith("int8.alot") for n in straight) and "crash/table1.md" in straight
    assert sorted(killed) == sorted(straight)
    differ = [name for name in straight if killed[name] != straight[name]]
    assert differ == []
    # nothing of the resume machinery is left among the results
    leftovers = [
        n
        for n in killed
        if Path(n).name.startswith(".") or Path(n).name == "checkpoint.pt" or "/phases/" in n
    ]
    assert leftovers == []


def test_generator_refuses_a_directory_it_did_not_make(tmp_path, smk):
    """`--forcerun generate_synthetic` on a real data set's path: stopped before any job,
    naming the directory; every file is still there."""
    real = tmp_path / "data/real"
    (real / "audio").mkdir(parents=True)
    (real / "audio/clip.wav").write_bytes(b"RIFF....WAVE")
    (real / "meta.csv").write_text("filename\tscene_label\n")
    cfg = yaml.safe_load(MINI.read_text())
    cfg["dataset"]["path"] = "data/real"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    proc = smk(tmp_path, "--cores", "1", "--forcerun", "generate_synthetic", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "dataset.path data/real" in out and "synthetic.json" in out
    assert sorted(p.name for p in real.rglob("*")) == ["audio", "clip.wav", "meta.csv"]
    assert not (tmp_path / "results").exists()
