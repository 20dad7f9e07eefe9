rule fetch:
    output:
        directory(RAW),
    params:
        # the dataset's entry (source, files, hashes), and the generator or how downloads behave
        section=lambda wc: [
            P.data[wc.dataset].model_dump(),
            (P.synthesize if P.data[wc.dataset].source == "synthesize" else P.download).model_dump(),
        ],
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
        code=CODE_DATA,
    output:
        directory(PREPARED),
    params:
        section=section("prepare"),
    resources:
        **stage_resources("prepare"),
    log:
        "logs/{dataset}/prepare.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="prepare") + " --dataset {wildcards.dataset} --raw {input.raw} --out {output} > {log} 2>&1"
