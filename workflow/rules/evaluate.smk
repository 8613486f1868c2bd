# Predictions (probabilities are artifacts), metrics and size reports of one model.


rule predict:
    input:
        model=lambda w: final_checkpoint(w.model),
        features=lambda w: f"{RESULTS}/features/{model_features(w.model)}/{w.split}/orig.h5",
    output:
        f"{RESULTS}/predictions/{{model}}/{{head}}/{{split}}.h5",
    log:
        f"{LOGS}/predict/{{model}}_{{head}}_{{split}}.log",
    benchmark:
        f"{BENCH}/predict/{{model}}_{{head}}_{{split}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "acoustic-lottery predict --model {input.model:q} --features {input.features:q}"
        " --head {wildcards.head:q} --out {output:q} > {log:q} 2>&1"


rule size:
    input:
        lambda w: final_checkpoint(w.model),
    output:
        f"{RESULTS}/sizes/{{model}}.json",
    log:
        f"{LOGS}/size/{{model}}.log",
    benchmark:
        f"{BENCH}/size/{{model}}.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "acoustic-lottery size {input:q} --output {output:q} --no-layers > {log:q} 2>&1"


rule quantize:
    input:
        model=lambda w: final_checkpoint(w.model),
        calibration=lambda w: f"{RESULTS}/features/{model_features(w.model)}/train/orig.h5",
        float_size=f"{RESULTS}/sizes/{{model}}.json",
    output:
        artifact=f"{RESULTS}/models/{{model}}/int8.alot",
        report=f"{RESULTS}/sizes/{{model}}.int8.json",
    log:
        f"{LOGS}/quantize/{{model}}.log",
    benchmark:
        f"{BENCH}/quantize/{{model}}.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "acoustic-lottery quantize --model {input.model:q} --out {output.artifact:q}"
        " --calibration {input.calibration:q} --float-size {input.float_size:q}"
        " --report {output.report:q} > {log:q} 2>&1"


# A Table 1 row or submitted system as one deployable artifact (`predict` runs it).
rule export_system:
    input:
        unpack(system_sources),
    output:
        artifact=f"{RESULTS}/systems/{{row}}.alot",
        report=f"{RESULTS}/systems/{{row}}.json",
    log:
        f"{LOGS}/systems/{{row}}.log",
    benchmark:
        f"{BENCH}/systems/{{row}}.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=lambda w: pipeline.spec_json(pipeline.row_spec(config, w.row)),
        sources=system_source_args,
    shell:
        "acoustic-lottery export-system --spec {params.spec:q} {params.sources}"
        " --out {output.artifact:q} --report {output.report:q} > {log:q} 2>&1"


rule predict_int8:
    input:
        model=f"{RESULTS}/models/{{model}}/int8.alot",
        features=lambda w: f"{RESULTS}/features/{model_features(w.model)}/{w.split}/orig.h5",
    output:
        f"{RESULTS}/predictions/{{model}}/int8/{{head}}/{{split}}.h5",
    log:
        f"{LOGS}/predict/{{model}}_int8_{{head}}_{{split}}.log",
    benchmark:
        f"{BENCH}/predict/{{model}}_int8_{{head}}_{{split}}.tsv"
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "acoustic-lottery predict --model {input.model:q} --features {input.features:q}"
        " --head {wildcards.head:q} --out {output:q} > {log:q} 2>&1"
