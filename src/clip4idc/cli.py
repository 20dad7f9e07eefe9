"""`clip4idc <stage>`: one console script, a subcommand per pipeline stage.

Parse and dispatch only; every stage takes explicit input and output paths so that
Snakemake rules and DVC stages call the very same command lines. Values come from
params.yaml (validated on load); nothing here sets a default that changes results.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import params as params_mod


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--profile", default=None, help="profile to apply from the params file (default: its `profile` key)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (they show on a terminal only)")


def _dataset(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="a dataset of the profile's `datasets` (its "
                   "`data.<dataset>.overrides` apply)")


def _live(p: argparse.ArgumentParser) -> None:
    p.add_argument("--live", default=None, help="folder for the per-epoch training log in dvclive's layout "
                   "(rewritten after every epoch; `dvc plots` reads it)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clip4idc", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")

    p = sub.add_parser("fetch", help="a dataset as distributed: downloaded from its official sources, or "
                       "written by the embedded generator")
    _dataset(p)
    p.add_argument("--out", required=True, help="folder to create (the dataset's files, as distributed)")
    p.add_argument("--downloads", required=True, help="folder that keeps downloaded files between runs; "
                   "put files fetched by hand here")

    p = sub.add_parser("prepare", help="read a dataset; write manifests, references and an image cache")
    _dataset(p)
    p.add_argument("--raw", required=True, help="the fetch stage's output for this dataset")
    p.add_argument("--out", required=True, help="prepared directory to create")

    p = sub.add_parser("pretrain", help="the CLIP every later stage starts from: a tiny one trained here "
                       "(model.pretrained: pipeline) or the given weights exported (openai, or a file)")
    p.add_argument("--data", required=True, help="prepared directory (used by model.pretrained: pipeline)")
    p.add_argument("--out", required=True, help="CLIP state-dict file to write")
    p.add_argument("--log", required=True, help="log (JSON) to write")

    p = sub.add_parser("adapt", help="stage 1: retrieval adaptation of the pair encoder")
    _dataset(p)
    p.add_argument("--data", required=True, help="prepared directory")
    p.add_argument("--clip", required=True, help="CLIP weights (the pretrain stage's output)")
    p.add_argument("--out", required=True, help="adaptation checkpoint to write")
    p.add_argument("--metrics", required=True, help="test retrieval metrics (JSON) to write")
    p.add_argument("--log", required=True, help="training history (JSON) to write")
    _live(p)

    p = sub.add_parser("finetune", help="stage 2: fine-tune a captioner (one variant, one seed)")
    _dataset(p)
    p.add_argument("--data", required=True, help="prepared directory")
    p.add_argument("--variant", required=True, choices=params_mod.VARIANTS)
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--clip", default=None, help="CLIP weights, the pretrain stage's output (variants clip-ft "
                   "and no-adapt)")
    p.add_argument("--adapted", default=None, help="adaptation checkpoint (variant adapt, which starts from it)")
    p.add_argument("--out", required=True, help="fine-tuned checkpoint to write")
    p.add_argument("--log", required=True, help="training history (JSON) to write")
    _live(p)

    p = sub.add_parser("decode", help="captions for a split (greedy or beam), from a fine-tuned checkpoint")
    _dataset(p)
    p.add_argument("--data", required=True, help="prepared directory")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="predictions JSON {pair_id: caption} to write")

    p = sub.add_parser("baseline", help="constant-caption baseline: the most frequent training caption")
    _dataset(p)
    p.add_argument("--data", required=True, help="prepared directory")
    p.add_argument("--out", required=True, help="predictions JSON to write")

    p = sub.add_parser("evaluate", help="caption metrics (pycocoevalcap) of a predictions file")
    _dataset(p)
    p.add_argument("--data", required=True, help="prepared directory (its references are used)")
    p.add_argument("--predictions", required=True)
    p.add_argument("--variant", required=True, help="name recorded in the metrics file")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", required=True, help="metrics JSON to write")

    p = sub.add_parser("report", help="results/tables.tex, the figures and the ablation summary, from the "
                       "run's metric files, training histories and captions")
    p.add_argument("--metrics-dir", required=True, help="folder of metric files: <dataset>/<variant>/"
                   "seed<seed>.json for every dataset, variant and seed (`seeds`), <dataset>/constant.json, "
                   "<dataset>/adapt_retrieval.json")
    p.add_argument("--train-dir", required=True, help="folder of training histories: <dataset>/adapt.json, "
                   "<dataset>/finetune/<variant>/seed<seed>.json")
    p.add_argument("--predictions-dir", required=True, help="folder of decoded captions "
                   "(<dataset>/<variant>/seed<seed>.json); the first seed's feed the qualitative figure")
    p.add_argument("--prepared-dir", required=True, help="folder of prepared datasets (the test manifests)")
    p.add_argument("--raw-dir", required=True, help="folder of the datasets as fetched (the pairs' images)")
    p.add_argument("--tables", required=True, help="LaTeX file to write")
    p.add_argument("--plots", required=True, help="folder for the figures (<kind>-<dataset>.png/.pdf)")
    p.add_argument("--summary", required=True, help="JSON to write: mean and sd over seeds per dataset, variant "
                   "and metric (what `dvc metrics show` and `dvc exp show` list)")

    p = sub.add_parser("tables-pdf", help="compile the tables fragment with pdflatex")
    p.add_argument("--tables", required=True, help="the report's LaTeX fragment")
    p.add_argument("--out", required=True, help="PDF to write")

    for p in sub.choices.values():
        _common(p)
    return parser


def _input_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input (a missing file, a malformed dataset): a message, not a traceback."""
    from .data.prepare import ImageDecodeError
    from .data.download import DownloadError
    from .data.extract import UnsafeArchiveError
    from .data.readers._common import DatasetFormatError
    return (FileNotFoundError, ImageDecodeError, DatasetFormatError, params_mod.ParamsError, DownloadError,
            UnsafeArchiveError)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _run(build_parser().parse_args(argv), argv)
    except _input_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _launch(stage: str, processes: int, argv: list[str]) -> int:
    """Run this very command once per GPU on this machine, as `torchrun --standalone` would
    (torchrun's own argument parser would take our --log for its --log-dir, hence its API)."""
    import uuid

    import torch
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch
    if torch.cuda.is_available() and torch.cuda.device_count() < processes:
        raise SystemExit(f"error: execution.resources.{stage}.gpus is {processes} but this machine has "
                         f"{torch.cuda.device_count()} GPU(s); lower it in params.yaml")
    if not torch.cuda.is_available():
        print(f"{stage}: no GPU; running {processes} CPU processes (gloo) as execution.resources.{stage}.gpus says",
              flush=True)
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0)
    try:
        elastic_launch(config, sys.executable)("-m", "clip4idc.cli", *argv)
    except ChildFailedError as err:
        print(f"error: {stage} failed in a training process:\n{err}", file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    try:
        cfg = params_mod.load(args.params, args.profile, getattr(args, "dataset", None))
    except params_mod.ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.stage == "finetune":
        if (args.variant == "adapt") != bool(args.adapted):
            raise SystemExit("error: --adapted is required for variant adapt and only for it")
        if (args.variant != "adapt") != bool(args.clip):
            raise SystemExit("error: --clip is required for variants clip-ft and no-adapt and only for them")
    if args.stage in ("adapt", "finetune") and "LOCAL_RANK" not in os.environ:
        processes = getattr(cfg.execution.resources, args.stage).gpus
        if processes > 1:  # one training process per GPU; under torchrun already, this is one of them
            return _launch(args.stage, processes, argv)
    # Bars on a terminal only: in a Snakemake log a bar is thousands of redraws. Per-epoch
    # summaries are printed either way.
    progress = not args.no_progress and sys.stderr.isatty()

    if args.stage == "fetch":
        from .data.fetch import fetch
        counts = fetch(args.dataset, cfg, args.out, args.downloads, progress=progress)
        print(f"fetch {args.dataset}: pairs per split {counts}", flush=True)
    elif args.stage == "prepare":
        from .data.fetch import dataset_root
        from .data.prepare import prepare
        prepare(dataset_root(args.raw, cfg, args.dataset), args.out, reader=cfg.data[args.dataset].format,
                image_size=cfg.prepare.image_size, workers=cfg.prepare.workers,
                empty_references=cfg.prepare.empty_references, progress=progress)
    elif args.stage == "pretrain":
        from .train.pretrain import export_clip, pretrain
        if cfg.model.pretrained == "pipeline":
            pretrain(args.data, args.out, args.log, model_cfg=cfg.model, cfg=cfg.pretrain, threads=args.threads,
                     progress=progress)
        else:
            export_clip(args.out, args.log, model_cfg=cfg.model)
    elif args.stage == "adapt":
        from .train.adapt import adapt
        adapt(args.data, args.clip, args.out, args.metrics, args.log, model_cfg=cfg.model, cfg=cfg.adapt,
              checkpoint_every=cfg.execution.checkpoint_every, threads=args.threads, progress=progress,
              live=args.live)
    elif args.stage == "finetune":
        from .train.finetune import finetune
        finetune(args.data, args.variant, args.seed, args.clip, args.adapted, args.out, args.log,
                 model_cfg=cfg.model, cfg=cfg.finetune, checkpoint_every=cfg.execution.checkpoint_every,
                 threads=args.threads, progress=progress, live=args.live)
    elif args.stage == "decode":
        from .predict import decode_split
        decode_split(args.checkpoint, args.data, cfg.decode.split, args.out, max_len=cfg.decode.max_len,
                     batch_size=cfg.decode.batch_size, beam_size=cfg.decode.beam_size, threads=args.threads,
                     progress=progress)
    elif args.stage == "baseline":
        from .predict import constant_baseline
        constant_baseline(args.data, cfg.decode.split, args.out)
    elif args.stage == "evaluate":
        from .data.dataset import Prepared
        from .evaluate import evaluate_predictions
        split = cfg.decode.split  # score exactly the split that was decoded
        evaluate_predictions(args.predictions, Path(args.data) / "references" / f"{split}.json", args.out,
                             variant=args.variant, seed=args.seed, split=split,
                             manifest=Prepared(args.data).manifest(split), spice=cfg.evaluate.spice)
    elif args.stage == "report":
        from .report.build import ReportInputs, build_report
        build_report(cfg, ReportInputs(metrics=args.metrics_dir, train=args.train_dir,
                                       predictions=args.predictions_dir, prepared=args.prepared_dir,
                                       raw=args.raw_dir),
                     tables=args.tables, plots_dir=args.plots, summary=args.summary)
    elif args.stage == "tables-pdf":
        from .report.latex import compile_tables
        compile_tables(args.tables, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
