"""Stage 2, fine-tuning (PAPER.md section 4): a transformer captioner on the pair encoder.

Three variants, one code path; they differ only in how the visual side is built:
- `clip-ft`: each image encoded separately by all CLIP layers, tokens concatenated
  (this project's definition of CLIP-FT, see README);
- `no-adapt`: the CLIP4IDC pair encoder initialised from CLIP (new pair params random);
- `adapt`: the CLIP4IDC pair encoder initialised from the stage-1 (adaptation) checkpoint.
Parameters named in `freeze` are frozen, as the authors' caption script does with its freeze loop.
When `freeze` covers the whole pair encoder (the embedded default), its output for a pair never
changes: it is computed once per pair of the train and selection splits (`encode_pairs`) and the
captioner trains on those tokens, the same computation without the repeated visual forward.
The epoch with the best `select_metric` on `select_split` is kept (a tie: the later epoch); training
stops once more than `patience` epochs in a row bring no gain (loop.select).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.dataset import CaptionDataset, PairDataset, PairTokens, Prepared, collate
from ..generate import decode_dataset
from ..io import write_json
from ..metrics.caption import CaptionScorer
from ..models.build import build_caption_model
from ..models.captioner import Captioner
from ..models.idc import CaptionModel
from ..models.pair_encoder import PairEncoder
from ..params import FinetuneParams, ModelParams
from ..text import CaptionTokenizer
from ..runtime import save_checkpoint, set_threads
from .common import freeze, run_name, seed_everything
from .loop import Evaluation, GlobalBatches, Processes, Resume, fingerprint, fit, processes, sum_over_processes
from .losses import token_loss
from .optim import BertAdam, build_optimizer

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


def restrict_vocabulary(captioner: Captioner, tokenizer: CaptionTokenizer, captions: list[str]) -> None:
    """`model.output_vocab: train`: score only the words of the training `captions` (and `<end>`), and keep only
    the embedding rows of those, `<start>` and padding, the only ids training and decoding feed."""
    captioner.restrict_output(tokenizer.target_vocabulary(captions))
    captioner.compact_embedding([tokenizer.sot_id, tokenizer.pad_id])


def finetune_model(variant: str, model_cfg: ModelParams, cfg: FinetuneParams, clip_weights: str | None,
                   adapt_checkpoint: str | Path | None = None) -> CaptionModel:
    """The model a fine-tuning run trains: `build_caption_model`, with `cfg.freeze` frozen."""
    model = build_caption_model(variant, model_cfg, clip_weights, adapt_checkpoint)
    freeze(model, cfg.freeze)
    return model


class PrecomputedPairTokens(nn.Module):
    """Stands in for a frozen pair encoder whose output was computed once (`encode_pairs`): batches
    carry the before and after halves of each pair's tokens where they would carry images."""

    def __init__(self, embed_dim: int):
        super().__init__()
        self.embed_dim = embed_dim

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        return torch.cat([before, after], dim=1)


def pair_encoder_frozen(model: CaptionModel) -> bool:
    return not any(p.requires_grad for p in model.pair_encoder.parameters())


@torch.no_grad()
def encode_pairs(pair_encoder: PairEncoder, prepared: Prepared, split: str, batch_size: int,
                 device: torch.device, progress: bool = True) -> PairTokens:
    """The pair encoder's tokens [2T, D] for every pair of a split (kept on `device`)."""
    pairs = PairDataset(prepared, split)
    loader = DataLoader(pairs, batch_size=batch_size, collate_fn=collate)
    tokens = [pair_encoder(batch["before"].to(device), batch["after"].to(device))
              for batch in tqdm(loader, desc=f"encode {split} pairs", disable=not progress, leave=False)]
    return PairTokens([m["pair_id"] for m in pairs.manifest], torch.cat(tokens))


def finetune_optimizer(model: CaptionModel, cfg: FinetuneParams, t_total: int) -> BertAdam:
    return build_optimizer(model, cfg.optim, t_total=t_total, lr_scale=lambda name: lr_scale(name, cfg))


def finetune_loss(model: nn.Module, batch: dict, tokenizer: CaptionTokenizer, procs: Processes) -> torch.Tensor:
    """Token cross-entropy, the change and no-change losses (roles 0 and 1) summed.

    Each role's mean is over the tokens of the *global* batch: under several processes each one
    returns its share, scaled so that DDP's gradient average gives the single-process gradient.
    """
    dev = procs.device
    tok = tokenizer.training(batch["text"], trim=True)
    real = tok["target_mask"].to(dev)
    # Logits at real target tokens only: the same loss as caption_loss, half the head's cost.
    logits = model(batch["before"].to(dev), batch["after"].to(dev), tok["input_ids"].to(dev), positions=real)
    role = batch["role"].to(dev)[:, None].expand_as(real)[real]
    captioner = getattr(model, "module", model).captioner   # under DDP, the wrapped model's
    targets = captioner.output_index(tok["target_ids"].to(dev)[real])
    share = token_loss(logits, targets, role, n_roles=2,
                       total=lambda count: sum_over_processes(count, procs))
    return share * procs.world


