# Predictions (probabilities are artifacts), metrics and size reports of one model.


rule predict:
    input:
        model=f"{RESULTS}/models/{{model}}/final.pt",
        features=lambda w: f"{RESULTS}/features/{model_features(w.model)}/{w.split}/orig.h5",
    output:
        f"{RESULTS}/predictions/{{model}}/{{head}}/{{split}}.h5",
    log:
        f"{LOGS}/predict/{{model}}_{{head}}_{{split}}.log",
    benchmark:
        f"{BENCH}/predict/{{model}}_{{head}}_{{split}}.tsv"
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "acoustic-lottery predict --model {input.model} --features {input.features}"
        " --head {wildcards.head} --out {output} > {log} 2>&1"


rule size:
    input:
        f"{RESULTS}/models/{{model}}/final.pt",
    output:
        f"{RESULTS}/models/{{model}}/size.json",
    log:
        f"{LOGS}/size/{{model}}.log",
    benchmark:
        f"{BENCH}/size/{{model}}.tsv"
    conda:
        "../../envs/cpu.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "acoustic-lottery size {input} --output {output} --no-layers > {log} 2>&1"
