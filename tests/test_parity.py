"""Paper parity: under the paper profile, training does what the authors' code does.

Each expected value below is read from the authors' code (github.com/sushizixin/CLIP4IDC), named where
it is used. Caption length and post-processing are tested in test_text_decode_losses.py, Spot-the-Diff's
empty references in test_readers_real_formats.py.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from clip4idc import params as params_mod
from clip4idc.train.adapt import adapt_model, clamp_logit_scale
from clip4idc.runtime import save_checkpoint
from clip4idc.train.finetune import finetune_model, finetune_optimizer
from clip4idc.train.loop import Evaluation, GlobalBatches, LoopState, Processes, Resume, fingerprint, fit, select

REPO = Path(__file__).resolve().parents[1]
TINY = {"arch": "clip4idc-tiny", "intra_layers": 3}  # same parameter names as ViT-B/32, a fraction of the cost


def paper(dataset: str) -> params_mod.Params:
    return params_mod.load(REPO / "params.yaml", "paper", dataset)


def tiny(model: params_mod.ModelParams) -> params_mod.ModelParams:
    return model.model_copy(update={**TINY, "captioner": model.captioner.model_copy(update={"heads": 4, "ffn": 64})})


# main_task_caption.py, "freeze testing": with --freeze_layer_num 0 every CLIP parameter is frozen except
# ln_final, text_projection, logit_scale, visual.ln_post, visual.proj, the pair parameters and the
# transformer blocks; for --datatype spot token_embedding.weight is skipped (stays trainable). In our
# CaptionModel the visual tower is `pair_encoder.visual` and CLIP's token and text positional embeddings
# are the captioner's tied ones; the text transformer is not part of the caption model.
AUTHORS_FROZEN_CLEVR = {
    "pair_encoder.visual.class_embedding",       # clip.visual.class_embedding
    "pair_encoder.visual.positional_embedding",  # clip.visual.positional_embedding
    "pair_encoder.visual.conv1.weight",          # clip.visual.conv1.weight
    "pair_encoder.visual.ln_pre.weight",         # clip.visual.ln_pre.*
    "pair_encoder.visual.ln_pre.bias",
    "captioner.token_embedding.weight",          # clip.token_embedding.weight (word embedding, LM-head weight)
    "captioner.positional_embedding",            # clip.positional_embedding (the decoder's positions)
}
AUTHORS_FROZEN_SPOT = AUTHORS_FROZEN_CLEVR - {"captioner.token_embedding.weight"}


@pytest.mark.parametrize("dataset, expected", [("clevr_change", AUTHORS_FROZEN_CLEVR),
                                               ("spot_the_diff", AUTHORS_FROZEN_SPOT)])
@pytest.mark.parametrize("variant", ["no-adapt", "clip-ft"])
def test_finetuning_freezes_what_the_authors_freeze(dataset, expected, variant):
    p = paper(dataset)
    model = finetune_model(variant, tiny(p.model), p.finetune, None)
    frozen = {n for n, q in model.named_parameters() if not q.requires_grad}
    assert frozen == expected
    trained = {id(q) for g in finetune_optimizer(model, p.finetune, t_total=10).param_groups for q in g["params"]}
    assert all(id(q) not in trained for n, q in model.named_parameters() if n in frozen)


def test_the_adapt_variant_freezes_the_same(tmp_path):
    p = paper("clevr_change")
    m = tiny(p.model)
    save_checkpoint(tmp_path / "adapt.pt", {"kind": "adapt", "state_dict": adapt_model(m, p.adapt, None).state_dict()})
    model = finetune_model("adapt", m, p.finetune, None, tmp_path / "adapt.pt")
    assert {n for n, q in model.named_parameters() if not q.requires_grad} == AUTHORS_FROZEN_CLEVR


def test_finetuning_weight_decay_groups_are_the_authors():
    """main_task_caption.py prep_optimizer: no decay for names containing bias, LayerNorm.bias or
    LayerNorm.weight. Every LayerNorm of their BERT-style decoder is named `LayerNorm`, so none of the
    captioner's LayerNorm weights is decayed; CLIP's are named ln_* and are decayed (0.01)."""
    p = paper("clevr_change")
    model = finetune_model("no-adapt", tiny(p.model), p.finetune, None)
    decay = {id(q): g["weight_decay"] for g in finetune_optimizer(model, p.finetune, 10).param_groups
             for q in g["params"]}
    names = {n: decay[id(q)] for n, q in model.named_parameters() if q.requires_grad}
    captioner_ln = {n for n, m in model.captioner.named_modules() if isinstance(m, nn.LayerNorm)}
    assert len(captioner_ln) == 1 + 2 * 3 + 3 * 3 + 1  # embeddings, encoder, decoder, LM head
    for ln in captioner_ln:
        assert names[f"captioner.{ln}.weight"] == 0.0 and names[f"captioner.{ln}.bias"] == 0.0
    for clip_ln in ("pair_encoder.visual.transformer.resblocks.0.ln_1.weight", "pair_encoder.ln_mid.weight",
                    "pair_encoder.visual.ln_post.weight"):
        assert names[clip_ln] == 0.01, clip_ln
    assert names["pair_encoder.ln_mid.bias"] == 0.0
    assert names["captioner.decoder.0.ffn.0.weight"] == 0.01 and names["captioner.head.dense.weight"] == 0.01
    assert names["captioner.head.bias"] == 0.0


def test_logit_scale_is_clamped_at_exactly_ln_100():
    """main_task_retrieval.py: torch.clamp_(logit_scale.data, max=np.log(100)) after every step."""
    p = paper("clevr_change")
    assert p.adapt.max_logit_scale == math.log(100)
    model = adapt_model(tiny(p.model), p.adapt, None)
    with torch.no_grad():
        model.clip.logit_scale.fill_(5.0)
    clamp_logit_scale(model, p.adapt)
    assert model.clip.logit_scale.item() == torch.tensor(math.log(100), dtype=torch.float32).item()


def test_selection_keeps_the_later_epoch_on_a_tie_and_stops_after_more_than_patience():
    """main_task_caption.py: `early_stop += 1; if best_score <= CIDEr: best, early_stop = CIDEr, 0;
    if early_stop > 10: break`. On this score sequence with patience 2 their loop selects epoch 5 and
    runs 8 epochs."""
    scores = [0.5, 0.7, 0.7, 0.6, 0.7, 0.1, 0.1, 0.1, 0.9, 0.9]
    state = LoopState()
    for score in scores:
        if state.stopped:
            break
        select(state, score, patience=2)
        state.epoch += 1
    assert (state.best_epoch, state.epoch) == (5, 8)
    state = LoopState()  # no patience (adaptation): every epoch runs, ties still go to the later one
    for score in scores:
        select(state, score, patience=None)
        state.epoch += 1
    assert (state.best_epoch, state.stopped) == (10, False)


class _Items(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return {"x": torch.full((2,), float(i))}


def test_the_training_loop_selects_and_stops_by_that_rule(tmp_path):
    torch.manual_seed(0)
    procs = Processes()
    model = nn.Linear(2, 1)
    scores = iter([0.5, 0.7, 0.7, 0.6, 0.7, 0.1, 0.1, 0.1, 0.9, 0.9])
    weights = []

    def evaluate(m):
        weights.append(m.weight.detach().clone())
        score = next(scores)
        return Evaluation(score=score, record={"score": score}, line="")

    best, state = fit(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), dataset=_Items(),
                      batches=GlobalBatches(4, 2, 0, procs), loss=lambda m, b: m(b["x"]).pow(2).mean(),
                      evaluate=evaluate, epochs=10, patience=2, max_grad_norm=1.0, amp=False,
                      resume=Resume(tmp_path / "m.pt", fingerprint(), procs), checkpoint_every=0, procs=procs,
                      desc="parity", progress=False)
    assert (state.best_epoch, len(state.history)) == (5, 8)
    assert torch.equal(best["weight"], weights[4])  # the weights of epoch 5, not of the tied epoch 3
