"""The data-efficiency study: configuration -> jobs, subset feature files, results table."""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from acoustic_lottery import efficiency as eff
from acoustic_lottery.data.subsets import subset_filename
from acoustic_lottery.errors import InputError
from acoustic_lottery.features.store import read_feature_attrs, read_features, write_features
from acoustic_lottery.labels import SCENES

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = ROOT / "tests/workflow/tiny_config.yaml"

BASE_CONFIG = {
    "dataset": {"name": "demo"},
    "training": {"epochs": 6, "batch_size": 32, "lr_max": 0.1, "seed": 0},
    "distillation": {"temperature": 1.0, "hard_weight": 0.0, "soft_weight": 1.0},
    "models": {
        "fcnn10": {
            "arch": "fcnn",
            "task": "scene",
            "width": 0.25,
            "copies": ["orig", "pitch"],
            "training": {"epochs": 2},
        },
        "fcnn3": {"arch": "fcnn", "task": "super", "width": 0.25},
        "sic_lth": {"arch": "sic", "task": "scene", "lottery": {"base": "sic"}},
        "bl": {"arch": "baseline", "task": "scene", "features": "baseline"},
    },
    "data_efficiency": {
        "training": {"batch_size": 16, "epochs": 4},
        "systems": {
            "plain": {},
            "kd": {"teacher": "fcnn10", "training": {"lr_max": 0.05}},
            "kd_pruned": {
                "teacher": "fcnn10",
                "progressive": {"base": "kd", "training": {"epochs": 6}},
            },
        },
    },
}


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(**study_changes) -> dict:
    cfg = copy.deepcopy(BASE_CONFIG)
    cfg["data_efficiency"].update(study_changes)
    return cfg


def test_fraction_keys_match_the_subset_file_names():
    for f in (5, 10.0, 2.5, 100, 12.25):
        assert subset_filename(f) == f"split{eff.fraction_key(f)}.csv"
    assert eff.fraction_keys(config(fractions=[50, 5, 2.5])) == ["2.5", "5", "50"]


def test_study_defaults_are_filled():
    study = eff.study_config(config())
    assert study["fractions"] == [5.0, 10.0, 25.0, 50.0, 100.0]
    assert study["teacher_data"] == "subset" and study["seed"] == 0
    assert study["complexity"] == {
        "max_kb": 128,
        "max_macs": 30000000,
        "frames": 44,
        "bands": 128,
        "dtype": None,
    }
    plain = study["systems"]["plain"]
    assert plain["arch"] == "repmobile" and plain["width"] == 1.0 and plain["copies"] == ["orig"]
    prog = study["systems"]["kd_pruned"]["progressive"]
    assert (prog["target_sparsity"], prog["steps"], prog["strategy"], prog["scope"]) == (
        0.5,
        3,
        "small_weights",
        "weights",
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kd": {"techer": "fcnn10"}}, "unknown config key 'data_efficiency.systems.kd.techer'"),
        ({"kd": {"teacher": "nope"}}, "data_efficiency.systems.kd.teacher: 'nope' is not defined"),
        ({"kd": {"teacher": "fcnn3"}}, "teacher 'fcnn3' has task 'super'"),
        ({"kd": {"teacher": "sic_lth"}}, "teacher 'sic_lth' is a lottery chain"),
        ({"kd": {"teacher": "bl"}}, "teacher 'bl' uses features 'baseline'"),
        (
            {"kd_pruned": {"progressive": {"base": "ghost"}}},
            "systems.kd_pruned.progressive.base: 'ghost' is not a system",
        ),
        (
            {"kd_pruned": {"progressive": {"base": "kd_pruned"}}},
            "a system cannot start from itself",
        ),
        (
            {"kd_pruned": {"width": 0.5, "progressive": {"base": "kd"}}},
            "systems.kd_pruned.width is 0.5 but its pruning base 'kd' has 1.0",
        ),
        (
            {"p2": {"progressive": {"base": "kd_pruned"}}},
            "'kd_pruned' is itself pruned",
        ),
    ],
)
def test_bad_study_settings_name_the_key(change, message):
    cfg = config()
    for name, settings in change.items():
        cfg["data_efficiency"]["systems"][name] = settings
    with pytest.raises(InputError, match=re.escape(message)):
        eff.study_config(cfg)


