"""Captions ↔ CLIP BPE ids, for CLIP's text encoder (retrieval) and for the captioner (training).

CLIP BPE as in open_clip: text is cleaned and lower-cased, `<start_of_text> … <end_of_text>`.
Padding is id 0, which is also the BPE token "!", so padding is never detected by value: the
training targets come with an explicit mask.

Lengths follow the authors' data loaders, with `max_tokens` their `max_words` (paper: 32):
- retrieval (CLIP's text encoder): `<start>` + at most max_tokens - 2 caption tokens + `<end>`,
  max_tokens in all;
- captioning (teacher forcing): at most max_tokens - 1 caption tokens, input `<start>` + caption and
  target caption + `<end>`, each max_tokens long.
"""
from __future__ import annotations

from collections.abc import Sequence

import open_clip
import torch
from open_clip.tokenizer import SimpleTokenizer

from .models.build import get_tokenizer

AUTHORS_START, AUTHORS_END = "<|startoftext|>", "<|endoftext|>"


class CaptionTokenizer:
    pad_id = 0

    def __init__(self, arch: str, max_tokens: int):
        """max_tokens: the authors' `max_words` (paper: 32), the length of every token sequence (see above)."""
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
        # open_clip names them <start_of_text>/<end_of_text>; the authors' tokenizer, whose text
        # the evaluation cuts, <|startoftext|>/<|endoftext|> (same ids).
        self._authors_names = {self.sot_id: AUTHORS_START, self.eot_id: AUTHORS_END}
        # A caption's BPE ids, memoised by its text (`_ids`): open_clip's `encode` cleans every text with ftfy and
        # splits it with a regex, and each epoch tokenises the same captions again. With `training` building its
        # tensors in one call each, a tiny fine-tuning step's 32 captions cost 0.4 ms of its ~130, not 5.3
        # (bench/README.md). A plain dict, so the tokenizer still pickles.
        self._memo: dict[str, tuple[int, ...]] = {}

    MEMO_SIZE = 1 << 18   # captions: the memo's memory stays bounded whatever the dataset

    def _ids(self, caption: str) -> tuple[int, ...]:
        """open_clip's BPE ids of `caption`, encoded once (a tuple: no caller can change a memoised entry)."""
        ids = self._memo.get(caption)
        if ids is None:
            if len(self._memo) >= self.MEMO_SIZE:
                self._memo.clear()
            ids = self._memo[caption] = tuple(self._bpe.encode(caption))
        return ids

    def retrieval(self, captions: Sequence[str] | str) -> torch.Tensor:
        """`<start> caption <end>` padded with 0 → LongTensor [N, max_tokens], for CLIP's text encoder."""
        return self._bpe(captions, context_length=self.max_tokens)

    def training(self, captions: Sequence[str] | str, *, trim: bool = False) -> dict[str, torch.Tensor]:
        """Teacher forcing: input `<start> caption`, target `caption <end>`, both [N, max_tokens]
        (trim: [N, L], L the longest caption's length; the columns cut hold only padding, which neither
        the loss nor, under causal attention, any real position sees).

        As the authors' caption loaders: the caption keeps its first max_tokens - 1 tokens, so the
        input and the target each fill at most max_tokens positions. target_mask says which targets
        the loss counts: those up to and including the end token, except id 0. The authors' loss is
        `CrossEntropyLoss(ignore_index=0)`, which skips a real "!" (id 0) of a caption as it skips padding.
        """
        captions = [captions] if isinstance(captions, str) else list(captions)
        length = self.max_tokens
        inputs, targets, real = [], [], []
        for caption in captions:
            words = self._ids(caption)[:length - 1]
            padding = [self.pad_id] * (length - len(words) - 1)
            inputs.append([self.sot_id, *words, *padding])
            targets.append([*words, self.eot_id, *padding])
            real.append([True] * (len(words) + 1) + [False] * len(padding))
        input_ids = torch.tensor(inputs, dtype=torch.long).reshape(len(captions), length)
        target_ids = torch.tensor(targets, dtype=torch.long).reshape(len(captions), length)
        target_mask = torch.tensor(real, dtype=torch.bool).reshape(len(captions), length)
        target_mask &= target_ids != self.pad_id
        if trim and captions:
            # Every caption's last target is <end> (never the pad id): the last such column is the longest.
            length = int((target_ids != self.pad_id).any(0).nonzero().max()) + 1
            input_ids, target_ids, target_mask = input_ids[:, :length], target_ids[:, :length], target_mask[:, :length]
        return {"input_ids": input_ids, "target_ids": target_ids, "target_mask": target_mask}

    def target_vocabulary(self, captions: Sequence[str]) -> list[int]:
        """The ids `training` makes targets of for these captions (truncated as there, `<end>` included):
        the smallest output vocabulary a captioner trained on them needs (`Captioner.restrict_output`)."""
        ids = {self.eot_id}
        for caption in captions:
            ids.update(self._ids(caption)[:self.max_tokens - 1])
        ids.discard(self.pad_id)   # never a target (masked), as in the authors' loss
        return sorted(ids)

    def decode(self, ids: torch.Tensor | Sequence[Sequence[int]]) -> list[str]:
        """Generated ids → caption text, post-processed exactly as the authors' evaluation does.

        Every id is BPE-decoded, the special tokens under the authors' names (`<|startoftext|>`,
        `<|endoftext|>`); the text is cut at the first "<|endoftext|>", then at the first "!"
        anywhere (the padding id 0 decodes to "!", and the authors cut at the character, so a
        generated "!" ends the caption too), then stripped. A generated <start> stays in the text.
        """
        rows = ids.tolist() if isinstance(ids, torch.Tensor) else [list(r) for r in ids]
        texts = []
        for row in rows:
            text = "".join(self._authors_names.get(t) or self._bpe.decoder[t] for t in row)
            text = bytearray(self._bpe.byte_decoder[c] for c in text).decode("utf-8", errors="replace")
            text = text.replace("</w>", " ").split(AUTHORS_END, 1)[0].split("!", 1)[0]
            texts.append(text.strip())
        return texts
