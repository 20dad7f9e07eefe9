"""Greedy decoding speed, KV cache vs full recompute: captions/s on the CPU (or the first GPU).

Usage: python bench/decode_speed.py [--arch clip4idc-tiny] [--batch 64] [--max-len 24] [--threads 2]
Random weights (speed does not depend on them); every caption runs all max_len steps, because a
random model rarely emits <end>. Figures: bench/README.md.
"""
from __future__ import annotations

import argparse
import time

import torch

from clip4idc.decode import greedy_ids
from clip4idc.models.build import create_clip
from clip4idc.models.idc import CaptionModel
from clip4idc.text import CaptionTokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="clip4idc-tiny")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--max-len", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    clip = create_clip(args.arch, None)
    model = CaptionModel.from_clip(clip, intra_layers=clip.visual.transformer.layers - 1, joint=True, heads=4,
                                   ffn=4 * clip.token_embedding.embedding_dim, layers=3, dropout=0.1).eval().to(dev)
    tok = CaptionTokenizer(args.arch, args.max_len + 1)
    size = clip.visual.image_size[0] if isinstance(clip.visual.image_size, tuple) else clip.visual.image_size
    before = torch.randn(args.batch, 3, size, size, device=dev)
    after = torch.randn(args.batch, 3, size, size, device=dev)
    kw = dict(sot_id=tok.sot_id, eot_id=tok.eot_id, max_len=args.max_len)
    for use_cache in (True, False):
        greedy_ids(model, before[:2], after[:2], use_cache=use_cache, **kw)  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            ids = greedy_ids(model, before, after, use_cache=use_cache, **kw)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        print(f"{'cached  ' if use_cache else 'uncached'} {args.batch / best:8.1f} captions/s "
              f"({ids.shape[1]} steps, batch {args.batch}, {args.threads} threads, {dev.type})")


if __name__ == "__main__":
    main()
