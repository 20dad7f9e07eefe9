"""The pretrain stage: the CLIP weights every later stage starts from, as one state-dict file.

With `model.pretrained: pipeline` (the embedded default) a tiny CLIP is pretrained here on single
images and their scene descriptions: offline there are no OpenAI weights, so this stands in for
CLIP's own pretraining, with the same contrastive objective (open_clip's ClipLoss). Otherwise
(`openai`, or a file) those weights are exported unchanged (`export_clip`). Either way the output
is a plain open_clip state dict, which later stages load with `create_clip(arch, <path>)`.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from open_clip.loss import ClipLoss
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.dataset import PretrainDataset, Prepared, SceneBatches, collate
from ..io import write_json
from ..models.build import create_clip, get_tokenizer
from ..params import ModelParams, PretrainParams
from ..runtime import device, save_checkpoint, set_threads
from .common import check_finite, clip_gradients, run_name, seed_everything


def pretrain(prepared_dir: str | Path, out_weights: str | Path, out_log: str | Path, *,
             model_cfg: ModelParams, cfg: PretrainParams, threads: int | None = None,
             progress: bool = True) -> dict:
    set_threads(threads)
    gen = seed_everything(cfg.seed)
    dev = device()
    prepared = Prepared(prepared_dir)
    train_set = PretrainDataset(prepared, "train")
    val_set = PretrainDataset(prepared, "val")
    tokenizer = get_tokenizer(model_cfg.arch)

    clip = create_clip(model_cfg.arch, None).to(dev)
    if cfg.scene_batches:
        loader = DataLoader(train_set, batch_sampler=SceneBatches(train_set.scenes, cfg.batch_size, gen),
                            collate_fn=collate)
    else:
        loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                            generator=gen, collate_fn=collate)
    if len(loader) == 0:
        raise ValueError(f"pretrain: {len(train_set)} training images is fewer than one batch of {cfg.batch_size}")
    total = cfg.epochs * len(loader)
    warmup = max(1, int(cfg.warmup * total))
    # open_clip's recipe (AdamW, no decay on gains/biases, warmup then cosine).
    decay = [p for n, p in clip.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in clip.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))))
    loss_fn = ClipLoss()

    history = []
    for epoch in range(cfg.epochs):
        clip.train()
        losses = []
        bar = tqdm(loader, desc=f"pretrain epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for step, batch in enumerate(bar):
            images = batch["image"].to(dev)
            texts = tokenizer(batch["text"]).to(dev)
            image_f, text_f, scale = clip(images, texts)
            loss = loss_fn(image_f, text_f, scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # No clipping here (open_clip's recipe): the norm is only read, to stop before a NaN update.
            grad_norm = clip_gradients(clip, 0)
            check_finite(loss.item(), grad_norm.item(), run=run_name("pretrain", None, f"data {prepared_dir}",
                                                                     f"seed {cfg.seed}"),
                         epoch=epoch + 1, step=step + 1, steps=len(loader),
                         hint=f"Lower the learning rate (pretrain.lr, now {cfg.lr:g}).")
            opt.step()
            sched.step()
            with torch.no_grad():  # CLIP's temperature clamp
                clip.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
        acc = _val_accuracy(clip, val_set, tokenizer, cfg.batch_size, dev)
        history.append({"epoch": epoch + 1, "loss": sum(losses) / len(losses), "val_image_to_text_acc": acc})
        print(f"pretrain epoch {epoch + 1}: loss {history[-1]['loss']:.4f}, val in-batch image->text acc {acc:.3f}", flush=True)

    clip.eval()
    state = {k: v.detach().cpu() for k, v in clip.state_dict().items()}
    # A raw state dict, like OpenAI's converted weights: nothing but tensors.
    save_checkpoint(out_weights, state)
    summary = {"arch": model_cfg.arch, "epochs": cfg.epochs, "n_train_images": len(train_set), "history": history}
    write_json(out_log, summary)
    return summary



@torch.no_grad()
def _val_accuracy(clip, dataset, tokenizer, batch_size: int, dev) -> float:
    """In-batch image->text accuracy on held-out images: a sanity check that pretraining learns."""
    clip.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=True, collate_fn=collate)
    hits = n = 0
    for batch in loader:
        image_f, text_f, _ = clip(batch["image"].to(dev), tokenizer(batch["text"]).to(dev))
        pred = (image_f @ text_f.T).argmax(dim=1)
        hits += (pred == torch.arange(len(pred), device=dev)).sum().item()
        n += len(pred)
    return hits / max(n, 1)


def export_clip(out_weights: str | Path, out_log: str | Path, *, model_cfg: ModelParams) -> dict:
    """The pretrain stage when the weights come from elsewhere (model.pretrained: openai or a file).

    The weights are loaded exactly as a training stage would load them (architecture checks, OpenAI's
    QuickGELU rule, a clear message when offline) and written as a plain state dict, so every later
    stage reads one file and DVC versions the exact weights a run started from.
    """
    clip = create_clip(model_cfg.arch, model_cfg.pretrained)
    state = {k: v.detach().cpu() for k, v in clip.state_dict().items()}
    save_checkpoint(out_weights, state)
    summary = {"arch": model_cfg.arch, "pretrained": model_cfg.pretrained,
               "parameters": sum(v.numel() for v in state.values())}
    write_json(out_log, summary)
    print(f"pretrain: exported {model_cfg.arch} weights from {model_cfg.pretrained!r} "
          f"({summary['parameters']:,} values)", flush=True)
    return summary