def finetune(prepared_dir: str | Path, variant: str, seed: int, clip_weights: str | None,
             adapt_checkpoint: str | Path | None, out_checkpoint: str | Path, out_history: str | Path, *,
             model_cfg: ModelParams, cfg: FinetuneParams, checkpoint_every: int = 0, threads: int | None = None,
             progress: bool = True, live: str | Path | None = None, dataset: str | None = None) -> dict | None:
    """→ the training summary (None on all but the first of several processes). `live`: folder of the
    per-epoch training log (dvclive's layout). `dataset`: its name, for messages (a diverged run names it)."""
    with processes() as procs:
        set_threads(threads)
        seed_everything(seed)
        dev = procs.device
        prepared = Prepared(prepared_dir)
        tokenizer = CaptionTokenizer(model_cfg.arch, model_cfg.max_tokens)
        model = finetune_model(variant, model_cfg, cfg, clip_weights, adapt_checkpoint)
        if model_cfg.output_vocab == "train":
            restrict_vocabulary(model.captioner, tokenizer,
                                [c for m in prepared.manifest("train") for c in m["references"]])
        model = model.to(dev)
        trained, train_tokens, select_tokens = model, None, None
        if pair_encoder_frozen(model):
            # The pair encoder has no dropout and its weights stay as they are: encode every pair once.
            model.pair_encoder.eval()
            train_tokens, select_tokens = (encode_pairs(model.pair_encoder, prepared, split, cfg.eval_batch_size, dev,
                                                        progress) for split in ("train", cfg.select_split))
            trained = CaptionModel(PrecomputedPairTokens(model.pair_encoder.embed_dim), model.captioner)
        if cfg.standardize_tokens:
            if train_tokens is None:
                raise ValueError("finetune.standardize_tokens: true needs the whole pair encoder frozen "
                                 "(finetune.freeze: [pair_encoder.]): its tokens' statistics must not change")
            flat = train_tokens.tokens.flatten(0, 1)   # every token of every training pair
            model.captioner.standardize_inputs(flat.mean(0), flat.std(0).clamp_min(1e-6))

        train_set = CaptionDataset(prepared, "train", seed=seed, tokens=train_tokens, no_change_p=cfg.no_change_p)
        batches = GlobalBatches(len(train_set), cfg.batch_size, seed, procs, stage="finetune")
        opt = finetune_optimizer(trained, cfg, t_total=cfg.epochs * batches.steps_per_epoch)
        resume = Resume(out_checkpoint, fingerprint(stage="finetune", variant=variant, seed=seed,
                                                    model=model_cfg.model_dump(mode="json"),
                                                    finetune=cfg.model_dump(mode="json"), world=procs.world,
                                                    inputs=[prepared_dir, clip_weights, adapt_checkpoint]), procs)
        select = DataLoader(PairDataset(prepared, cfg.select_split, tokens=select_tokens),
                            batch_size=cfg.eval_batch_size, collate_fn=collate)
        references = prepared.references(cfg.select_split)

        with CaptionScorer() if procs.main else contextlib.nullcontext() as scorer:
            def evaluate(m: CaptionModel) -> Evaluation:
                # fp32, as the decode stage: the selected epoch is the one whose captions are best.
                scores = scorer.score(decode_dataset(m, select, tokenizer, cfg.select_max_len, progress=False),
                                      references)
                return Evaluation(score=scores[cfg.select_metric], record={cfg.select_split: scores},
                                  line=f"{cfg.select_split} {cfg.select_metric} {scores[cfg.select_metric]:.4f}")

            best_state, state = fit(
                model=trained, optimizer=opt, dataset=train_set, batches=batches,
                loss=lambda m, batch: finetune_loss(m, batch, tokenizer, procs), evaluate=evaluate, epochs=cfg.epochs,
                patience=cfg.patience, max_grad_norm=cfg.optim.max_grad_norm, amp=cfg.amp, resume=resume,
                checkpoint_every=checkpoint_every, procs=procs, desc=f"finetune {variant} seed {seed}",
                progress=progress, live=live, run=run_name("finetune", dataset, f"variant {variant}", f"seed {seed}"),
                hint=f"Lower the learning rate (finetune.optim.lr, now {cfg.optim.lr:g}).")
        if not procs.main:
            return None
        # Trained on precomputed tokens, best_state holds the captioner only: the frozen pair encoder is the model's.
        best_state = {**model.state_dict(), **best_state} if trained is not model else best_state
        save_checkpoint(out_checkpoint, {
            "kind": "finetune", "variant": variant, "seed": seed, "state_dict": best_state, "epoch": state.best_epoch,
            "model": model_cfg.model_dump(mode="json"), "finetune": cfg.model_dump(mode="json"),
        })
        summary = {"variant": variant, "seed": seed, "selected_on": cfg.select_split,
                   "select_metric": cfg.select_metric, "selected_epoch": state.best_epoch, "history": state.history}
        write_json(out_history, summary)
        resume.clear()
        return summary

