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
    # The longest chain is pretrain -> adapt -> the adapt variant's fine-tunings: started first, it does not wait
    # behind jobs that are ready sooner. Snakemake picks the set of jobs with the largest sum of priorities that
    # fits the cores, so adaptation's must exceed what its threads would otherwise run: `threads` fine-tunings
    # of priority 1 (tests/test_workflow.py).
    priority: 10
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


# The authors' released weights of a dataset of `released` (paper profile), downloaded into the dataset's
# downloads folder (kept between runs; files placed there by hand are used), converted into this project's
# checkpoints, and the adaptation checkpoint's test retrieval scored as adapt scores its own. decode and
# evaluate then caption and score with the converted captioner. Resources: the decode stage's.
rule released:
    input:
        data=PREPARED,
        code=code("released"),
    output:
        adapt="models/{dataset}/released/adapt.pt",
        finetune="models/{dataset}/released/finetune.pt",
        retrieval="results/metrics/{dataset}/released_retrieval.json",
    params:
        tracked=tracked("released"),
    threads: stage_threads("decode")
    resources:
        **stage_resources("decode"),
    log:
        "logs/{dataset}/released.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="released")
        + " --dataset {wildcards.dataset} --downloads data/downloads/{wildcards.dataset}/released"
        " --data {input.data} --adapt-out {output.adapt} --finetune-out {output.finetune}"
        " --retrieval {output.retrieval} > {log} 2>&1"


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
    priority: lambda wc: 2 if wc.variant == "adapt" else 1   # the adapt variant's ends the longest chain
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