def test_fractions_must_be_percentages_with_distinct_names():
    with pytest.raises(InputError, match="data_efficiency.fractions"):
        eff.study_config(config(fractions=[5, 150]))
    with pytest.raises(InputError, match="data_efficiency.fractions"):
        eff.study_config(config(fractions=[5, 5.0]))
    with pytest.raises(InputError, match="'data_efficiency' is missing"):
        eff.study_config({"models": {}})


def test_specs_layer_global_study_and_system_settings():
    cfg = config()
    plain = eff.student_spec(cfg, "plain")
    assert plain["epochs"] == 4 and plain["batch_size"] == 16 and plain["lr_max"] == 0.1
    assert (plain["arch"], plain["task"], plain["width"], plain["feature_set"]) == (
        "repmobile",
        "scene",
        1.0,
        "lmfb",
    )
    assert "kd" not in plain
    kd = eff.student_spec(cfg, "kd")
    assert kd["lr_max"] == 0.05 and kd["kd"] == BASE_CONFIG["distillation"]
    tune = eff.finetune_spec(cfg, "kd_pruned")
    assert tune["epochs"] == 6 and tune["batch_size"] == 16 and "kd" in tune
    with pytest.raises(InputError, match="plain: has no 'progressive'"):
        eff.finetune_spec(cfg, "plain")
    teacher = eff.teacher_spec(cfg, "fcnn10")  # its own epochs win over the study's
    assert (teacher["arch"], teacher["width"], teacher["epochs"], teacher["batch_size"]) == (
        "fcnn",
        0.25,
        2,
        16,
    )
    assert eff.teacher_copies(cfg, "fcnn10") == ["orig", "pitch"]


def test_jobs_follow_the_systems():
    cfg = config()
    assert eff.system_names(cfg) == ["plain", "kd", "kd_pruned"]
    assert [eff.final_stage(cfg, s) for s in ("plain", "kd", "kd_pruned")] == [
        "dense",
        "dense",
        "pruned",
    ]
    assert eff.dense_source(cfg, "kd_pruned") == "kd"
    assert eff.train_systems(cfg) == ["kd", "plain"]  # kd_pruned starts from kd's model
    assert eff.subset_teachers(cfg) == ["fcnn10"]
    assert eff.subset_teachers(config(teacher_data="full")) == []
    args = eff.progressive_args(cfg, "kd_pruned")
    assert " ".join(args) == (
        "--target-sparsity 0.5 --steps 3 --strategy small_weights --ramp cubic --scope weights"
    )
    own = config()
    own["data_efficiency"]["systems"]["kd_pruned"]["progressive"] = {"end_fraction": 0.6}
    assert eff.dense_source(own, "kd_pruned") == "kd_pruned"
    assert "kd_pruned" in eff.train_systems(own)
    assert eff.progressive_args(own, "kd_pruned")[-2:] == ["--end-fraction", "0.6"]


def test_labels_and_system_spec():
    cfg = config()
    assert eff.system_label(cfg, "plain") == "Rep-Mobile"
    assert eff.system_label(cfg, "kd_pruned") == (
        "Rep-Mobile + KD (fcnn10) + progressive pruning (50 %)"
    )
    cfg["data_efficiency"]["systems"]["plain"]["label"] = "Student alone"
    spec = eff.system_spec(cfg, "plain")
    assert spec["label"] == "Student alone" and spec["flags"] == {"kd": False, "pruned": False}
    pruned = eff.system_spec(cfg, "kd_pruned")
    assert pruned["flags"] == {"kd": True, "pruned": True}
    assert pruned["progressive"]["base"] == "kd" and pruned["teacher_data"] == "subset"
    assert pruned["fractions"] == ["5", "10", "25", "50", "100"]
    json.dumps(pruned)  # goes on the command line


def test_check_study_plans_complexity_and_pruning():
    planned = eff.check_study(config())
    # the folded Rep-Mobile (docs/repmobile.md): 21,560 values, 15.74 M MACs at 3x128x44
    assert planned["plain"]["params"] == 21_560 and planned["plain"]["macs"] == 15_744_256
    assert planned["plain"]["ok"] and "plan" not in planned["plain"]
    assert len(planned["kd_pruned"]["plan"]["prune_epochs"]) == 3


