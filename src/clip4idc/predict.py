"""Decode captions with a fine-tuned model, and the constant-caption baseline."""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import DataLoader

from .data.dataset import PairDataset, Prepared, collate
from .decode import decode_dataset
from .io import write_json
from .metrics.caption import most_frequent_caption
from .text import CaptionTokenizer
from .train.common import device, set_threads
from .train.finetune import load_caption_model


def decode_split(checkpoint: str | Path, prepared_dir: str | Path, split: str, out: str | Path, *,
                 max_len: int, batch_size: int, beam_size: int = 1, threads: int | None = None,
                 progress: bool = True) -> dict:
    """Captions for every pair of `split` (greedy, or beam search when beam_size > 1), as {pair_id: caption}."""
    set_threads(threads)
    model, ckpt = load_caption_model(checkpoint)
    model.to(device())
    tokenizer = CaptionTokenizer(ckpt["model"]["arch"], ckpt["model"]["max_tokens"])
    loader = DataLoader(PairDataset(Prepared(prepared_dir), split), batch_size=batch_size, collate_fn=collate)
    predictions = decode_dataset(model, loader, tokenizer, max_len, progress=progress, beam_size=beam_size)
    write_json(out, predictions)
    return predictions


def constant_baseline(prepared_dir: str | Path, split: str, out: str | Path) -> dict:
    """Every pair of `split` gets the most frequent training caption: the floor a model must beat."""
    prepared = Prepared(prepared_dir)
    captions = [c for refs in prepared.references("train").values() for c in refs]
    caption = most_frequent_caption(captions)
    predictions = {pair_id: caption for pair_id in prepared.references(split)}
    write_json(out, predictions)
    return predictions
