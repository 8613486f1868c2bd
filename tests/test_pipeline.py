"""Configuration -> job parameters: lottery chains, their rounds and controls."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from acoustic_lottery import pipeline
from acoustic_lottery.configuration import validate_config
from acoustic_lottery.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def overlay(a: dict, b: dict) -> dict:
    """b merged over a, nested dicts key by key (Snakemake's --configfile)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = overlay(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def shipped_configs() -> tuple[dict, dict]:
    """config.yaml and the configs/tau2020.yaml overlay, as written."""
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    return base, yaml.safe_load((ROOT / "configs/tau2020.yaml").read_text())


def config(models: dict, **extra) -> dict:
    raw = {
        "dataset": {"name": "t", "kind": "synthetic", "path": "data/t"},
        "models": {"sic": {"arch": "sic"}, "lic": {"arch": "lic"}, **models},
        **extra,
    }
    return validate_config(raw, SCHEMA)


def test_the_report_preset_reaches_99_33_percent_in_two_rounds():
    cfg = config({"sic_lth": {"arch": "sic", "lottery": {"base": "sic"}}})
    s = pipeline.lottery_settings(cfg, "sic_lth")
    assert s["rounds"] == 2 and s["strategy"] == "small_weights" and s["scope"] == "weights"
    assert 1 - (1 - s["rate"]) ** 2 == pytest.approx(0.9933)
    assert pipeline.lottery_rounds(cfg, "sic_lth") == 2
    assert s["base"] == "sic" and s["control"] is None and s["chain"] == "sic_lth"
    assert "--scope weights" in " ".join(
        pipeline.round_args(pipeline.round_settings(cfg, "sic_lth", 1))
    )


def test_the_size_matched_preset_prunes_every_stored_value_and_a_key_overrides_it():
    lot = {"base": "sic", "preset": "acoustic_lottery_size_matched"}
    cfg = config({"m": {"arch": "sic", "lottery": lot},
                  "w": {"arch": "sic", "lottery": {**lot, "scope": "weights"}}})  # fmt: skip
    m, w = pipeline.lottery_settings(cfg, "m"), pipeline.lottery_settings(cfg, "w")
    assert m["scope"] == "all" and m["preset"] == "acoustic_lottery_size_matched"
    assert m["rounds"] == 2 and 1 - (1 - m["rate"]) ** 2 == pytest.approx(0.9933)
    assert w["scope"] == "weights"


def test_both_shipped_configurations_give_the_lth_rows_weights_only_tickets():
    """config.yaml, and configs/tau2020.yaml merged over it as Snakemake does."""
    base, tau = shipped_configs()

    for raw in (base, overlay(base, tau)):
        cfg = validate_config(raw, SCHEMA)
        # the report's rows: 99.33 %; our moderate variants (rows 5m, 14m): 90 %
        chains = {(m, 0.9 if pipeline.row_variant(row) else 0.9933)
                  for row in pipeline.table_rows(cfg) for m in
                  (x["model"] for x in pipeline.row_members(cfg, row))
                  if pipeline.is_lottery(cfg, m)}  # fmt: skip
        names = {name for name, _ in chains}
        assert {"sic_lth", "lic_lth", "lic_tsl_lth", "lic3_tsl_aug_lth"} <= names
        assert len(names) == len(chains), "a chain is in a 99.33 % row and a 90 % row"
        for name, target in chains:
            s = pipeline.lottery_settings(cfg, name)
            assert (s["preset"], s["scope"], s["strategy"], s["rounds"], s["rewind"]) == (
                "acoustic_lottery",
                "weights",
                "small_weights",
                2,
                "init",
            ), name
            assert 1 - (1 - s["rate"]) ** 2 == pytest.approx(target), name


def test_a_per_round_setting_changes_that_round_only():
    lot = {"base": "sic", "rounds": 5, "rate": 0.5, "per_round": {3: {"rate": 0.3}}}
    cfg = config({"c": {"arch": "sic", "lottery": lot}})
    rates = [pipeline.round_settings(cfg, "c", t)["rate"] for t in range(1, 6)]
    assert rates == [0.5, 0.5, 0.3, 0.5, 0.5]
    assert "--rate 0.3" in " ".join(pipeline.round_args(pipeline.round_settings(cfg, "c", 3)))
    with pytest.raises(InputError, match="outside 1..5"):
        pipeline.round_settings(cfg, "c", 6)


def test_a_per_round_key_outside_the_chain_is_an_error():
    lot = {"base": "sic", "rounds": 2, "rate": 0.5, "per_round": {7: {"rate": 0.3}}}
    cfg = config({"c": {"arch": "sic", "lottery": lot}})
    with pytest.raises(InputError, match=r"per_round: round\(s\) \['7'\]"):
        pipeline.round_settings(cfg, "c", 1)


def test_a_control_copies_its_chain_and_adds_the_control():
    cfg = config(
        {
            "win": {"arch": "sic", "lottery": {"base": "sic", "strategy": "large_final"}},
            "ctl": {"arch": "sic", "lottery": {"control_of": "win", "control": "random_mask"}},
        }
    )
    win, ctl = pipeline.lottery_settings(cfg, "win"), pipeline.lottery_settings(cfg, "ctl")
    assert ctl["control"] == "random_mask" and ctl["chain"] == "win"
    assert {k: ctl[k] for k in pipeline.ROUND_KEYS} == {k: win[k] for k in pipeline.ROUND_KEYS}
    args = pipeline.round_args(pipeline.round_settings(cfg, "ctl", 1))
    assert args[args.index("--control") + 1] == "random_mask"


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ({"c": {"arch": "lic", "lottery": {"base": "sic"}}}, "arch is 'lic' but its lottery base"),
        ({"c": {"arch": "sic", "lottery": {"rounds": 2}}}, "lottery.base: name the dense model"),
        (
            {"c": {"arch": "sic", "lottery": {"control": "random_mask"}}},
            "control needs control_of",
        ),
        (
            {"c": {"arch": "sic", "lottery": {"control_of": "sic", "control": "random_mask"}}},
            "'sic' is not a winning lottery chain",
        ),
    ],
)
def test_inconsistent_chains_are_errors_naming_the_key(models, message):
    cfg = config(models)
    with pytest.raises(InputError, match=message):
        pipeline.lottery_settings(cfg, "c")