def test_check_study_stops_a_system_over_the_limits():
    cfg = config()
    cfg["data_efficiency"]["systems"]["wide"] = {"width": 1.5}
    with pytest.raises(InputError, match=r"systems.wide \(planned.*MACs 33,8"):
        eff.check_study(cfg)
    cfg = config(complexity={"max_kb": 50})
    with pytest.raises(InputError, match="parameter memory 86,240 bytes"):
        eff.check_study(cfg)


def test_check_study_stops_a_schedule_that_does_not_fit_the_epochs():
    cfg = config()
    cfg["data_efficiency"]["systems"]["kd_pruned"]["progressive"]["steps"] = 10
    with pytest.raises(InputError, match="systems.kd_pruned.progressive: .*n_steps=10"):
        eff.check_study(cfg)


def test_the_repo_schema_block_matches_the_module():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    block = schema["properties"].get("data_efficiency")
    if block is None:
        pytest.skip("workflow/schemas/config.schema.yaml has no data_efficiency block yet")

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "description"}
        return [strip(v) for v in x] if isinstance(x, list) else x

    assert strip(block) == strip(eff.STUDY_SCHEMA)


# ------------------------------------------------------------------ subset features


def _meta(names, scenes, devices):
    return pd.DataFrame(
        {
            "filename": names,
            "label10": [SCENES.index(s) for s in scenes],
            "label3": [0] * len(names),
            "device": devices,
            "city": ["lyon"] * len(names),
            "identifier": [f"lyon-{i}" for i in range(len(names))],
        }
    )


@pytest.fixture
def feature_file(tmp_path):
    n = 7
    names = [f"audio/clip{i}.wav" for i in range(n)]
    scenes = [SCENES[i % 3] for i in range(n)]
    x = np.arange(n * 3 * 4 * 5, dtype=np.float32).reshape(n, 3, 4, 5)
    path = tmp_path / "orig.h5"
    attrs = {
        "feature_set": "lmfb",
        "params": {"n_mels": 4},
        "split": "train",
        "copy": "orig",
        "seed": 3,
    }
    write_features(path, x, _meta(names, scenes, ["a"] * 4 + ["b"] * 3), attrs)
    return path, names, scenes, x


def _subset(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["filename", "scene_label"])
        w.writerows(rows)
    return path


def test_select_features_copies_the_listed_rows_in_file_order(feature_file, tmp_path, monkeypatch):
    monkeypatch.setenv("ACOUSTIC_LOTTERY_PROGRESS", "0")
    src, names, scenes, x = feature_file
    listed = [5, 1, 3]
    sub = _subset(tmp_path / "split50.csv", [(names[i], scenes[i]) for i in listed])
    out = tmp_path / "subset50" / "orig.h5"
    report = eff.select_features(src, sub, out, batch_size=2)
    assert report["rows"] == 3 and report["skipped"] == 0
    got = read_features(out)
    np.testing.assert_array_equal(got.x, x[[1, 3, 5]])
    assert list(got.filename) == [names[i] for i in (1, 3, 5)]
    assert list(got.label10) == [SCENES.index(scenes[i]) for i in (1, 3, 5)]
    assert list(got.device) == ["a", "a", "b"]
    attrs = read_feature_attrs(out)
    assert attrs["copy"] == "orig" and attrs["seed"] == 3 and attrs["params"] == {"n_mels": 4}
    assert attrs["subset"]["file"] == str(sub) and attrs["subset"]["rows"] == 3


def test_select_features_names_the_files_for_clips_not_found(feature_file, tmp_path):
    src, names, scenes, _ = feature_file
    sub = _subset(tmp_path / "s.csv", [(names[0], scenes[0]), ("audio/ghost.wav", "airport")])
    out = tmp_path / "out.h5"
    with pytest.raises(InputError) as err:
        eff.select_features(src, sub, out)
    msg = str(err.value)
    assert str(sub) in msg and str(src) in msg and "line 3: audio/ghost.wav" in msg
    assert not out.exists()
    report = eff.select_features(src, sub, out, missing="skip")
    assert (report["rows"], report["skipped"]) == (1, 1)
    assert read_feature_attrs(out)["subset"]["skipped"] == 1


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("audio/clip0.wav", "bus")], "line 2: scene_label 'bus' for 'audio/clip0.wav'"),
        ([("audio/clip0.wav", "airport"), ("audio/clip0.wav", "airport")], "already listed"),
        ([("audio/clip0.wav",)], "line 2: expected 2 TAB-separated fields"),
    ],
)
def test_select_features_rejects_bad_lists(feature_file, tmp_path, rows, message):
    src = feature_file[0]
    with pytest.raises(InputError, match=re.escape(message)):
        eff.select_features(src, _subset(tmp_path / "s.csv", rows), tmp_path / "o.h5")


