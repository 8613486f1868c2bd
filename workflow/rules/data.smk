# The embedded synthetic data set, written in the TAU Urban Acoustic Scenes layout.

from acoustic_lottery.data.synthetic import SyntheticConfig

if SYNTHETIC:
    # What the schema cannot check (places per scene at most the segments per scene),
    # named by key before any job runs rather than when the generator starts.
    SyntheticConfig.from_dict(dict(config["synthetic"]))

    rule generate_synthetic:
        output:
            directory(DATA_ROOT),
        log:
            f"{LOGS}/generate_synthetic.log",
        benchmark:
            f"{BENCH}/generate_synthetic.tsv"
        conda:
            CONDA_ENV
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            s=config["synthetic"],
            cities=",".join(config["synthetic"]["cities"]),
            train_places=places_option("train"),
            eval_places=places_option("eval"),
        shell:
            "acoustic-lottery generate --out {output:q} --seed {params.s[seed]:q}"
            " --layout {params.s[layout]:q} --clip-seconds {params.s[clip_seconds]:q}"
            " --train-segments-per-scene {params.s[train_segments_per_scene]:q}"
            " --train-parallel-fraction {params.s[train_parallel_fraction]:q}"
            " --eval-segments-per-scene {params.s[eval_segments_per_scene]:q}"
            " --difficulty {params.s[difficulty]:q} --cities {params.cities:q}"
            " --train-places-per-scene {params.train_places:q}"
            " --eval-places-per-scene {params.eval_places:q}"
            " --device-severity {params.s[device_severity]:q}"
            " > {log:q} 2>&1"

    # The data set by name (DVC's `dataset` stage): a target that is no path, so that
    # dataset.path never appears on a command line.
    rule synthetic_dataset:
        input:
            DATA_ROOT,
        localrule: True
