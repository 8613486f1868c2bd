# Log-mel features of one split (original audio) into HDF5.


rule features:
    input:
        dataset_input,
    output:
        f"{RESULTS}/features/{{fs}}/{{split}}/orig.h5",
    log:
        f"{LOGS}/features/{{fs}}_{{split}}_orig.log",
    benchmark:
        f"{BENCH}/features/{{fs}}_{{split}}_orig.tsv"
    conda:
        CONDA_ENV
    threads: config["features"]["workers"]
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        root=DATA_ROOT,
        seconds=config["dataset"]["clip_seconds"],
        missing=config["dataset"]["missing"],
        batch=config["features"]["batch_size"],
        overrides=lambda w: pipeline.spec_json(config["features"][w.fs]),
    shell:
        "acoustic-lottery features --dataset-root {params.root:q} --split {wildcards.split:q}"
        " --feature-set {wildcards.fs:q} --out {output:q} --seconds {params.seconds:q}"
        " --missing {params.missing:q} --batch-size {params.batch:q} --workers {threads}"
        " --params {params.overrides:q} > {log:q} 2>&1"


rule speccorr_coefficients:
    input:
        dataset_input_train,
    output:
        f"{RESULTS}/features/speccorr_coefficients.npz",
    log:
        f"{LOGS}/features/speccorr_coefficients.log",
    benchmark:
        f"{BENCH}/features/speccorr_coefficients.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        root=DATA_ROOT,
        seconds=config["dataset"]["clip_seconds"],
        missing=config["dataset"]["missing"],
        seed=config["augment"]["seed"],
        max_pairs=config["augment"]["speccorr_max_pairs"],
    shell:
        "acoustic-lottery speccorr-coefficients --dataset-root {params.root:q} --out {output:q}"
        " --seconds {params.seconds:q} --missing {params.missing:q} --seed {params.seed:q}"
        " --max-pairs {params.max_pairs:q} > {log:q} 2>&1"


rule augment:
    input:
        data=dataset_input_train,
        coefficients=lambda w: (
            f"{RESULTS}/features/speccorr_coefficients.npz"
            if w.kind == "speccorr"
            else []
        ),
    output:
        f"{RESULTS}/features/{{fs}}/train/{{kind}}.h5",
    log:
        f"{LOGS}/features/{{fs}}_train_{{kind}}.log",
    benchmark:
        f"{BENCH}/features/{{fs}}_train_{{kind}}.tsv"
    conda:
        CONDA_ENV
    threads: config["features"]["workers"]
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        root=DATA_ROOT,
        seconds=config["dataset"]["clip_seconds"],
        missing=config["dataset"]["missing"],
        seed=config["augment"]["seed"],
        batch=config["features"]["batch_size"],
        overrides=lambda w: pipeline.spec_json(config["features"][w.fs]),
        aug=lambda w: pipeline.spec_json(config["augment"]["params"].get(w.kind, {})),
        coefficients=lambda w, input: (
            ["--coefficients", input.coefficients] if w.kind == "speccorr" else []
        ),
    shell:
        "acoustic-lottery augment --kind {wildcards.kind:q} --dataset-root {params.root:q}"
        " --out {output:q} --feature-set {wildcards.fs:q} --seconds {params.seconds:q}"
        " --seed {params.seed:q} --missing {params.missing:q} --batch-size {params.batch:q}"
        " --workers {threads} --params {params.overrides:q} --aug-params {params.aug:q}"
        " {params.coefficients:q} > {log:q} 2>&1"
