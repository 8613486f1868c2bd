"""DVC over the Snakemake DAG: per-row stages, a push/pull round trip, and mtimes.

One temporary git repository holds the project's files with a trimmed tiny config.
The fixtures run one reproduction in steps that the tests then inspect: `dvc repro` of
row 3 on a clean tree, the full `dvc repro`, `dvc push` to the default remote (a `~`
path: HOME points into the temporary directory), a fresh `git clone` and `make pull`.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
VENV = BIN.parent
TINY = Path(__file__).with_name("tiny_config.yaml")
# Rows kept from the tiny config: the baseline (its own features and model) and a dense
# SIC (the row reproduced alone); the figures still need the lottery chain, cut to two
# rounds. That keeps the DAG near 30 jobs; the plumbing under test is the same for
# every row. (A row on a shortened chain could fail the size budget: none is kept.)
ROWS = ("0", "3")  # table1 keys
MAX_ROUNDS = 2


def _env(home: Path) -> dict[str, str]:
    env = dict(
        os.environ,
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
        ACOUSTIC_LOTTERY_PROGRESS="0",
        HOME=str(home),
        DVC_NO_ANALYTICS="1",
    )
    for var in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # when pytest runs under `make test`
        env.pop(var, None)
    return env


def run(cwd: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command in a repository with the venv's tools first on PATH.

    HOME is the `home` folder beside the repository, so the default remote
    (~/acoustic-lottery-dvc-store) is shared by the repository and its clone and lies
    inside the test's temporary directory.
    """
    home = cwd.parent / "home"
    home.mkdir(exist_ok=True)
    tool = str(BIN / cmd[0]) if (BIN / cmd[0]).exists() else cmd[0]
    proc = subprocess.run(
        [tool, *cmd[1:]], cwd=cwd, capture_output=True, text=True, env=_env(home), timeout=1200
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed in {cwd}:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def dvc_status(repo: Path) -> dict:
    return json.loads(run(repo, "dvc", "status", "--json").stdout)


def nothing_to_do(repo: Path) -> bool:
    proc = run(repo, "snakemake", "-n", "--cores", "1")
    return "Nothing to be done" in proc.stdout + proc.stderr


def trimmed_config() -> dict:
    """The tiny config with fewer rows, lottery rounds and study fractions (same stages,
    shorter DAG)."""
    cfg = yaml.safe_load(TINY.read_text())
    assert set(ROWS) <= set(cfg["table1"]), "tiny_config.yaml must keep rows 0 and 3"
    cfg["table1"] = {k: v for k, v in cfg["table1"].items() if k in ROWS}
    cfg["dataset"]["path"] = "data/tiny"  # the odd path is test_snakemake's concern
    cfg["systems"] = {}
    cfg["data_efficiency"]["fractions"] = [100]  # one study run: the stage, not the study
    for spec in cfg["models"].values():
        lottery = spec.get("lottery") or {}
        if "rounds" in lottery:
            lottery["rounds"] = min(lottery["rounds"], MAX_ROUNDS)
    return cfg


def models_of(cfg: dict, row: str) -> set[str]:
    return {m["model"] for m in cfg["table1"][row]["members"]}


@pytest.fixture(scope="module")
def cfg() -> dict:
    return trimmed_config()


@pytest.fixture(scope="module")
def repo(tmp_path_factory, cfg) -> Path:
    """The project's files (tracked and new, as in this working tree) in a fresh repo."""
    base = tmp_path_factory.mktemp("dvc")
    repo = base / "repo"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if rel in ("dvc.lock", "config.yaml") or not src.is_file():
            continue
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, repo / rel)
    (repo / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    run(repo, "git", "init", "-q")
    run(repo, "git", "config", "user.name", "acoustic-lottery test")
    run(repo, "git", "config", "user.email", "test@acoustic-lottery.invalid")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "project")
    return repo


@pytest.fixture(scope="module")
def row3(repo) -> dict:
    """`dvc repro 'table1@3'` on the clean tree: what it built, what DVC then says."""
    run(repo, "dvc", "repro", "table1@3")
    results = repo / "results/tiny"
    return {
        "models": sorted(p.name for p in (results / "models").iterdir()),
        "rows": sorted(p.name for p in (results / "table1").iterdir() if p.is_file()),
        "summaries": sorted(p.name for p in (results / "table1/summary").iterdir()),
        "exists": {
            rel: (results / rel).exists()
            for rel in ("features/lmfb", "features/baseline", "table1.md", "figures")
        },
        "status": dvc_status(repo),
    }


@pytest.fixture(scope="module")
def pushed(row3, repo) -> dict:
    """The full `dvc repro`, committed with its dvc.lock and pushed to the default remote."""
    run(repo, "dvc", "repro")
    state = {"status": dvc_status(repo), "nothing_to_do": nothing_to_do(repo)}
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "reproduction")
    run(repo, "dvc", "push")
    return state


