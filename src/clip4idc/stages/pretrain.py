"""`clip4idc pretrain`: the CLIP every later stage starts from. With `model.pretrained: pipeline`, a
tiny CLIP trained here on the first dataset's single images and scene descriptions (it stands in
for OpenAI's weights offline); otherwise the given weights (`openai`, or a file), exported unchanged
(train/pretrain.py)."""
from __future__ import annotations

import argparse

HELP = ("the CLIP every later stage starts from: a tiny one trained here (model.pretrained: pipeline) or the "
        "given weights exported (openai, or a file)")
PARAMS = ("model", "pretrain")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="prepared directory (used by model.pretrained: pipeline)")
    p.add_argument("--out", required=True, help="CLIP state-dict file to write")
    p.add_argument("--log", required=True, help="log (JSON) to write")


def run(args: argparse.Namespace, params) -> None:
    from ..runtime import stage_threads
    from ..train.pretrain import export_clip, pretrain
    if params.model.pretrained == "pipeline":
        pretrain(args.data, args.out, args.log, model_cfg=params.model, cfg=params.pretrain,
                 threads=stage_threads(args.threads, params.execution.resources.pretrain.threads),
                 progress=args.progress)
    else:
        export_clip(args.out, args.log, model_cfg=params.model)
