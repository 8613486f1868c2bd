# acoustic-lottery: the DAG from audio to Table 1 of the Acoustic Lottery report.
# Every rule is one `acoustic-lottery <verb>` call; all logic lives in the library.

from pathlib import Path

from acoustic_lottery.configuration import validate_config


configfile: "config.yaml"


config.update(
    validate_config(
        config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"
    )
)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/table.smk"


rule all:
    default_target: True
    input:
        f"{RESULTS}/table1.md",
