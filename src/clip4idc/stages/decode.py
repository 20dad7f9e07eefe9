"""`clip4idc decode`: captions for every pair of `decode.split`, greedy or beam search, from a
fine-tuned checkpoint. The model is rebuilt from the checkpoint alone (models/build.py); no
training code is imported."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import add_dataset

HELP = "captions for a split (greedy or beam), from a fine-tuned checkpoint"
PARAMS = ("decode", "data.{dataset}.overrides")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_dataset(p)
    p.add_argument("--data", required=True, help="prepared directory")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="predictions JSON {pair_id: caption} to write")


def run(args: argparse.Namespace, params) -> None:
    from ..runtime import stage_threads
    d = params.decode
    decode_split(args.checkpoint, args.data, d.split, args.out, max_len=d.max_len, batch_size=d.batch_size,
                 beam_size=d.beam_size, threads=stage_threads(args.threads, params.execution.resources.decode.threads),
                 progress=args.progress)


def decode_split(checkpoint: str | Path, prepared_dir: str | Path, split: str, out: str | Path, *,
                 max_len: int, batch_size: int, beam_size: int = 1, threads: int | None = None,
                 progress: bool = True) -> dict:
    """Captions for every pair of `split` (greedy, or beam search when beam_size > 1), as {pair_id: caption}."""
    from torch.utils.data import DataLoader

    from ..data.dataset import PairDataset, Prepared, collate
    from ..generate import decode_dataset
    from ..io import write_json
    from ..models.build import load_caption_model
    from ..runtime import device, set_threads
    from ..text import CaptionTokenizer
    set_threads(threads)
    model, ckpt = load_caption_model(checkpoint)
    model.to(device())
    tokenizer = CaptionTokenizer(ckpt["model"]["arch"], ckpt["model"]["max_tokens"])
    loader = DataLoader(PairDataset(Prepared(prepared_dir), split), batch_size=batch_size, collate_fn=collate)
    predictions = decode_dataset(model, loader, tokenizer, max_len, progress=progress, beam_size=beam_size)
    write_json(out, predictions)
    return predictions
