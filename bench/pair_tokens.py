"""What each variant's frozen pair encoder gives its captioner: how diverse the pair tokens are.

Usage: python bench/pair_tokens.py [--run .] [--split val] [--pairs 200] [--params params.yaml] [--json PATH]

In the embedded default the pair encoder is frozen during fine-tuning (`finetune.freeze: [pair_encoder.]`,
DEVIATIONS.md row 14), so a captioner can only read what its variant's encoder gives: CLIP-FT and
no-adapt the pretrained CLIP of `models/pretrain/clip.pt`, adapt the adaptation checkpoint
`models/<dataset>/adapt/model.pt`, all under `--run` (a finished run of the main command), built under the
first seed as its fine-tuning builds them. For each
variant this encodes the first `--pairs` pairs of `--split` exactly as fine-tuning does
(train/finetune.py: `finetune_model`, `encode_pairs`) and reports, over the [2T, D] tokens of a pair:
- `cos_within_pair`: mean cosine similarity of all token pairs (1: every token says the same thing);
- `std_across_tokens`: per dimension, the sd over a pair's tokens, averaged (spatial detail);
- `std_across_pairs`: per token position and dimension, the sd over pairs, averaged (what differs
  between pairs).
Figures: README.md ("Results of the embedded default") and bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from clip4idc import params as params_mod
from clip4idc.data.dataset import Prepared
from clip4idc.train.common import seed_everything
from clip4idc.train.finetune import encode_pairs, finetune_model

VARIANTS = ("clip-ft", "no-adapt", "adapt")


def diversity(tokens: torch.Tensor) -> dict[str, float]:
    """Statistics of pair tokens [N, 2T, D]."""
    unit = torch.nn.functional.normalize(tokens, dim=-1)
    return {"cos_within_pair": (unit @ unit.transpose(1, 2)).mean().item(),
            "std_across_tokens": tokens.std(dim=1).mean().item(),
            "std_across_pairs": tokens.std(dim=0).mean().item()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=".", help="root of a finished run of the main command")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--split", default="val")
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    logging.getLogger().setLevel(logging.ERROR)  # open_clip's "initialized randomly" before weights load
    params = params_mod.load(args.params, args.profile)
    run = Path(args.run)
    dataset = params.datasets[0]
    prepared = Prepared(run / "data" / "prepared" / dataset)
    results = {}
    for variant in VARIANTS:
        start = ({"clip_weights": None, "adapt_checkpoint": run / "models" / dataset / "adapt" / "model.pt"}
                 if variant == "adapt" else {"clip_weights": str(run / "models" / "pretrain" / "clip.pt")})
        # As the finetune stage: seeded before the model is built, so no-adapt's new pair parameters are those
        # of the run's first seed, not a fresh random draw.
        seed_everything(params.seeds[0])
        model = finetune_model(variant, params.model, params.finetune, **start).eval()
        tokens = encode_pairs(model.pair_encoder, prepared, args.split, params.finetune.eval_batch_size,
                              torch.device("cpu"), progress=False).tokens
        tokens = tokens[:args.pairs]
        results[variant] = {**diversity(tokens), "pairs": tokens.shape[0], "tokens_per_pair": tokens.shape[1]}
        print(variant, " ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                for k, v in results[variant].items()), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
