"""Retrieval metrics of the adaptation stage: CLIP4Clip's multi-sentence protocol (PAPER.md section 5).

A test pair has several captions. Given `sim[i, j]`, the similarity of caption i and pair j,
and `text_pair[i]`, the pair caption i describes:

- T-IP (`t2p`, text -> image pair): every caption ranks all pairs; its rank is that of its own pair.
- IP-T (`p2t`, image pair -> text): pair j scores each pair k's caption *group* by the best
  caption of the group, `max_{i: text_pair[i] = k} sim[i, j]`, and ranks the groups; its rank is
  that of its own group. This is CLIP4Clip's `tensor_video_to_text_sim` (max over the caption
  axis of the padded similarity tensor) followed by `compute_metrics`.

Ties: rank = 1 + the number of candidates scoring *strictly* higher than the right one, so a tie
goes in the model's favour. CLIP4Clip's IP-T (`compute_metrics`) does the same; its T-IP breaks
ties by sort order instead, so the two can differ only when similarities tie exactly.

R@K is the percentage (0-100) of queries whose rank is at most K; MedR and MeanR are the median
and mean of the 1-based ranks.

`evaluate_retrieval` computes them for a model on a prepared split: the adapt stage for its own
checkpoint, the released stage for the authors' adaptation checkpoint, so both are scored alike.
"""
from __future__ import annotations

import numpy as np

RANK_KEYS = ("R@1", "R@5", "R@10", "MedR", "MeanR")
RECALL_AT = (1, 5, 10)


def retrieval_metrics(sim: np.ndarray, text_pair: np.ndarray) -> dict[str, dict[str, float]]:
    """`{"t2p": {R@1, R@5, R@10, MedR, MeanR}, "p2t": {...}}` for a (n_texts, n_pairs) matrix."""
    sim, text_pair = _checked(sim, text_pair)
    return {"t2p": rank_summary(text_to_pair_ranks(sim, text_pair)),
            "p2t": rank_summary(pair_to_text_ranks(sim, text_pair))}


def evaluate_retrieval(model, prepared, split: str, tokenizer, batch_size: int, dev) -> dict:
    """Multi-sentence retrieval over the change pairs of `split` of a `Prepared` dataset (CLIP4Clip
    protocol): `model` is an `AdaptModel` (encode_pair, encode_text), `tokenizer` a `CaptionTokenizer`.
    → {"n_pairs", "n_texts", "t2p": {...}, "p2t": {...}}."""
    import torch
    from torch.utils.data import DataLoader

    from ..data.dataset import PairDataset, collate
    model.eval()
    pairs = PairDataset(prepared, split, changed=True)
    with torch.no_grad():
        pair_f = [model.encode_pair(batch["before"].to(dev), batch["after"].to(dev)).float().cpu()
                  for batch in DataLoader(pairs, batch_size=batch_size, collate_fn=collate)]
        texts, text_pair = pairs.captions()
        text_f = [model.encode_text(tokenizer.retrieval(texts[i:i + batch_size]).to(dev)).float().cpu()
                  for i in range(0, len(texts), batch_size)]
    pair_f = torch.nn.functional.normalize(torch.cat(pair_f), dim=-1)
    text_f = torch.nn.functional.normalize(torch.cat(text_f), dim=-1)
    result = retrieval_metrics((text_f @ pair_f.T).numpy(), np.asarray(text_pair))
    return {"n_pairs": len(pairs), "n_texts": len(texts), **result}


def text_to_pair_ranks(sim: np.ndarray, text_pair: np.ndarray) -> np.ndarray:
    """1-based rank of each caption's own pair among all pairs (length n_texts)."""
    own = sim[np.arange(sim.shape[0]), text_pair]
    return 1 + (sim > own[:, None]).sum(axis=1)


def group_scores(sim: np.ndarray, text_pair: np.ndarray) -> np.ndarray:
    """(n_pairs, n_pairs) matrix: [j, k] = max similarity of pair j to a caption of pair k.

    Assumes every pair has at least one caption (checked by `retrieval_metrics`).
    """
    order = np.argsort(text_pair, kind="stable")
    groups = text_pair[order]
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    # Captions usually come grouped already; avoid copying a matrix that can be ~1 GB.
    rows = sim if np.array_equal(order, np.arange(len(order))) else sim[order]
    return np.maximum.reduceat(rows, starts, axis=0).T


def pair_to_text_ranks(sim: np.ndarray, text_pair: np.ndarray) -> np.ndarray:
    """1-based rank of each pair's own caption group among all groups (length n_pairs)."""
    scores = group_scores(sim, text_pair)
    own = np.diag(scores)
    return 1 + (scores > own[:, None]).sum(axis=1)


def rank_summary(ranks: np.ndarray) -> dict[str, float]:
    ranks = np.asarray(ranks)
    out = {f"R@{k}": float(100.0 * np.mean(ranks <= k)) for k in RECALL_AT}
    out["MedR"] = float(np.median(ranks))
    out["MeanR"] = float(np.mean(ranks))
    return out


def _checked(sim, text_pair) -> tuple[np.ndarray, np.ndarray]:
    sim, text_pair = np.asarray(sim), np.asarray(text_pair)
    if sim.ndim != 2 or 0 in sim.shape:
        raise ValueError(f"sim: expected a non-empty (n_texts, n_pairs) matrix, got shape {sim.shape}")
    if not (np.issubdtype(sim.dtype, np.floating) or np.issubdtype(sim.dtype, np.integer)):
        raise ValueError(f"sim: expected real numbers, got dtype {sim.dtype}")
    if not np.isfinite(sim).all():
        # a NaN compares False with everything and would silently give its pair rank 1
        raise ValueError(f"sim: {int((~np.isfinite(sim)).sum())} entries are NaN or infinite")
    n_texts, n_pairs = sim.shape
    if text_pair.shape != (n_texts,):
        raise ValueError(f"text_pair: expected shape ({n_texts},) (one pair index per row of sim), "
                         f"got {text_pair.shape}")
    if not np.issubdtype(text_pair.dtype, np.integer):
        raise ValueError(f"text_pair: expected integer pair indices, got dtype {text_pair.dtype}")
    out_of_range = text_pair[(text_pair < 0) | (text_pair >= n_pairs)]
    if out_of_range.size:
        raise ValueError(f"text_pair: indices must lie in [0, {n_pairs}) (columns of sim), "
                         f"got {sorted(set(out_of_range.tolist()))[:5]}")
    uncaptioned = np.flatnonzero(np.bincount(text_pair, minlength=n_pairs) == 0)
    if uncaptioned.size:
        raise ValueError(f"every pair needs at least one caption; {uncaptioned.size} pairs have none, "
                         f"e.g. pair indices {uncaptioned[:5].tolist()}")
    return sim, text_pair
