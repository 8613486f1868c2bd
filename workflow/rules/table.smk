# Table 1 rows: fuse/ensemble member predictions, evaluate, size, and the paper beside;
# every accuracy and log loss with its cluster-bootstrap interval over recordings.


rule row:
    input:
        predictions=row_predictions,
        sizes=row_sizes,
    output:
        row=f"{RESULTS}/table1/{{row}}.json",
        predictions=f"{RESULTS}/predictions/table1/{{row}}.h5",
        summary=f"{RESULTS}/table1/summary/{{row}}.json",
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
        statistics=STATISTICS,
    shell:
        "acoustic-lottery row --spec {params.spec:q}"
        " --predictions {input.predictions:q}"
        " --sizes {input.sizes:q} --out {output.row:q}"
        " --out-predictions {output.predictions:q}"
        " --out-summary {output.summary:q} --statistics {params.statistics:q} > {log:q} 2>&1"


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
        "acoustic-lottery table --rows {input:q} --out-md {output.md:q}"
        " --out-csv {output.csv:q} > {log:q} 2>&1"


# The report's claims (config `comparisons`, plus every lottery chain against its
# controls): B - A with paired intervals. Pairs this config does not build are listed as
# skipped, so the rule exists (and writes its files) for every configuration.
rule comparisons:
    input:
        comparisons.pair_files(COMPARISON_PAIRS),
    output:
        md=f"{RESULTS}/comparisons.md",
        csv=f"{RESULTS}/comparisons.csv",
        json=f"{RESULTS}/comparisons.json",
    log:
        f"{LOGS}/comparisons.log",
    benchmark:
        f"{BENCH}/comparisons.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        pairs=pipeline.spec_json(COMPARISON_PAIRS),
        statistics=STATISTICS,
    shell:
        "acoustic-lottery comparisons --pairs {params.pairs:q}"
        " --predictions {input:q} --statistics {params.statistics:q}"
        " --out-md {output.md:q} --out-csv {output.csv:q}"
        " --out-json {output.json:q} > {log:q} 2>&1"


# The result tables as HTML pages: Snakemake's report shows HTML inline (markdown and
# CSV only as downloads), so these are what a reader of report.html sees.
rule html_page:
    input:
        f"{RESULTS}/{{page}}.md",
    output:
        report(
            f"{RESULTS}/html/{{page}}.html",
            caption="../report/html_page.rst",
            category="Tables",
            labels={"table": "{page}"},
        ),
    log:
        f"{LOGS}/html/{{page}}.log",
    benchmark:
        f"{BENCH}/html/{{page}}.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=500,
        runtime=5,
    params:
        title=lambda w: HTML_PAGES[w.page],
    shell:
        "acoustic-lottery html-page --markdown {input:q} --out {output:q}"
        " --title {params.title:q} > {log:q} 2>&1"
