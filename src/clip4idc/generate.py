"""Caption generation: greedy decoding (PAPER.md §4: greedy, cut at the first end token) and beam search.

Both work on token ids (`greedy_ids`, `beam_ids`); `greedy_decode` / `decode_dataset` turn ids into
text. By default both use the captioner's key/value cache (`Captioner.decode_step`): each step
feeds only the newest token instead of the whole prefix. `greedy_ids(use_cache=False)` keeps the
reference "feed everything again each step" loop.
"""
from __future__ import annotations

import torch
from tqdm import tqdm

from .models.idc import CaptionModel
from .text import CaptionTokenizer


@torch.no_grad()
def greedy_ids(model: CaptionModel, before: torch.Tensor, after: torch.Tensor, *, sot_id: int, eot_id: int,
               max_len: int, use_cache: bool = True) -> torch.Tensor:
    """Generated ids [B, ≤ max_len] (no <start>); a finished sequence is padded with <end>.

    use_cache=False recomputes the whole prefix each step (the reference; same tokens, slower).
    """
    memories = model.encode(before, after)  # the pair is encoded once, not once per step
    ids = torch.full((before.shape[0], 1), sot_id, dtype=torch.long, device=before.device)
    finished = torch.zeros(before.shape[0], dtype=torch.bool, device=before.device)
    cache = None
    for _ in range(max_len):
        if use_cache:
            logits, cache = model.captioner.decode_step(ids[:, -1:], memories, cache)
        else:
            # Only the last position's logits are needed: skip the 49,408-word head everywhere else.
            last = torch.zeros_like(ids, dtype=torch.bool)
            last[:, -1] = True
            logits = model.captioner.decode(ids, memories, positions=last)
        next_id = model.captioner.output_token(logits.argmax(-1))
        next_id = torch.where(finished, torch.full_like(next_id, eot_id), next_id)
        ids = torch.cat([ids, next_id[:, None]], dim=1)
        finished |= next_id == eot_id
        if bool(finished.all()):
            break
    return ids[:, 1:]


