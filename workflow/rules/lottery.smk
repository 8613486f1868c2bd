# Pruning. Lottery tickets (report Algorithm 1): one job per round, chained through the
# previous round's mask and weights; Θ0 is the dense base model's init.pt. A control
# chain (random mask / random re-init) branches off the winning chain at every round.
# Progressive pruning (Rep-Mobile): one fine-tuning job pruning step by step, no rewind.


rule lottery_round:
    input:
        unpack(lottery_round_inputs),
    output:
        final=f"{RESULTS}/models/{{chain}}/round{{t}}/final.pt",
        mask=f"{RESULTS}/models/{{chain}}/round{{t}}/mask.pt",
        report=f"{RESULTS}/models/{{chain}}/round{{t}}/round.json",
    log:
        f"{LOGS}/lottery/{{chain}}_round{{t}}.log",
    benchmark:
        f"{BENCH}/lottery/{{chain}}_round{{t}}.tsv"
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=24 * 60,
    params:
        spec=lambda w: pipeline.spec_json(
            pipeline.round_spec(config, w.chain, int(w.t))
        ),
        settings=lambda w: pipeline.round_args(
            pipeline.round_settings(config, w.chain, int(w.t))
        ),
        out_dir=lambda w: round_dir(w.chain, w.t),
        previous_mask=previous_mask_arg,
        teachers=teacher_args,
    shell:
        "acoustic-lottery lottery-round --round {wildcards.t:q} --spec {params.spec:q}"
        " --train {input.train:q} --out-dir {params.out_dir:q} --theta0 {input.theta0:q}"
        " --previous {input.previous:q} {params.previous_mask:q} {params.settings:q}"
        " --threads {threads} {params.teachers:q} > {log:q} 2>&1"


rule prune_progressive:
    input:
        unpack(teacher_inputs),
        train=train_inputs,
        dense=lambda w: f"{RESULTS}/models/{pipeline.progressive_base(config, w.prog)}/final.pt",
    output:
        final=f"{RESULTS}/models/{{prog}}/final.pt",
        mask=f"{RESULTS}/models/{{prog}}/mask.pt",
        report=f"{RESULTS}/models/{{prog}}/progressive.json",
    log:
        f"{LOGS}/progressive/{{prog}}.log",
    benchmark:
        f"{BENCH}/progressive/{{prog}}.tsv"
    conda:
        CONDA_ENV
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=24 * 60,
    params:
        spec=lambda w: pipeline.spec_json(pipeline.train_spec(config, w.prog)),
        settings=lambda w: pipeline.progressive_args(config, w.prog),
        out_dir=lambda w: model_dir(w.prog),
        teachers=teacher_args,
    shell:
        "acoustic-lottery prune-progressive --spec {params.spec:q} --train {input.train:q}"
        " --dense {input.dense:q} --out-dir {params.out_dir:q} {params.settings:q}"
        " --threads {threads} {params.teachers:q} > {log:q} 2>&1"
