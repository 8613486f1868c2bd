"""The Snakemake DAG through the SLURM executor plugin, on a real single-node cluster.

The cluster is the one of tools/slurm/start_local_cluster.sh (partition 'debug'). Without
it these tests skip, except under CI (CI=true), where a missing cluster is a failure.
Every Snakemake run is bounded: on timeout its whole process group gets SIGKILL (the
plugin ignores SIGTERM when it hangs) and its SLURM jobs are cancelled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TINY = Path(__file__).with_name("mini_config.yaml")  # rows 0 and 3: the orchestration
PROFILE_SLURM = ROOT / "profiles" / "slurm"
PROFILE_LOCAL = ROOT / "profiles" / "slurm-local"
PROFILE_ARGS = ("--profile", str(PROFILE_SLURM), "--profile", str(PROFILE_LOCAL))
# The rules of the tiny DAG (rows 0 and 3) that must each run as SLURM jobs.
DAG_RULES = ("generate_synthetic", "features", "train", "predict", "size", "row", "table")
SLURM_DAG_TIMEOUT_S = 900
LOCAL_DAG_TIMEOUT_S = 600
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.*?)\)\.")
RUN_ID = re.compile(r"SLURM run ID: (\S+)")


def _env() -> dict[str, str]:
    """The test's environment for Snakemake: the venv first, no user profile, no SLURM job."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SLURM_") and k != "SNAKEMAKE_PROFILE"
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}{os.pathsep}/usr/sbin{os.pathsep}/sbin"
    env["ACOUSTIC_LOTTERY_PROGRESS"] = "0"
    return env


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run a short SLURM client command; a hang or a missing binary becomes returncode 127."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(cmd, 127, "", f"{type(exc).__name__}: {exc}")


def cluster_problem() -> str | None:
    """Why the local SLURM cluster cannot be used, or None when it is up."""
    for tool in ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun"):
        if shutil.which(tool, path=_env()["PATH"]) is None:
            return f"`{tool}` is not on PATH: run tools/slurm/start_local_cluster.sh"
    if not Path("/etc/slurm/slurm.conf").exists():
        return (
            "/etc/slurm/slurm.conf is missing (the executor's job step ignores SLURM_CONF): "
            "run tools/slurm/start_local_cluster.sh"
        )
    proc = _run(["sinfo", "-h", "-p", "debug", "-o", "%a %T"], timeout=15)
    if proc.returncode != 0:
        return f"`sinfo` failed ({proc.stderr.strip()}): run tools/slurm/start_local_cluster.sh"
    states = proc.stdout.split()
    if len(states) < 2 or states[0] != "up":
        return f"partition 'debug' is not up (sinfo says {proc.stdout.strip()!r})"
    if not any(s.rstrip("*~#") in ("idle", "mixed", "allocated", "completing") for s in states[1:]):
        return f"no usable node in partition 'debug' (sinfo says {proc.stdout.strip()!r})"
    return None


def require_cluster() -> None:
    """Skip without a cluster, but fail under CI: CI starts one and must run these tests."""
    problem = cluster_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the local SLURM cluster is not usable: {problem}")
    pytest.skip(f"no local SLURM cluster: {problem}")


def cancel_run(output: str) -> None:
    """Cancel the SLURM jobs of the run whose Snakemake output this is (after a failure)."""
    for run_id in set(RUN_ID.findall(output)):
        _run(["scancel", "--name", run_id], timeout=15)


def snakemake(workdir: Path, *args: str, snakefile: Path, timeout: float) -> tuple[int, str]:
    """Run Snakemake in its own process group; SIGKILL the group and cancel jobs on timeout.

    Returns the exit status and the combined stdout/stderr.
    """
    cmd = [str(BIN / "snakemake"), "-s", str(snakefile), "--directory", str(workdir), *args]
    log = workdir / "snakemake-output.txt"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, text=True, env=_env(), start_new_session=True
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            output = log.read_text(errors="replace")
            cancel_run(output)
            raise AssertionError(
                f"{' '.join(cmd)} did not finish in {timeout} s; killed.\n{output[-6000:]}"
            ) from None
    output = log.read_text(errors="replace")
    if proc.returncode != 0:
        cancel_run(output)
    return proc.returncode, output


