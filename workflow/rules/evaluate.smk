rule decode:
    input:
        data=PREPARED,
        checkpoint="models/finetune/{variant}/seed{seed}.pt",
        code=CODE_DECODE,
    output:
        "results/predictions/{variant}/seed{seed}.json",
    params:
        section=P.decode.model_dump(),
    threads: workflow.cores
    log:
        "logs/decode/{variant}/seed{seed}.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="decode")
        + " --data {input.data} --checkpoint {input.checkpoint} --out {output} > {log} 2>&1"


rule baseline:
    input:
        data=PREPARED,
    output:
        "results/predictions/constant.json",
    params:
        split=P.decode.split,
    log:
        "logs/baseline.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="baseline") + " --data {input.data} --out {output} > {log} 2>&1"


rule evaluate:
    input:
        data=PREPARED,
        predictions="results/predictions/{variant}/seed{seed}.json",
        code=CODE_METRICS,
    output:
        "results/metrics/{variant}/seed{seed}.json",
    params:
        split=P.decode.split,
    log:
        "logs/evaluate/{variant}/seed{seed}.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="evaluate")
        + " --data {input.data} --predictions {input.predictions} --variant {wildcards.variant}"
        " --seed {wildcards.seed} --out {output} > {log} 2>&1"


rule evaluate_baseline:
    input:
        data=PREPARED,
        predictions="results/predictions/constant.json",
        code=CODE_METRICS,
    output:
        "results/metrics/constant.json",
    params:
        split=P.decode.split,
    log:
        "logs/evaluate/constant.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="evaluate")
        + " --data {input.data} --predictions {input.predictions} --variant constant"
        " --out {output} > {log} 2>&1"
