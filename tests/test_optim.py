"""BertAdam differs from torch's AdamW exactly where the authors' optimiser does."""
from __future__ import annotations

import math

import pytest
import torch

from clip4idc.train.optim import BertAdam, param_groups, warmup_cosine, warmup_linear


def _one_param(value=1.0, grad=0.5):
    p = torch.nn.Parameter(torch.tensor([value]))
    p.grad = torch.tensor([grad])
    return p


def _bert(p, **kw):
    args = dict(lr=0.1, t_total=10, warmup=0.0, schedule="warmup_constant", betas=(0.9, 0.999),
                eps=1e-6, weight_decay=0.0, max_grad_norm=0.0)
    args.update(kw)
    return BertAdam([p], **args)


def test_first_step_has_no_bias_correction():
    p = _one_param(grad=0.5)
    _bert(p).step()
    # m = 0.1*g, v = 0.001*g^2 -> update = 0.1g / (sqrt(0.001)|g| + eps) ~ 3.16, not AdamW's 1.0
    expected = 1.0 - 0.1 * (0.1 * 0.5 / (math.sqrt(0.001) * 0.5 + 1e-6))
    assert p.item() == pytest.approx(expected, rel=1e-5)
    q = torch.nn.Parameter(torch.tensor([1.0]))
    q.grad = torch.tensor([0.5])
    torch.optim.AdamW([q], lr=0.1, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0).step()
    assert q.item() == pytest.approx(0.9, rel=1e-5)  # bias-corrected: exactly one lr step
    assert p.item() != pytest.approx(q.item(), rel=1e-3)


def test_per_tensor_gradient_clipping():
    big, small = _one_param(grad=100.0), _one_param(grad=100.0)
    _bert(big, max_grad_norm=1.0).step()
    assert big.grad.item() == pytest.approx(1.0, rel=1e-4)  # clipped in place to norm 1
    _bert(small, max_grad_norm=0.0).step()
    assert small.grad.item() == 100.0


def test_decoupled_weight_decay_scaled_by_lr():
    p = _one_param(value=2.0, grad=0.0)
    _bert(p, weight_decay=0.5).step()
    # zero gradient: the update is only wd * p, times the lr
    assert p.item() == pytest.approx(2.0 - 0.1 * 0.5 * 2.0, rel=1e-6)


def test_schedules_follow_the_authors_formulas():
    assert warmup_cosine(0.05, 0.1) == pytest.approx(0.5)
    assert warmup_cosine(0.5, 0.1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))  # total progress
    assert warmup_linear(0.55, 0.1) == pytest.approx(0.5)
    assert warmup_linear(1.0, 0.1) == 0.0


def test_scheduled_lr_uses_the_step_count():
    p = _one_param(grad=0.0)
    opt = _bert(p, schedule="warmup_linear", warmup=0.5, t_total=4)
    group = opt.param_groups[0]
    assert [opt.scheduled_lr(group, s) for s in range(4)] == pytest.approx([0.0, 0.05, 0.1, 0.05])


def test_param_groups_coef_lr_and_bert_no_decay_rule():
    model = torch.nn.Module()
    model.clip = torch.nn.Linear(2, 2)
    model.new = torch.nn.Linear(2, 2)
    model.ln = torch.nn.LayerNorm(2)  # open_clip style name: decayed, as in the authors' runs
    groups = param_groups(model, lr=1e-4, weight_decay=0.2, lr_scale=lambda n: 1e-3 if n.startswith("clip.") else 1.0)
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert by_id[id(model.clip.weight)]["lr"] == pytest.approx(1e-7)
    assert by_id[id(model.new.weight)]["lr"] == pytest.approx(1e-4)
    assert by_id[id(model.clip.bias)]["weight_decay"] == 0.0
    assert by_id[id(model.new.weight)]["weight_decay"] == 0.2
    assert by_id[id(model.ln.weight)]["weight_decay"] == 0.2
    assert by_id[id(model.ln.bias)]["weight_decay"] == 0.0


def test_finetune_lr_groups_follow_the_authors_unless_tied_is_set_apart():
    import copy as _copy
    from pathlib import Path

    import yaml

    from clip4idc import params as params_mod
    from clip4idc.train.finetune import lr_scale

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["finetune"]["optim"]["coef_lr"] = 1.0e-3
    raw["finetune"]["coef_lr_tied"] = None
    authors = params_mod.resolve(_copy.deepcopy(raw)).finetune
    for name in ("pair_encoder.visual.conv1.weight", "pair_encoder.before_embedding",
                 "captioner.token_embedding.weight", "captioner.positional_embedding"):
        assert lr_scale(name, authors) == 1.0e-3, name  # everything under CLIP, as the authors
    assert lr_scale("captioner.head.dense.weight", authors) == 1.0
    raw["finetune"]["coef_lr_tied"] = 0.5
    apart = params_mod.resolve(raw).finetune
    assert lr_scale("captioner.token_embedding.weight", apart) == 0.5
    assert lr_scale("pair_encoder.visual.conv1.weight", apart) == 1.0e-3


