"""Stage 1, adaptation (PAPER.md section 3): teach the pair encoder to retrieve change captions.

CLIP's vision encoder becomes a pair encoder (intra/inter layers, before/after embeddings) and
is trained with CLIP's text encoder on a symmetric InfoNCE loss between change captions and
image pairs. The epoch with the best T-IP R@1 on `select_split` is kept; its retrieval
metrics on the test split (metrics/retrieval.py: evaluate_retrieval) are written beside the checkpoint.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..data.dataset import AdaptDataset, Prepared
from ..io import write_json
from ..metrics.retrieval import evaluate_retrieval
from ..models.build import create_clip
from ..models.idc import AdaptModel
from ..params import AdaptParams, ModelParams
from ..text import CaptionTokenizer
from ..runtime import save_checkpoint, set_threads
from .common import freeze, run_name, seed_everything
from .loop import Evaluation, GlobalBatches, Processes, Resume, fingerprint, fit, gather, processes
from .losses import symmetric_infonce
from .optim import BertAdam, build_optimizer


def is_clip_param(name: str) -> bool:
    """Pretrained CLIP weights learn at lr * coef_lr; the four new pair parameters at lr."""
    return name.startswith("clip.")


def adapt_model(model_cfg: ModelParams, cfg: AdaptParams, clip_weights: str | None) -> AdaptModel:
    """The stage-1 model on CLIP (`clip_weights`: a file, or None for random weights), with the
    authors' frozen parameters (`cfg.freeze`) frozen."""
    model = AdaptModel(create_clip(model_cfg.arch, clip_weights), model_cfg.intra_layers)
    freeze(model, cfg.freeze)
    return model


def adapt_optimizer(model: AdaptModel, cfg: AdaptParams, t_total: int) -> BertAdam:
    return build_optimizer(model, cfg.optim, t_total=t_total,
                           lr_scale=lambda name: cfg.optim.coef_lr if is_clip_param(name) else 1.0)


def clamp_logit_scale(model: AdaptModel, cfg: AdaptParams) -> None:
    """After every step, as the authors: the log temperature stays at most ln 100."""
    with torch.no_grad():
        model.clip.logit_scale.clamp_(max=cfg.max_logit_scale)


def adapt_loss(model: nn.Module, batch: dict, tokenizer: CaptionTokenizer, procs: Processes) -> torch.Tensor:
    """InfoNCE over the *global* batch: every process's features are gathered before the loss."""
    dev = procs.device
    text_f, pair_f, scale = model(batch["before"].to(dev), batch["after"].to(dev),
                                  tokenizer.retrieval(batch["text"]).to(dev))
    return symmetric_infonce(gather(text_f, procs), gather(pair_f, procs), scale)


def adapt(prepared_dir: str | Path, clip_weights: str, out_checkpoint: str | Path, out_metrics: str | Path,
          out_history: str | Path, *, model_cfg: ModelParams, cfg: AdaptParams, checkpoint_every: int = 0,
          threads: int | None = None, progress: bool = True, live: str | Path | None = None,
          dataset: str | None = None) -> dict | None:
    """→ the test retrieval metrics (None on all but the first of several processes). `live`: folder of the
    per-epoch training log (dvclive's layout). `dataset`: its name, for messages (a diverged run names it)."""
    with processes() as procs:
        set_threads(threads)
        seed_everything(cfg.seed)
        dev = procs.device
        prepared = Prepared(prepared_dir)
        tokenizer = CaptionTokenizer(model_cfg.arch, model_cfg.max_tokens)

        model = adapt_model(model_cfg, cfg, clip_weights).to(dev)
        train_set = AdaptDataset(prepared, "train", distractor_swap_p=cfg.distractor_swap_p, seed=cfg.seed)
        batches = GlobalBatches(len(train_set), cfg.batch_size, cfg.seed, procs, stage="adapt")
        opt = adapt_optimizer(model, cfg, t_total=cfg.epochs * batches.steps_per_epoch)
        resume = Resume(out_checkpoint, fingerprint(stage="adapt", model=model_cfg.model_dump(mode="json"),
                                                    adapt=cfg.model_dump(mode="json"), world=procs.world,
                                                    inputs=[prepared_dir, clip_weights]), procs)

        def evaluate(m: AdaptModel) -> Evaluation:
            val = evaluate_retrieval(m, prepared, cfg.select_split, tokenizer, cfg.batch_size, dev)
            return Evaluation(score=val["t2p"]["R@1"], record={cfg.select_split: val},
                              line=f"{cfg.select_split} T-IP R@1 {val['t2p']['R@1']:.2f}, "
                                   f"IP-T R@1 {val['p2t']['R@1']:.2f}")

        best_state, state = fit(
            model=model, optimizer=opt, dataset=train_set, batches=batches,
            loss=lambda m, batch: adapt_loss(m, batch, tokenizer, procs), evaluate=evaluate, epochs=cfg.epochs,
            patience=None, max_grad_norm=cfg.optim.max_grad_norm, amp=cfg.amp, resume=resume,
            checkpoint_every=checkpoint_every, procs=procs, desc="adapt", progress=progress,
            after_step=lambda: clamp_logit_scale(model, cfg), live=live,
            run=run_name("adapt", dataset, f"seed {cfg.seed}"),
            hint=f"Lower the learning rate (adapt.optim.lr, now {cfg.optim.lr:g}).")
        if not procs.main:
            return None
        model.load_state_dict(best_state)
        test = evaluate_retrieval(model, prepared, "test", tokenizer, cfg.batch_size, dev)
        save_checkpoint(out_checkpoint, {
            "kind": "adapt", "state_dict": best_state, "epoch": state.best_epoch,
            "model": model_cfg.model_dump(mode="json"), "adapt": cfg.model_dump(mode="json"),
        })
        write_json(out_metrics, {"split": "test", "selected_on": cfg.select_split, "epoch": state.best_epoch, **test})
        write_json(out_history, {"selected_epoch": state.best_epoch, "history": state.history})
        resume.clear()
        return test
