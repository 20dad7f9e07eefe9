rule decode:
    input:
        data=PREPARED,
        checkpoint="models/{dataset}/finetune/{variant}/seed{seed}.pt",
        code=CODE_DECODE,
    output:
        "results/predictions/{dataset}/{variant}/seed{seed}.json",
    params:
        section=section("decode"),
    threads: lambda wildcards: workflow.cores  # at job time: `snakemake --report` runs without --cores
    resources:
        **stage_resources("decode"),
    log:
        "logs/{dataset}/decode/{variant}/seed{seed}.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="decode")
        + " --dataset {wildcards.dataset} --data {input.data} --checkpoint {input.checkpoint} --out {output}"
        " > {log} 2>&1"


rule baseline:
    input:
        data=PREPARED,
    output:
        "results/predictions/{dataset}/constant.json",
    params:
        split=lambda wc: DP[wc.dataset].decode.split,
    resources:
        **stage_resources("evaluate"),
    log:
        "logs/{dataset}/baseline.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="baseline") + " --dataset {wildcards.dataset} --data {input.data} --out {output} > {log} 2>&1"


rule evaluate:
    input:
        data=PREPARED,
        predictions="results/predictions/{dataset}/{variant}/seed{seed}.json",
        code=CODE_METRICS,
    output:
        "results/metrics/{dataset}/{variant}/seed{seed}.json",
    params:
        split=lambda wc: DP[wc.dataset].decode.split,
        section=section("evaluate"),
    resources:
        **stage_resources("evaluate"),
    log:
        "logs/{dataset}/evaluate/{variant}/seed{seed}.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="evaluate")
        + " --dataset {wildcards.dataset} --data {input.data} --predictions {input.predictions}"
        " --variant {wildcards.variant} --seed {wildcards.seed} --out {output} > {log} 2>&1"


rule evaluate_baseline:
    input:
        data=PREPARED,
        predictions="results/predictions/{dataset}/constant.json",
        code=CODE_METRICS,
    output:
        "results/metrics/{dataset}/constant.json",
    params:
        split=lambda wc: DP[wc.dataset].decode.split,
        section=section("evaluate"),
    resources:
        **stage_resources("evaluate"),
    log:
        "logs/{dataset}/evaluate/constant.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="evaluate")
        + " --dataset {wildcards.dataset} --data {input.data} --predictions {input.predictions} --variant constant"
        " --out {output} > {log} 2>&1"
