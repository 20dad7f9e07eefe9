# clip4idc: the CLIP4IDC ablation, from dataset to results/tables.tex.
# A table of contents only: every rule calls `clip4idc <stage>`, the same command lines
# as dvc.yaml. Values live in params.yaml; `--config profile=<name>` picks a profile.
from clip4idc import params as clip4idc_params
from clip4idc import runlock as clip4idc_runlock


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


P = clip4idc_params.from_snakemake_config(config, "params.yaml")


# One orchestrator at a time (src/clip4idc/runlock.py): refuse while DVC runs in this folder, else hold DVC's
# repository lock until this run ends, so that a `dvc repro` started meanwhile refuses at once.
RUN_LOCK = []


onstart:
    RUN_LOCK.append(clip4idc_runlock.hold_dvc_lock(workflow.basedir))


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
