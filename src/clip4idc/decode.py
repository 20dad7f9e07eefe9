"""Caption generation: greedy decoding (PAPER.md §4: greedy, cut at the first end token).

`greedy_ids` works on token ids only, so beam search and a key/value cache can later replace the
"feed everything again each step" loop without touching callers of `greedy_decode`.
"""
from __future__ import annotations

import torch
from tqdm import tqdm

from .models.idc import CaptionModel
from .text import CaptionTokenizer


@torch.no_grad()
def greedy_ids(model: CaptionModel, before: torch.Tensor, after: torch.Tensor, *, sot_id: int, eot_id: int,
               max_len: int) -> torch.Tensor:
    """Generated ids [B, ≤ max_len] (no <start>); a finished sequence is padded with <end>."""
    memories = model.encode(before, after)  # the pair is encoded once, not once per step
    ids = torch.full((before.shape[0], 1), sot_id, dtype=torch.long, device=before.device)
    finished = torch.zeros(before.shape[0], dtype=torch.bool, device=before.device)
    for _ in range(max_len):
        # Only the last position's logits are needed: skip the 49,408-word head everywhere else.
        last = torch.zeros_like(ids, dtype=torch.bool)
        last[:, -1] = True
        next_id = model.captioner.decode(ids, memories, positions=last).argmax(-1)
        next_id = torch.where(finished, torch.full_like(next_id, eot_id), next_id)
        ids = torch.cat([ids, next_id[:, None]], dim=1)
        finished |= next_id == eot_id
        if bool(finished.all()):
            break
    return ids[:, 1:]


@torch.no_grad()
def greedy_decode(model: CaptionModel, before: torch.Tensor, after: torch.Tensor, tokenizer: CaptionTokenizer,
                  max_len: int) -> list[str]:
    """Greedy captions for a batch of pairs (at most `max_len` generated tokens, <end> included).

    The model's train/eval mode is the caller's: call model.eval() first, or dropout makes it random.
    """
    ids = greedy_ids(model, before, after, sot_id=tokenizer.sot_id, eot_id=tokenizer.eot_id, max_len=max_len)
    return tokenizer.decode(ids)


@torch.no_grad()
def decode_dataset(model: CaptionModel, loader, tokenizer: CaptionTokenizer, max_len: int,
                   progress: bool = True) -> dict[str, str]:
    """Caption every pair of a loader of dicts with "before", "after", "pair_id" → {pair_id: caption}."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    predictions: dict[str, str] = {}
    try:
        for batch in tqdm(loader, desc="decode", disable=not progress, leave=False):
            texts = greedy_decode(model, batch["before"].to(device), batch["after"].to(device), tokenizer, max_len)
            for pair_id, text in zip(batch["pair_id"], texts, strict=True):
                if pair_id in predictions:
                    raise ValueError(f"pair id {pair_id!r} appears twice in the loader")
                predictions[pair_id] = text
    finally:
        model.train(was_training)
    return predictions