def slurm_jobs_of_run(output: str) -> dict[str, dict[str, str]]:
    """SLURM's own record of a run's jobs, by job id: squeue keeps them for MinJobAge."""
    run_ids = RUN_ID.findall(output)
    assert len(run_ids) == 1, f"expected one 'SLURM run ID' line in the output:\n{output[-3000:]}"
    proc = _run(["squeue", "-h", "-t", "all", "--name", run_ids[0], "-o", "%i|%k|%T"], timeout=15)
    assert proc.returncode == 0, proc.stderr
    jobs = {}
    for line in proc.stdout.splitlines():
        job_id, comment, state = line.strip().split("|")
        detail = _run(["scontrol", "show", "job", "-o", job_id], timeout=15)
        assert detail.returncode == 0, detail.stderr
        fields = dict(
            tok.split("=", 1) for tok in detail.stdout.split() if "=" in tok and tok[0].isupper()
        )
        m = re.fullmatch(r"rule_(.+?)(?:_wildcards_.*)?", comment)
        assert m, f"SLURM job {job_id} has comment {comment!r}, not rule_<name>[_wildcards_...]"
        jobs[job_id] = {**fields, "rule": m.group(1), "state": state}
    return jobs


def local_rule_counts(output: str) -> Counter:
    """How many jobs of each rule a local run executed (its 'localrule X:' lines)."""
    return Counter(r for r in re.findall(r"^localrule (\w+):$", output, re.M) if r != "all")


# --------------------------------------------------------------------- no cluster needed


