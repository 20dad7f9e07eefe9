# Captions (decode, and the constant-caption baseline) and their scores (evaluate).


rule decode:
    input:
        data=PREPARED,
        checkpoint="models/{dataset}/finetune/{variant}/seed{seed}.pt",
        code=code("decode"),
    output:
        "results/predictions/{dataset}/{variant}/seed{seed}.json",
    params:
        tracked=tracked("decode"),
    threads: stage_threads("decode")
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
        code=code("baseline"),
    output:
        "results/predictions/{dataset}/constant.json",
    params:
        tracked=tracked("baseline"),
    threads: stage_threads("evaluate")
    resources:
        **stage_resources("evaluate"),
    log:
        "logs/{dataset}/baseline.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="baseline") + " --dataset {wildcards.dataset} --data {input.data} --out {output} > {log} 2>&1"


# One rule scores every predictions file: a variant and seed (`<variant>/seed<seed>`) or the baseline
# (`constant`), told apart by scored_as.
rule evaluate:
    input:
        data=PREPARED,
        predictions="results/predictions/{dataset}/{run}.json",
        code=code("evaluate"),
    output:
        "results/metrics/{dataset}/{run}.json",
    wildcard_constraints:
        run="constant|(" + "|".join(VARIANTS) + r")/seed\d+",
    params:
        tracked=tracked("evaluate"),
        scored_as=scored_as,
    threads: stage_threads("evaluate")
    resources:
        **stage_resources("evaluate"),
    log:
        "logs/{dataset}/evaluate/{run}.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="evaluate")
        + " --dataset {wildcards.dataset} --data {input.data} --predictions {input.predictions}"
        " {params.scored_as} --out {output} > {log} 2>&1"
