"""Greedy decoding speed, KV cache vs full recompute: captions/s on the CPU (or the first GPU).

Usage: python bench/decode_speed.py [--config tiny|paper|both] [--arch ARCH] [--batch N] [--max-len N]
       [--threads 2] [--repeats 3] [--breakdown] [--params params.yaml]

Configs come from params.yaml, built as the finetune stage builds its 'no-adapt' model
(`build_caption_model`): `tiny` is the embedded default (clip4idc-tiny, 64 px, intra 3, captioner
4 heads / FFN 512 / 3+3 layers; defaults batch 64, 24 steps), `paper` the `paper` profile
(ViT-B-32-quickgelu, 224 px, intra 9, captioner 8 heads / FFN 2048 / 3+3 layers; defaults batch 16,
32 steps, the paper's decoding length). `--batch` / `--max-len` override both configs; `--arch`
overrides the architecture (intra layers capped at its depth - 1). Random weights (speed does not
depend on them); every caption runs all max_len steps, because a random model rarely emits <end>.
The time includes encoding the pairs once (pair encoder + captioner encoder), as in `greedy_ids`;
`--breakdown` also times that encoding alone. Figures: bench/README.md.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from machine import busy_cores, warn_if_busy  # bench/machine.py (the script's folder is on sys.path)

from clip4idc.generate import greedy_ids
from clip4idc.models.build import create_clip
from clip4idc.params import load
from clip4idc.text import CaptionTokenizer
from clip4idc.models.build import build_caption_model

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = {"tiny": {"batch": 64, "max_len": 24}, "paper": {"batch": 16, "max_len": 32}}


def build(config: str, params_path: str, arch: str | None):
    params = load(params_path) if config == "tiny" else load(params_path, "paper")
    model_cfg = params.model
    if arch is not None and arch != model_cfg.arch:
        depth = create_clip(arch, None).visual.transformer.layers
        model_cfg = model_cfg.model_copy(update={"arch": arch, "intra_layers": min(model_cfg.intra_layers, depth - 1)})
    return build_caption_model("no-adapt", model_cfg, None), model_cfg


def timed(fn, repeats: int, dev: torch.device) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=("tiny", "paper", "both"), default="tiny")
    ap.add_argument("--arch", default=None, help="override the config's CLIP architecture")
    ap.add_argument("--batch", type=int, default=None, help=f"default per config: {DEFAULTS}")
    ap.add_argument("--max-len", type=int, default=None, help="greedy steps (default per config, see --batch)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--breakdown", action="store_true", help="also time encoding the pairs alone")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = ap.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # open_clip's "initialized randomly": intended here
    torch.set_num_threads(args.threads)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cpu":
        warn_if_busy(busy_cores())
    for config in ("tiny", "paper") if args.config == "both" else (args.config,):
        torch.manual_seed(0)
        model, m = build(config, args.params, args.arch)
        model = model.eval().to(dev)
        batch = args.batch or DEFAULTS[config]["batch"]
        max_len = args.max_len or DEFAULTS[config]["max_len"]
        tok = CaptionTokenizer(m.arch, max_len + 1)
        size = model.pair_encoder.visual.image_size
        size = size[0] if isinstance(size, tuple) else size
        if args.config != "tiny":  # the default run prints exactly the two lines it always did
            cap = m.captioner
            print(f"# {config}: {m.arch}, {size} px, intra {m.intra_layers}, captioner {cap.heads} heads / "
                  f"FFN {cap.ffn} / {cap.layers}+{cap.layers} layers")
        before = torch.randn(batch, 3, size, size, device=dev)
        after = torch.randn(batch, 3, size, size, device=dev)
        kw = dict(sot_id=tok.sot_id, eot_id=tok.eot_id, max_len=max_len)
        for use_cache in (True, False):
            greedy_ids(model, before[:2], after[:2], use_cache=use_cache, **kw)  # warm-up
            best, ids = timed(lambda: greedy_ids(model, before, after, use_cache=use_cache, **kw), args.repeats, dev)
            print(f"{'cached  ' if use_cache else 'uncached'} {batch / best:8.1f} captions/s "
                  f"({ids.shape[1]} steps, batch {batch}, {args.threads} threads, {dev.type})", flush=True)
        if args.breakdown:
            with torch.no_grad():
                best, _ = timed(lambda: model.encode(before, after), args.repeats, dev)
            print(f"encode   {batch / best:8.1f} pairs/s    ({1e3 * best:.0f} ms per batch of {batch}: pair "
                  f"encoder + captioner encoder, once per caption in both modes)", flush=True)


if __name__ == "__main__":
    main()
