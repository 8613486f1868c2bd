# Training one named dense model (supervised, or from its teachers).


rule train:
    input:
        unpack(teacher_inputs),
        train=train_inputs,
    output:
        final=f"{RESULTS}/models/{{dense}}/final.pt",
        init=f"{RESULTS}/models/{{dense}}/init.pt",
        history=f"{RESULTS}/models/{{dense}}/history.csv",
    log:
        f"{LOGS}/train/{{dense}}.log",
    benchmark:
        f"{BENCH}/train/{{dense}}.tsv"
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=24 * 60,
    params:
        spec=lambda w: pipeline.spec_json(pipeline.train_spec(config, w.dense)),
        out_dir=lambda w: model_dir(w.dense),
        teachers=teacher_args,
    shell:
        "acoustic-lottery train --spec {params.spec:q} --train {input.train:q}"
        " --out-dir {params.out_dir:q} --threads {threads} {params.teachers:q} > {log:q} 2>&1"
