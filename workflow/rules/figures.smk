# Metrics per model and per lottery round, Figure 2 (accuracy vs weights remaining),
# Figure 3 (layer-wise weights, dense vs pruned) and the per-device comparison.


rule evaluate_model:
    input:
        f"{RESULTS}/predictions/{{model}}/{{head}}/{{split}}.h5",
    output:
        f"{RESULTS}/metrics/{{model}}/{{head}}/{{split}}.json",
    log:
        f"{LOGS}/evaluate/{{model}}_{{head}}_{{split}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{model}}_{{head}}_{{split}}.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "acoustic-lottery evaluate --predictions {input:q} --out {output:q} > {log:q} 2>&1"


rule predict_round:
    input:
        model=f"{RESULTS}/models/{{chain}}/round{{t}}/final.pt",
        features=lambda w: f"{RESULTS}/features/{model_features(w.chain)}/evaluate/orig.h5",
    output:
        f"{RESULTS}/predictions/{{chain}}/round{{t}}/{{head}}/evaluate.h5",
    log:
        f"{LOGS}/predict/{{chain}}_round{{t}}_{{head}}.log",
    benchmark:
        f"{BENCH}/predict/{{chain}}_round{{t}}_{{head}}.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "acoustic-lottery predict --model {input.model:q} --features {input.features:q}"
        " --head {wildcards.head:q} --out {output:q} > {log:q} 2>&1"


rule evaluate_round:
    input:
        f"{RESULTS}/predictions/{{chain}}/round{{t}}/{{head}}/evaluate.h5",
    output:
        f"{RESULTS}/metrics/{{chain}}/round{{t}}/{{head}}/evaluate.json",
    log:
        f"{LOGS}/evaluate/{{chain}}_round{{t}}_{{head}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{chain}}_round{{t}}_{{head}}.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "acoustic-lottery evaluate --predictions {input:q} --out {output:q} > {log:q} 2>&1"


rule lottery_dense:
    input:
        lambda w: f"{RESULTS}/models/{pipeline.lottery_settings(config, w.chain)['base']}/final.pt",
    output:
        f"{RESULTS}/figures/points/{{chain}}/round0_report.json",
    log:
        f"{LOGS}/figures/{{chain}}_round0_report.log",
    benchmark:
        f"{BENCH}/figures/{{chain}}_round0_report.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        scope=lambda w: pipeline.lottery_settings(config, w.chain)["scope"],
    shell:
        "acoustic-lottery lottery-dense --final {input:q} --out {output:q}"
        " --scope {params.scope:q} > {log:q} 2>&1"


rule lottery_point:
    input:
        unpack(point_inputs),
    output:
        f"{FIG}/points/{{chain}}/round{{t,[0-9]+}}.json",
    log:
        f"{LOGS}/figures/{{chain}}_round{{t}}_point.log",
    benchmark:
        f"{BENCH}/figures/{{chain}}_round{{t}}_point.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        label=point_label,
    shell:
        "acoustic-lottery lottery-point --round-report {input.report:q}"
        " --metrics {input.metrics:q} --strategy {params.label:q} --out {output:q} > {log:q} 2>&1"


rule figure2:
    input:
        figure2_points,
    output:
        report(
            f"{FIG}/figure2.png",
            caption="../report/figure2.rst",
            category="Figures",
        ),
    log:
        f"{LOGS}/figures/figure2.log",
    benchmark:
        f"{BENCH}/figures/figure2.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "acoustic-lottery figure2 --points {input:q} --out {output:q} > {log:q} 2>&1"


# Figure 2 over several training seeds (make all): each point the mean of its seeds with
# their range, the dense bases as a band.
rule figure2_seeds:
    input:
        figure2_seed_points,
    output:
        report(
            f"{FIG}/figure2_seeds.png",
            caption="../report/figure2.rst",
            category="Figures",
        ),
    log:
        f"{LOGS}/figures/figure2_seeds.log",
    benchmark:
        f"{BENCH}/figures/figure2_seeds.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "acoustic-lottery figure2 --points {input:q} --out {output:q} > {log:q} 2>&1"


rule figure3:
    input:
        dense=lambda w: final_checkpoint(FIGURES["figure3"]["dense"]),
        pruned=lambda w: final_checkpoint(FIGURES["figure3"]["pruned"]),
    output:
        report(
            f"{FIG}/figure3.png",
            caption="../report/figure3.rst",
            category="Figures",
        ),
    log:
        f"{LOGS}/figures/figure3.log",
    benchmark:
        f"{BENCH}/figures/figure3.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "acoustic-lottery figure3 --dense {input.dense:q} --pruned {input.pruned:q}"
        " --out {output:q} > {log:q} 2>&1"


rule devices:
    input:
        unpack(device_metrics),
    output:
        png=report(
            f"{FIG}/devices.png",
            caption="../report/devices.rst",
            category="Figures",
        ),
        md=f"{FIG}/devices.md",
    log:
        f"{LOGS}/figures/devices.log",
    benchmark:
        f"{BENCH}/figures/devices.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        named=lambda w, input: [f"{k}={v}" for k, v in input.items()],
    shell:
        "acoustic-lottery device-table --metrics {params.named:q} --out-md {output.md:q}"
        " --out-png {output.png:q} > {log:q} 2>&1"


rule confusion:
    input:
        f"{RESULTS}/metrics/{{model}}/scene/evaluate.json",
    output:
        png=report(
            f"{FIG}/confusion/{{model}}.png",
            caption="../report/confusion.rst",
            category="Confusion matrices",
        ),
        data=f"{FIG}/confusion/{{model}}.csv",
    log:
        f"{LOGS}/figures/confusion_{{model}}.log",
    benchmark:
        f"{BENCH}/figures/confusion_{{model}}.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "acoustic-lottery confusion --metrics {input:q} --out {output.png:q}"
        " --out-data {output.data:q} --title {wildcards.model:q} > {log:q} 2>&1"


# How separable the data set is per device group, whatever a model learns (a linear
# probe on per-band statistics; docs/synthetic_dataset.md).
rule probe:
    input:
        train=f"{RESULTS}/features/lmfb/train/orig.h5",
        evaluate=f"{RESULTS}/features/lmfb/evaluate/orig.h5",
    output:
        json=f"{RESULTS}/probe.json",
        md=f"{RESULTS}/probe.md",
    log:
        f"{LOGS}/probe.log",
    benchmark:
        f"{BENCH}/probe.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "acoustic-lottery probe --train {input.train:q} --evaluate {input.evaluate:q}"
        " --out {output.json:q} --out-md {output.md:q} > {log:q} 2>&1"