@pytest.fixture(scope="module")
def clone(pushed, repo) -> Path:
    """A fresh clone next to the repository, after `make pull` (dvc pull + touch)."""
    clone = repo.parent / "clone"
    run(repo, "git", "clone", "-q", str(repo), str(clone))
    stamp = VENV / ".installed"  # the venv exists: never let make rebuild it
    run(clone, "make", "pull", f"VENV={VENV}", "-o", str(stamp))
    return clone


def test_shipped_config_has_a_stage_per_table1_row_and_system(tmp_path):
    """The published table: table1@0 .. table1@22, our variants table1@5m and table1@14m,
    and system@a .. system@d."""
    repo = tmp_path / "shipped"
    repo.mkdir()
    for name in ("dvc.yaml", "config.yaml"):
        shutil.copy(ROOT / name, repo / name)
    run(repo, "git", "init", "-q")
    run(repo, "dvc", "init", "-q")
    names = set(run(repo, "dvc", "stage", "list", "--name-only").stdout.split())
    rows = {f"table1@{i}" for i in range(23)} | {"table1@5m", "table1@14m"}
    systems = {f"system@{x}" for x in "abcd"}
    assert rows | systems <= names
    assert {n for n in names if n.startswith(("table1@", "system@"))} == rows | systems


def test_every_file_of_the_default_dag_is_an_output_of_a_dvc_stage(tmp_path):
    """With the shipped config, each file the default target writes (snakemake
    --summary) lies in some stage's outs, so a `dvc pull` brings all of it and the
    pulled tree has nothing left to do (the round trip below checks that on the
    trimmed config, which has no systems)."""
    repo = tmp_path / "shipped"
    repo.mkdir()
    for name in ("Snakefile", "dvc.yaml", "config.yaml", "params.yaml"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "workflow", repo / "workflow")
    shutil.copytree(ROOT / "profiles", repo / "profiles")
    run(repo, "git", "init", "-q")
    run(repo, "dvc", "init", "-q")
    summary = run(repo, "snakemake", "--summary", "--cores", "1").stdout.splitlines()
    written = {line.split("\t", 1)[0] for line in summary[1:] if line.strip()}
    assert any(p.endswith(".alot") for p in written) and len(written) > 100
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc:
        outs = {os.path.relpath(o.fs_path, repo) for s in dvc.index.stages for o in s.outs} | {
            os.path.relpath(m.fs_path, repo) for s in dvc.index.stages for m in s.metrics
        }

    def covered(path: str) -> bool:
        return any(path == o or path.startswith(o + "/") for o in outs)

    assert sorted(p for p in written if not covered(p)) == []


def test_data_plots_name_files_the_default_dag_writes():
    """Every data plot of dvc.yaml reads a file `make run` produces: a dense model's
    history.csv (rule train) or a confusion record file (rule confusion, for the models
    of figures.devices)."""
    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    results = f"results/{config['dataset']['name']}/"
    dense = {m for m, spec in config["models"].items() if not spec.get("lottery")}
    confusion = set(config["figures"]["devices"].values())
    data = [p for entry in doc["plots"] if isinstance(entry, dict) for p in entry.values()]
    assert data, "no data plots in dvc.yaml"
    for plot in data:
        for path in plot["y"]:
            rel = path.replace("results/${dataset.name}/", results).removeprefix(results)
            if rel.endswith("/history.csv"):
                assert rel.split("/")[1] in dense, path
            else:
                assert rel.startswith("figures/confusion/") and rel.endswith(".csv"), path
                assert rel.split("/")[-1].removesuffix(".csv") in confusion, path
                assert plot["template"] == "confusion" and plot["x"] == "actual"


def test_one_stage_per_row(repo, cfg):
    names = run(repo, "dvc", "stage", "list", "--name-only").stdout.split()
    rows = {f"table1@{row}" for row in cfg["table1"]}
    assert {n for n in names if n.startswith("table1@")} == rows
    study = {f"efficiency@{s}" for s in cfg.get("data_efficiency", {}).get("systems", {})}
    assert set(names) == rows | study | {"dataset", "pipeline"}


@pytest.mark.slow
def test_repro_of_one_row_builds_only_that_row(row3, cfg):
    assert row3["rows"] == ["row3.json"]
    assert row3["summaries"] == ["row3.json"]
    assert row3["models"] == sorted(models_of(cfg, "3"))
    assert not models_of(cfg, "0") & set(row3["models"])  # the baseline was not trained
    assert row3["exists"] == {
        "features/lmfb": True,
        "features/baseline": False,  # row 0's own features
        "table1.md": False,
        "figures": False,
    }
    # DVC agrees: the data set and row 3 are up to date, the rest still to do.
    assert "dataset" not in row3["status"] and "table1@3" not in row3["status"]
    assert {"pipeline", "table1@0"} <= set(row3["status"])