def test_local_profile_layers_on_the_slurm_profile_and_covers_every_rule(tmp_path):
    general = yaml.safe_load((PROFILE_SLURM / "config.yaml").read_text())
    local = yaml.safe_load((PROFILE_LOCAL / "config.yaml").read_text())
    # the settings that keep the executor from hanging without accounting
    assert general["executor"] == "slurm"
    assert general["slurm-status-command"] == "squeue"
    assert "executor" not in local and "slurm-status-command" not in local
    assert "slurm_partition" not in general["default-resources"]
    assert "slurm_account" not in general["default-resources"]
    assert local["default-resources"]["slurm_partition"] == "debug"
    # set-resources of the later profile replaces the earlier one's whole: it must keep
    # the training GPU request and give every rule of the DAG its small memory
    assert local["set-resources"]["train"]["gpu"] == general["set-resources"]["train"]["gpu"]
    shutil.copy(TINY, tmp_path / "config.yaml")
    proc = subprocess.run(
        [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
         "--list-rules"],
        capture_output=True, text=True, env=_env(), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # target rules (no command, never submitted) need no resources
    targets = {"all", "paper", "figure2_seeded", "data_efficiency", "synthetic_dataset"}
    rules = {r.strip() for r in proc.stdout.splitlines() if r.strip()} - targets
    assert set(DAG_RULES) <= rules
    missing = rules - set(local["set-resources"])
    assert not missing, f"profiles/slurm-local/config.yaml set-resources lacks rules {missing}"


def test_dry_run_with_the_slurm_profiles_gives_each_rule_its_resources(tmp_path):
    shutil.copy(TINY, tmp_path / "config.yaml")
    rc, out = snakemake(tmp_path, "-n", *PROFILE_ARGS, snakefile=ROOT / "Snakefile", timeout=120)
    assert rc == 0, out[-6000:]
    blocks = re.findall(r"^rule (\w+):\n((?:    .*\n)+)", out, re.M)
    resources = {}
    for rule, body in blocks:
        m = re.search(r"^    resources: (.*)$", body, re.M)
        assert m, f"no resources line for rule {rule}"
        resources.setdefault(rule, dict(kv.split("=", 1) for kv in m.group(1).split(", ")))
    assert set(DAG_RULES) <= set(resources)
    for rule, res in resources.items():
        assert res["slurm_partition"] == "debug", rule
        assert int(res["mem_mb"]) <= 1000, rule
    assert resources["train"]["gpu"] == "1"
    assert "gpu" not in resources["predict"]


# --------------------------------------------------------------------- on the cluster

TRIVIAL = """
rule all:
    input: "out/hello.txt", "out/broken.txt"

rule hello:
    output: "out/hello.txt"
    threads: 2
    resources: mem_mb=100, runtime=5
    shell: "echo $SLURM_JOB_ID $SLURM_CPUS_PER_TASK $SLURM_JOB_PARTITION > {output}"

rule broken:
    output: "out/broken.txt"
    resources: mem_mb=100, runtime=5
    shell: "echo failing on purpose; exit 3"
"""


@pytest.mark.slow
def test_trivial_workflow_runs_as_slurm_jobs_and_a_failing_job_ends_the_run(tmp_path):
    require_cluster()
    (tmp_path / "Snakefile").write_text(TRIVIAL)
    rc, out = snakemake(
        tmp_path, *PROFILE_ARGS, "--keep-going", snakefile=tmp_path / "Snakefile", timeout=300
    )
    assert rc != 0, f"the failing rule did not fail the run:\n{out[-4000:]}"
    assert "Error in rule broken" in out
    job_id, cpus, partition = (tmp_path / "out/hello.txt").read_text().split()
    assert (cpus, partition) == ("2", "debug")
    jobs = slurm_jobs_of_run(out)
    by_rule = {j["rule"]: (jid, j["state"]) for jid, j in jobs.items()}
    assert by_rule == {"hello": (job_id, "COMPLETED"), "broken": (by_rule["broken"][0], "FAILED")}
    assert not (tmp_path / "out/broken.txt").exists()


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> dict:
    """The tiny DAG run locally and through SLURM, each in its own directory."""
    require_cluster()
    runs = {}
    for name, args, timeout in (
        ("local", ("--cores", "2"), LOCAL_DAG_TIMEOUT_S),
        ("slurm", PROFILE_ARGS, SLURM_DAG_TIMEOUT_S),
    ):
        work = tmp_path_factory.mktemp(f"tiny_{name}")
        shutil.copy(TINY, work / "config.yaml")
        rc, out = snakemake(work, *args, snakefile=ROOT / "Snakefile", timeout=timeout)
        assert rc == 0, f"{name} run of the tiny DAG failed:\n{out[-8000:]}"
        runs[name] = {"dir": work, "output": out}
    return runs


@pytest.mark.slow
def test_tiny_dag_under_slurm_gives_the_local_results(tiny_runs):
    local, slurm = tiny_runs["local"]["dir"], tiny_runs["slurm"]["dir"]
    rows = sorted(p.name for p in (local / "results/mini/table1").glob("*.json"))
    assert rows == ["row0.json", "row3.json"]
    for name in rows:
        ours_local = json.loads((local / "results/mini/table1" / name).read_text())["ours"]
        ours_slurm = json.loads((slurm / "results/mini/table1" / name).read_text())["ours"]
        for key in ("accuracy", "log_loss", "size_kb"):
            assert ours_slurm[key] == ours_local[key], (name, key)
        assert ours_slurm == ours_local, name
    assert (slurm / "results/mini/table1.csv").read_text() == (
        local / "results/mini/table1.csv"
    ).read_text()


@pytest.mark.slow
def test_every_job_of_the_dag_was_its_own_slurm_job(tiny_runs):
    out = tiny_runs["slurm"]["output"]
    jobs = slurm_jobs_of_run(out)
    submitted = {m[1]: m[2] for m in SUBMITTED.findall(out)}
    # what the executor says it submitted is what SLURM ran, all of it successfully
    assert set(submitted) == set(jobs)
    assert {j["state"] for j in jobs.values()} == {"COMPLETED"}
    for job_id, log in submitted.items():
        assert f"/rule_{jobs[job_id]['rule']}/" in log
    # the same jobs as the local run, one SLURM job each, covering every rule of the DAG
    counts = Counter(j["rule"] for j in jobs.values())
    assert counts == local_rule_counts(tiny_runs["local"]["output"])
    assert set(DAG_RULES) <= set(counts)


@pytest.mark.slow
def test_slurm_jobs_got_the_profile_resources(tiny_runs):
    jobs = slurm_jobs_of_run(tiny_runs["slurm"]["output"])
    for job_id, job in jobs.items():
        assert job["Partition"] == "debug", job_id
        assert job["Account"] == "local", job_id
        assert job["CPUs/Task"] == "1", job_id  # threads: 1 in the tiny config
        expected_mem = "1000M" if job["rule"] == "train" else "500M"
        assert job["MinMemoryNode"] == expected_mem, (job_id, job["rule"])
        gpus = job.get("TresPerJob", "")
        if job["rule"] == "train":
            assert "gpu:1" in gpus, (job_id, gpus)
        else:
            assert "gpu" not in gpus, (job_id, gpus)
