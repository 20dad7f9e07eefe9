rule report:
    input:
        metrics=expand("results/metrics/{dataset}/{variant}/seed{seed}.json", dataset=DATASETS,
                       variant=VARIANTS, seed=SEEDS),
        baseline=expand("results/metrics/{dataset}/constant.json", dataset=DATASETS),
        retrieval=expand("results/metrics/{dataset}/adapt_retrieval.json", dataset=DATASETS),
        code=CODE_REPORT,
    params:
        datasets=[P.data[d].model_dump(include={"label", "format", "source"}) for d in DATASETS],
        seeds=SEEDS,
    output:
        tables="results/tables.tex",
        plots=directory("results/plots"),
    resources:
        **stage_resources("evaluate"),
    log:
        "logs/report.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="report")
        + " --metrics-dir results/metrics --tables {output.tables} --plots {output.plots} > {log} 2>&1"