def test_select_features_needs_a_clip_and_a_header(feature_file, tmp_path):
    src = feature_file[0]
    sub = _subset(tmp_path / "s.csv", [("audio/ghost.wav", "airport")])
    with pytest.raises(InputError, match="none of its 1 listed clips"):
        eff.select_features(src, sub, tmp_path / "o.h5", missing="skip")
    bad = tmp_path / "b.csv"
    bad.write_text("name\tscene\naudio/clip0.wav\tairport\n")
    with pytest.raises(InputError, match="wrong columns"):
        eff.select_features(src, bad, tmp_path / "o.h5")
    with pytest.raises(InputError, match="feature file not found"):
        eff.select_features(tmp_path / "none.h5", sub, tmp_path / "o.h5")


# ------------------------------------------------------------------ systems and table


def _results(tmp_path: Path, system: str, accs: dict[str, float], *, params=21_560, pruned=False):
    metrics, complexity, pruning = {}, {}, {}
    for key, acc in accs.items():
        d = tmp_path / system / f"p{key}"
        d.mkdir(parents=True)
        metrics[key] = d / "metrics.json"
        metrics[key].write_text(
            json.dumps(
                {
                    "task": "scene",
                    "n": 90,
                    "accuracy": acc + 0.01,
                    "macro_class_accuracy": acc,
                    "log_loss": 1.5,
                }
            )
        )
        complexity[key] = d / "complexity.json"
        complexity[key].write_text(
            json.dumps(
                {
                    "params": params,
                    "nonzero": params - 10,
                    "param_bytes": 4 * params,
                    "param_kb": 4 * params / 1000,
                    "macs": 15_744_256,
                    "max_bytes": 128_000,
                    "max_macs": 30_000_000,
                    "ok": True,
                }
            )
        )
        if pruned:
            pruning[key] = d / "progressive.json"
            pruning[key].write_text(
                json.dumps(
                    {"sparsity": {"sparsity": 0.5, "total": 40_000}, "weights_remaining": 0.5}
                )
            )
    return metrics, complexity, pruning


def _spec(name, fractions, pruned=False):
    return {
        "name": name,
        "label": name.upper(),
        "fractions": fractions,
        "dataset": "demo",
        "flags": {"kd": False, "pruned": pruned},
    }


def test_system_results_in_percent_with_the_mean_over_subsets(tmp_path):
    m, c, _ = _results(tmp_path, "plain", {"5": 0.2, "100": 0.6})
    out = tmp_path / "plain.json"
    result = eff.write_system(_spec("plain", ["5", "100"]), m, c, out)
    assert json.loads(out.read_text()) == result
    assert result["subsets"]["5"]["macro_class_accuracy_pct"] == pytest.approx(20.0)
    assert result["subsets"]["100"]["accuracy_pct"] == pytest.approx(61.0)
    assert result["mean_macro_class_accuracy_pct"] == pytest.approx(40.0)
    assert result["complexity_ok"] and result["max_param_bytes"] == 86_240


def test_system_results_need_every_subset_and_scene_metrics(tmp_path):
    m, c, p = _results(tmp_path, "kd_pruned", {"5": 0.2, "100": 0.6}, pruned=True)
    with pytest.raises(InputError, match=re.escape("--metrics: expected one file for each")):
        eff.build_system(_spec("x", ["5", "50", "100"]), m, c)
    with pytest.raises(InputError, match="--pruning: expected one file for each"):
        eff.build_system(_spec("x", ["5", "100"], pruned=True), m, c)
    result = eff.build_system(_spec("x", ["5", "100"], pruned=True), m, c, p)
    assert result["subsets"]["5"]["pruning"] == {
        "sparsity": 0.5,
        "weights_remaining": 0.5,
        "prunable": 40_000,
    }
    m["5"].write_text(
        json.dumps(
            {"task": "super", "n": 9, "accuracy": 1, "macro_class_accuracy": 1, "log_loss": 0}
        )
    )
    with pytest.raises(InputError, match="metrics of task 'super'"):
        eff.build_system(_spec("x", ["5", "100"]), m, c)


