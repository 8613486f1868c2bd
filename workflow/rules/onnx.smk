# ONNX: float export, onnxruntime static int8 (QDQ) calibrated on training clips, and the
# int8 accuracy of onnxruntime against the PyTorch int8 evaluation (config `onnx`).

ONNX_MODELS = config["onnx"]["models"]
ONNX_TABLE = [f"{RESULTS}/onnx.md"] if ONNX_MODELS else []


rule export_onnx:
    input:
        lambda w: final_checkpoint(w.model),
    output:
        model=f"{RESULTS}/onnx/{{model}}/float.onnx",
        report=f"{RESULTS}/onnx/{{model}}/export.json",
    log:
        f"{LOGS}/onnx/{{model}}_export.log",
    benchmark:
        f"{BENCH}/onnx/{{model}}_export.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "acoustic-lottery export-onnx --model {input:q} --out {output.model:q}"
        " --report {output.report:q} > {log:q} 2>&1"


rule quantize_onnx:
    input:
        model=f"{RESULTS}/onnx/{{model}}/float.onnx",
        calibration=lambda w: f"{RESULTS}/features/{model_features(w.model)}/train/orig.h5",
    output:
        model=f"{RESULTS}/onnx/{{model}}/int8.onnx",
        report=f"{RESULTS}/onnx/{{model}}/quantize.json",
    log:
        f"{LOGS}/onnx/{{model}}_quantize.log",
    benchmark:
        f"{BENCH}/onnx/{{model}}_quantize.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        clips=config["onnx"]["calibration_clips"],
        seed=config["training"]["seed"],
    shell:
        "acoustic-lottery quantize-onnx --model {input.model:q} --calibration {input.calibration:q}"
        " --out {output.model:q} --max-clips {params.clips:q} --seed {params.seed:q}"
        " --report {output.report:q} > {log:q} 2>&1"


rule compare_onnx:
    input:
        checkpoint=lambda w: final_checkpoint(w.model),
        model=f"{RESULTS}/onnx/{{model}}/int8.onnx",
        features=lambda w: f"{RESULTS}/features/{model_features(w.model)}/evaluate/orig.h5",
    output:
        f"{RESULTS}/onnx/{{model}}/compare.json",
    log:
        f"{LOGS}/onnx/{{model}}_compare.log",
    benchmark:
        f"{BENCH}/onnx/{{model}}_compare.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        tolerance=config["onnx"]["tolerance_points"],
    shell:
        "acoustic-lottery compare-onnx --model {input.checkpoint:q} --onnx {input.model:q}"
        " --features {input.features:q} --out {output:q} --tolerance {params.tolerance:q}"
        " --record-only > {log:q} 2>&1"


rule onnx_table:
    input:
        compare=expand(f"{RESULTS}/onnx/{{model}}/compare.json", model=ONNX_MODELS),
        quantize=expand(f"{RESULTS}/onnx/{{model}}/quantize.json", model=ONNX_MODELS),
    output:
        f"{RESULTS}/onnx.md",
    log:
        f"{LOGS}/onnx/table.log",
    benchmark:
        f"{BENCH}/onnx/table.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=500,
        runtime=5,
    params:
        models=lambda w, input: [
            a
            for m, c, q in zip(ONNX_MODELS, input.compare, input.quantize)
            for a in ("--model", m, c, q)
        ],
    shell:
        "acoustic-lottery onnx-table {params.models:q} --out-md {output:q} > {log:q} 2>&1"
