rule pretrain:
    input:
        data=PRETRAIN_DATA,
        code=CODE_TRAINING,
    output:
        weights=CLIP_WEIGHTS,
        log="results/train/pretrain.json",
    params:
        section=[P.model.model_dump(), P.pretrain.model_dump()],
    threads: lambda wildcards: workflow.cores  # at job time: `snakemake --report` runs without --cores
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
        code=CODE_TRAINING,
    output:
        checkpoint="models/{dataset}/adapt/model.pt",
        metrics="results/metrics/{dataset}/adapt_retrieval.json",
        log="results/train/{dataset}/adapt.json",
        live=directory("results/live/{dataset}/adapt"),
    params:
        section=section("model", "adapt"),
    threads: lambda wildcards: workflow.cores  # at job time: `snakemake --report` runs without --cores
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


rule finetune:
    input:
        data=PREPARED,
        clip=CLIP_WEIGHTS,
        code=CODE_TRAINING,
    output:
        checkpoint="models/{dataset}/finetune/{variant}/seed{seed}.pt",
        log="results/train/{dataset}/finetune/{variant}/seed{seed}.json",
        live=directory("results/live/{dataset}/finetune/{variant}/seed{seed}"),
    wildcard_constraints:
        variant="clip-ft|no-adapt",
    params:
        section=section("model", "finetune"),
    threads: lambda wildcards: workflow.cores  # at job time: `snakemake --report` runs without --cores
    resources:
        **stage_resources("finetune"),
    log:
        "logs/{dataset}/finetune/{variant}/seed{seed}.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="finetune")
        + " --dataset {wildcards.dataset} --data {input.data} --variant {wildcards.variant} --seed {wildcards.seed}"
        " --clip {input.clip} --out {output.checkpoint} --log {output.log}"
        " --live {output.live} > {log} 2>&1"


# The adapt variant starts from the adaptation checkpoint, which holds all of CLIP.
rule finetune_adapt:
    input:
        data=PREPARED,
        adapted="models/{dataset}/adapt/model.pt",
        code=CODE_TRAINING,
    output:
        checkpoint="models/{dataset}/finetune/adapt/seed{seed}.pt",
        log="results/train/{dataset}/finetune/adapt/seed{seed}.json",
        live=directory("results/live/{dataset}/finetune/adapt/seed{seed}"),
    params:
        section=section("model", "finetune"),
    threads: lambda wildcards: workflow.cores  # at job time: `snakemake --report` runs without --cores
    resources:
        **stage_resources("finetune"),
    log:
        "logs/{dataset}/finetune/adapt/seed{seed}.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="finetune")
        + " --dataset {wildcards.dataset} --data {input.data} --variant adapt --seed {wildcards.seed}"
        " --adapted {input.adapted} --out {output.checkpoint} --log {output.log}"
        " --live {output.live} > {log} 2>&1"
