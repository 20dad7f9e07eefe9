"""One training step of each stage at paper scale (ViT-B/32, the paper profile's values), on CPU.

Random weights stand in for OpenAI's (not downloadable here); what is checked is that the
paper-profile model trains: the loss is finite, the trainable parameters move at their learning
rates, the frozen ones do not.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from clip4idc import params as params_mod
from clip4idc.text import CaptionTokenizer
from clip4idc.train.adapt import adapt_loss, adapt_model, adapt_optimizer
from clip4idc.train.finetune import finetune_loss, finetune_model, finetune_optimizer
from clip4idc.train.loop import Processes

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper():
    return params_mod.load(REPO / "params.yaml", "paper", "clevr_change")


def _pairs(n: int, size: int) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"before": torch.randn(n, 3, size, size, generator=g), "after": torch.randn(n, 3, size, size, generator=g)}


def _step(model, loss, opt, max_grad_norm):
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    opt.step()
    return {n: not torch.equal(before[n], p.detach()) for n, p in model.named_parameters()}


def test_one_adaptation_step_at_paper_scale(paper):
    torch.manual_seed(0)
    assert paper.model.arch == "ViT-B-32-quickgelu" and paper.prepare.image_size == 224
    model = adapt_model(paper.model, paper.adapt, None)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(paper.adapt.freeze) for n in frozen)
    # The authors' warmup gives step 0 a learning rate of 0: take the optimiser one step in.
    opt = adapt_optimizer(model, paper.adapt, t_total=20)
    for group in opt.param_groups:
        for p in group["params"]:
            opt.state[p].update(step=5, next_m=torch.zeros_like(p), next_v=torch.zeros_like(p))
    batch = {**_pairs(2, 224), "text": ["the small red cube has moved", "the large ball changed its color"]}
    loss = adapt_loss(model, batch, CaptionTokenizer(paper.model.arch, paper.model.max_tokens), Processes())
    assert math.isfinite(loss.item()) and loss.item() > 0
    moved = _step(model, loss, opt, paper.adapt.optim.max_grad_norm)

    assert not any(moved[n] for n in frozen)
    new = ["pair_encoder.before_embedding", "pair_encoder.after_embedding",
           "pair_encoder.joint_positional_embedding", "pair_encoder.ln_mid.weight"]
    assert all(moved[n] for n in new)
    assert moved["clip.visual.transformer.resblocks.11.mlp.c_fc.weight"]
    assert moved["clip.transformer.resblocks.0.attn.in_proj_weight"]


def test_one_finetuning_step_at_paper_scale(paper):
    torch.manual_seed(0)
    model = finetune_model("no-adapt", paper.model, paper.finetune, None)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(paper.finetune.freeze) for n in frozen)
    opt = finetune_optimizer(model, paper.finetune, t_total=20)
    for group in opt.param_groups:
        for p in group["params"]:
            opt.state[p].update(step=5, next_m=torch.zeros_like(p), next_v=torch.zeros_like(p))
    batch = {**_pairs(2, 224), "text": ["the small red cube has moved", "no change was made"],
             "role": torch.tensor([0, 1])}
    loss = finetune_loss(model, batch, CaptionTokenizer(paper.model.arch, paper.model.max_tokens), Processes())
    # Two summed per-role means of a 49,408-way cross-entropy from random weights: about 2 ln 49408.
    assert 15 < loss.item() < 30
    moved = _step(model, loss, opt, paper.finetune.optim.max_grad_norm)
    assert not any(moved[n] for n in frozen)
    assert all(moved[n] for n in moved if n not in frozen), [n for n, m in moved.items() if not m and n not in frozen]
