rule pretrain:
    input:
        data=PREPARED,
        code=CODE_TRAINING,
    output:
        weights=CLIP_WEIGHTS,
        log="results/train/pretrain.json",
    params:
        section=[P.model.model_dump(), P.pretrain.model_dump()],
    threads: workflow.cores
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
        checkpoint="models/adapt/model.pt",
        metrics="results/metrics/adapt_retrieval.json",
        log="results/train/adapt.json",
    params:
        section=[P.model.model_dump(), P.adapt.model_dump()],
    threads: workflow.cores
    log:
        "logs/adapt.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="adapt")
        + " --data {input.data} --clip {input.clip} --out {output.checkpoint}"
        " --metrics {output.metrics} --log {output.log} > {log} 2>&1"


rule finetune:
    input:
        data=PREPARED,
        clip=CLIP_WEIGHTS,
        code=CODE_TRAINING,
    output:
        checkpoint="models/finetune/{variant}/seed{seed}.pt",
        log="results/train/finetune/{variant}/seed{seed}.json",
    wildcard_constraints:
        variant="clip-ft|no-adapt",
    params:
        section=[P.model.model_dump(), P.finetune.model_dump()],
    threads: workflow.cores
    log:
        "logs/finetune/{variant}/seed{seed}.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="finetune")
        + " --data {input.data} --variant {wildcards.variant} --seed {wildcards.seed}"
        " --clip {input.clip} --out {output.checkpoint} --log {output.log} > {log} 2>&1"


# The adapt variant starts from the adaptation checkpoint, which holds all of CLIP.
rule finetune_adapt:
    input:
        data=PREPARED,
        adapted="models/adapt/model.pt",
        code=CODE_TRAINING,
    output:
        checkpoint="models/finetune/adapt/seed{seed}.pt",
        log="results/train/finetune/adapt/seed{seed}.json",
    params:
        section=[P.model.model_dump(), P.finetune.model_dump()],
    threads: workflow.cores
    log:
        "logs/finetune/adapt/seed{seed}.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="finetune")
        + " --data {input.data} --variant adapt --seed {wildcards.seed}"
        " --adapted {input.adapted} --out {output.checkpoint} --log {output.log} > {log} 2>&1"
