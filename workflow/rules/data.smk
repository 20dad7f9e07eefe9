# The datasets as distributed (fetch) and as the models read them (prepare).


rule fetch:
    input:
        code=code("fetch"),
    output:
        directory(RAW),
    params:
        tracked=tracked("fetch"),
    threads: stage_threads("fetch")
    resources:
        **stage_resources("fetch"),
    log:
        "logs/{dataset}/fetch.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="fetch")
        + " --dataset {wildcards.dataset} --out {output} --downloads data/downloads/{wildcards.dataset}"
        " > {log} 2>&1"


rule prepare:
    input:
        raw=RAW,
        code=code("prepare"),
    output:
        directory(PREPARED),
    params:
        tracked=tracked("prepare"),
    threads: stage_threads("prepare")
    resources:
        **stage_resources("prepare"),
    log:
        "logs/{dataset}/prepare.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="prepare") + " --dataset {wildcards.dataset} --raw {input.raw} --out {output} > {log} 2>&1"
