"""`clip4idc finetune`: stage 2, a captioner fine-tuned for one variant and one seed (PAPER.md
section 4; train/finetune.py). `clip-ft` and `no-adapt` start from CLIP's weights (`--clip`), `adapt`
from the adaptation checkpoint (`--adapted`), which holds all of CLIP. With
`execution.resources.finetune.gpus` > 1, one process per GPU (train/launch.py)."""
from __future__ import annotations

import argparse

from ..params import VARIANTS
from . import add_dataset, add_live

HELP = "stage 2: fine-tune a captioner (one variant, one seed)"
PARAMS = ("model", "finetune", "data.{dataset}.overrides")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dataset(p)
    p.add_argument("--data", required=True, help="prepared directory")
    p.add_argument("--variant", required=True, choices=VARIANTS)
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--clip", default=None, help="CLIP weights, the pretrain stage's output (variants clip-ft "
                   "and no-adapt)")
    p.add_argument("--adapted", default=None, help="adaptation checkpoint (variant adapt, which starts from it)")
    p.add_argument("--out", required=True, help="fine-tuned checkpoint to write")
    p.add_argument("--log", required=True, help="training history (JSON) to write")
    add_live(p)


def run(args: argparse.Namespace, params) -> int | None:
    if (args.variant == "adapt") != bool(args.adapted):
        raise SystemExit("error: --adapted is required for variant adapt and only for it")
    if (args.variant != "adapt") != bool(args.clip):
        raise SystemExit("error: --clip is required for variants clip-ft and no-adapt and only for them")
    from ..train.launch import launch_per_gpu
    launched = launch_per_gpu("finetune", params.execution.resources.finetune.gpus, args.argv)
    if launched is not None:
        return launched
    from ..runtime import stage_threads
    from ..train.finetune import finetune
    finetune(args.data, args.variant, args.seed, args.clip, args.adapted, args.out, args.log,
             model_cfg=params.model, cfg=params.finetune, checkpoint_every=params.execution.checkpoint_every,
             threads=stage_threads(args.threads, params.execution.resources.finetune.threads),
             progress=args.progress, live=args.live, dataset=args.dataset)
    return None
