"""Stage 2, fine-tuning (PAPER.md section 4): a transformer captioner on the pair encoder.

Three variants, one code path; they differ only in how the visual side is built:
- `clip-ft`: each image encoded separately by all CLIP layers, tokens concatenated
  (this project's definition of CLIP-FT, see README);
- `no-adapt`: the CLIP4IDC pair encoder initialised from CLIP (new pair params random);
- `adapt`: the CLIP4IDC pair encoder initialised from the stage-1 (adaptation) checkpoint.
The epoch with the best `select_metric` on `select_split` is kept; training stops after
`patience` epochs without a gain.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.dataset import CaptionDataset, PairDataset, Prepared, collate
from ..decode import decode_dataset
from ..io import write_json
from ..metrics.caption import CaptionScorer
from ..models.build import create_clip
from ..models.idc import AdaptModel, CaptionModel
from ..params import VARIANTS, FinetuneParams, ModelParams
from ..text import CaptionTokenizer
from .common import device, load_checkpoint, save_checkpoint, seed_everything, set_threads
from .losses import token_loss
from .optim import build_optimizer

# The captioner's word and position embeddings are CLIP's own, tied (the LM head's output
# weight is the word embedding).
_TIED = ("captioner.token_embedding.", "captioner.positional_embedding")


def lr_scale(name: str, cfg: FinetuneParams) -> float:
    """The authors: everything under CLIP (stage-1 pair parameters and the tied embeddings included)
    learns at lr * coef_lr. `coef_lr_tied` may set the tied embeddings apart (equal in the paper
    profile); the captioner's own weights learn at lr."""
    if name.startswith(_TIED):
        return cfg.optim.coef_lr if cfg.coef_lr_tied is None else cfg.coef_lr_tied
    return cfg.optim.coef_lr if name.startswith("pair_encoder.") else 1.0


def build_caption_model(variant: str, model_cfg: ModelParams, clip_weights: str | None,
                        adapt_checkpoint: str | Path | None = None) -> CaptionModel:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    if (variant == "adapt") != (adapt_checkpoint is not None):
        raise ValueError(f"variant {variant!r}: an adaptation checkpoint is "
                         f"{'required' if variant == 'adapt' else 'not used'}")
    # The adaptation checkpoint holds all of CLIP, so the adapt variant starts from random
    # weights and overwrites every one of them from it.
    clip = create_clip(model_cfg.arch, None if variant == "adapt" else clip_weights)
    cap = model_cfg.captioner
    kwargs = dict(intra_layers=model_cfg.intra_layers, heads=cap.heads, ffn=cap.ffn, layers=cap.layers,
                  dropout=cap.dropout)
    if variant == "clip-ft":
        return CaptionModel.from_clip(clip, joint=False, **kwargs)
    if variant == "no-adapt":
        return CaptionModel.from_clip(clip, joint=True, **kwargs)
    adapted = AdaptModel(clip, model_cfg.intra_layers)
    ckpt = load_checkpoint(adapt_checkpoint)
    if ckpt.get("kind") != "adapt":
        raise ValueError(f"{adapt_checkpoint} is not an adaptation checkpoint (kind={ckpt.get('kind')!r})")
    adapted.load_state_dict(ckpt["state_dict"])
    return CaptionModel.from_clip(clip, joint=True, pair_encoder=adapted.pair_encoder, **kwargs)


def load_caption_model(checkpoint: str | Path) -> tuple[CaptionModel, dict]:
    """Rebuild a fine-tuned model from its self-describing checkpoint (no other file needed)."""
    ckpt = load_checkpoint(checkpoint)
    if ckpt.get("kind") != "finetune":
        raise ValueError(f"{checkpoint} is not a fine-tuning checkpoint (kind={ckpt.get('kind')!r})")
    model_cfg = ModelParams.model_validate(ckpt["model"], strict=False)
    # `adapt` and `no-adapt` share one architecture; the weights come from the checkpoint.
    architecture = "clip-ft" if ckpt["variant"] == "clip-ft" else "no-adapt"
    model = build_caption_model(architecture, model_cfg, None, None)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def finetune(prepared_dir: str | Path, variant: str, seed: int, clip_weights: str | None,
             adapt_checkpoint: str | Path | None, out_checkpoint: str | Path, out_history: str | Path, *,
             model_cfg: ModelParams, cfg: FinetuneParams, threads: int | None = None, progress: bool = True) -> dict:
    set_threads(threads)
    gen = seed_everything(seed)
    dev = device()
    prepared = Prepared(prepared_dir)
    tokenizer = CaptionTokenizer(model_cfg.arch, model_cfg.max_tokens)
    model = build_caption_model(variant, model_cfg, clip_weights, adapt_checkpoint).to(dev)

    train_set = CaptionDataset(prepared, "train", seed=seed)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                        generator=gen, collate_fn=collate)
    if len(loader) == 0:
        raise ValueError(f"finetune: {len(train_set)} training scenes is fewer than one batch of {cfg.batch_size}")
    opt = build_optimizer(model, cfg.optim, t_total=cfg.epochs * len(loader), lr_scale=lambda n: lr_scale(n, cfg))
    select = DataLoader(PairDataset(prepared, cfg.select_split), batch_size=cfg.eval_batch_size, collate_fn=collate)
    references = prepared.references(cfg.select_split)

    best, best_state, best_epoch, history, stale = -math.inf, None, 0, [], 0
    with CaptionScorer() as scorer:
        for epoch in range(cfg.epochs):
            model.train()
            train_set.set_epoch(epoch)
            losses = []
            bar = tqdm(loader, desc=f"finetune {variant} epoch {epoch + 1}/{cfg.epochs}",
                       disable=not progress, leave=False)
            for batch in bar:
                tok = tokenizer.training(batch["text"])
                real = tok["target_mask"].to(dev)
                # Logits at real target tokens only: the same loss as caption_loss, half the head's cost.
                logits = model(batch["before"].to(dev), batch["after"].to(dev), tok["input_ids"].to(dev),
                               positions=real)
                role = batch["role"].to(dev)[:, None].expand_as(real)[real]
                loss = token_loss(logits, tok["target_ids"].to(dev)[real], role)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
                opt.step()
                losses.append(loss.item())
                bar.set_postfix(loss=f"{loss.item():.3f}")
            predictions = decode_dataset(model, select, tokenizer, cfg.select_max_len, progress=False)
            scores = scorer.score(predictions, references)
            history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), cfg.select_split: scores})
            print(f"finetune {variant} seed {seed} epoch {epoch + 1}: loss {history[-1]['loss']:.4f}, "
                  f"{cfg.select_split} {cfg.select_metric} {scores[cfg.select_metric]:.4f}", flush=True)
            if scores[cfg.select_metric] > best:
                best, best_epoch, stale = scores[cfg.select_metric], epoch + 1, 0
                # deepcopy keeps tensors that share storage shared (the LM head is tied to CLIP's
                # token embedding), so the checkpoint holds them once.
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if stale >= cfg.patience:
                    break

    save_checkpoint(out_checkpoint, {
        "kind": "finetune", "variant": variant, "seed": seed, "state_dict": best_state, "epoch": best_epoch,
        "model": model_cfg.model_dump(mode="json"), "finetune": cfg.model_dump(mode="json"),
    })
    summary = {"variant": variant, "seed": seed, "selected_on": cfg.select_split,
               "select_metric": cfg.select_metric, "selected_epoch": best_epoch, "history": history}
    write_json(out_history, summary)
    return summary
