# The DCASE 2024 data-efficiency study (config key data_efficiency): nested train
# subsets, Rep-Mobile students trained on each (plain, distilled, progressively pruned),
# folded for inference, complexity-checked, evaluated, and the table
# results/<ds>/efficiency.md / .csv. All settings come from acoustic_lottery.efficiency.

from pathlib import Path

from acoustic_lottery import efficiency

# Paths of the study's files; `EFFICIENCY.targets()` is the table (nothing without a study).
EFFICIENCY = efficiency.StudyPaths(config, RESULTS, final_checkpoint)
EFF = EFFICIENCY.runs
SUBSETS = EFFICIENCY.subsets

if efficiency.has_study(config):
    EFF_STUDY = efficiency.study_config(config)
    EFF_FRACTIONS = efficiency.fraction_keys(config)
    EFF_P = "|".join(re.escape(p) for p in EFF_FRACTIONS)
    EFF_SYSTEMS = efficiency.system_names(config)
    EFF_LIMITS = EFF_STUDY["complexity"]

    rule efficiency_subsets:
        input:
            study_input_train,
        output:
            splits=expand(f"{SUBSETS}/split{{p}}.csv", p=EFF_FRACTIONS),
            summary=f"{SUBSETS}/summary.json",
        log:
            f"{LOGS}/efficiency/subsets.log",
        benchmark:
            f"{BENCH}/efficiency/subsets.tsv"
        conda:
            CONDA_ENV
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            split_csv=f"{DATA_ROOT}/evaluation_setup/fold1_train.csv",
            root=DATA_ROOT,
            fractions=list(EFF_FRACTIONS),
            seed=EFF_STUDY["seed"],
            missing=config["dataset"]["missing"],
            out_dir=lambda w, output: str(Path(output.summary).parent),
        shell:
            "acoustic-lottery subsets --split-csv {params.split_csv:q} --root {params.root:q}"
            " --fractions {params.fractions:q} --seed {params.seed:q} --out-dir {params.out_dir:q}"
            " --missing {params.missing:q} --summary {output.summary:q} > {log:q} 2>&1"

    rule efficiency_features:
        input:
            features=f"{RESULTS}/features/{{fs}}/train/{{tcopy}}.h5",
            subset=f"{SUBSETS}/split{{p}}.csv",
        output:
            f"{RESULTS}/features/{{fs}}/train/subset{{p}}/{{tcopy}}.h5",
        log:
            f"{LOGS}/efficiency/features_{{fs}}_subset{{p}}_{{tcopy}}.log",
        benchmark:
            f"{BENCH}/efficiency/features_{{fs}}_subset{{p}}_{{tcopy}}.tsv"
        wildcard_constraints:
            p=EFF_P,
            tcopy="orig|pitch|speed|noise|mix|speccorr|reverb",
        conda:
            CONDA_ENV
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            # the speccorr copy holds device-a clips only: other listed clips are absent
            missing=lambda w: "skip" if w.tcopy == "speccorr" else "error",
        shell:
            "acoustic-lottery select-features --features {input.features:q}"
            " --subset {input.subset:q} --out {output:q} --missing {params.missing:q}"
            " > {log:q} 2>&1"

    rule efficiency_teacher:
        input:
            train=lambda w: EFFICIENCY.teacher_inputs(w.teacher, w.p),
        output:
            final=f"{EFF}/teachers/{{teacher}}/p{{p}}/final.pt",
            init=f"{EFF}/teachers/{{teacher}}/p{{p}}/init.pt",
            history=f"{EFF}/teachers/{{teacher}}/p{{p}}/history.csv",
        log:
            f"{LOGS}/efficiency/teacher_{{teacher}}_p{{p}}.log",
        benchmark:
            f"{BENCH}/efficiency/teacher_{{teacher}}_p{{p}}.tsv"
        wildcard_constraints:
            teacher=_alternatives(efficiency.subset_teachers(config)),
            p=EFF_P,
        conda:
            CONDA_ENV
        threads: THREADS
        resources:
            mem_mb=8000,
            runtime=24 * 60,
        params:
            spec=lambda w: pipeline.spec_json(
                efficiency.teacher_spec(config, w.teacher)
            ),
            out_dir=lambda w: f"{EFF}/teachers/{w.teacher}/p{w.p}",
        shell:
            "acoustic-lottery train --spec {params.spec:q} --train {input.train:q}"
            " --out-dir {params.out_dir:q} --threads {threads} > {log:q} 2>&1"

    rule efficiency_train:
        input:
            unpack(lambda w: EFFICIENCY.student_inputs(w.system, w.p)),
        output:
            final=f"{EFF}/{{system}}/p{{p}}/dense/final.pt",
            init=f"{EFF}/{{system}}/p{{p}}/dense/init.pt",
            history=f"{EFF}/{{system}}/p{{p}}/dense/history.csv",
        log:
            f"{LOGS}/efficiency/train_{{system}}_p{{p}}.log",
        benchmark:
            f"{BENCH}/efficiency/train_{{system}}_p{{p}}.tsv"
        wildcard_constraints:
            system=_alternatives(efficiency.train_systems(config)),
            p=EFF_P,
        conda:
            CONDA_ENV
        threads: THREADS
        resources:
            mem_mb=8000,
            runtime=24 * 60,
        params:
            spec=lambda w: pipeline.spec_json(efficiency.student_spec(config, w.system)),
            out_dir=lambda w: f"{EFF}/{w.system}/p{w.p}/dense",
            teacher=lambda w, input: efficiency.teacher_arg(input),
        shell:
            "acoustic-lottery train --spec {params.spec:q} --train {input.train:q}"
            " --out-dir {params.out_dir:q} --threads {threads} {params.teacher:q} > {log:q} 2>&1"

    rule efficiency_prune:
        input:
            unpack(lambda w: EFFICIENCY.prune_inputs(w.system, w.p)),
        output:
            final=f"{EFF}/{{system}}/p{{p}}/pruned/final.pt",
            mask=f"{EFF}/{{system}}/p{{p}}/pruned/mask.pt",
            report=f"{EFF}/{{system}}/p{{p}}/pruned/progressive.json",
        log:
            f"{LOGS}/efficiency/prune_{{system}}_p{{p}}.log",
        benchmark:
            f"{BENCH}/efficiency/prune_{{system}}_p{{p}}.tsv"
        wildcard_constraints:
            system=_alternatives(efficiency.pruned_systems(config)),
            p=EFF_P,
        conda:
            CONDA_ENV
        threads: THREADS
        resources:
            mem_mb=8000,
            runtime=24 * 60,
        params:
            spec=lambda w: pipeline.spec_json(
                efficiency.finetune_spec(config, w.system)
            ),
            settings=lambda w: efficiency.progressive_args(config, w.system),
            out_dir=lambda w: f"{EFF}/{w.system}/p{w.p}/pruned",
            teacher=lambda w, input: efficiency.teacher_arg(input),
        shell:
            "acoustic-lottery prune-progressive --spec {params.spec:q} --train {input.train:q}"
            " --dense {input.dense:q} --out-dir {params.out_dir:q} {params.settings:q}"
            " {params.teacher:q} --threads {threads} > {log:q} 2>&1"

    rule efficiency_deploy:
        input:
            lambda w: EFFICIENCY.final(w.system, w.p),
        output:
            f"{EFF}/{{system}}/p{{p}}/deploy.pt",
        log:
            f"{LOGS}/efficiency/deploy_{{system}}_p{{p}}.log",
        benchmark:
            f"{BENCH}/efficiency/deploy_{{system}}_p{{p}}.tsv"
        wildcard_constraints:
            system=_alternatives(EFF_SYSTEMS),
            p=EFF_P,
        conda:
            CONDA_ENV
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            frames=EFF_LIMITS["frames"],
            bands=EFF_LIMITS["bands"],
        shell:
            "acoustic-lottery reparameterize --model {input:q} --out {output:q}"
            " --frames {params.frames:q} --bands {params.bands:q} > {log:q} 2>&1"

    rule efficiency_complexity:
        input:
            f"{EFF}/{{system}}/p{{p}}/deploy.pt",
        output:
            f"{EFF}/{{system}}/p{{p}}/complexity.json",
        log:
            f"{LOGS}/efficiency/complexity_{{system}}_p{{p}}.log",
        benchmark:
            f"{BENCH}/efficiency/complexity_{{system}}_p{{p}}.tsv"
        wildcard_constraints:
            system=_alternatives(EFF_SYSTEMS),
            p=EFF_P,
        conda:
            CONDA_ENV
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            frames=EFF_LIMITS["frames"],
            bands=EFF_LIMITS["bands"],
            max_kb=EFF_LIMITS["max_kb"],
            max_macs=EFF_LIMITS["max_macs"],
            dtype=(
                ["--dtype", EFF_LIMITS["dtype"]]
                if EFF_LIMITS["dtype"] is not None
                else []
            ),
        shell:
            "acoustic-lottery complexity --model {input:q} --out {output:q}"
            " --frames {params.frames:q} --bands {params.bands:q} --max-kb {params.max_kb:q}"
            " --max-macs {params.max_macs:q} {params.dtype:q} > {log:q} 2>&1"

    rule efficiency_predict:
        input:
            model=f"{EFF}/{{system}}/p{{p}}/deploy.pt",
            features=f"{RESULTS}/features/{efficiency.STUDENT_FEATURES}/evaluate/orig.h5",
        output:
            f"{EFF}/{{system}}/p{{p}}/evaluate.h5",
        log:
            f"{LOGS}/efficiency/predict_{{system}}_p{{p}}.log",
        benchmark:
            f"{BENCH}/efficiency/predict_{{system}}_p{{p}}.tsv"
        wildcard_constraints:
            system=_alternatives(EFF_SYSTEMS),
            p=EFF_P,
        conda:
            CONDA_ENV
        resources:
            mem_mb=4000,
            runtime=60,
        shell:
            "acoustic-lottery predict --model {input.model:q} --features {input.features:q}"
            " --head scene --out {output:q} > {log:q} 2>&1"

    rule efficiency_evaluate:
        input:
            f"{EFF}/{{system}}/p{{p}}/evaluate.h5",
        output:
            f"{EFF}/{{system}}/p{{p}}/metrics.json",
        log:
            f"{LOGS}/efficiency/evaluate_{{system}}_p{{p}}.log",
        benchmark:
            f"{BENCH}/efficiency/evaluate_{{system}}_p{{p}}.tsv"
        wildcard_constraints:
            system=_alternatives(EFF_SYSTEMS),
            p=EFF_P,
        conda:
            CONDA_ENV
        resources:
            mem_mb=1000,
            runtime=10,
        shell:
            "acoustic-lottery evaluate --predictions {input:q} --out {output:q} > {log:q} 2>&1"

    rule efficiency_system:
        input:
            unpack(lambda w: EFFICIENCY.system_inputs(w.system)),
        output:
            f"{EFFICIENCY.systems}/{{system}}.json",
        log:
            f"{LOGS}/efficiency/system_{{system}}.log",
        benchmark:
            f"{BENCH}/efficiency/system_{{system}}.tsv"
        wildcard_constraints:
            system=_alternatives(EFF_SYSTEMS),
        conda:
            CONDA_ENV
        resources:
            mem_mb=1000,
            runtime=5,
        params:
            spec=lambda w: pipeline.spec_json(efficiency.system_spec(config, w.system)),
            metrics=lambda w, input: EFFICIENCY.pairs("--metrics", input.metrics),
            complexity=lambda w, input: EFFICIENCY.pairs(
                "--complexity", input.complexity
            ),
            pruning=lambda w, input: EFFICIENCY.pruning_arg(input),
        shell:
            "acoustic-lottery efficiency-system --spec {params.spec:q} {params.metrics:q}"
            " {params.complexity:q} {params.pruning:q} --out {output:q} > {log:q} 2>&1"

    rule efficiency_table:
        input:
            systems=expand(f"{EFFICIENCY.systems}/{{system}}.json", system=EFF_SYSTEMS),
            summary=f"{SUBSETS}/summary.json",
        output:
            md=f"{RESULTS}/efficiency.md",
            csv=f"{RESULTS}/efficiency.csv",
        log:
            f"{LOGS}/efficiency/table.log",
        benchmark:
            f"{BENCH}/efficiency/table.tsv"
        conda:
            CONDA_ENV
        resources:
            mem_mb=1000,
            runtime=5,
        shell:
            "acoustic-lottery efficiency-table --systems {input.systems:q}"
            " --subsets-summary {input.summary:q} --out-md {output.md:q}"
            " --out-csv {output.csv:q} > {log:q} 2>&1"

    # `snakemake data_efficiency`: the study alone (rule all adds EFFICIENCY.targets()).
    rule data_efficiency:
        input:
            EFFICIENCY.targets(),