def test_table_lists_every_system_and_subset(tmp_path):
    files = []
    for name, accs, pruned in (
        ("plain", {"5": 0.2, "100": 0.6}, False),
        ("kd_pruned", {"5": 0.3, "100": 0.7}, True),
    ):
        m, c, p = _results(tmp_path, name, accs, pruned=pruned)
        files.append(tmp_path / f"{name}.json")
        eff.write_system(_spec(name, list(accs), pruned), m, c, files[-1], p)
    summary = tmp_path / "summary.json"
    summary.write_text(
        json.dumps(
            {
                "subsets": {
                    "split5.csv": {"fraction": 5.0, "clips": 20},
                    "split100.csv": {"fraction": 100.0, "clips": 700},
                }
            }
        )
    )
    md, csv_path = tmp_path / "t.md", tmp_path / "t.csv"
    frame = eff.write_table(files, md, csv_path, summary)
    text = md.read_text()
    assert "| System | 5 % (20 clips) | 100 % (700 clips) | Mean |" in text
    assert "| PLAIN | 20.0 | 60.0 | 40.0 |" in text
    assert "| KD_PRUNED | 21,560 | 21,550 | 86.24 | 15.74 | 50.0 % | yes |" in text
    table = pd.read_csv(csv_path)
    assert len(table) == len(frame) == 4
    assert list(table["train_clips"]) == [20, 700, 20, 700]
    assert table.loc[table["system"] == "kd_pruned", "sparsity"].tolist() == [0.5, 0.5]


def test_table_refuses_systems_on_different_subsets(tmp_path):
    files = []
    for name, accs in (("a", {"5": 0.2, "100": 0.6}), ("b", {"10": 0.3, "100": 0.7})):
        m, c, _ = _results(tmp_path, name, accs)
        files.append(tmp_path / f"{name}.json")
        eff.write_system(_spec(name, list(accs)), m, c, files[-1])
    with pytest.raises(InputError, match="'b' covers subsets"):
        eff.write_table(files, tmp_path / "t.md", tmp_path / "t.csv")
    with pytest.raises(InputError, match=r"system\(s\) \['a'\] given more than once"):
        eff.write_table([files[0], files[0]], tmp_path / "t.md", tmp_path / "t.csv")
    assert not (tmp_path / "t.md").exists()


# ------------------------------------------------------------------ the rules (dry run)


def _workflow_copy(tmp_path: Path) -> Path:
    """The repo's workflow, with the study's include and schema block added if missing."""
    wf = tmp_path / "wf"
    wf.mkdir(parents=True)
    shutil.copy(ROOT / "Snakefile", wf / "Snakefile")
    shutil.copytree(ROOT / "workflow", wf / "workflow")
    shutil.copytree(ROOT / "envs", wf / "envs")
    snakefile = (wf / "Snakefile").read_text()
    if "efficiency.smk" not in snakefile:
        snakefile = snakefile.replace(
            'include: "workflow/rules/figures.smk"\n',
            'include: "workflow/rules/figures.smk"\ninclude: "workflow/rules/efficiency.smk"\n',
        )
        (wf / "Snakefile").write_text(snakefile)
    schema_path = wf / "workflow/schemas/config.schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    schema["properties"].setdefault("data_efficiency", eff.STUDY_SCHEMA)
    schema_path.write_text(yaml.safe_dump(schema, sort_keys=False))
    return wf


STUDY_BLOCK = """
data_efficiency:
  fractions: [50, 100]
  training: {batch_size: 8}
  systems:
    plain: {}
    kd: {teacher: teacher}
    kd_pruned: {teacher: teacher, progressive: {base: kd, steps: 1}}
"""


