rule synthesize:
    output:
        directory(RAW),
    params:
        section=P.synthesize.model_dump(),
    log:
        "logs/synthesize.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="synthesize") + " --out {output} > {log} 2>&1"


rule prepare:
    input:
        root=RAW,
        code=CODE_DATA,
    output:
        directory(PREPARED),
    params:
        section=P.prepare.model_dump(),
    log:
        "logs/prepare.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="prepare") + " --root {input.root} --out {output} > {log} 2>&1"
