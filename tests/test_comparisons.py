"""The report's claims as paired comparisons: pairs from the config (missing ones
skipped at DAG-build time), the lottery controls, and the verb's Markdown/CSV/JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from acoustic_lottery.cli import main
from acoustic_lottery.comparisons import comparison_pairs, pair_files, write_comparisons
from acoustic_lottery.configuration import validate_config
from acoustic_lottery.errors import InputError
from acoustic_lottery.evaluation.predict import Predictions, write_predictions
from acoustic_lottery.io import read_json
from acoustic_lottery.labels import DEVICES, SCENES

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
R = "results/t"
N_REC = 20


def eval_predictions(seed: int, skill: float) -> Predictions:
    """N_REC recordings on all 9 devices with TAU names; `skill`: share of clips right."""
    rng = np.random.default_rng(seed)
    rec = np.repeat(np.arange(N_REC), 9)
    label = rec % 10
    probs = rng.random((len(label), 10))
    hit = rng.random(len(label)) < skill
    probs[hit, label[hit]] += 5.0
    return Predictions(
        probs=(probs / probs.sum(1, keepdims=True)).astype(np.float32),
        label=label,
        device=list(DEVICES) * N_REC,
        filename=[
            f"audio/{SCENES[r % 10]}-lisbon-{100 + r}-{4000 + r}-{d}.wav"
            for r in range(N_REC)
            for d in DEVICES
        ],
        class_names=list(SCENES),
        task="scene",
    )


def config(**extra) -> dict:
    cfg = {
        "dataset": {"name": "t", "kind": "synthetic", "path": "data/t"},
        "models": {
            "sic": {"arch": "sic", "task": "scene"},
            "sic3": {"arch": "sic", "task": "super"},
            "sic_tsl": {"arch": "sic", "task": "scene"},
            "chain": {"arch": "sic", "lottery": {"base": "sic"}},
            "chain_rm": {
                "arch": "sic",
                "lottery": {"control_of": "chain", "control": "random_mask"},
            },
        },
        "table1": {
            "3": {"members": [{"model": "sic"}]},
            "4": {"members": [{"model": "sic_tsl"}]},
            "5": {"members": [{"model": "chain"}]},
            "22": {
                "members": [
                    {"model": "sic"},
                    {"model": "sic_tsl"},
                    {"model": "sic3", "head": "super"},
                ],
                "fusion": "two_stage",
            },
        },
    }
    cfg.update(extra)
    return validate_config(cfg, SCHEMA)


def test_the_default_pairs_skip_what_the_config_does_not_build():
    pairs = comparison_pairs(config(), R)
    by_claim = {p["claim"]: p for p in pairs}
    tsl = by_claim["teacher-student learning improves the SIC"]
    assert tsl["a"]["files"] == [f"{R}/predictions/table1/row3.h5"]
    assert tsl["b"]["files"] == [f"{R}/predictions/table1/row4.h5"]
    assert "skipped" not in tsl
    lic = by_claim["teacher-student learning improves the LIC"]
    assert lic["skipped"] == (
        "table1.12 is not in this configuration; table1.13 is not in this configuration"
    )
    assert "a" not in lic and "b" not in lic
    aug = by_claim["augmented copies improve the SIC on unseen devices"]
    assert aug["skipped"] == "models.sic_aug is not in this configuration"
    best = by_claim["the ensemble beats its best single member"]
    # the 10-class members only; the 3-class member is no candidate
    assert best["a"]["files"] == [
        f"{R}/predictions/sic/scene/evaluate.h5",
        f"{R}/predictions/sic_tsl/scene/evaluate.h5",
    ]
    assert best["a"]["select"] == "best" and best["a"]["members"] == ["sic", "sic_tsl"]
    # the control chain against its winning chain, both at their final rounds
    control = pairs[-1]
    assert control["a"]["files"] == [f"{R}/predictions/chain_rm/scene/evaluate.h5"]
    assert control["b"]["files"] == [f"{R}/predictions/chain/scene/evaluate.h5"]
    assert "random_mask" in control["claim"]
    # the DAG asks only for files of pairs it can build
    files = pair_files(pairs)
    assert f"{R}/predictions/table1/row3.h5" in files and len(files) == len(set(files))
    assert not any("row12" in f or "sic_aug" in f for f in files)


def test_configured_pairs_replace_the_defaults_and_controls_can_be_off():
    pairs = comparison_pairs(
        config(
            comparisons={
                "controls": False,
                "pairs": [
                    {
                        "claim": "int8 keeps it",
                        "a": {"model": "sic"},
                        "b": {"model": "sic", "quantized": True},
                    },
                    {"claim": "super", "a": {"model": "sic3"}, "b": {"system": "d"}},
                ],
            }
        ),
        R,
    )
    assert [p["claim"] for p in pairs] == ["int8 keeps it", "super"]
    assert pairs[0]["b"]["files"] == [f"{R}/predictions/sic/int8/scene/evaluate.h5"]
    assert pairs[0]["b"]["label"] == "sic (int8)" and pairs[0]["devices"] == "all"
    assert pairs[1]["skipped"] == "systems.d is not in this configuration"
    bad = config(comparisons={"pairs": [{"claim": "x", "a": {"model": "sic", "head": "super"},
                                         "b": {"row": "3"}}]})  # fmt: skip
    with pytest.raises(InputError, match=r"comparisons.pairs\[0\].a.head: model 'sic'"):
        comparison_pairs(bad, R)


@pytest.fixture
def predictions(tmp_path):
    """row3 (weak), row4 (much stronger), two members of row 22 and row 22 itself."""
    out = {}
    for name, seed, skill in (
        ("row3", 1, 0.3),
        ("row4", 1, 0.9),
        ("sic", 2, 0.4),
        ("sic_tsl", 3, 0.5),
        ("row22", 3, 0.5),
    ):
        path = tmp_path / f"{name}.h5"
        write_predictions(path, eval_predictions(seed=seed, skill=skill))
        out[name] = str(path)
    return out


def pairs_of(p: dict) -> list[dict]:
    def side(label, *names, select="only"):
        return {"label": label, "files": [p[n] for n in names], "members": list(names),
                "select": select}  # fmt: skip

    return [
        {"claim": "4 beats 3", "devices": "all", "a": side("row 3", "row3"),
         "b": side("row 4", "row4")},
        {"claim": "4 beats 3 on unseen devices", "devices": "unseen",
         "a": side("row 3", "row3"), "b": side("row 4", "row4")},
        {"claim": "22 beats its best member", "devices": "all",
         "a": side("best member of row 22", "sic", "sic_tsl", select="best"),
         "b": side("row 22", "row22")},
        {"claim": "13 beats 12", "devices": "all", "skipped": "table1.12 is not here"},
    ]  # fmt: skip


def test_the_comparisons_table_its_skipped_claims_and_its_resolution(predictions, tmp_path):
    pairs = pairs_of(predictions)
    out = {k: tmp_path / f"comparisons.{k}" for k in ("md", "csv", "json")}
    result = write_comparisons(
        pairs,
        list(predictions.values()),
        out_md=out["md"],
        out_csv=out["csv"],
        out_json=out["json"],
        statistics={"n_boot": 500, "seed": 2},
    )
    rows = {r["claim"]: r for r in result["comparisons"]}
    planted = rows["4 beats 3"]
    assert planted["status"] == "ok" and planted["accuracy_diff"] > 20
    assert planted["accuracy_diff_excludes_zero"] and planted["accuracy_diff_ci"][0] > 0
    assert planted["n_clips"] == N_REC * 9 and planted["n_recordings"] == N_REC
    assert rows["4 beats 3 on unseen devices"]["n_clips"] == N_REC * 3
    # the best member of row 22 is sic_tsl, whose predictions row22 repeats: B - A = 0
    best = rows["22 beats its best member"]
    assert best["a"] == "best member of row 22 (sic_tsl)"
    assert best["accuracy_diff_ci"] == [0.0, 0.0] and not best["accuracy_diff_excludes_zero"]
    assert rows["13 beats 12"] == {
        "claim": "13 beats 12",
        "devices": "all",
        "status": "skipped",
        "reason": "table1.12 is not here",
    }
    done = [r for r in result["comparisons"] if r["status"] == "ok"]
    half = float(np.median([r["accuracy_diff_half_width"] for r in done]))
    assert result["resolution"]["accuracy_points"] == pytest.approx(half)
    md = out["md"].read_text()
    assert f"about {half:.1f} accuracy points" in md
    assert md.rstrip().endswith("are not distinguished from 0 on this evaluation split.")
    assert "- 13 beats 12: table1.12 is not here" in md
    assert "| 4 beats 3 " in md and "d_acc_ci" in md
    csv = out["csv"].read_text().splitlines()
    assert csv[0].startswith("claim,A,B,devices,clips,recordings,acc_A,acc_B,d_acc,d_acc_ci")
    assert len(csv) == 1 + 3
    saved = read_json(out["json"])
    assert saved["bootstrap"] == {"n_boot": 500, "seed": 2, "level": 0.95, "unit": "recording"}
    # deterministic for the seed
    again = write_comparisons(
        pairs,
        list(predictions.values()),
        out_md=tmp_path / "b.md",
        out_csv=tmp_path / "b.csv",
        out_json=tmp_path / "b.json",
        statistics={"n_boot": 500, "seed": 2},
    )
    assert again["comparisons"] == result["comparisons"]


def test_the_verb_checks_its_inputs_and_writes_the_files(predictions, tmp_path, capsys):
    pairs = pairs_of(predictions)
    outs = ["--out-md", str(tmp_path / "c.md"), "--out-csv", str(tmp_path / "c.csv")]
    outs += ["--out-json", str(tmp_path / "c.json")]
    args = ["comparisons", "--pairs", json.dumps(pairs), "--statistics", '{"n_boot": 100}']
    assert main([*args, "--predictions", *predictions.values(), *outs]) == 0
    assert "Smallest difference this table resolves" in capsys.readouterr().out
    # a file a pair names but the job was not given: refused
    assert main([*args, "--predictions", predictions["row3"], *outs]) == 2
    assert "is named by a pair but not given with --predictions" in capsys.readouterr().err
    # only skipped pairs (a tiny config): the files still exist, saying so
    only_skipped = json.dumps([pairs[-1]])
    assert main(["comparisons", "--pairs", only_skipped, *outs]) == 0
    assert "No comparison could be computed" in (tmp_path / "c.md").read_text()


def test_pairs_of_different_clips_are_refused(predictions, tmp_path):
    from acoustic_lottery.evaluation.predict import read_predictions

    other = read_predictions(predictions["row4"])
    other.filename = other.filename[::-1].copy()
    write_predictions(predictions["row4"], other)
    with pytest.raises(InputError, match="clip order differs"):
        write_comparisons(
            pairs_of(predictions)[:1],
            list(predictions.values()),
            out_md=tmp_path / "c.md",
            out_csv=tmp_path / "c.csv",
            out_json=tmp_path / "c.json",
        )


def test_a_device_gap_compares_one_system_on_unseen_and_seen_devices(tmp_path):
    gaps = [
        {"claim": "unseen harder for row 3", "of": {"row": "3"}},
        {"claim": "unseen harder for row 12", "of": {"row": "12"}},  # not in this config
    ]
    pairs = comparison_pairs(config(comparisons={"pairs": [], "device_gaps": gaps}), R)
    by_claim = {p["claim"]: p for p in pairs}
    gap = by_claim["unseen harder for row 3"]
    assert gap["kind"] == "device_gap" and gap["a"] == gap["b"]
    assert gap["a"]["files"] == [f"{R}/predictions/table1/row3.h5"]
    assert (
        by_claim["unseen harder for row 12"]["skipped"] == "table1.12 is not in this configuration"
    )
    # a system right on most seen clips and wrong on most unseen ones
    pred = eval_predictions(seed=4, skill=0.8)
    unseen = np.isin(np.asarray(pred.device), ["s4", "s5", "s6"])
    wrong = unseen & (np.random.default_rng(0).random(len(unseen)) < 0.6)
    probs = pred.probs.copy()
    probs[wrong, pred.label[wrong]] = 0.0
    path = tmp_path / "row3.h5"
    write_predictions(path, dataclasses.replace(pred, probs=probs))
    side = {"label": "row 3", "files": [str(path)], "members": ["row 3"], "select": "only"}
    result = write_comparisons(
        [{**gap, "a": side, "b": side}],
        [str(path)],
        out_md=tmp_path / "c.md",
        out_csv=tmp_path / "c.csv",
        out_json=tmp_path / "c.json",
        statistics={"n_boot": 500},
    )
    (row,) = result["comparisons"]
    assert row["a"] == "row 3 on b, c, s1-s3" and row["b"] == "row 3 on s4-s6"
    assert row["devices"] == "b, c, s1-s3 vs s4-s6"
    assert row["accuracy_diff"] < -30 and row["accuracy_diff_ci"][1] < 0
    assert row["n_clips"] == N_REC * 8
    assert "| unseen harder for row 3 " in (tmp_path / "c.md").read_text()


def test_only_the_controls_of_the_rows_tickets_are_compared():
    """A control of a chain no row uses (Figure 2's, its own target) would pull that
    chain into the report's target."""
    models = config()["models"]
    models["fig2_chain"] = {"arch": "sic", "lottery": {"base": "sic"}}
    models["fig2_chain_rm"] = {
        "arch": "sic",
        "lottery": {"control_of": "fig2_chain", "control": "random_mask"},
    }
    pairs = comparison_pairs(config(models=models), R)
    controls = [p["claim"] for p in pairs if p["claim"].startswith("the lottery ticket")]
    assert controls == [
        "the lottery ticket chain beats its random_mask control chain_rm (final rounds)"
    ]
    # without a row using `chain`, its control is not compared either
    table1 = {k: v for k, v in config()["table1"].items() if k != "5"}
    pairs = comparison_pairs(config(models=models, table1=table1), R)
    assert not [p for p in pairs if p["claim"].startswith("the lottery ticket")]
