"""`clip4idc report`: results/tables.tex, the figures and the ablation summary, from the run's metric
files, training histories and captions, nothing else (report/build.py)."""
from __future__ import annotations

import argparse

HELP = ("results/tables.tex, the figures and the ablation summary, from the run's metric files, training "
        "histories and captions")
# `data` whole: DVC cannot track `data.<d>.label` for each listed dataset of a stage without a dataset.
PARAMS = ("datasets", "seeds", "released", "data", "finetune.select_metric", "decode.split")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics-dir", required=True, help="folder of metric files: <dataset>/<variant>/"
                   "seed<seed>.json for every dataset, variant and seed (`seeds`), <dataset>/constant.json, "
                   "<dataset>/adapt_retrieval.json; for the datasets of `released` also <dataset>/released.json "
                   "and <dataset>/released_retrieval.json")
    p.add_argument("--train-dir", required=True, help="folder of training histories: <dataset>/adapt.json, "
                   "<dataset>/finetune/<variant>/seed<seed>.json")
    p.add_argument("--predictions-dir", required=True, help="folder of decoded captions "
                   "(<dataset>/<variant>/seed<seed>.json); the first seed's feed the qualitative figure")
    p.add_argument("--prepared-dir", required=True, help="folder of prepared datasets (the test manifests)")
    p.add_argument("--raw-dir", required=True, help="folder of the datasets as fetched (the pairs' images)")
    p.add_argument("--analysis-dir", required=True, help="folder of error analyses (`clip4idc analyze`): "
                   "<dataset>/<variant>/seed<seed>.json and <dataset>/constant.json")
    p.add_argument("--tables", required=True, help="LaTeX file to write")
    p.add_argument("--plots", required=True, help="folder for the figures (<kind>-<dataset>.png/.pdf)")
    p.add_argument("--summary", required=True, help="JSON to write: mean and sd over seeds per dataset, variant "
                   "and metric (what `dvc metrics show` and `dvc exp show` list)")


def run(args: argparse.Namespace, params) -> None:
    from ..report.build import ReportInputs, build_report
    build_report(params, ReportInputs(metrics=args.metrics_dir, train=args.train_dir,
                                      predictions=args.predictions_dir, prepared=args.prepared_dir,
                                      raw=args.raw_dir, analysis=args.analysis_dir),
                 tables=args.tables, plots_dir=args.plots, summary=args.summary)
