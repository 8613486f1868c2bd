# Paths, wildcard constraints and parameter helpers shared by the rules.

import re
import shlex

from acoustic_lottery import comparisons, efficiency, pipeline
from acoustic_lottery.data.synthetic import check_generator_owns

DS = config["dataset"]["name"]
RESULTS = f"results/{DS}"
LOGS = f"logs/{DS}"
BENCH = f"benchmarks/snakemake/{DS}"
DATA_ROOT = config["dataset"]["path"]
SYNTHETIC = config["dataset"]["kind"] == "synthetic"
if SYNTHETIC:
    # Before anything is scheduled: never let the workflow own (and so delete, as it
    # does a directory() output before rerunning its rule) what the generator did not make.
    check_generator_owns(DATA_ROOT)
THREADS = config["threads"]
# The conda environment of every rule under --software-deployment-method conda.
CONDA_ENV = f"../../envs/{config['conda_env']}.yaml"
MODELS = sorted(config["models"])
CHAINS = [m for m in MODELS if pipeline.is_lottery(config, m)]
PROGRESSIVE = [m for m in MODELS if pipeline.is_progressive(config, m)]
DENSE = [m for m in MODELS if m not in CHAINS and m not in PROGRESSIVE]
ROWS = sorted(pipeline.table_rows(config), key=pipeline.row_order)
# Bootstrap settings of the intervals (rows and comparisons), as one JSON argument.
STATISTICS = pipeline.spec_json(config["statistics"])
# The configured comparisons as concrete file pairs; unbuildable pairs marked skipped.
COMPARISON_PAIRS = comparisons.comparison_pairs(config, RESULTS)


def _alternatives(names):
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


wildcard_constraints:
    model=_alternatives(MODELS),
    dense=_alternatives(DENSE),
    chain=_alternatives(CHAINS),
    prog=_alternatives(PROGRESSIVE),
    page="table1|comparisons|onnx",
    t="[1-9][0-9]*",
    split="train|evaluate|test",
    kind="pitch|speed|noise|mix|speccorr|reverb",
    fs="lmfb|baseline",
    head="scene|super",
    row=_alternatives(ROWS),


def places_option(split):
    """--{split}-places-per-scene of the generator: the count, or "per-segment" for null."""
    value = config["synthetic"][f"{split}_places_per_scene"]
    return "per-segment" if value is None else value


def dataset_path(split):
    """The data set the features depend on: the generator's output, or the real CSVs."""
    if SYNTHETIC:
        return DATA_ROOT
    return ancient(f"{DATA_ROOT}/evaluation_setup/fold1_{split}.csv")


def dataset_input(wildcards):
    return dataset_path(wildcards.split)


def dataset_input_train(wildcards):
    return dataset_path("train")


_EFF_CHECKED = []


def study_input_train(wildcards):
    """The train split, once the study's planned complexity and pruning schedules are
    checked: every study job depends on the subsets, so this runs while the DAG is
    built (before any job) exactly when a study job is in it. A setting that only
    the study rejects (e.g. `training.epochs` too short for its schedule) then stops
    `snakemake data_efficiency`, never a run of Table 1 rows."""
    if not _EFF_CHECKED:
        _EFF_CHECKED.append(efficiency.check_study(config))
    return dataset_input_train(wildcards)


def model_features(name):
    return pipeline.model_config(config, name)["features"]


def model_dir(name):
    return f"{RESULTS}/models/{name}"


def trained_as(wildcards):
    """The model whose training settings a job uses: a control chain trains as its chain."""
    if getattr(wildcards, "dense", None):
        return wildcards.dense
    if getattr(wildcards, "prog", None):
        return wildcards.prog
    return pipeline.lottery_settings(config, wildcards.chain)["chain"]


def train_inputs(wildcards):
    """Feature files of every training copy the model lists (orig and augmented)."""
    name = trained_as(wildcards)
    fs = model_features(name)
    copies = pipeline.model_config(config, name)["copies"]
    return [f"{RESULTS}/features/{fs}/train/{c}.h5" for c in copies]


def _teachers(wildcards):
    return pipeline.teachers_of(config, trained_as(wildcards))


def _teacher_fusion(wildcards):
    return pipeline.teacher_fusion_of(config, trained_as(wildcards))


def teacher_inputs(wildcards):
    """Teacher checkpoints per head, and the 3-class model fused into the scene teacher."""
    inputs = {
        f"teacher_{h}": final_checkpoint(t) for h, t in _teachers(wildcards).items()
    }
    fusion = _teacher_fusion(wildcards)
    if fusion:
        inputs["teacher_fusion"] = final_checkpoint(fusion)
    return inputs


def teacher_args(wildcards, input):
    """`--teacher HEAD=CKPT` per teacher and `--teacher-fusion CKPT`, as separate
    arguments (the rule quotes each)."""
    args = [
        a
        for h in _teachers(wildcards)
        for a in ("--teacher", f"{h}={input[f'teacher_{h}']}")
    ]
    if _teacher_fusion(wildcards):
        args += ["--teacher-fusion", input.teacher_fusion]
    return args


def round_dir(name, t):
    return f"{RESULTS}/models/{name}/round{t}"


def final_checkpoint(name):
    """The model a row uses: a dense model's final.pt, or a chain's last round."""
    if pipeline.is_lottery(config, name):
        return f"{round_dir(name, pipeline.lottery_rounds(config, name))}/final.pt"
    return f"{RESULTS}/models/{name}/final.pt"


