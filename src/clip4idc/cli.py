"""`clip4idc <stage>`: one console script, a subcommand per pipeline stage.

Parse and dispatch only; every stage takes explicit input and output paths so that
Snakemake rules and DVC stages call the very same command lines. Values come from
params.yaml (validated on load); nothing here sets a default that changes results.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import params as params_mod


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--profile", default=None, help="profile to apply from the params file (default: its `profile` key)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (they show on a terminal only)")


def _clip_source(args, model) -> str:
    """Where the CLIP weights come from: the pretrain stage's file, OpenAI's, or a given file."""
    if model.pretrained == "pipeline":
        if not args.clip:
            raise SystemExit("error: model.pretrained is 'pipeline': pass the pretrain stage's weights with --clip")
        return args.clip
    if args.clip and args.clip != model.pretrained:
        raise SystemExit(f"error: --clip {args.clip} contradicts model.pretrained={model.pretrained!r}")
    return model.pretrained


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clip4idc", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")

    p = sub.add_parser("synthesize", help="write the embedded dataset in CLEVR-Change's on-disk format")
    p.add_argument("--out", required=True, help="dataset root to create")

    p = sub.add_parser("prepare", help="read a dataset; write manifests, references and an image cache")
    p.add_argument("--root", required=True, help="dataset root (as distributed)")
    p.add_argument("--out", required=True, help="prepared directory to create")

    p = sub.add_parser("pretrain", help="pretrain a tiny CLIP on single images (stands in for OpenAI weights)")
    p.add_argument("--data", required=True, help="prepared directory")
    p.add_argument("--out", required=True, help="CLIP state-dict file to write")
    p.add_argument("--log", required=True, help="training log (JSON) to write")

    p = sub.add_parser("adapt", help="stage 1: retrieval adaptation of the pair encoder")
    p.add_argument("--data", required=True, help="prepared directory")
    p.add_argument("--clip", default=None, help="CLIP weights (required when model.pretrained is 'pipeline')")
    p.add_argument("--out", required=True, help="adaptation checkpoint to write")
    p.add_argument("--metrics", required=True, help="test retrieval metrics (JSON) to write")
    p.add_argument("--log", required=True, help="training history (JSON) to write")

    p = sub.add_parser("finetune", help="stage 2: fine-tune a captioner (one variant, one seed)")
    p.add_argument("--data", required=True, help="prepared directory")
    p.add_argument("--variant", required=True, choices=params_mod.VARIANTS)
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--clip", default=None, help="CLIP weights (variants clip-ft and no-adapt, when "
                   "model.pretrained is 'pipeline')")
    p.add_argument("--adapted", default=None, help="adaptation checkpoint (variant adapt, which starts from it)")
    p.add_argument("--out", required=True, help="fine-tuned checkpoint to write")
    p.add_argument("--log", required=True, help="training history (JSON) to write")

    p = sub.add_parser("decode", help="captions for a split (greedy or beam), from a fine-tuned checkpoint")
    p.add_argument("--data", required=True, help="prepared directory")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="predictions JSON {pair_id: caption} to write")

    p = sub.add_parser("baseline", help="constant-caption baseline: the most frequent training caption")
    p.add_argument("--data", required=True, help="prepared directory")
    p.add_argument("--out", required=True, help="predictions JSON to write")

    p = sub.add_parser("evaluate", help="caption metrics (pycocoevalcap) of a predictions file")
    p.add_argument("--data", required=True, help="prepared directory (its references are used)")
    p.add_argument("--predictions", required=True)
    p.add_argument("--variant", required=True, help="name recorded in the metrics file")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", required=True, help="metrics JSON to write")

    p = sub.add_parser("report", help="results/tables.tex and the ablation plots from metric files")
    p.add_argument("--metrics-dir", required=True, help="folder of metric files: <variant>/seed<seed>.json "
                   "for every variant and finetune.seeds, constant.json, adapt_retrieval.json")
    p.add_argument("--tables", required=True, help="LaTeX file to write")
    p.add_argument("--plot", required=True, help="ablation plot path without extension (.png and .pdf written)")

    for p in sub.choices.values():
        _common(p)
    return parser


def _input_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input (a missing file, a malformed dataset): a message, not a traceback."""
    from .data.prepare import ImageDecodeError
    from .data.readers._common import DatasetFormatError
    return FileNotFoundError, ImageDecodeError, DatasetFormatError, params_mod.ParamsError


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(build_parser().parse_args(argv))
    except _input_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    try:
        cfg = params_mod.load(args.params, args.profile)
    except params_mod.ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # Bars on a terminal only: in a Snakemake log a bar is thousands of redraws. Per-epoch
    # summaries are printed either way.
    progress = not args.no_progress and sys.stderr.isatty()

    if args.stage == "synthesize":
        from .data.synthetic import synthesize
        s = cfg.synthesize
        synthesize(args.out, seed=s.seed, n_train=s.n_train, n_val=s.n_val, n_test=s.n_test, width=s.width,
                   height=s.height, min_objects=s.min_objects, max_objects=s.max_objects,
                   n_change_captions=s.change_captions, n_no_change_captions=s.no_change_captions,
                   workers=s.workers, progress=progress)
    elif args.stage == "prepare":
        from .data.prepare import prepare
        prepare(args.root, args.out, reader=cfg.prepare.format, image_size=cfg.prepare.image_size,
                workers=cfg.prepare.workers, progress=progress)
    elif args.stage == "pretrain":
        from .train.pretrain import pretrain
        pretrain(args.data, args.out, args.log, model_cfg=cfg.model, cfg=cfg.pretrain, threads=args.threads,
                 progress=progress)
    elif args.stage == "adapt":
        from .train.adapt import adapt
        adapt(args.data, _clip_source(args, cfg.model), args.out, args.metrics, args.log, model_cfg=cfg.model,
              cfg=cfg.adapt, threads=args.threads, progress=progress)
    elif args.stage == "finetune":
        from .train.finetune import finetune
        if (args.variant == "adapt") != bool(args.adapted):
            raise SystemExit("error: --adapted is required for variant adapt and only for it")
        clip = None if args.variant == "adapt" else _clip_source(args, cfg.model)
        finetune(args.data, args.variant, args.seed, clip, args.adapted, args.out, args.log,
                 model_cfg=cfg.model, cfg=cfg.finetune, threads=args.threads, progress=progress)
    elif args.stage == "decode":
        from .predict import decode_split
        decode_split(args.checkpoint, args.data, cfg.decode.split, args.out, max_len=cfg.decode.max_len,
                     batch_size=cfg.decode.batch_size, beam_size=cfg.decode.beam_size, threads=args.threads,
                     progress=progress)
    elif args.stage == "baseline":
        from .predict import constant_baseline
        constant_baseline(args.data, cfg.decode.split, args.out)
    elif args.stage == "evaluate":
        from .evaluate import evaluate_predictions
        split = cfg.decode.split  # score exactly the split that was decoded
        evaluate_predictions(args.predictions, Path(args.data) / "references" / f"{split}.json", args.out,
                             variant=args.variant, seed=args.seed, split=split)
    elif args.stage == "report":
        from .report.build import build_report
        build_report(args.metrics_dir, cfg.finetune.seeds, args.tables, args.plot, cfg.report.dataset_label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