def _dry_run(
    tmp_path: Path, study: str, target: str = "data_efficiency", params: str | None = None
) -> subprocess.CompletedProcess:
    wf = _workflow_copy(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(TINY.read_text() + study)
    if params is not None:
        (work / "params.yaml").write_text(params)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    cmd = [
        str(BIN / "snakemake"),
        "-s",
        str(wf / "Snakefile"),
        "--directory",
        str(work),
        "-n",
        "--cores",
        "1",
        target,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _job_counts(out: str) -> dict[str, int]:
    table = out.split("Job stats:")[1].split("total")[0]
    return {m[0]: int(m[1]) for m in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_dry_run_plans_the_study_jobs(tmp_path):
    proc = _dry_run(tmp_path, STUDY_BLOCK)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts = _job_counts(proc.stdout)
    # 2 subsets; teacher copies orig + pitch; dense plain and kd; kd_pruned starts from kd
    assert counts["efficiency_subsets"] == 1
    assert counts["efficiency_features"] == 4
    assert counts["efficiency_teacher"] == 2
    assert counts["efficiency_train"] == 4
    assert counts["efficiency_prune"] == 2
    for rule in ("deploy", "complexity", "predict", "evaluate"):
        assert counts[f"efficiency_{rule}"] == 6, rule
    assert counts["efficiency_system"] == 3 and counts["efficiency_table"] == 1
    blocks = proc.stdout.split("rule efficiency_prune:")[1:]
    assert all(
        "efficiency_runs/kd/p" in b.split("output:")[0] for b in blocks
    )  # dense input from kd


def test_dry_run_stops_a_study_over_the_limits(tmp_path):
    proc = _dry_run(tmp_path, STUDY_BLOCK.replace("plain: {}", "plain: {width: 1.5}"))
    assert proc.returncode != 0
    assert "data_efficiency.systems.plain (planned" in proc.stdout + proc.stderr


def test_a_value_only_the_study_rejects_stops_only_the_study(tmp_path):
    """Three epochs are too few for the study's progressive schedule, but fine for a
    Table 1 row: the study's check runs when (and only when) a study job is in the DAG,
    here set the way `dvc exp run -S training.epochs=3` sets it (params.yaml)."""
    params = "training:\n  epochs: 3\n"
    block = STUDY_BLOCK.replace("steps: 1", "steps: 3")
    row = _dry_run(tmp_path / "row", block, "results/tiny/table1/row3.json", params)
    assert row.returncode == 0, row.stderr[-3000:]
    study = _dry_run(tmp_path / "study", block, "data_efficiency", params)
    assert study.returncode != 0
    assert "kd_pruned.progressive: progressive pruning" in study.stdout + study.stderr
    assert "(epochs=3)" in study.stdout + study.stderr


def test_study_paths_lay_out_the_jobs_files():
    paths = eff.StudyPaths(config(fractions=[5, 100]), "results/demo")
    assert paths.targets() == ["results/demo/efficiency.md", "results/demo/efficiency.csv"]
    assert paths.system_json("kd") == "results/demo/efficiency/kd.json"
    assert eff.StudyPaths({"models": {}}, "results/demo").targets() == []
    kd = paths.student_inputs("kd", "5")
    assert kd == {
        "train": ["results/demo/features/lmfb/train/subset5/orig.h5"],
        "teacher_scene": "results/demo/efficiency_runs/teachers/fcnn10/p5/final.pt",
    }
    assert paths.teacher_inputs("fcnn10", "5") == [
        "results/demo/features/lmfb/train/subset5/orig.h5",
        "results/demo/features/lmfb/train/subset5/pitch.h5",
    ]
    assert paths.prune_inputs("kd_pruned", "100")["dense"] == (
        "results/demo/efficiency_runs/kd/p100/dense/final.pt"
    )
    assert (
        paths.final("kd_pruned", "5") == "results/demo/efficiency_runs/kd_pruned/p5/pruned/final.pt"
    )
    assert paths.final("plain", "5") == "results/demo/efficiency_runs/plain/p5/dense/final.pt"
    assert "pruning" not in paths.system_inputs("kd")
    assert paths.system_inputs("kd_pruned")["pruning"][1].endswith("p100/pruned/progressive.json")
    assert paths.pairs("--metrics", ["a.json", "b.json"]) == ["--metrics", "5=a.json", "100=b.json"]
    with pytest.raises(InputError, match="1 files for the 2 subsets"):
        paths.pairs("--metrics", ["a.json"])
    full = eff.StudyPaths(config(teacher_data="full"), "r", lambda m: f"r/models/{m}/round2.pt")
    assert full.student_inputs("kd", "5")["teacher_scene"] == "r/models/fcnn10/round2.pt"
