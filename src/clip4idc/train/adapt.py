"""Stage 1, adaptation (PAPER.md section 3): teach the pair encoder to retrieve change captions.

CLIP's vision encoder becomes a pair encoder (intra/inter layers, before/after embeddings) and
is trained with CLIP's text encoder on a symmetric InfoNCE loss between change captions and
image pairs. The epoch with the best T-IP R@1 on `select_split` is kept; its retrieval
metrics on the test split are written beside the checkpoint.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.dataset import AdaptDataset, PairDataset, Prepared, collate
from ..io import write_json
from ..metrics.retrieval import retrieval_metrics
from ..models.build import create_clip
from ..models.idc import AdaptModel
from ..params import AdaptParams, ModelParams
from ..text import CaptionTokenizer
from .common import device, freeze, save_checkpoint, seed_everything, set_threads
from .losses import symmetric_infonce
from .optim import build_optimizer


def is_clip_param(name: str) -> bool:
    """Pretrained CLIP weights learn at lr * coef_lr; the four new pair parameters at lr."""
    return name.startswith("clip.")


def adapt(prepared_dir: str | Path, clip_weights: str, out_checkpoint: str | Path, out_metrics: str | Path,
          out_history: str | Path, *, model_cfg: ModelParams, cfg: AdaptParams, threads: int | None = None,
          progress: bool = True) -> dict:
    set_threads(threads)
    gen = seed_everything(cfg.seed)
    dev = device()
    prepared = Prepared(prepared_dir)
    tokenizer = CaptionTokenizer(model_cfg.arch, model_cfg.max_tokens)

    model = AdaptModel(create_clip(model_cfg.arch, clip_weights), model_cfg.intra_layers).to(dev)
    freeze(model, cfg.freeze)
    train_set = AdaptDataset(prepared, "train", distractor_swap_p=cfg.distractor_swap_p, seed=cfg.seed)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                        generator=gen, collate_fn=collate)
    if len(loader) == 0:
        raise ValueError(f"adapt: {len(train_set)} training samples is fewer than one batch of {cfg.batch_size}")
    opt = build_optimizer(model, cfg.optim, t_total=cfg.epochs * len(loader),
                          lr_scale=lambda name: cfg.optim.coef_lr if is_clip_param(name) else 1.0)

    best, best_state, history = -math.inf, None, []
    for epoch in range(cfg.epochs):
        model.train()
        train_set.set_epoch(epoch)
        losses = []
        bar = tqdm(loader, desc=f"adapt epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for batch in bar:
            text_f, pair_f, scale = model(batch["before"].to(dev), batch["after"].to(dev),
                                          tokenizer.retrieval(batch["text"]).to(dev))
            loss = symmetric_infonce(text_f, pair_f, scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
            opt.step()
            with torch.no_grad():  # the authors clamp the log temperature after every step
                model.clip.logit_scale.clamp_(max=cfg.max_logit_scale)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}")
        val = evaluate_retrieval(model, prepared, cfg.select_split, tokenizer, cfg.batch_size, dev)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), cfg.select_split: val})
        print(f"adapt epoch {epoch + 1}: loss {history[-1]['loss']:.4f}, {cfg.select_split} "
              f"T-IP R@1 {val['t2p']['R@1']:.2f}, IP-T R@1 {val['p2t']['R@1']:.2f}", flush=True)
        if val["t2p"]["R@1"] > best:
            best = val["t2p"]["R@1"]
            # deepcopy keeps tensors that share storage shared (CLIP's vision tower is reachable
            # under two names), so the checkpoint holds it once.
            best_state = copy.deepcopy(model.state_dict())
            best_epoch = epoch + 1

    model.load_state_dict(best_state)
    test = evaluate_retrieval(model, prepared, "test", tokenizer, cfg.batch_size, dev)
    save_checkpoint(out_checkpoint, {
        "kind": "adapt", "state_dict": best_state, "epoch": best_epoch,
        "model": model_cfg.model_dump(mode="json"), "adapt": cfg.model_dump(mode="json"),
    })
    write_json(out_metrics, {"split": "test", "selected_on": cfg.select_split, "epoch": best_epoch, **test})
    write_json(out_history, {"selected_epoch": best_epoch, "history": history})
    return test


@torch.no_grad()
def evaluate_retrieval(model: AdaptModel, prepared: Prepared, split: str, tokenizer: CaptionTokenizer,
                       batch_size: int, dev: torch.device) -> dict:
    """Multi-sentence retrieval over the change pairs of a split (CLIP4Clip protocol)."""
    model.eval()
    pairs = PairDataset(prepared, split, changed=True)
    pair_f = []
    for batch in DataLoader(pairs, batch_size=batch_size, collate_fn=collate):
        pair_f.append(model.encode_pair(batch["before"].to(dev), batch["after"].to(dev)).float().cpu())
    texts, text_pair = pairs.captions()
    text_f = [model.encode_text(tokenizer.retrieval(texts[i:i + batch_size]).to(dev)).float().cpu()
              for i in range(0, len(texts), batch_size)]
    pair_f = torch.nn.functional.normalize(torch.cat(pair_f), dim=-1)
    text_f = torch.nn.functional.normalize(torch.cat(text_f), dim=-1)
    result = retrieval_metrics((text_f @ pair_f.T).numpy(), np.asarray(text_pair))
    return {"n_pairs": len(pairs), "n_texts": len(texts), **result}
