# Paths, wildcard constraints and parameter helpers shared by the rules.

import re

from acoustic_lottery import pipeline

DS = config["dataset"]["name"]
RESULTS = f"results/{DS}"
LOGS = f"logs/{DS}"
BENCH = f"benchmarks/snakemake/{DS}"
DATA_ROOT = config["dataset"]["path"]
SYNTHETIC = config["dataset"]["kind"] == "synthetic"
THREADS = config["threads"]
MODELS = sorted(config["models"])
ROWS = sorted(config["table1"], key=pipeline.row_index)


def _alternatives(names):
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


wildcard_constraints:
    model=_alternatives(MODELS),
    split="train|evaluate|test",
    copy="pitch|speed|noise|mix|speccorr",
    fs="lmfb|baseline",
    head="scene|super",
    row=_alternatives(ROWS),


def dataset_path(split):
    """The data set the features depend on: the generator's output, or the real CSVs."""
    if SYNTHETIC:
        return DATA_ROOT
    return ancient(f"{DATA_ROOT}/evaluation_setup/fold1_{split}.csv")


def dataset_input(wildcards):
    return dataset_path(wildcards.split)


def dataset_input_train(wildcards):
    return dataset_path("train")


def model_features(name):
    return pipeline.model_config(config, name)["features"]


def model_dir(name):
    return f"{RESULTS}/models/{name}"


def train_inputs(wildcards):
    """Feature files of every training copy the model lists (orig and augmented)."""
    fs = model_features(wildcards.model)
    copies = pipeline.model_config(config, wildcards.model)["copies"]
    return [f"{RESULTS}/features/{fs}/train/{c}.h5" for c in copies]


def teacher_inputs(wildcards):
    teachers = pipeline.teachers_of(config, wildcards.model)
    return {f"teacher_{h}": final_checkpoint(t) for h, t in teachers.items()}


def teacher_args(wildcards, input):
    heads = pipeline.teachers_of(config, wildcards.model)
    return " ".join(f"--teacher {h}={input[f'teacher_{h}']}" for h in heads)


def final_checkpoint(name):
    return f"{RESULTS}/models/{name}/final.pt"


def row_predictions(wildcards):
    return [
        f"{RESULTS}/predictions/{m['model']}/{m['head']}/evaluate.h5"
        for m in pipeline.row_members(config, wildcards.row)
    ]


def row_sizes(wildcards):
    models = dict.fromkeys(
        m["model"] for m in pipeline.row_members(config, wildcards.row)
    )
    return [f"{RESULTS}/models/{m}/size.json" for m in models]
