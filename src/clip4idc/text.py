"""Captions ↔ CLIP BPE ids, for CLIP's text encoder (retrieval) and for the captioner (training).

CLIP BPE as in open_clip: text is cleaned and lower-cased, `<start_of_text> … <end_of_text>`.
Padding is id 0, which is also the BPE token "!", so padding is never detected by value: the
training targets come with an explicit mask.
"""
from __future__ import annotations

from collections.abc import Sequence

import open_clip
import torch
from open_clip.tokenizer import SimpleTokenizer

from .models.build import get_tokenizer


class CaptionTokenizer:
    pad_id = 0

    def __init__(self, arch: str, max_tokens: int):
        """max_tokens: caption length including <start> and <end> (paper: 32)."""
        self._bpe = get_tokenizer(arch)  # validates `arch`
        if not isinstance(self._bpe, SimpleTokenizer):
            raise ValueError(f"architecture {arch!r} uses {type(self._bpe).__name__}; only CLIP's BPE "
                             f"(open_clip SimpleTokenizer) is supported")
        context = open_clip.get_model_config(arch)["text_cfg"].get("context_length", 77)
        if not 3 <= max_tokens <= context:
            raise ValueError(f"max_tokens must be between 3 (<start>, one word, <end>) and {arch!r}'s text "
                             f"context length {context}, got {max_tokens}")
        self.max_tokens = max_tokens
        self.sot_id = self._bpe.sot_token_id
        self.eot_id = self._bpe.eot_token_id

    def _ids(self, caption: str) -> list[int]:
        # Truncate like open_clip: keep the first words, always end with <end>.
        return [self.sot_id] + self._bpe.encode(caption)[:self.max_tokens - 2] + [self.eot_id]

    def retrieval(self, captions: Sequence[str] | str) -> torch.Tensor:
        """`<start> caption <end>` padded with 0 → LongTensor [N, max_tokens], for CLIP's text encoder."""
        return self._bpe(captions, context_length=self.max_tokens)

    def training(self, captions: Sequence[str] | str) -> dict[str, torch.Tensor]:
        """Teacher forcing: input `<start> caption`, target `caption <end>`, both [N, max_tokens - 1].

        target_mask is True up to and including the end token.
        """
        captions = [captions] if isinstance(captions, str) else list(captions)
        length = self.max_tokens - 1
        input_ids = torch.full((len(captions), length), self.pad_id, dtype=torch.long)
        target_ids = torch.full((len(captions), length), self.pad_id, dtype=torch.long)
        target_mask = torch.zeros(len(captions), length, dtype=torch.bool)
        for i, caption in enumerate(captions):
            ids = self._ids(caption)
            n = len(ids) - 1
            input_ids[i, :n] = torch.tensor(ids[:-1])
            target_ids[i, :n] = torch.tensor(ids[1:])
            target_mask[i, :n] = True
        return {"input_ids": input_ids, "target_ids": target_ids, "target_mask": target_mask}

    def decode(self, ids: torch.Tensor | Sequence[Sequence[int]]) -> list[str]:
        """Generated ids → text: cut at the first <end>, drop <start>, undo BPE, strip."""
        rows = ids.tolist() if isinstance(ids, torch.Tensor) else [list(r) for r in ids]
        texts = []
        for row in rows:
            if self.eot_id in row:
                row = row[:row.index(self.eot_id)]
            row = [t for t in row if t != self.sot_id]
            texts.append(self._bpe.decode(row).strip())
        return texts
