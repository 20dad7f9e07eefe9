# clip4idc: the CLIP4IDC ablation, from dataset to results/tables.tex.
# A table of contents only: every rule calls `clip4idc <stage>`, the same command lines
# as dvc.yaml. Values live in params.yaml; `--config profile=<name>` picks a profile.
from clip4idc import params as clip4idc_params


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


P = clip4idc_params.from_snakemake_config(config, "params.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/tables.tex",
        "results/tables.pdf",
        "results/plots",