def _trajectories(betas, max_grad_norm, weight_decay=0.1, steps=6):
    """BertAdam and torch's AdamW from the same start on the same gradients → final params."""
    g = torch.Generator().manual_seed(0)
    start = torch.randn(5, generator=g)
    grads = [3 * torch.randn(5, generator=g) for _ in range(steps)]
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    bert = _bert(ours, betas=betas, weight_decay=weight_decay, max_grad_norm=max_grad_norm, t_total=100)
    adamw = torch.optim.AdamW([theirs], lr=0.1, betas=betas, eps=1e-6, weight_decay=weight_decay)
    for grad in grads:
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        bert.step()
        adamw.step()
    return ours.detach(), theirs.detach()


def test_equals_adamw_where_no_difference_is_intended():
    # Without moment averaging (betas 0) bias correction is 1 and with no clipping BertAdam's
    # decoupled weight decay (p -= lr * (update + wd * p)) is AdamW's (p *= 1 - lr * wd; p -= lr * update).
    ours, theirs = _trajectories(betas=(0.0, 0.0), max_grad_norm=0.0)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)


def test_differs_from_adamw_by_bias_correction_and_per_tensor_clipping():
    ours, theirs = _trajectories(betas=(0.9, 0.98), max_grad_norm=0.0)
    assert (ours - theirs).abs().max() > 1e-2  # no bias correction
    clipped, _ = _trajectories(betas=(0.9, 0.98), max_grad_norm=1.0)
    assert (clipped - ours).abs().max() > 1e-3  # gradients of norm ~7 clipped to 1 before the moments


@torch.no_grad()
def _reference_step(opt: BertAdam) -> None:
    """BertAdam's update written tensor by tensor (the authors' loop): what the batched step must equal."""
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is None:
                continue
            state = opt.state[p]
            if not state:
                state.update(step=0, next_m=torch.zeros_like(p), next_v=torch.zeros_like(p))
            if group["max_grad_norm"] > 0:
                torch.nn.utils.clip_grad_norm_(p, group["max_grad_norm"])
            m, v = state["next_m"], state["next_v"]
            m.mul_(group["b1"]).add_(p.grad, alpha=1 - group["b1"])
            v.mul_(group["b2"]).addcmul_(p.grad, p.grad, value=1 - group["b2"])
            update = m / (v.sqrt() + group["e"])
            if group["weight_decay"] > 0:
                update = update + group["weight_decay"] * p
            p.add_(update, alpha=-opt.scheduled_lr(group, state["step"]))
            state["step"] += 1


def test_batched_step_equals_the_per_tensor_loop_bit_for_bit():
    g = torch.Generator().manual_seed(1)
    shapes = [(7, 3), (3,), (11,), (2, 4, 5)]

    def model():
        torch.manual_seed(0)
        return [torch.nn.Parameter(torch.randn(s)) for s in shapes]

    def optimizer(ps):
        groups = [{"params": ps[:2], "lr": 0.1, "weight_decay": 0.2}, {"params": ps[2:], "lr": 0.01, "weight_decay": 0.0}]
        return BertAdam(groups, lr=0.1, t_total=8, warmup=0.25, schedule="warmup_linear", betas=(0.9, 0.98),
                        eps=1e-6, weight_decay=0.2, max_grad_norm=1.0)

    ours, ref = model(), model()
    opt_ours, opt_ref = optimizer(ours), optimizer(ref)
    for step in range(6):
        grads = [(0.1 + 5 * (i % 2)) * torch.randn(s, generator=g) for i, s in enumerate(shapes)]
        for i, (a, b) in enumerate(zip(ours, ref)):
            # tensor 3 has no gradient at step 2: its own step count then lags its group's
            a.grad, b.grad = (None, None) if (i == 3 and step == 2) else (grads[i].clone(), grads[i].clone())
        opt_ours.step()
        _reference_step(opt_ref)
        for a, b in zip(ours, ref):
            assert torch.equal(a, b)
            assert a.grad is None or torch.equal(a.grad, b.grad)  # clipped in place, as clip_grad_norm_
    assert [opt_ours.state[p]["step"] for p in ours] == [6, 6, 6, 5]
    for a, b in zip(ours, ref):
        assert torch.equal(opt_ours.state[a]["next_v"], opt_ref.state[b]["next_v"])
