# Training one named model (plain supervised training in this file).


rule train:
    input:
        unpack(teacher_inputs),
        train=train_inputs,
    output:
        final=f"{RESULTS}/models/{{model}}/final.pt",
        init=f"{RESULTS}/models/{{model}}/init.pt",
        history=f"{RESULTS}/models/{{model}}/history.csv",
    log:
        f"{LOGS}/train/{{model}}.log",
    benchmark:
        f"{BENCH}/train/{{model}}.tsv"
    conda:
        "../../envs/cpu.yaml"
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=24 * 60,
    params:
        spec=lambda w: pipeline.spec_json(pipeline.train_spec(config, w.model)),
        out_dir=lambda w: model_dir(w.model),
        teachers=teacher_args,
    shell:
        "acoustic-lottery train --spec {params.spec:q} --train {input.train}"
        " --out-dir {params.out_dir} --threads {threads} {params.teachers} > {log} 2>&1"