@pytest.mark.slow
def test_full_repro_leaves_dvc_and_snakemake_with_nothing_to_do(pushed):
    assert pushed["status"] == {}
    assert pushed["nothing_to_do"]


@pytest.mark.slow
def test_fresh_clone_after_make_pull_is_complete_and_up_to_date(clone, repo, cfg):
    assert dvc_status(clone) == {}
    assert nothing_to_do(clone)
    for rel in [f"results/tiny/table1/row{row}.json" for row in cfg["table1"]] + [
        "results/tiny/models/sic/final.pt",
        "results/tiny/table1.md",
    ]:
        assert (clone / rel).read_bytes() == (repo / rel).read_bytes(), rel


def _within(shown: dict, full: dict) -> bool:
    """Every value DVC shows is the file's (DVC leaves out lists: confusion matrices)."""
    return all(
        key in full and (_within(val, full[key]) if isinstance(val, dict) else val == full[key])
        for key, val in shown.items()
    )


@pytest.mark.slow
def test_metrics_show_reads_the_row_summaries_and_fits_a_screen(clone, cfg):
    shown = json.loads(run(clone, "dvc", "metrics", "show", "--json").stdout)
    (workspace,) = shown.values()
    assert "error" not in json.dumps(workspace)
    for row in cfg["table1"]:
        path = f"results/tiny/table1/summary/row{row}.json"
        values = workspace["data"][path]["data"]
        assert values == json.loads((clone / path).read_text())
        full = json.loads((clone / f"results/tiny/table1/row{row}.json").read_text())
        assert values["acc"] == round(full["ours"]["accuracy"], 2)
    table = run(clone, "dvc", "metrics", "show")
    assert "failed" not in (table.stdout + table.stderr).lower()
    lines = table.stdout.splitlines()
    assert len(lines) == 1 + len(cfg["table1"])  # a header and one line per row
    assert max(map(len, lines)) <= 200, max(map(len, lines))


@pytest.mark.slow
def test_pulled_tree_keeps_provenance_and_make_pull_guards_it(clone):
    # The touch recorded Snakemake metadata: a config edit still triggers reruns, and
    # DVC sees the same change. make pull then refuses to touch outputs that are no
    # longer this config's.
    config = clone / "config.yaml"
    original = config.read_text()
    edited = yaml.safe_load(original)
    edited["training"]["epochs"] += 1
    config.write_text(yaml.safe_dump(edited, sort_keys=False))
    try:
        dry = run(clone, "snakemake", "-n", "--cores", "1").stdout
        assert "Nothing to be done" not in dry
        assert "rule train:" in dry or "\ntrain " in dry
        assert "table1@3" in dvc_status(clone)
        stamp = VENV / ".installed"
        proc = run(clone, "make", "pull", f"VENV={VENV}", "-o", str(stamp), check=False)
        assert proc.returncode != 0
        assert "differ from dvc.lock" in proc.stdout + proc.stderr
    finally:
        config.write_text(original)
    assert nothing_to_do(clone)


@pytest.mark.slow
def test_an_experiment_on_one_models_epochs_reruns_only_that_row(clone, cfg):
    """`dvc exp run -S models.sic.training.epochs=N 'table1@3'` (the README's command):
    no `+`, params.yaml changes by one line, config.yaml not at all, and Snakemake
    retrains only what row 3 needs."""
    (model,) = models_of(cfg, "3")
    results = clone / "results/tiny"
    before = {p.parent.name: p.stat().st_mtime_ns for p in results.glob("models/*/final.pt")}
    row0 = (results / "table1/row0.json").read_bytes()
    summary3 = (results / "table1/summary/row3.json").read_bytes()
    config, params = (clone / "config.yaml").read_text(), (clone / "params.yaml").read_text()
    epochs = cfg["training"]["epochs"] + 1
    run(clone, "dvc", "exp", "run", "-S", f"models.{model}.training.epochs={epochs}", "table1@3")
    changed = [
        d
        for d in difflib.ndiff(
            params.splitlines(), (clone / "params.yaml").read_text().splitlines()
        )
        if d[:2] in ("- ", "+ ")
    ]
    assert changed == ["-       epochs:", f"+       epochs: {epochs}"]
    assert (clone / "config.yaml").read_text() == config
    after = {p.parent.name: p.stat().st_mtime_ns for p in results.glob("models/*/final.pt")}
    retrained = sorted(m for m in after if after[m] != before.get(m))
    assert retrained == [model]
    assert (results / "table1/row0.json").read_bytes() == row0
    assert (results / "table1/summary/row3.json").read_bytes() != summary3
    history = (results / f"models/{model}/history.csv").read_text().splitlines()
    assert len(history) == 1 + epochs  # the header and one line per epoch
    shown = run(clone, "dvc", "exp", "show", "--json").stdout
    assert f'"epochs": {epochs}' in shown
