# Table 1 rows: fuse/ensemble member predictions, evaluate, size, and the paper beside.


rule row:
    input:
        predictions=row_predictions,
        sizes=row_sizes,
    output:
        row=f"{RESULTS}/table1/{{row}}.json",
        predictions=f"{RESULTS}/predictions/table1/{{row}}.h5",
    log:
        f"{LOGS}/table1/{{row}}.log",
    benchmark:
        f"{BENCH}/table1/{{row}}.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=lambda w: pipeline.spec_json(pipeline.row_spec(config, w.row)),
    shell:
        "acoustic-lottery row --spec {params.spec:q}"
        " --predictions {input.predictions}"
        " --sizes {input.sizes} --out {output.row}"
        " --out-predictions {output.predictions} > {log} 2>&1"


rule table:
    input:
        expand(f"{RESULTS}/table1/{{row}}.json", row=ROWS),
    output:
        md=f"{RESULTS}/table1.md",
        csv=report(
            f"{RESULTS}/table1.csv",
            caption="../report/table1.rst",
            category="Table 1",
        ),
    log:
        f"{LOGS}/table1/table.log",
    benchmark:
        f"{BENCH}/table1/table.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "acoustic-lottery table --rows {input} --out-md {output.md}"
        " --out-csv {output.csv} > {log} 2>&1"
