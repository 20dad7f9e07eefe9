"""The authors' optimiser: BertAdam from UniVL/CLIP4Clip, and its parameter groups.

It differs from torch's AdamW on purpose, in three places (see DEVIATIONS.md for what we keep):
1. no bias correction of the moment estimates;
2. every tensor's gradient is clipped to `max_grad_norm` on its own before the update;
3. weight decay is added to the Adam update (decoupled, scaled by the scheduled lr),
   and the lr schedule is applied inside the optimiser from its step count.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import nn

from ..models.captioner import Captioner
from ..params import OptimParams


def warmup_cosine(x: float, warmup: float) -> float:
    # As in the authors' code: cosine over *total* progress x, not over the post-warmup part.
    return x / warmup if x < warmup else 0.5 * (1.0 + math.cos(math.pi * x))


def warmup_linear(x: float, warmup: float) -> float:
    return x / warmup if x < warmup else max((x - 1.0) / (warmup - 1.0), 0.0)


def warmup_constant(x: float, warmup: float) -> float:
    return x / warmup if x < warmup else 1.0


SCHEDULES: dict[str, Callable[[float, float], float]] = {
    "warmup_cosine": warmup_cosine,
    "warmup_linear": warmup_linear,
    "warmup_constant": warmup_constant,
}


class BertAdam(torch.optim.Optimizer):
    def __init__(self, params: Iterable, *, lr: float, t_total: int, warmup: float, schedule: str,
                 betas: tuple[float, float], eps: float, weight_decay: float, max_grad_norm: float):
        if t_total < 1:
            raise ValueError(f"t_total must be >= 1, got {t_total}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; known: {sorted(SCHEDULES)}")
        defaults = dict(lr=lr, t_total=t_total, warmup=warmup, schedule=schedule, b1=betas[0],
                        b2=betas[1], e=eps, weight_decay=weight_decay, max_grad_norm=max_grad_norm)
        super().__init__(params, defaults)

    def scheduled_lr(self, group: dict, step: int) -> float:
        progress = step / group["t_total"]
        return group["lr"] * SCHEDULES[group["schedule"]](progress, group["warmup"])

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter with a gradient, each tensor's arithmetic that of a per-tensor loop
        (`clip_grad_norm_(p)`, then the moments, then the update) but issued as `torch._foreach_*` calls over
        a group's tensors: a tiny model's step has ~140 small tensors, and a Python loop over them cost as
        much as the forward pass (bench/README.md)."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["next_m"] = torch.zeros_like(p)
                    state["next_v"] = torch.zeros_like(p)
            grads = [p.grad for p in params]
            if group["max_grad_norm"] > 0:
                # Each tensor on its own, as clip_grad_norm_(p, max_norm): coef = max_norm / (norm + 1e-6),
                # at most 1, in the gradient's dtype; every gradient multiplied by it.
                norms = torch.stack(torch._foreach_norm(grads))
                coefs = (group["max_grad_norm"] / (norms + 1e-6)).clamp(max=1.0)
                torch._foreach_mul_(grads, coefs.tolist())
            ms = [self.state[p]["next_m"] for p in params]
            vs = [self.state[p]["next_v"] for p in params]
            torch._foreach_mul_(ms, group["b1"])
            torch._foreach_add_(ms, grads, alpha=1 - group["b1"])
            torch._foreach_mul_(vs, group["b2"])
            torch._foreach_addcmul_(vs, grads, grads, value=1 - group["b2"])
            denominators = torch._foreach_sqrt(vs)
            torch._foreach_add_(denominators, group["e"])
            updates = torch._foreach_div(ms, denominators)  # no bias correction, as the authors
            if group["weight_decay"] > 0:
                torch._foreach_add_(updates, torch._foreach_mul(params, group["weight_decay"]))
            # The schedule is read from each tensor's own step count (equal within a group unless a tensor
            # had no gradient at some step).
            by_step: dict[int, list[int]] = {}
            for i, p in enumerate(params):
                by_step.setdefault(self.state[p]["step"], []).append(i)
                self.state[p]["step"] += 1
            for step, index in by_step.items():
                torch._foreach_add_([params[i] for i in index], [updates[i] for i in index],
                                    alpha=-self.scheduled_lr(group, step))
        return loss


# BERT's exclusion rule as the authors apply it: a *substring* match on the name, so every
# bias and any module literally named "LayerNorm" skip weight decay; open_clip's ln_* weights
# do not match and are decayed, exactly as in the authors' runs.
NO_DECAY = ("bias", "LayerNorm.bias", "LayerNorm.weight")


def captioner_layernorms(model: nn.Module) -> set[str]:
    """Parameter names of the captioner's LayerNorms. The authors' decoder is BERT code whose
    LayerNorms are all named `LayerNorm`, so the substring rule above spares their weights; ours
    are named by role (`ln_attn`, `head.ln`, ...), so they are listed by module instead."""
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, Captioner):
            names |= {f"{prefix}.{sub}.{p}".lstrip(".") for sub, ln in module.named_modules()
                      if isinstance(ln, nn.LayerNorm) for p, _ in ln.named_parameters()}
    return names


def param_groups(model: nn.Module, *, lr: float, weight_decay: float,
                 lr_scale: Callable[[str], float]) -> list[dict]:
    """Groups by (lr multiplier, decay or not); `lr_scale(name)` is e.g. coef_lr for CLIP-origin params.

    No weight decay, as in the authors' runs: biases, and the LayerNorms of the BERT-style captioner;
    CLIP's own LayerNorms (`ln_pre`, `ln_1`, ... `ln_mid`) are decayed."""
    spared = captioner_layernorms(model)
    groups: dict[tuple[float, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not any(nd in name for nd in NO_DECAY) and name not in spared
        groups.setdefault((lr_scale(name), decay), []).append(p)
    return [{"params": params, "lr": lr * scale, "weight_decay": weight_decay if decay else 0.0}
            for (scale, decay), params in sorted(groups.items())]


def build_optimizer(model: nn.Module, cfg: OptimParams, *, t_total: int,
                    lr_scale: Callable[[str], float]) -> BertAdam:
    groups = param_groups(model, lr=cfg.lr, weight_decay=cfg.weight_decay, lr_scale=lr_scale)
    return BertAdam(groups, lr=cfg.lr, t_total=t_total, warmup=cfg.warmup, schedule=cfg.schedule,
                    betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm)
