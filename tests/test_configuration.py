"""The configuration contract: defaults filled, every bad key named."""

from pathlib import Path

import pytest

from acoustic_lottery.configuration import load_yaml, merge, validate_config
from acoustic_lottery.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = load_yaml(ROOT / "workflow/schemas/config.schema.yaml")


def minimal() -> dict:
    return {"dataset": {"name": "x", "kind": "synthetic", "path": "data/x"}}


def test_defaults_are_filled():
    cfg = validate_config(minimal(), SCHEMA)
    assert cfg["dataset"]["missing"] == "error"
    assert cfg["training"]["lr_max"] == 0.1
    assert cfg["training"]["epochs"] == 14
    assert cfg["synthetic"]["seed"] == 2021
    assert cfg["budget_kb"] == 128


def test_repository_configs_are_valid():
    """config.yaml alone, and each configs/*.yaml merged over it (as --configfile does)."""
    base = load_yaml(ROOT / "config.yaml")
    validate_config(base, SCHEMA, source="config.yaml")
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        validate_config(merge(base, load_yaml(path)), SCHEMA, source=str(path))


def test_misspelt_key_is_named_with_a_suggestion():
    cfg = minimal()
    cfg["training"] = {"epochz": 3}
    with pytest.raises(InputError) as err:
        validate_config(cfg, SCHEMA, source="config.yaml")
    msg = str(err.value)
    assert "config.yaml: unknown config key 'training.epochz'" in msg
    assert "did you mean 'epochs'" in msg


def test_wrong_type_names_the_key():
    cfg = minimal()
    cfg["training"] = {"batch_size": "big"}
    with pytest.raises(InputError, match=r"'training.batch_size': 'big' is not of type 'integer'"):
        validate_config(cfg, SCHEMA)


def test_out_of_range_names_the_key():
    cfg = minimal()
    cfg["synthetic"] = {"difficulty": 1.5}
    with pytest.raises(
        InputError, match=r"'synthetic.difficulty': 1.5 is greater than the maximum"
    ):
        validate_config(cfg, SCHEMA)


def test_enum_and_required():
    cfg = minimal()
    cfg["dataset"]["kind"] = "tau2019"
    with pytest.raises(InputError, match=r"'dataset.kind': expected one of"):
        validate_config(cfg, SCHEMA)
    with pytest.raises(InputError, match=r"'dataset'.*'path' is a required property"):
        validate_config({"dataset": {"name": "x", "kind": "synthetic"}}, SCHEMA)


def test_model_training_override_keys_are_checked():
    cfg = minimal()
    cfg["models"] = {"m": {"arch": "sic", "training": {"epoks": 2}}}
    with pytest.raises(InputError, match=r"models.m.training"):
        validate_config(cfg, SCHEMA)


@pytest.mark.parametrize(
    ("section", "key"), [("table1", "23"), ("table1", "row3"), ("systems", "e")]
)
def test_row_keys_are_restricted_to_table1(section, key):
    cfg = minimal()
    cfg[section] = {key: {"members": [{"model": "m"}]}}
    with pytest.raises(InputError, match=section):
        validate_config(cfg, SCHEMA)


def test_input_is_not_modified_and_merge_overrides():
    cfg = minimal()
    validate_config(cfg, SCHEMA)
    assert "training" not in cfg
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


def with_models(**models: dict) -> dict:
    cfg = minimal()
    cfg["models"] = models
    return cfg


def test_two_model_teacher_cycle_is_named_in_order():
    cfg = with_models(a={"arch": "sic", "teacher": "b"}, b={"arch": "lic", "teacher": "a"})
    msg = r"^config: models\.a\.teacher -> b -> a forms a cycle; "
    msg += r"a model cannot \(indirectly\) teach itself$"
    with pytest.raises(InputError, match=msg):
        validate_config(cfg, SCHEMA)


def test_three_model_cycle_starts_at_the_first_model_in_the_config():
    cfg = with_models(
        x={"arch": "sic", "teacher": "b"},  # leads into the cycle, is not part of it
        c={"arch": "sic", "teacher": "a"},
        a={"arch": "lic", "teacher": "b"},
        b={"arch": "resnet", "teacher": "c"},
    )
    with pytest.raises(InputError, match=r"^config: models\.c\.teacher -> a -> b -> c forms"):
        validate_config(cfg, SCHEMA)


def test_cycle_through_a_multi_task_teacher_names_each_key():
    cfg = with_models(
        x={"arch": "sic"},  # not in the cycle
        c={"arch": "sic", "teacher": "a"},
        a={"arch": "lic", "teacher": "b"},
        b={"arch": "resnet", "task": "mtl", "teacher": {"scene": "c", "super": "x"}},
    )
    with pytest.raises(
        InputError,
        match=r"config\.yaml: models\.c\.teacher -> a, models\.a\."
        r"teacher -> b, models\.b\.teacher\.scene -> c forms a cycle; a model "
        r"cannot \(indirectly\) teach itself",
    ):
        validate_config(cfg, SCHEMA, source="config.yaml")