def test_the_shipped_configs_resolve():
    for path in (ROOT / "config.yaml", ROOT / "tests/workflow/tiny_config.yaml"):
        cfg = validate_config(yaml.safe_load(path.read_text()), SCHEMA)
        for name in cfg["models"]:
            if pipeline.is_lottery(cfg, name):
                s = pipeline.lottery_settings(cfg, name)
                for t in range(1, s["rounds"] + 1):
                    assert pipeline.round_settings(cfg, name, t)["round"] == t
            else:
                assert pipeline.train_spec(cfg, name)["arch"] == cfg["models"][name]["arch"]


def test_rows_and_systems_are_named_after_their_result_files():
    member = {"members": [{"model": "sic"}]}
    cfg = config({}, table1={"3": member, "12": member}, systems={"d": member})
    rows = pipeline.table_rows(cfg)
    assert sorted(rows, key=pipeline.row_order) == ["row3", "row12", "systemd"]
    assert pipeline.row_config_key("row12") == "table1.12"
    assert pipeline.row_config_key("systemd") == "systems.d"
    assert pipeline.row_spec(cfg, "systemd")["system"] == "d"


def test_an_unquoted_row_number_is_an_error_that_says_to_quote_it():
    # YAML reads `3:` as an int; DVC would silently drop that stage.
    cfg = config({}, table1={3: {"members": [{"model": "sic"}]}})
    with pytest.raises(InputError, match=r'table1: key 3 must be a quoted string \("3"'):
        pipeline.table_rows(cfg)


def test_variant_rows_sort_after_their_report_row_and_before_the_next():
    names = ["systema", "row14m", "row6", "row5m", "row5", "row14", "row22"]
    assert sorted(names, key=pipeline.row_order) == [
        "row5", "row5m", "row6", "row14", "row14m", "row22", "systema",
    ]  # fmt: skip
    assert (pipeline.row_index("row5m"), pipeline.row_variant("row5m")) == (5, "m")
    assert (pipeline.row_index("systemb"), pipeline.row_variant("systemb")) == (None, "")
    with pytest.raises(InputError, match="expected rowN"):
        pipeline.row_index("row5-x")


def test_the_10_class_tsl_students_learn_from_row_1s_fused_teacher():
    """config.yaml and the tau2020 overlay: teacher fcnn10 fused with fcnn3 for every
    10-class student of fcnn10; the 3-class students of fcnn3 alone; teachers on reverb."""
    base, tau = shipped_configs()

    for raw in (base, overlay(base, tau)):
        cfg = validate_config(raw, SCHEMA)
        fused = {m for m in cfg["models"] if pipeline.teacher_fusion_of(cfg, m)}
        taught_by_fcnn10 = {
            m for m in cfg["models"] if pipeline.teachers_of(cfg, m).get("scene") == "fcnn10"
        }
        assert {"sic_tsl", "lic_tsl", "lic_tsl_aug", "lic_tsl_lth", "lic_tsl_aug_lth"} <= fused
        assert fused == taught_by_fcnn10
        assert all(pipeline.teacher_fusion_of(cfg, m) == "fcnn3" for m in fused)
        for m in ("sic3_tsl", "lic3_tsl", "lic3_tsl_aug", "lic3_tsl_lth", "lic3_tsl_aug_lth"):
            assert pipeline.teachers_of(cfg, m) == {"super": "fcnn3"}, m
            assert pipeline.teacher_fusion_of(cfg, m) is None, m
        for m in ("fcnn10", "fcnn3", "resnet10", "resnet3"):
            assert "reverb" in cfg["models"][m]["copies"], m
        students = [m for m in cfg["models"] if m not in ("fcnn10", "fcnn3", "resnet10", "resnet3")]
        assert not any("reverb" in cfg["models"][m]["copies"] for m in students)


def test_teacher_fusion_of_checks_a_config_that_skipped_validation():
    cfg = config({"t3": {"arch": "sic", "task": "super"}, "s": {"arch": "sic", "teacher": "lic"}})
    cfg["models"]["s"]["teacher_fusion"] = "lic"
    with pytest.raises(InputError, match=r"models\.s\.teacher_fusion: 'lic' has no 'super' head"):
        pipeline.teacher_fusion_of(cfg, "s")
    cfg["models"]["s"]["teacher_fusion"] = "t3"
    assert pipeline.teacher_fusion_of(cfg, "s") == "t3"
    cfg["models"]["s"].pop("teacher")
    with pytest.raises(InputError, match=r"models\.s\.teacher_fusion: 's' has no scene teacher"):
        pipeline.teacher_fusion_of(cfg, "s")
