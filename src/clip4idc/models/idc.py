"""The two trainable wholes of CLIP4IDC: `AdaptModel` (stage 1) and `CaptionModel` (stage 2).

Parameter names, which training code uses to give CLIP-origin weights a smaller learning rate:

AdaptModel (named_parameters() lists each shared tensor once, under its first name):
- `clip.*`                    the whole open_clip CLIP (vision + text towers, logit_scale);
                              CLIP's vision tower also appears in state_dict() as `pair_encoder.visual.*`
- `pair_encoder.before_embedding`, `pair_encoder.after_embedding`,
  `pair_encoder.joint_positional_embedding`, `pair_encoder.ln_mid.*`   the four new pair parameters

CaptionModel:
- `pair_encoder.visual.*`     CLIP's vision tower
- `pair_encoder.{before_embedding, after_embedding, joint_positional_embedding, ln_mid.*}`
                              new pair parameters (absent for the CLIP-FT variant, joint=False)
- `captioner.token_embedding.weight`, `captioner.positional_embedding`
                              CLIP's text token / positional embeddings, tied (CLIP-origin)
- `captioner.*` (all else)    the new captioner (encoder, decoder, LM head)
CLIP's text transformer is not part of CaptionModel: captioning does not use it.
"""
from __future__ import annotations

import torch
from open_clip.transformer import text_global_pool
from torch import nn

from .captioner import Captioner
from .pair_encoder import PairEncoder


class AdaptModel(nn.Module):
    """Stage 1: pair encoder + CLIP's text encoder, for image-pair ↔ change-caption retrieval."""

    def __init__(self, clip: nn.Module, intra_layers: int):
        super().__init__()
        self.clip = clip
        self.pair_encoder = PairEncoder(clip.visual, intra_layers, joint=True)

    def encode_pair(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """→ [B, embed_dim], not normalised."""
        return self.pair_encoder.pair_vector(self.pair_encoder(before, after))

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """CLIP's text feature (end-token output after ln_final and text_projection) → [B, embed_dim].

        Same as `clip.encode_text`, but `ids` may be shorter than CLIP's context (32 of 77 tokens in
        the paper): with causal attention the end token never sees later positions, so running
        only the first L positions gives the same feature at a fraction of the cost.
        """
        clip, length = self.clip, ids.shape[1]
        if length > clip.context_length:
            raise ValueError(f"{length} text tokens exceed CLIP's context length {clip.context_length}")
        cast_dtype = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(ids).to(cast_dtype) + clip.positional_embedding[:length].to(cast_dtype)
        x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])
        x = clip.ln_final(x)
        x = text_global_pool(x, ids, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None))
        if isinstance(clip.text_projection, nn.Linear):
            return clip.text_projection(x)
        return x @ clip.text_projection

    def forward(self, before: torch.Tensor, after: torch.Tensor,
                ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """→ (text_features, pair_features, logit_scale.exp()); features are NOT normalised (the loss does it)."""
        return self.encode_text(ids), self.encode_pair(before, after), self.clip.logit_scale.exp()


class CaptionModel(nn.Module):
    """Stage 2: pair encoder → captioner. Logits for teacher forcing; `encode`/`decode` for generation."""

    def __init__(self, pair_encoder: PairEncoder, captioner: Captioner):
        super().__init__()
        if pair_encoder.embed_dim != captioner.hidden:
            raise ValueError(f"pair tokens have width {pair_encoder.embed_dim} but the captioner's hidden "
                             f"size (CLIP's text width) is {captioner.hidden}; they must be equal")
        self.pair_encoder = pair_encoder
        self.captioner = captioner

    def encode(self, before: torch.Tensor, after: torch.Tensor) -> list[torch.Tensor]:
        """Images → one encoder memory per decoder layer (computed once per pair when generating)."""
        return self.captioner.encode(self.pair_encoder(before, after))

    def decode(self, input_ids: torch.Tensor, memories: list[torch.Tensor],
               key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.captioner.decode(input_ids, memories, key_padding_mask)

    def forward(self, before: torch.Tensor, after: torch.Tensor, input_ids: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """→ logits [B, L, vocab] for the next token at every position of `input_ids`
        (or [N, vocab] at the N True entries of the bool mask `positions`)."""
        return self.captioner.decode(input_ids, self.encode(before, after), positions=positions)

    @classmethod
    def from_clip(cls, clip: nn.Module, *, intra_layers: int, joint: bool, heads: int, ffn: int, layers: int,
                  dropout: float, pair_encoder: PairEncoder | None = None) -> "CaptionModel":
        """Build on `clip`: its vision tower (or a given pair encoder wrapping it, e.g. an adapted
        one) and a captioner tied to its token and positional embeddings."""
        if pair_encoder is None:
            pair_encoder = PairEncoder(clip.visual, intra_layers, joint=joint)
        else:
            if pair_encoder.visual is not clip.visual:
                raise ValueError("the given pair encoder wraps a different vision tower than `clip.visual`")
            if pair_encoder.joint != joint or (joint and pair_encoder.intra_layers != intra_layers):
                raise ValueError(f"the given pair encoder (joint={pair_encoder.joint}, intra_layers="
                                 f"{pair_encoder.intra_layers}) contradicts joint={joint}, intra_layers={intra_layers}")
        captioner = Captioner(clip.token_embedding, clip.positional_embedding, heads=heads, ffn=ffn,
                              encoder_layers=layers, decoder_layers=layers, dropout=dropout)
        return cls(pair_encoder, captioner)