def test_self_teacher_is_a_cycle():
    cfg = with_models(a={"arch": "sic", "teacher": "a"})
    with pytest.raises(InputError, match=r"config: models\.a\.teacher -> a forms a cycle"):
        validate_config(cfg, SCHEMA)


def test_cycle_through_a_lottery_base_or_progressive_base():
    lottery = with_models(
        dense={"arch": "sic", "teacher": "chain"},
        chain={"arch": "sic", "lottery": {"base": "dense"}},
    )
    with pytest.raises(
        InputError,
        match=r"config: models\.dense\.teacher -> chain, models\.chain\.lottery\.base -> dense "
        r"forms a cycle; a model cannot \(indirectly\) be built from itself",
    ):
        validate_config(lottery, SCHEMA)
    progressive = with_models(
        dense={"arch": "repmobile", "teacher": "pruned"},
        pruned={"arch": "repmobile", "progressive": {"base": "dense"}},
    )
    with pytest.raises(InputError, match=r"models\.pruned\.progressive\.base -> dense forms"):
        validate_config(progressive, SCHEMA)


def test_teacher_chains_without_a_cycle_pass():
    cfg = with_models(
        big={"arch": "resnet", "task": "mtl"},
        mid={"arch": "lic", "task": "mtl", "teacher": {"scene": "big", "super": "big"}},
        small={"arch": "sic", "teacher": "mid"},
        chain={"arch": "sic", "teacher": "mid", "lottery": {"base": "small"}},
        ctl={"arch": "sic", "lottery": {"control_of": "chain", "control": "random_mask"}},
        pruned={"arch": "sic", "teacher": "big", "progressive": {"base": "small"}},
        stray={"arch": "sic", "teacher": "not_defined"},  # reported where it is used
    )
    assert validate_config(cfg, SCHEMA)["models"]["small"]["teacher"] == "mid"


# ------------------------------------------------------------ teacher_fusion (row 1's teacher)


def fusion_models(**student: object) -> dict:
    return with_models(
        t10={"arch": "fcnn"},
        t3={"arch": "fcnn", "task": "super"},
        both={"arch": "fcnn", "task": "mtl"},
        s={"arch": "sic", "teacher": "t10", **student},
    )


def test_teacher_fusion_names_a_3_class_model_beside_a_scene_teacher():
    models = validate_config(fusion_models(teacher_fusion="t3"), SCHEMA)["models"]
    assert models["s"]["teacher_fusion"] == "t3"
    validate_config(fusion_models(teacher_fusion="both"), SCHEMA)  # an mtl model has 'super'
    mtl = fusion_models(task="mtl", teacher={"scene": "t10", "super": "t3"}, teacher_fusion="t3")
    validate_config(mtl, SCHEMA)


@pytest.mark.parametrize(
    ("student", "message"),
    [
        ({"teacher_fusion": "t4"}, r"models\.s\.teacher_fusion: 't4' is not defined under"),
        ({"teacher_fusion": "t10"}, r"models\.s\.teacher_fusion: 't10' has task 'scene' and no "
                                    r"'super' head"),
        ({"teacher": None, "teacher_fusion": "t3"}, r"models\.s\.teacher_fusion: 's' has no "
                                                    r"scene teacher"),
        ({"task": "super", "teacher": "t3", "teacher_fusion": "t3"},
         r"models\.s\.teacher_fusion: 's' has no scene teacher"),
        ({"teacher_fusion": 3}, r"'models\.s\.teacher_fusion': 3 is not of type 'string'"),
    ],
)  # fmt: skip
def test_a_wrong_teacher_fusion_is_named(student, message):
    cfg = fusion_models(**student)
    if cfg["models"]["s"]["teacher"] is None:
        del cfg["models"]["s"]["teacher"]
    with pytest.raises(InputError, match=message):
        validate_config(cfg, SCHEMA, source="config.yaml")


def test_a_cycle_through_teacher_fusion_is_named():
    cfg = with_models(
        t10={"arch": "fcnn"},
        a={"arch": "sic", "task": "mtl", "teacher": {"scene": "t10"}, "teacher_fusion": "b"},
        b={"arch": "sic", "task": "super", "teacher": "a"},
    )
    with pytest.raises(
        InputError,
        match=r"models\.a\.teacher_fusion -> b, models\.b\.teacher -> a forms a cycle; a model "
        r"cannot \(indirectly\) teach itself",
    ):
        validate_config(cfg, SCHEMA)
