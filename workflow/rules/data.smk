# The embedded synthetic data set, written in the TAU Urban Acoustic Scenes layout.

if SYNTHETIC:

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
        shell:
            "acoustic-lottery generate --out {output} --seed {params.s[seed]}"
            " --layout {params.s[layout]} --clip-seconds {params.s[clip_seconds]}"
            " --train-segments-per-scene {params.s[train_segments_per_scene]}"
            " --train-parallel-fraction {params.s[train_parallel_fraction]}"
            " --eval-segments-per-scene {params.s[eval_segments_per_scene]}"
            " --difficulty {params.s[difficulty]} --cities {params.cities}"
            " > {log} 2>&1"
