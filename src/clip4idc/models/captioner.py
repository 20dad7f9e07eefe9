"""The captioner of CLIP4IDC (PAPER.md §4): a small BERT-style encoder–decoder over the pair tokens.

Post-LayerNorm layers (as in BERT and the authors' UniVL decoder): `encoder_layers` layers of full
self-attention over the projected visual tokens (no extra position embedding: the pair encoder
already placed them), and as many decoder layers (causal self-attention → cross-attention → FFN).
Decoder layer i cross-attends to the output of encoder layer i, so shallow decoder layers see
shallow visual features.

The word embedding is CLIP's token embedding and the position embedding CLIP's text positional
embedding: the same objects as in the CLIP model (tied), so captions live in CLIP's BPE space.
The LM head (dense → GELU → LayerNorm → linear) reuses the word embedding as its output weight,
plus its own bias. A captioner for a small corpus may score only its words (`restrict_output`) and
keep only their embedding rows (`compact_embedding`): the same function on those words, a fraction
of the cost (the embedded default's `model.output_vocab: train`).

Attention is written out with `scaled_dot_product_attention` and separate query/key/value
projections so that generation can use a key/value cache: `Captioner.decode_step` feeds one new
token per step and reuses, per decoder layer, the self-attention K/V of all earlier tokens and the
cross-attention K/V of the memories (see `DecoderCache`). The full `decode` stays the reference.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-12  # BERT's


class Attention(nn.Module):
    """Multi-head attention; queries from `x`, keys/values from `context` (= x for self-attention)."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, H] → [B, heads, L, H/heads]
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def project_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of `context`, split into heads: what a key/value cache stores."""
        return self._split(self.key(context)), self._split(self.value(context))

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """Queries from `x` over already projected (possibly cached) keys/values."""
        q = self._split(self.query(x))
        # mask: bool, True = may attend (SDPA's convention), broadcastable to [B, heads, Lq, Lk].
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).flatten(-2))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        k, v = self.project_kv(x if context is None else context)
        return self.attend(x, k, v, mask=mask, causal=causal)


class FeedForward(nn.Sequential):
    def __init__(self, hidden: int, ffn: int):
        super().__init__(nn.Linear(hidden, ffn), nn.GELU(), nn.Linear(ffn, hidden))


class EncoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.attn = Attention(hidden, heads, dropout)
        self.ln_attn = nn.LayerNorm(hidden, eps=LN_EPS)
        self.ffn = FeedForward(hidden, ffn)
        self.ln_ffn = nn.LayerNorm(hidden, eps=LN_EPS)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_attn(x + self.drop(self.attn(x)))  # post-LN: normalise after the residual sum
        return self.ln_ffn(x + self.drop(self.ffn(x)))


class DecoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.self_attn = Attention(hidden, heads, dropout)
        self.ln_self = nn.LayerNorm(hidden, eps=LN_EPS)
        self.cross_attn = Attention(hidden, heads, dropout)
        self.ln_cross = nn.LayerNorm(hidden, eps=LN_EPS)
        self.ffn = FeedForward(hidden, ffn)
        self.ln_ffn = nn.LayerNorm(hidden, eps=LN_EPS)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, self_mask: torch.Tensor | None) -> torch.Tensor:
        x = self.ln_self(x + self.drop(self.self_attn(x, mask=self_mask, causal=True)))
        x = self.ln_cross(x + self.drop(self.cross_attn(x, memory)))
        return self.ln_ffn(x + self.drop(self.ffn(x)))

    def step(self, x: torch.Tensor, self_kv: tuple[torch.Tensor, torch.Tensor],
             cross_kv: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """`forward` for the newest position only: x [B, 1, H] → (output [B, 1, H], grown self K/V).

        Self-attention K/V are projections of this layer's *input* at each position. With causal
        attention the input at an earlier position never depends on later tokens (post-LN or not),
        so the K/V cached when that position was fed are exactly what a full recompute would give.
        """
        k, v = self.self_attn.project_kv(x)
        k, v = torch.cat([self_kv[0], k], dim=2), torch.cat([self_kv[1], v], dim=2)
        # The newest query may see every cached position and itself: causality holds without a mask.
        x = self.ln_self(x + self.drop(self.self_attn.attend(x, k, v)))
        x = self.ln_cross(x + self.drop(self.cross_attn.attend(x, *cross_kv)))
        return self.ln_ffn(x + self.drop(self.ffn(x))), (k, v)


@dataclass
class DecoderCache:
    """Key/value cache of `Captioner.decode_step`; one entry per decoder layer.

    self_kv:  K/V of every token fed so far, [B, heads, t, head_dim] each (grows by one per step).
    cross_kv: K/V of that layer's encoder memory, [B, heads, N, head_dim]: computed once per pair.
    """
    self_kv: list[tuple[torch.Tensor, torch.Tensor]]
    cross_kv: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def length(self) -> int:
        """Tokens fed so far, i.e. the position index of the next token."""
        return self.self_kv[0][0].shape[2]

    def reorder(self, index: torch.Tensor) -> "DecoderCache":
        """Select/reorder batch rows (beam search: row i of the result continues row index[i])."""
        def pick(kv: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            return kv[0].index_select(0, index), kv[1].index_select(0, index)

        return DecoderCache([pick(kv) for kv in self.self_kv], [pick(kv) for kv in self.cross_kv])


class LMHead(nn.Module):
    """dense → GELU → LayerNorm, then the (tied) word embedding as output weight plus a bias.

    The caller passes the output weight (the word embedding, or the rows of the words it scores, see
    `Captioner.restrict_output`) and optionally the matching entries of the bias."""

    def __init__(self, hidden: int, vocab: int):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.act = nn.GELU()
        self.ln = nn.LayerNorm(hidden, eps=LN_EPS)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return F.linear(self.ln(self.act(self.dense(x))), weight, self.bias if bias is None else bias)


class Captioner(nn.Module):
    def __init__(self, token_embedding: nn.Embedding, positional_embedding: nn.Parameter, *, heads: int,
                 ffn: int, encoder_layers: int = 3, decoder_layers: int = 3, dropout: float = 0.1):
        super().__init__()
        hidden = token_embedding.embedding_dim
        if encoder_layers != decoder_layers:
            raise ValueError(f"decoder layer i cross-attends to encoder layer i, so encoder_layers "
                             f"({encoder_layers}) must equal decoder_layers ({decoder_layers})")
        if encoder_layers < 1:
            raise ValueError(f"need at least one encoder/decoder layer, got {encoder_layers}")
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} (the token embedding width) is not divisible by heads={heads}")
        if positional_embedding.ndim != 2 or positional_embedding.shape[1] != hidden:
            raise ValueError(f"positional embedding {tuple(positional_embedding.shape)} does not match "
                             f"the token embedding width {hidden}")
        self.hidden = hidden
        # Tied: CLIP's own objects, not copies (names: captioner.token_embedding.weight,
        # captioner.positional_embedding).
        self.token_embedding = token_embedding
        self.positional_embedding = positional_embedding
        self.ln_embed = nn.LayerNorm(hidden, eps=LN_EPS)
        self.drop_embed = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(EncoderLayer(hidden, heads, ffn, dropout) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(hidden, heads, ffn, dropout) for _ in range(decoder_layers))
        self.head = LMHead(hidden, token_embedding.num_embeddings)
        for part in (self.ln_embed, self.encoder, self.decoder, self.head):  # never the tied CLIP embeddings
            part.apply(_init_bert)
        self.register_buffer("output_ids", None)      # all of CLIP's words until `restrict_output`
        self.register_buffer("embedding_ids", None)   # the word embedding's rows are CLIP's ids until `compact_embedding`
        # Per-dimension shift and scale of the pair tokens, set by `standardize_inputs`; None: tokens as given.
        self.register_buffer("input_shift", None)
        self.register_buffer("input_scale", None)
        # The embedding rows of the output vocabulary once compact: fixed from then on (restrict_output refuses),
        # so found once, not at every decoding step. Derived, so not saved.
        self.register_buffer("output_rows", None, persistent=False)

    def restrict_output(self, ids: torch.Tensor | list[int]) -> None:
        """Score only the words `ids` (BPE ids): logit i is then word `ids[i]` (sorted, unique).

        The 49,408-word head dominates a tiny captioner's step while a synthetic corpus uses a few dozen
        words. The embedding stays CLIP's, tied and whole (`compact_embedding` may then drop the rows no
        longer read); only the rows scored change. The ids become a buffer (`captioner.output_ids`), so a
        checkpoint carries its output vocabulary.
        """
        if self.embedding_ids is not None:
            raise ValueError("the word embedding is compact: the output vocabulary is fixed")
        ids = torch.as_tensor(ids, dtype=torch.long).unique(sorted=True)
        vocab = self.head.bias.numel()   # CLIP's words (the bias keeps one entry per word)
        if ids.numel() == 0 or ids.min() < 0 or ids.max() >= vocab:
            raise ValueError(f"output vocabulary must be a non-empty set of ids in [0, {vocab}), "
                             f"got {ids.numel()} ids" + (f" from {int(ids.min())} to {int(ids.max())}"
                                                         if ids.numel() else ""))
        self.output_ids = ids.to(self.token_embedding.weight.device)

    def compact_embedding(self, input_ids: torch.Tensor | list[int]) -> None:
        """Keep only the word embedding's rows of the output vocabulary and of `input_ids` (the other words
        fed as input: `<start>`, padding), as a new embedding initialised from those rows.

        After `restrict_output`, the rows of the other ~49,000 words are never read, yet a step still
        computes, clips and updates their (zero) gradients: most of a tiny captioner's optimiser step. Every
        row kept starts and trains as before (its gradient and update are the same numbers), so the captioner
        computes the same function; the embedding is no longer the object CLIP holds (no other part of a
        caption model reads CLIP's). The kept ids become a buffer (`captioner.embedding_ids`), so a
        checkpoint carries them.
        """
        if self.output_ids is None:
            raise ValueError("compact_embedding keeps the output vocabulary's rows: call restrict_output first")
        if self.embedding_ids is not None:
            raise ValueError(f"the word embedding is already compact ({self.embedding_ids.numel()} rows)")
        vocab = self.head.bias.numel()
        extra = torch.as_tensor(input_ids, dtype=torch.long).flatten()
        if extra.numel() and (extra.min() < 0 or extra.max() >= vocab):
            raise ValueError(f"input ids must lie in [0, {vocab}), got {sorted(set(extra.tolist()))[:10]}")
        weight = self.token_embedding.weight
        ids = torch.cat([self.output_ids.cpu(), extra]).unique(sorted=True).to(weight.device)
        # from_pretrained draws no random initial weights: the global RNG, and with it every later dropout
        # mask, stays as it would be without compacting.
        self.token_embedding = nn.Embedding.from_pretrained(weight.detach()[ids].clone(),
                                                            freeze=not weight.requires_grad)
        self.embedding_ids = ids
        self.output_rows = self._rows(self.output_ids, ids, "word embedding")

    def standardize_inputs(self, shift: torch.Tensor, scale: torch.Tensor) -> None:
        """From now on `encode` reads (pair tokens - shift) / scale, per dimension ([hidden] each).

        For a frozen pair encoder (`finetune.standardize_tokens`): the training split's mean and sd of its
        tokens. A frozen encoder whose tokens are all alike (the adapted one's: mean cosine 0.84 within a
        pair) hands the captioner a large shared component and small differences; centred and scaled, the
        differences are what the first layer sees. The two become buffers, so a checkpoint carries them.
        """
        if self.input_shift is not None:
            raise ValueError("the captioner's inputs are already standardised")
        shift, scale = torch.as_tensor(shift, dtype=torch.float32), torch.as_tensor(scale, dtype=torch.float32)
        if shift.shape != (self.hidden,) or scale.shape != (self.hidden,):
            raise ValueError(f"shift and scale must be [{self.hidden}] each, got {tuple(shift.shape)} and "
                             f"{tuple(scale.shape)}")
        if not (torch.isfinite(shift).all() and torch.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError("shift must be finite and scale finite and positive in every dimension")
        device = self.ln_embed.weight.device
        self.input_shift, self.input_scale = shift.to(device), scale.to(device)

    def _rows(self, token_ids: torch.Tensor, table: torch.Tensor | None, what: str) -> torch.Tensor:
        """BPE ids → their positions in the sorted id table `table` (the ids themselves without one)."""
        if table is None:
            return token_ids
        index = torch.searchsorted(table, token_ids.contiguous()).clamp(max=table.numel() - 1)
        unknown = table[index] != token_ids
        if unknown.any():
            raise ValueError(f"token ids {sorted(set(token_ids[unknown].tolist()))[:10]} are not in the "
                             f"captioner's {what} of {table.numel()} words")
        return index

    def output_index(self, token_ids: torch.Tensor) -> torch.Tensor:
        """BPE ids → their logit indices (the ids themselves without an output vocabulary). A word outside
        the output vocabulary is an error: it could never be predicted, and no loss can count it."""
        return self._rows(token_ids, self.output_ids, "output vocabulary")

    def output_token(self, index: torch.Tensor) -> torch.Tensor:
        """Logit indices → BPE ids (inverse of `output_index`)."""
        return index if self.output_ids is None else self.output_ids[index]

    def embed(self, token_ids: torch.Tensor) -> torch.Tensor:
        """BPE ids → word embeddings (a word the compact embedding does not keep is an error)."""
        return self.token_embedding(self._rows(token_ids, self.embedding_ids, "word embedding"))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder outputs [..., hidden] → logits over the output vocabulary (the head, tied to the embedding)."""
        weight = self.token_embedding.weight
        if self.output_ids is None:
            return self.head(x, weight)
        rows = self.output_ids if self.output_rows is None else self.output_rows
        return self.head(x, weight[rows], self.head.bias[self.output_ids])

    @property
    def max_length(self) -> int:
        return self.positional_embedding.shape[0]

    def encode(self, visual_tokens: torch.Tensor) -> list[torch.Tensor]:
        """[B, N, hidden] pair tokens → the output of every encoder layer (one memory per decoder layer)."""
        if visual_tokens.shape[-1] != self.hidden:
            raise ValueError(f"visual tokens have width {visual_tokens.shape[-1]}, the captioner {self.hidden}")
        if self.input_shift is not None:
            visual_tokens = (visual_tokens - self.input_shift) / self.input_scale
        memories, x = [], visual_tokens
        for layer in self.encoder:
            x = layer(x)
            memories.append(x)
        return memories

    def decode(self, input_ids: torch.Tensor, memories: list[torch.Tensor],
               key_padding_mask: torch.Tensor | None = None, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids [B, L] + encoder memories → next-token logits [B, L, vocab] (vocab: the output
        vocabulary, all of CLIP's words unless restricted; `output_token` maps an index to its id).

        positions: optional bool [B, L]; the logits of those positions only, as [N, vocab]. Training
        needs no logits at padding, and the 49,408-word head dominates the cost of a step.

        key_padding_mask: optional bool [B, L], True marks padding (as in torch.nn.MultiheadAttention).
        With right padding and causal attention it changes nothing at real positions; it exists for
        left-padded batches (e.g. beam search over sequences of different lengths).
        """
        if len(memories) != len(self.decoder):
            raise ValueError(f"got {len(memories)} encoder memories for {len(self.decoder)} decoder layers")
        length = input_ids.shape[1]
        if length > self.max_length:
            raise ValueError(f"caption of {length} tokens exceeds the {self.max_length} text positions")
        x = self.embed(input_ids) + self.positional_embedding[:length]
        x = self.drop_embed(self.ln_embed(x))
        self_mask = None
        if key_padding_mask is not None:
            causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
            self_mask = causal & ~key_padding_mask[:, None, None, :].to(torch.bool)
        for layer, memory in zip(self.decoder, memories):
            x = layer(x, memory, self_mask)
        if positions is not None:
            x = x[positions]
        return self.logits(x)

    def start_cache(self, memories: list[torch.Tensor]) -> DecoderCache:
        """An empty cache for `decode_step`: no token yet, the memories' cross-attention K/V projected once."""
        if len(memories) != len(self.decoder):
            raise ValueError(f"got {len(memories)} encoder memories for {len(self.decoder)} decoder layers")
        cross_kv = [layer.cross_attn.project_kv(memory) for layer, memory in zip(self.decoder, memories)]
        empty = cross_kv[0][0][:, :, :0]  # [B, heads, 0, head_dim]
        return DecoderCache([(empty, empty) for _ in self.decoder], cross_kv)

    def decode_step(self, next_ids: torch.Tensor, memories: list[torch.Tensor],
                    cache: DecoderCache | None = None) -> tuple[torch.Tensor, DecoderCache]:
        """Incremental `decode`: feed only the newest token [B, 1] → (its next-token logits [B, vocab], cache).

        Start with cache=None (the memories' cross-attention K/V are then projected once); later
        steps only use the cache, `memories` is ignored. Feeding a sequence token by token gives at
        step t the logits `decode(ids[:, :t + 1], memories)[:, t]` (up to float rounding).
        """
        if next_ids.ndim != 2 or next_ids.shape[1] != 1:
            raise ValueError(f"decode_step feeds one token per row, [B, 1]; got {tuple(next_ids.shape)}")
        if cache is None:
            cache = self.start_cache(memories)
        position = cache.length
        if position >= self.max_length:
            raise ValueError(f"caption of {position + 1} tokens exceeds the {self.max_length} text positions")
        x = self.embed(next_ids) + self.positional_embedding[position]  # the new token's own position
        x = self.drop_embed(self.ln_embed(x))
        self_kv = []
        for layer, kv, cross_kv in zip(self.decoder, cache.self_kv, cache.cross_kv):
            x, kv = layer.step(x, kv, cross_kv)
            self_kv.append(kv)
        return self.logits(x[:, -1]), DecoderCache(self_kv, cache.cross_kv)

    def forward(self, visual_tokens: torch.Tensor, input_ids: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(input_ids, self.encode(visual_tokens), positions=positions)


def _init_bert(module: nn.Module) -> None:
    # BERT's init for every new weight: N(0, 0.02), biases 0, LayerNorm 1/0.
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
