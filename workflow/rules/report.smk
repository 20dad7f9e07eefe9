# Tables, figures and the summary DVC shows, from the metric files, training logs and (for the
# qualitative figure) the first seed's captions with the pairs' images. Figures are named
# <kind>-<dataset>.png; `snakemake --report` captions each by its kind (workflow/report/figure.rst).


rule report:
    input:
        metrics=expand("results/metrics/{dataset}/{variant}/seed{seed}.json", dataset=DATASETS,
                       variant=VARIANTS, seed=SEEDS),
        baseline=expand("results/metrics/{dataset}/constant.json", dataset=DATASETS),
        retrieval=expand("results/metrics/{dataset}/adapt_retrieval.json", dataset=DATASETS),
        histories=expand("results/train/{dataset}/finetune/{variant}/seed{seed}.json", dataset=DATASETS,
                         variant=VARIANTS, seed=SEEDS),
        adapt_histories=expand("results/train/{dataset}/adapt.json", dataset=DATASETS),
        # Only the first seed's captions are read (the qualitative figure), but dvc.yaml's report can only
        # depend on whole folders: the same files here make both tools re-run the report alike.
        predictions=expand("results/predictions/{dataset}/{variant}/seed{seed}.json", dataset=DATASETS,
                           variant=VARIANTS, seed=SEEDS),
        baseline_predictions=expand("results/predictions/{dataset}/constant.json", dataset=DATASETS),
        # The authors' released weights, through this pipeline (paper profile: `released`; none by default).
        released=expand("results/metrics/{dataset}/released.json", dataset=RELEASED),
        released_retrieval=expand("results/metrics/{dataset}/released_retrieval.json", dataset=RELEASED),
        released_predictions=expand("results/predictions/{dataset}/released.json", dataset=RELEASED),
        # The error analysis of each dataset (failure tables, confusion figure, failure gallery).
        analysis=expand("results/analysis/{dataset}", dataset=DATASETS),
        pretrain_log="results/train/pretrain.json",
        prepared=expand(PREPARED, dataset=DATASETS),
        raw=expand(RAW, dataset=DATASETS),
        code=code("report"),
    params:
        tracked=tracked("report"),
    output:
        tables=report("results/tables.tex", caption="../report/tables_tex.rst", category="Tables"),
        plots=report(directory("results/plots"), patterns=["{kind}-{dataset}.png"],
                     caption="../report/figure.rst", category="Figures", subcategory="{dataset}",
                     labels={"dataset": "{dataset}", "figure": "{kind}"}),
        summary="results/ablation.json",
    threads: stage_threads("evaluate")
    resources:
        **stage_resources("evaluate"),
    log:
        "logs/report.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="report")
        + " --metrics-dir results/metrics --train-dir results/train --predictions-dir results/predictions"
        " --prepared-dir data/prepared --raw-dir data/raw --analysis-dir results/analysis --tables {output.tables}"
        " --plots {output.plots}"
        " --summary {output.summary} > {log} 2>&1"


rule tables_pdf:
    input:
        tables="results/tables.tex",
        code=code("tables_pdf"),
    output:
        report("results/tables.pdf", caption="../report/tables_pdf.rst", category="Tables"),
    threads: stage_threads("evaluate")
    resources:
        **stage_resources("evaluate"),
    log:
        "logs/tables_pdf.log",
    conda:
        CONDA_ENV
    shell:
        CLI.format(stage="tables-pdf") + " --tables {input.tables} --out {output} > {log} 2>&1"