def member_predictions(member):
    """A row member's prediction file: the float model's, or its int8 artifact's."""
    q = "int8/" if member.get("quantized") else ""
    return f"{RESULTS}/predictions/{member['model']}/{q}{member['head']}/evaluate.h5"


def row_predictions(wildcards):
    return [member_predictions(m) for m in pipeline.row_members(config, wildcards.row)]


def system_sources(wildcards):
    """Export of a row as one artifact: each member model's int8 artifact or checkpoint,
    and a float member's training features (their settings go into the artifact)."""
    members = pipeline.row_members(config, wildcards.row)
    int8 = sorted({m["model"] for m in members if m.get("quantized")})
    floats = sorted({m["model"] for m in members if not m.get("quantized")})
    return {
        **{f"int8_{m}": f"{RESULTS}/models/{m}/int8.alot" for m in int8},
        **{f"float_{m}": final_checkpoint(m) for m in floats},
        **{
            f"features_{m}": f"{RESULTS}/features/{model_features(m)}/train/orig.h5"
            for m in floats
        },
    }


def system_source_args(wildcards, input):
    """--int8 / --float / --features MODEL=PATH arguments from `system_sources`."""
    args = {"int8": [], "float": [], "features": []}
    for key, path in input.items():
        kind, _, model = key.partition("_")
        args[kind].append(f"{model}={path}")
    return " ".join(
        f"--{kind} " + " ".join(shlex.quote(v) for v in values)
        for kind, values in args.items()
        if values
    )


def row_sizes(wildcards):
    """Size report of each distinct member (an int8 member: its quantize report)."""
    files = [
        f"{RESULTS}/sizes/{m['model']}{'.int8' if m.get('quantized') else ''}.json"
        for m in pipeline.row_members(config, wildcards.row)
    ]
    return list(dict.fromkeys(files))


# ---- lottery chains and figures


def lottery_round_inputs(wildcards):
    s = pipeline.lottery_settings(config, wildcards.chain)
    t = int(wildcards.t)
    chain = s["chain"]  # the winning chain: a control copies its masks
    inputs = {
        "train": train_inputs(wildcards),
        "theta0": f"{RESULTS}/models/{s['base']}/init.pt",
        **teacher_inputs(wildcards),
    }
    if t == 1:
        inputs["previous"] = f"{RESULTS}/models/{s['base']}/final.pt"
    else:
        inputs["previous"] = f"{round_dir(chain, t - 1)}/final.pt"
        inputs["previous_mask"] = f"{round_dir(chain, t - 1)}/mask.pt"
    return inputs


def previous_mask_arg(wildcards, input):
    return (
        ["--previous-mask", input.previous_mask]
        if "previous_mask" in input.keys()
        else []
    )


FIG = f"{RESULTS}/figures"

FIGURES = config["figures"]


def chain_head(name):
    return pipeline.heads_of(config, name)[0]


def point_inputs(wildcards):
    t, chain = int(wildcards.t), wildcards.chain
    head = chain_head(chain)
    if t == 0:
        base = pipeline.lottery_settings(config, chain)["base"]
        return {
            "report": f"{FIG}/points/{chain}/round0_report.json",
            "metrics": f"{RESULTS}/metrics/{base}/{head}/evaluate.json",
        }
    return {
        "report": f"{round_dir(chain, t)}/round.json",
        "metrics": f"{RESULTS}/metrics/{chain}/round{t}/{head}/evaluate.json",
    }


def point_label(wildcards):
    s = pipeline.lottery_settings(config, wildcards.chain)
    return s["control"] or s["strategy"]


def chain_points(chains):
    """Every round's Figure 2 point of the chains, round 0 (their dense base) included."""
    return [
        f"{FIG}/points/{chain}/round{t}.json"
        for chain in chains
        for t in range(pipeline.lottery_rounds(config, chain) + 1)
    ]


def figure2_points(wildcards):
    return chain_points(FIGURES["figure2"])


def figure2_seed_points(wildcards):
    return chain_points(FIGURES["figure2_seeds"])


def device_metrics(wildcards):
    return {
        label: f"{RESULTS}/metrics/{name}/scene/evaluate.json"
        for label, name in FIGURES["devices"].items()
    }


def figure2_targets():
    """Figure 2 (seed 0) and its seeded version: their own target, not `paper`'s (the
    lottery chains of three seeds are as much work as the rest of the report)."""
    out = []
    if FIGURES["figure2"]:
        out.append(f"{FIG}/figure2.png")
    if FIGURES["figure2_seeds"]:
        out.append(f"{FIG}/figure2_seeds.png")
    return out


#: The result tables the report shows as HTML pages (rule html_page), with their titles.
HTML_PAGES = {
    "table1": f"Table 1 on {DS}",
    "comparisons": f"Paired comparisons of the report's claims on {DS}",
    "onnx": f"ONNX int8 check on {DS}",
}


def all_figures():
    """The figures of `paper`: Figure 3, the device bars and the confusion matrices."""
    out = []
    if "figure3" in FIGURES:
        out.append(f"{FIG}/figure3.png")
    if FIGURES["devices"]:
        out.append(f"{FIG}/devices.png")
        out += [f"{FIG}/confusion/{m}.png" for m in FIGURES["devices"].values()]
    return out
