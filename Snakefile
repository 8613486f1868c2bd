# acoustic-lottery: the DAG from audio to Table 1 of the Acoustic Lottery report.
# Every rule is one `acoustic-lottery <verb>` call; all logic lives in the library.

from pathlib import Path

from acoustic_lottery.conda_envs import export_checkout
from acoustic_lottery.configuration import validate_config
from acoustic_lottery.experiment_params import apply_params, load_params
from acoustic_lottery.planned_size import check_row_budgets
from snakemake.utils import min_version

# The pinned release (requirements.txt); older ones lack features the rules use.
min_version("9.27")


configfile: "config.yaml"


# The checkout that envs/*.post-deploy.sh installs into a conda environment: the script
# runs from a copy under .snakemake/conda/, so it cannot find the project by itself.
export_checkout(workflow.basedir)


# params.yaml: the knobs `dvc exp run -S` edits (null: as config.yaml), under --config.
config.update(
    apply_params(
        config, load_params(), overrides=workflow.config_settings.overwrite_config
    )
)
config.update(
    validate_config(
        config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"
    )
)


# A Table 1 row over the size budget stops here, before any job runs (planned sizes).
check_row_budgets(config)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/lottery.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/table.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/efficiency.smk"
include: "workflow/rules/onnx.smk"


# The 2021 report (`make run`): Table 1 with the systems (a)-(d), the paired comparisons
# of its claims, Figure 3, the per-device comparison, the probe and the ONNX int8 check.
# Figure 2 is `figure2_seeded`, the 2024 study `data_efficiency`.
PAPER = [
    f"{RESULTS}/table1.md",
    f"{RESULTS}/comparisons.md",
    *all_figures(),
    *ONNX_TABLE,
    # each submitted system (a)-(d) as one deployable artifact
    *[f"{RESULTS}/systems/{r}.alot" for r in ROWS if r.startswith("system")],
    # the tables as the HTML pages that `make report` shows
    f"{RESULTS}/html/table1.html",
    f"{RESULTS}/html/comparisons.html",
    *([f"{RESULTS}/html/onnx.html"] if ONNX_TABLE else []),
    # the embedded set's difficulty (on TAU it would read every feature file whole)
    *([f"{RESULTS}/probe.md"] if SYNTHETIC else []),
]


# Figure 2: the lottery strategies against sparsity, seed 0 and over three training
# seeds (make figure2-seeds, part of make all; its wall time is in the README).
FIGURE2_SEEDS = figure2_targets()


rule all:
    default_target: True
    input:
        PAPER,
        FIGURE2_SEEDS,
        EFFICIENCY.targets(),


rule figure2_seeded:
    input:
        FIGURE2_SEEDS,


rule paper:
    input:
        PAPER,