@torch.no_grad()
def beam_ids(model: CaptionModel, before: torch.Tensor, after: torch.Tensor, *, sot_id: int, eot_id: int,
             max_len: int, beam_size: int, length_penalty: float = 0.0) -> torch.Tensor:
    """Beam search → the best sequence per pair, ids [B, ≤ max_len] (no <start>), padded with <end>.

    Scoring: a hypothesis's score is the sum of its tokens' log-probabilities, <end> included.
    Its final score is score / length ** length_penalty, length = generated tokens including
    <end>; length_penalty = 0 (default) is the plain sum, > 0 favours longer captions.

    Search (as in fairseq): each pair keeps `beam_size` live beams. Every step takes the
    2 × beam_size best one-token extensions of its beams (by plain sum). An <end> extension that
    ranks among the first beam_size would have taken a beam slot: it becomes a finished hypothesis
    and is kept aside (only the best by final score is stored). The beam_size best non-<end>
    extensions become the next live beams, so a finished hypothesis never blocks a slot.

    Stopping: a pair is done when it has `beam_size` finished hypotheses or after `max_len` tokens.
    Without length penalty it is also done once its best finished score is ≥ its best live
    score, since live scores can only decrease (same result, fewer steps). After `max_len` tokens
    the live beams compete too (unfinished, no <end>). Result: the highest final score.

    Ties: equal candidates are ordered by `torch.topk` (in practice the lower beam, then the lower
    token id; exact float ties are rare); a finished hypothesis keeps its place against a later one
    with an equal final score, and against a live beam with an equal score.

    beam_size == 1 is greedy decoding and returns exactly `greedy_ids`' output (it calls it; the
    search with one beam gives the same tokens up to float near-ties between argmax and topk).
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}")
    if beam_size == 1:
        return greedy_ids(model, before, after, sot_id=sot_id, eot_id=eot_id, max_len=max_len)
    return _beam_search(model, before, after, sot_id=sot_id, eot_id=eot_id, max_len=max_len, k=beam_size,
                        length_penalty=length_penalty)


@torch.no_grad()
def _beam_search(model: CaptionModel, before: torch.Tensor, after: torch.Tensor, *, sot_id: int, eot_id: int,
                 max_len: int, k: int, length_penalty: float) -> torch.Tensor:
    """The search of `beam_ids`, for any k ≥ 1."""
    pairs, device = before.shape[0], before.device
    # Beams of pair i are rows i*k … i*k+k-1. The pair is encoded once, then its memories copied per beam.
    memories = [m.repeat_interleave(k, dim=0) for m in model.encode(before, after)]
    # All beams start as the same "<start>": keep only beam 0 alive at first, or the first step
    # would pick the same best token k times.
    scores = torch.full((pairs, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    ids = torch.full((pairs * k, 1), sot_id, dtype=torch.long, device=device)
    first_row = torch.arange(pairs, device=device)[:, None] * k  # row of each pair's beam 0
    rank = torch.arange(2 * k, device=device)
    # The best finished hypothesis of each pair (final score) and how many have finished.
    best_score = torch.full((pairs,), float("-inf"), device=device)
    best_ids = torch.full((pairs, max_len), eot_id, dtype=torch.long, device=device)
    best_len = torch.zeros(pairs, dtype=torch.long, device=device)
    n_finished = torch.zeros(pairs, dtype=torch.long, device=device)
    done = torch.zeros(pairs, dtype=torch.bool, device=device)
    cache = None
    for step in range(max_len):
        logits, cache = model.captioner.decode_step(ids[:, -1:], memories, cache)
        log_probs = logits.float().log_softmax(-1)  # [pairs*k, vocab]
        vocab = log_probs.shape[-1]
        candidates = (scores.reshape(-1, 1) + log_probs).reshape(pairs, k * vocab)
        # 2k candidates: at most k are <end> (one per beam), so at least k live ones remain.
        top, flat = candidates.topk(2 * k, dim=1)  # sorted, best first
        beam, token = torch.div(flat, vocab, rounding_mode="floor"), model.captioner.output_token(flat % vocab)
        is_end = token == eot_id

        # Finished hypotheses: <end> extensions among the first k, of pairs still searching.
        ended = is_end & (rank < k) & ~done[:, None] & top.isfinite()
        final = torch.where(ended, top / float(step + 1) ** length_penalty, float("-inf"))
        candidate_best, j = final.max(1)
        better = candidate_best > best_score  # strict: an earlier finished hypothesis wins ties
        if bool(better.any()):
            rows = first_row[:, 0] + beam.gather(1, j[:, None])[:, 0]
            best_ids[better, :step] = ids.index_select(0, rows)[better, 1:]
            best_ids[better, step:] = eot_id
            best_len[better] = step + 1
            best_score = torch.where(better, candidate_best, best_score)
        n_finished += ended.sum(1)

        # Live beams: the k best candidates that are not <end> (stable: keeps the topk order).
        keep = (rank + is_end * 2 * k).argsort(dim=1)[:, :k]
        scores, beam, token = top.gather(1, keep), beam.gather(1, keep), token.gather(1, keep)
        rows = (first_row + beam).reshape(-1)
        ids = torch.cat([ids.index_select(0, rows), token.reshape(-1, 1)], dim=1)
        cache = cache.reorder(rows)  # each new beam continues the cache of the beam it extends

        done |= n_finished >= k
        if length_penalty == 0.0:
            done |= best_score >= scores[:, 0]
        if bool(done.all()):
            break
    else:
        # max_len reached: pairs still searching also consider their live (unfinished) beams.
        live_final = scores / float(max(max_len, 1)) ** length_penalty
        live_best, j = live_final.max(1)
        better = ~done & (live_best > best_score)
        if bool(better.any()):
            best_ids[better] = ids.reshape(pairs, k, -1)[better, j[better], 1:]
            best_len[better] = max_len
    return best_ids[:, :int(best_len.max())]


@torch.no_grad()
def greedy_decode(model: CaptionModel, before: torch.Tensor, after: torch.Tensor, tokenizer: CaptionTokenizer,
                  max_len: int, *, use_cache: bool = True) -> list[str]:
    """Greedy captions for a batch of pairs (at most `max_len` generated tokens, <end> included).

    The model's train/eval mode is the caller's: call model.eval() first, or dropout makes it random.
    """
    ids = greedy_ids(model, before, after, sot_id=tokenizer.sot_id, eot_id=tokenizer.eot_id, max_len=max_len,
                     use_cache=use_cache)
    return tokenizer.decode(ids)


@torch.no_grad()
def beam_decode(model: CaptionModel, before: torch.Tensor, after: torch.Tensor, tokenizer: CaptionTokenizer,
                max_len: int, *, beam_size: int, length_penalty: float = 0.0) -> list[str]:
    """Beam-search captions for a batch of pairs (see `beam_ids`); mode as in `greedy_decode`."""
    ids = beam_ids(model, before, after, sot_id=tokenizer.sot_id, eot_id=tokenizer.eot_id, max_len=max_len,
                   beam_size=beam_size, length_penalty=length_penalty)
    return tokenizer.decode(ids)


@torch.no_grad()
def decode_dataset(model: CaptionModel, loader, tokenizer: CaptionTokenizer, max_len: int,
                   progress: bool = True, beam_size: int = 1, length_penalty: float = 0.0) -> dict[str, str]:
    """Caption every pair of a loader of dicts with "before", "after", "pair_id" → {pair_id: caption}.

    beam_size 1 (default, the paper's setting) decodes greedily, larger values use `beam_ids`.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    predictions: dict[str, str] = {}
    try:
        for batch in tqdm(loader, desc="decode", disable=not progress, leave=False):
            before, after = batch["before"].to(device), batch["after"].to(device)
            if beam_size == 1:
                texts = greedy_decode(model, before, after, tokenizer, max_len)
            else:
                texts = beam_decode(model, before, after, tokenizer, max_len, beam_size=beam_size,
                                    length_penalty=length_penalty)
            for pair_id, text in zip(batch["pair_id"], texts, strict=True):
                if pair_id in predictions:
                    raise ValueError(f"pair id {pair_id!r} appears twice in the loader")
                predictions[pair_id] = text
    finally:
        model.train(was_training)
    return predictions
