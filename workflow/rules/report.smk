rule report:
    input:
        metrics=expand("results/metrics/{variant}/seed{seed}.json", variant=VARIANTS, seed=SEEDS),
        baseline="results/metrics/constant.json",
        retrieval="results/metrics/adapt_retrieval.json",
        code=CODE_REPORT,
    params:
        seeds=SEEDS,
        section=P.report.model_dump(),
    output:
        tables="results/tables.tex",
        png="results/plots/ablation.png",
        pdf="results/plots/ablation.pdf",
    log:
        "logs/report.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="report")
        + " --metrics-dir results/metrics --tables {output.tables} --plot results/plots/ablation > {log} 2>&1"
