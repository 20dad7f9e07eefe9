"""Caption tokenisation per fine-tuning step: open_clip's encode on every call vs the memoised ids.

`CaptionTokenizer.training` is called on every fine-tuning step with the batch's captions. It memoises each
caption's BPE ids, so from the second epoch on a step builds tensors only; before, every step ran open_clip's
`encode` (ftfy clean, regex split, BPE) again for each caption. This times, over a prepared split's captions in
batches of a step's size, three epochs through one tokenizer (the first fills the memo) and, for comparison, the
unmemoised encode of the same captions (open_clip's `encode` per caption: what each epoch cost before).

    python bench/tokenize_speed.py --data data/prepared/clevr_synth [--batch 32] [--epochs 3]
"""
from __future__ import annotations

import argparse
import random
import time

import torch

from clip4idc.data.dataset import Prepared
from clip4idc.params import load
from clip4idc.text import CaptionTokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="a prepared dataset folder (data/prepared/<dataset>)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--batch", type=int, default=32, help="captions per step (default 32: 16 scenes x 2 pairs)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load(args.params).model
    captions = [c for m in Prepared(args.data).manifest(args.split) for c in m["references"]]
    tok = CaptionTokenizer(model.arch, model.max_tokens)
    steps = len(captions) // args.batch
    print(f"{len(captions)} captions ({len(set(captions))} distinct), {steps} steps of {args.batch}")
    for epoch in range(args.epochs):
        random.Random(epoch).shuffle(captions)
        batches = [captions[i * args.batch:(i + 1) * args.batch] for i in range(steps)]
        start = time.perf_counter()
        for batch in batches:
            tok.training(batch, trim=True)
        memoised = (time.perf_counter() - start) * 1000 / steps
        start = time.perf_counter()
        for batch in batches:
            for caption in batch:
                tok._bpe.encode(caption)
        encode = (time.perf_counter() - start) * 1000 / steps
        print(f"epoch {epoch + 1}: training() {memoised:.2f} ms per step (memoised); "
              f"open_clip encode alone {encode:.2f} ms per step (unmemoised)")


if __name__ == "__main__":
    main()
