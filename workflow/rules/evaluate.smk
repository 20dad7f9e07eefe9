# Captions (decode, and the constant-caption baseline) and their scores (evaluate).


# One rule decodes with every captioner: a variant and seed (`<variant>/seed<seed>`) or the authors' released
# one (`released`), whose checkpoint decoded_checkpoint names.
rule decode:
    input:
        data=PREPARED,
        checkpoint=decoded_checkpoint,
        code=code("decode"),
    output:
        "results/predictions/{dataset}/{run}.json",
    wildcard_constraints:
        run="released|(" + "|".join(VARIANTS) + r")/seed\d+",
    params:
        tracked=tracked("decode"),
    threads: stage_threads("decode")
    resources:
        **stage_resources("decode"),
    log:
        "logs/{dataset}/decode/{run}.log",
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


# One rule scores every predictions file: a variant and seed (`<variant>/seed<seed>`), the baseline
# (`constant`) or the authors' released captioner (`released`), told apart by scored_as.
rule evaluate:
    input:
        data=PREPARED,
        predictions="results/predictions/{dataset}/{run}.json",
        code=code("evaluate"),
    output:
        "results/metrics/{dataset}/{run}.json",
    wildcard_constraints:
        run="constant|released|(" + "|".join(VARIANTS) + r")/seed\d+",
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


# The error analysis of one dataset's captions (every variant and seed, the constant baseline and the authors'
# released captioner where there is one): per-pair
# scores, missed / hallucinated changes and, on CLEVR-style data, the change-type confusion. It reads the captions,
# references and manifest only; it runs beside the metric files, not from them.
rule analyze:
    input:
        data=PREPARED,
        predictions=expand("results/predictions/{{dataset}}/{variant}/seed{seed}.json", variant=VARIANTS, seed=SEEDS),
        baseline="results/predictions/{dataset}/constant.json",
        # The authors' released captioner's captions, where `released` lists the dataset (paper profile).
        released=lambda wc: ["results/predictions/{dataset}/released.json".format(**wc)] if wc.dataset in RELEASED else [],
        code=code("analyze"),
    output:
        directory("results/analysis/{dataset}"),
    params:
        tracked=tracked("analyze"),
    threads: stage_threads("evaluate")
    resources:
        **stage_resources("evaluate"),
    log:
        "logs/{dataset}/analyze.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="analyze")
        + " --dataset {wildcards.dataset} --data {input.data} --predictions-dir results/predictions/{wildcards.dataset}"
        " --out {output} > {log} 2>&1"
