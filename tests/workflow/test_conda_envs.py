"""The conda environments of `--software-deployment-method conda`, checked where no conda
is reachable: the pins against requirements.lock, the library's imports against the pins,
and the project install from where Snakemake really puts the files (.snakemake/conda/)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ENVS = sorted((ROOT / "envs").glob("*.yaml"))
LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        m = PIN.match(line.strip())
        if m:
            pins[_norm(m[1])] = m[2]
    return pins


def _pip_section(env: Path) -> list[str]:
    doc = yaml.safe_load(env.read_text())
    sections = [d["pip"] for d in doc["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, f"{env.name}: expected one pip section, found {len(sections)}"
    return [str(entry) for entry in sections[0]]


def _pinned(env: Path) -> dict[str, str]:
    return {
        _norm(m[1]): m[2]
        for m in (PIN.match(e) for e in _pip_section(env) if not e.startswith("-"))
    }


def _third_party_imports() -> set[str]:
    """Top-level modules the library imports that are neither stdlib nor its own."""
    names: set[str] = set()
    for path in (ROOT / "src/acoustic_lottery").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "acoustic_lottery"}


def test_there_are_both_envs():
    assert [e.name for e in ENVS] == ["cpu.yaml", "cuda.yaml"]


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_every_pip_entry_is_pinned_as_in_the_lock(env):
    lock = _lock()
    entries = [e for e in _pip_section(env) if not e.startswith("--extra-index-url")]
    for entry in entries:
        m = PIN.match(entry)
        assert m, f"{env.name}: {entry!r} is not a `name==version` pin"
        name, version = _norm(m[1]), m[2]
        assert name in lock, f"{env.name}: {name} is not in requirements.lock"
        assert lock[name] == version, (
            f"{env.name}: {name}=={version}, but requirements.lock pins {lock[name]}"
        )


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_no_entry_depends_on_where_the_file_lies(env):
    """Snakemake copies the file to .snakemake/conda/<hash>.yaml and conda runs pip from
    there: a relative path (the old `-e ../`) then names .snakemake/, not the project."""
    for entry in _pip_section(env):
        assert not re.search(r"(^|\s)(-e|--editable)\b|\.\./|(^|\s)\./|file:", entry), (
            f"{env.name}: {entry!r} depends on the env file's location"
        )


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_every_library_import_is_provided(env):
    pinned = _pinned(env)
    providers = packages_distributions()
    missing = {}
    for module in sorted(_third_party_imports()):
        dists = {_norm(d) for d in providers.get(module, [])}
        assert dists, f"no installed distribution provides {module!r}"
        if not dists & pinned.keys():
            missing[module] = sorted(dists)
    assert not missing, f"{env.name}: imported by the library but not pinned: {missing}"
    # pandas' DataFrame.to_markdown (the table writer) imports tabulate lazily
    assert "tabulate" in pinned, f"{env.name}: tabulate (DataFrame.to_markdown) is missing"


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_torch_comes_from_the_matching_wheel_index(env):
    index = [e for e in _pip_section(env) if e.startswith("--extra-index-url")]
    want = "/whl/cpu" if env.stem == "cpu" else "/whl/cu"
    assert len(index) == 1 and want in index[0], f"{env.name}: torch index {index}"


def _place_like_snakemake(env: Path, tmp: Path) -> Path:
    """Copy the env file and its post-deploy script as Snakemake does
    (deployment/conda.py: `<env_path>.yaml`, `<env_path>.post-deploy.sh`)."""
    conda_dir = tmp / "work/.snakemake/conda"
    conda_dir.mkdir(parents=True)
    post = env.with_suffix("").with_name(env.stem + ".post-deploy.sh")
    assert post.is_file(), f"{post.name} is missing beside {env.name}"
    shutil.copy(env, conda_dir / "0123abcd.yaml")
    placed = conda_dir / "0123abcd.post-deploy.sh"
    shutil.copy(post, placed)
    return placed


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_post_deploy_installs_the_checkout_from_snakemakes_copy(env, tmp_path):
    placed = _place_like_snakemake(env, tmp_path)
    venv_python = Path(sys.executable)
    shim = tmp_path / "bin"
    shim.mkdir()
    # a script, not a symlink: a symlinked venv python leaves its venv behind
    (shim / "python").write_text(f'#!/bin/sh\nexec "{venv_python}" "$@"\n')
    (shim / "python").chmod(0o755)
    proc = subprocess.run(
        ["bash", str(placed)],
        cwd=tmp_path / "work",  # Snakemake's working directory, not the checkout
        env=dict(
            os.environ,
            PATH=f"{shim}{os.pathsep}{os.environ['PATH']}",
            ACOUSTIC_LOTTERY_ROOT=str(ROOT),
            PIP_DRY_RUN="1",  # pip's --dry-run: resolve and build metadata, install nothing
            PIP_DISABLE_PIP_VERSION_CHECK="1",
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Would install acoustic-lottery-0.1.0" in proc.stdout, proc.stdout[-2000:]


def test_post_deploy_names_what_is_missing(tmp_path):
    placed = _place_like_snakemake(ENVS[0], tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "ACOUSTIC_LOTTERY_ROOT"}
    proc = subprocess.run(["bash", str(placed)], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "ACOUSTIC_LOTTERY_ROOT" in proc.stderr
    proc = subprocess.run(
        ["bash", str(placed)],
        env=dict(env, ACOUSTIC_LOTTERY_ROOT=str(tmp_path)),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "holds no pyproject.toml" in proc.stderr


def test_the_workflow_names_its_checkout_for_the_scripts(tmp_path, monkeypatch):
    """The Snakefile calls export_checkout at parse time (envs are built before any job
    runs); the variable it sets is the one the scripts read."""
    from acoustic_lottery.conda_envs import ROOT_VARIABLE, export_checkout

    monkeypatch.delenv(ROOT_VARIABLE, raising=False)
    assert export_checkout(tmp_path / ".") == tmp_path.resolve()
    assert os.environ[ROOT_VARIABLE] == str(tmp_path.resolve())
    for script in (ROOT / "envs").glob("*.post-deploy.sh"):
        assert f"${{{ROOT_VARIABLE}:?" in script.read_text(), script.name
    assert "export_checkout(workflow.basedir)" in (ROOT / "Snakefile").read_text()
