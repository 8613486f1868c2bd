"""The real Snakemake DAG, end to end, on a tiny configuration."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TINY = Path(__file__).with_name("tiny_config.yaml")


@pytest.mark.slow
def test_rows_are_built_with_the_published_sizes(tiny_run):
    rows = {}
    for n in (0, 3, 4, 5, 6, 8, 11):
        rows[n] = json.loads((tiny_run / f"results/tiny/table1/row{n}.json").read_text())
        ours = rows[n]["ours"]
        assert 0.0 <= ours["accuracy"] <= 100.0
        assert ours["log_loss"] > 0
        assert rows[n]["paper"]["index"] == n
    # the challenge shipped the baseline in float16: 46,246 values x 2 bytes
    assert rows[0]["ours"]["size_kb"] == pytest.approx(90.3, rel=0.01)
    assert rows[3]["ours"]["size_kb"] == pytest.approx(503, rel=0.01)
    assert rows[3]["paper"]["accuracy"] == 67.8
    assert rows[4]["flags"]["tsl"] and rows[4]["ours"]["size_kb"] == pytest.approx(503, rel=0.01)
    # two-stage: SIC10 + SIC3 (the paper's 1006 KB)
    assert rows[6]["flags"]["two_stage"]
    assert rows[6]["ours"]["size_kb"] == pytest.approx(1006, rel=0.01)
    # int8: every stored value at one byte (the paper's 126 KB), predictions of the artifact
    assert rows[8]["flags"]["quant"]
    assert rows[8]["ours"]["size_kb"] == pytest.approx(126, rel=0.01)
    int8 = tiny_run / "results/tiny/predictions/sic/int8/scene/evaluate.h5"
    assert int8.is_file()
    # progressive pruning to 90 % of the conv/linear weights, then int8
    report = json.loads((tiny_run / "results/tiny/models/sic_prog/progressive.json").read_text())
    assert report["weights_remaining"] == pytest.approx(0.1, abs=0.01)
    assert rows[11]["ours"]["size_kb"] < 126 * 0.2
    # three rounds at 50 % of the remaining conv/linear weights: 1/8 of them left
    assert rows[5]["flags"]["lth"] and rows[5]["ours"]["size_kb"] < 503 / 4
    system = json.loads((tiny_run / "results/tiny/table1/systemd.json").read_text())
    assert system["row"] is None and system["paper"]["system"] == "System (d)"
    # the same SIC once as float and once as int8, plus the 3-class SIC
    assert system["ours"]["size_kb"] == pytest.approx(503 + 503 / 4 + 500.7, rel=0.01)
    table = (tiny_run / "results/tiny/table1.md").read_text()
    assert "| (d) " in table
    assert "Official Baseline" in table and "SIC" in table


@pytest.mark.slow
def test_figures_and_the_device_table_are_drawn(tiny_run):
    fig = tiny_run / "results/tiny/figures"
    for png in ("figure2.png", "figure3.png", "devices.png"):
        assert (fig / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    points = [json.loads((fig / f"points/sic_chain/round{t}.json").read_text()) for t in range(4)]
    remaining = [p["weights_remaining"] for p in points]
    assert remaining[0] == 1.0
    assert remaining == sorted(remaining, reverse=True)
    assert remaining[3] == pytest.approx(0.5**3, abs=0.002)
    assert "s4 (unseen)" in (fig / "devices.md").read_text()


@pytest.mark.slow
def test_onnx_int8_is_compared_with_the_pytorch_int8_evaluation(tiny_run):
    onnx = tiny_run / "results/tiny/onnx"
    compare = json.loads((onnx / "sic/compare.json").read_text())
    quant = json.loads((onnx / "sic/quantize.json").read_text())
    scene = compare["heads"]["scene"]
    assert scene["n"] > 0 and 0 <= scene["argmax_agreement"] <= 1
    assert scene["difference_points"] == pytest.approx(
        scene["onnx_int8_accuracy"] - scene["torch_int8_accuracy"]
    )
    assert quant["n_calibration"] == 32 and quant["file_bytes"] < quant["float_bytes"]
    table = (tiny_run / "results/tiny/onnx.md").read_text()
    assert f"| sic | scene | {scene['n']} | {scene['torch_int8_accuracy']:.2f} |" in table


@pytest.mark.slow
def test_every_job_leaves_a_log_and_a_benchmark(tiny_run):
    logs = list((tiny_run / "logs/tiny").rglob("*.log"))
    benches = list((tiny_run / "benchmarks/snakemake/tiny").rglob("*.tsv"))
    assert len(logs) >= 9 and len(benches) == len(logs)


@pytest.mark.slow
def test_config_strings_never_reach_a_shell(tiny_run):
    """The tiny config's data set path holds spaces, quotes, `;` and a `touch`: every
    rule that reads it (generate, features, augment, speccorr, subsets) got it as one
    argument, and nothing else ran."""
    path = yaml.safe_load(TINY.read_text())["dataset"]["path"]
    assert " " in path and "'" in path and '"' in path and "; touch PWNED" in path
    assert (tiny_run / path / "synthetic.json").is_file()
    with h5py.File(tiny_run / "results/tiny/features/lmfb/train/pitch.h5", "r") as f:
        assert f.attrs["dataset_root"] == path  # as given, not split by a shell
    assert list((tiny_run / "results/tiny").rglob("subsets/summary.json"))  # the study's
    assert list(tiny_run.rglob("PWNED*")) == [] and list(ROOT.glob("PWNED*")) == []


@pytest.mark.slow
def test_second_run_has_nothing_to_do(tiny_run, smk):
    proc = smk(tiny_run, "-n", "--cores", "2")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_bad_config_key_stops_the_run_naming_it(tmp_path, smk):
    cfg = TINY.read_text().replace("  epochs: 2\n", "  epochz: 2\n")
    (tmp_path / "config.yaml").write_text(cfg)
    proc = smk(tmp_path, "-n", "--cores", "1", check=False)
    assert proc.returncode != 0
    assert "unknown config key 'training.epochz'" in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def tiny_dry_run(tmp_path_factory, smk) -> str:
    """What `snakemake -n` plans for the tiny config from nothing (one DAG build)."""
    work = tmp_path_factory.mktemp("tiny_dry")
    shutil.copy(TINY, work / "config.yaml")
    return smk(work, "-n", "--cores", "2").stdout


def test_dry_run_lists_the_jobs_of_rows_0_and_3(tiny_dry_run):
    out = tiny_dry_run
    for rule in ("generate_synthetic", "features", "train", "predict", "size", "row", "table"):
        assert f"rule {rule}:" in out or f"\n{rule} " in out or f" {rule}\n" in out, rule


def test_dry_run_of_config_yaml_gives_the_teachers_reverb_and_the_students_row_1(tmp_path, smk):
    """config.yaml's DAG from nothing: an augment job writes the reverb copy that the
    teachers (rows 1-2) train on, and the 10-class TSL students get row 1's two-stage
    teacher (fcnn10 fused with fcnn3) while the 3-class ones learn from fcnn3 alone."""
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    out = smk(tmp_path, "-n", "-p", "--cores", "1").stdout
    assert "train/reverb.h5" in out and "augment --kind reverb" in out
    models = "results/synthetic/models"
    shell = re.finditer(r"^Shell command: .*--out-dir \S+/models/(\w+) .*$", out, re.M)
    jobs = {m.group(1): m.group(0) for m in shell}  # dense training jobs by model
    assert all("train/reverb.h5" in jobs[t] for t in ("fcnn10", "fcnn3", "resnet10", "resnet3"))
    fusion = f"--teacher-fusion {models}/fcnn3/final.pt"
    assert f"--teacher scene={models}/fcnn10/final.pt {fusion}" in jobs["sic_tsl"]
    assert fusion in jobs["lic_tsl_aug"]
    assert f"--teacher super={models}/fcnn3/final.pt" in jobs["sic3_tsl"]
    assert "--teacher-fusion" not in jobs["sic3_tsl"] and "reverb" not in jobs["sic_tsl"]


def test_lint_is_clean():
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        [str(BIN / "snakemake"), "--lint"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


def _lottery_jobs(out: str) -> list[str]:
    """The round directories of the lottery_round jobs a dry run lists."""
    blocks = out.split("rule lottery_round:")[1:]
    return sorted(b.split("output: ")[1].split("/final.pt")[0] for b in blocks)


@pytest.mark.slow
def test_changing_round_2_reruns_rounds_2_and_3_only(tiny_run, smk):
    override = tiny_run / "round2.yaml"
    override.write_text("models:\n  sic_chain:\n    lottery:\n      per_round: {2: {rate: 0.3}}\n")
    proc = smk(tiny_run, "-n", "--cores", "2", "--configfile", str(override.resolve()))
    assert _lottery_jobs(proc.stdout) == [f"results/tiny/models/sic_chain/round{t}" for t in (2, 3)]


def test_dry_run_chains_the_three_lottery_rounds(tiny_dry_run):
    out = tiny_dry_run
    assert _lottery_jobs(out) == [f"results/tiny/models/sic_chain/round{t}" for t in range(1, 4)]
    for block in out.split("rule lottery_round:")[1:]:
        inputs, rest = block.split("output:", 1)
        t = int(re.search(r"sic_chain/round(\d+)/final\.pt", rest).group(1))
        previous = "models/sic/final.pt" if t == 1 else f"sic_chain/round{t - 1}/final.pt"
        assert previous in inputs, (t, inputs)
        assert "models/sic/init.pt" in inputs  # Θ0 of every round


def test_a_row_over_budget_stops_the_dag_naming_each_member(tmp_path, smk):
    cfg = TINY.read_text().replace(
        '  "3": {members: [{model: sic}], over_budget_ok: true}',
        '  "3": {members: [{model: sic}]}',
    )
    (tmp_path / "config.yaml").write_text(cfg)
    proc = smk(tmp_path, "-n", "--cores", "1", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "table1.3" in out and "128 KB budget" in out and "sic 503.00 KB" in out


@pytest.mark.slow
def test_the_exported_system_predicts_the_pipelines_fused_probabilities(tiny_run, tmp_path):
    """`export-system` (rule export_system) then `predict`: system (d) as one artifact
    (SIC float at weight 4, SIC int8, the 3-class SIC, two-stage fusion) gives the
    pipeline's fused probabilities on the same clips, to float32 rounding."""
    import numpy as np

    from acoustic_lottery.cli import main
    from acoustic_lottery.evaluation.predict import read_predictions

    results = tiny_run / "results/tiny"
    artifact = results / "systems/systemd.alot"
    report = json.loads((results / "systems/systemd.json").read_text())
    assert report["fusion"] == "two_stage" and len(report["members"]) == 3
    # sized by the DCASE rule as each member is stored: float members as their size
    # reports, the int8 one as its quantize report (BN folded into the int8 biases)
    sizes = results / "sizes"
    floats = sum(json.loads((sizes / f"{m}.json").read_text())["bytes"] for m in ("sic", "sic3"))
    int8 = json.loads((sizes / "sic.int8.json").read_text())["int8"]["bytes"]
    assert report["artifact"]["dcase_bytes"] == floats + int8
    out = tmp_path / "systemd.h5"
    features = results / "features/lmfb/evaluate/orig.h5"
    assert main(["predict", "--model", str(artifact), "--features", str(features),
                 "--out", str(out)]) == 0  # fmt: skip
    ours, pipeline = (
        read_predictions(out),
        read_predictions(results / "predictions/table1/systemd.h5"),
    )
    assert list(ours.filename) == list(pipeline.filename)
    np.testing.assert_allclose(ours.probs, pipeline.probs, rtol=0, atol=1e-6)
    assert (ours.probs.argmax(1) == pipeline.probs.argmax(1)).all()
