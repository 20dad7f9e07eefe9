"""Training losses, kept outside the models (a model returns features or logits, never a loss)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def symmetric_infonce(text_features: torch.Tensor, pair_features: torch.Tensor,
                      logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Stage-1 loss (PAPER.md §3): mean of the T-IP and IP-T cross-entropies, diagonal = positives.

    `logit_scale` is the multiplier itself (CLIP's `logit_scale.exp()`, ≈ 100 for OpenAI weights),
    as returned by `AdaptModel.forward`. Features are L2-normalised here. Row i of S pairs caption i
    with every pair of the batch, so other captions of the same pair count as negatives.
    """
    if text_features.shape[0] != pair_features.shape[0]:
        raise ValueError(f"{text_features.shape[0]} captions vs {pair_features.shape[0]} pairs: "
                         f"row i of each must belong together")
    # fp32 even under autocast: a softmax over scale·cosine (scale 100) is sensitive to rounding.
    text = F.normalize(text_features.float(), dim=-1)
    pair = F.normalize(pair_features.float(), dim=-1)
    sims = logit_scale * text @ pair.T
    labels = torch.arange(sims.shape[0], device=sims.device)
    return (F.cross_entropy(sims, labels) + F.cross_entropy(sims.T, labels)) / 2


def caption_loss(logits: torch.Tensor, target_ids: torch.Tensor, target_mask: torch.Tensor,
                 role: torch.Tensor | None = None) -> torch.Tensor:
    """Stage-2 loss (PAPER.md §4): token cross-entropy, averaged over the tokens where `target_mask`.

    With `role` (one int per sample, e.g. 0 = change pair, 1 = no-change pair) the mean is taken
    within each role and the per-role means are summed, as the authors sum the change and no-change
    losses on CLEVR-Change (each is a mean over its own tokens).
    """
    keep = target_mask.to(torch.bool)
    token_role = None if role is None else role[:, None].expand_as(target_ids)[keep]
    return token_loss(logits[keep], target_ids[keep], token_role)


def token_loss(logits: torch.Tensor, targets: torch.Tensor, role: torch.Tensor | None = None, *,
               n_roles: int | None = None,
               total: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """`caption_loss` on the real target tokens only: logits [N, vocab], targets [N], role [N].

    Training computes logits at the real positions only (see Captioner.decode), then calls this.
    `total`, when given, turns this batch's per-role token counts into the counts of the whole
    global batch (summed over training processes): the result is then this process's share of
    the global loss. `n_roles` fixes the number of roles so every process counts the same ones.
    """
    token_ce = F.cross_entropy(logits.float(), targets, reduction="none")
    if role is None:
        role = torch.zeros_like(targets)
    n = n_roles if n_roles is not None else (int(role.max()) + 1 if len(role) else 1)
    ce_sum = token_ce.new_zeros(n).index_add(0, role, token_ce)
    count = token_ce.new_zeros(n).index_add(0, role, torch.ones_like(token_ce))
    if total is not None:
        count = total(count)
    return (ce_sum / count.clamp_min(1)).sum()
