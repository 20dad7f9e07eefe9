# The CLIP every stage starts from (pretrain), stage 1 (adapt) and stage 2 (finetune).


rule pretrain:
    input:
        data=PRETRAIN_DATA,
        code=code("pretrain"),
    output:
        weights=CLIP_WEIGHTS,
        log="results/train/pretrain.json",
    params:
        tracked=tracked("pretrain"),
    threads: stage_threads("pretrain")
    resources:
        **stage_resources("pretrain"),
    log:
        "logs/pretrain.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="pretrain")
        + " --data {input.data} --out {output.weights} --log {output.log} > {log} 2>&1"


rule adapt:
    input:
        data=PREPARED,
        clip=CLIP_WEIGHTS,
        code=code("adapt"),
    output:
        checkpoint="models/{dataset}/adapt/model.pt",
        metrics="results/metrics/{dataset}/adapt_retrieval.json",
        log="results/train/{dataset}/adapt.json",
        live=directory("results/live/{dataset}/adapt"),
    params:
        tracked=tracked("adapt"),
    threads: stage_threads("adapt")
    resources:
        **stage_resources("adapt"),
    log:
        "logs/{dataset}/adapt.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="adapt")
        + " --dataset {wildcards.dataset} --data {input.data} --clip {input.clip} --out {output.checkpoint}"
        " --metrics {output.metrics} --log {output.log} --live {output.live} > {log} 2>&1"


# One rule for the three variants; each starts where finetune_start says.
rule finetune:
    input:
        data=PREPARED,
        start=finetune_start,
        code=code("finetune"),
    output:
        checkpoint="models/{dataset}/finetune/{variant}/seed{seed}.pt",
        log="results/train/{dataset}/finetune/{variant}/seed{seed}.json",
        live=directory("results/live/{dataset}/finetune/{variant}/seed{seed}"),
    params:
        tracked=tracked("finetune"),
        start=lambda wc: "--adapted" if wc.variant == "adapt" else "--clip",
    threads: stage_threads("finetune")
    resources:
        **stage_resources("finetune"),
    log:
        "logs/{dataset}/finetune/{variant}/seed{seed}.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="finetune")
        + " --dataset {wildcards.dataset} --data {input.data} --variant {wildcards.variant} --seed {wildcards.seed}"
        " {params.start} {input.start} --out {output.checkpoint} --log {output.log}"
        " --live {output.live} > {log} 2>&1"
