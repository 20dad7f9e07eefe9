"""`clip4idc adapt`: stage 1, the retrieval adaptation of the pair encoder (PAPER.md section 3;
train/adapt.py). With `execution.resources.adapt.gpus` > 1, one process per GPU (train/launch.py)."""
from __future__ import annotations

import argparse

from . import add_dataset, add_live

HELP = "stage 1: retrieval adaptation of the pair encoder"
PARAMS = ("model", "adapt", "data.{dataset}.overrides")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dataset(p)
    p.add_argument("--data", required=True, help="prepared directory")
    p.add_argument("--clip", required=True, help="CLIP weights (the pretrain stage's output)")
    p.add_argument("--out", required=True, help="adaptation checkpoint to write")
    p.add_argument("--metrics", required=True, help="test retrieval metrics (JSON) to write")
    p.add_argument("--log", required=True, help="training history (JSON) to write")
    add_live(p)


def run(args: argparse.Namespace, params) -> int | None:
    from ..train.launch import launch_per_gpu
    launched = launch_per_gpu("adapt", params.execution.resources.adapt.gpus, args.argv)
    if launched is not None:
        return launched
    from ..runtime import stage_threads
    from ..train.adapt import adapt
    adapt(args.data, args.clip, args.out, args.metrics, args.log, model_cfg=params.model, cfg=params.adapt,
          checkpoint_every=params.execution.checkpoint_every,
          threads=stage_threads(args.threads, params.execution.resources.adapt.threads), progress=args.progress,
          live=args.live, dataset=args.dataset)
    return None
