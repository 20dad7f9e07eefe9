"""What every training stage shares: seeding, freezing and the divergence check (threads, device and checkpoint
files: runtime.py)."""
from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch

from ..errors import TrainingDivergedError


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def freeze(model: torch.nn.Module, prefixes: tuple[str, ...]) -> list[str]:
    """Freeze parameters whose name starts with one of `prefixes`; every prefix must match something."""
    frozen, used = [], set()
    for name, p in model.named_parameters():
        for prefix in prefixes:
            if name.startswith(prefix):
                p.requires_grad_(False)
                frozen.append(name)
                used.add(prefix)
    unused = [p for p in prefixes if p not in used]
    if unused:
        raise ValueError(f"freeze prefixes match no parameter: {unused}")
    return frozen


def clip_gradients(model: torch.nn.Module, max_norm: float) -> torch.Tensor:
    """Clip the global gradient norm to `max_norm` (<= 0: no clipping, as BertAdam reads its own per-tensor
    `max_grad_norm`; torch's clip_grad_norm_ would scale every gradient by 0 there and nothing would learn);
    → the total norm before clipping, which `check_finite` reads either way."""
    params = [p for p in model.parameters() if p.grad is not None]
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    return torch.nn.utils.get_total_norm([p.grad for p in params])


def run_name(stage: str, dataset: str | None, *what: str) -> str:
    """How messages name a training run: `finetune (dataset clevr_synth, variant adapt, seed 2021)`."""
    return f"{stage} ({', '.join(([f'dataset {dataset}'] if dataset else []) + list(what))})"


def check_finite(loss: float, grad_norm: float, *, run: str, epoch: int, step: int, steps: int, hint: str,
                 kept: Path | None = None) -> None:
    """Raise TrainingDivergedError unless the step's `loss` and total gradient norm are finite.

    Called after backward and before the optimiser step: a NaN or inf that reaches an update makes every weight
    NaN, and every later step too, yet the run would finish, select an epoch and write a checkpoint that decode
    and evaluate take like any other. `epoch` and `step` count from 1; `kept`: a resume checkpoint the message
    says is kept, where it exists. Under DDP both values must be the same on every process (the loss averaged
    over processes, the norm of the averaged gradients) so that all processes stop at the same step.
    """
    if math.isfinite(loss) and math.isfinite(grad_norm):
        return
    kept_note = f"; {kept} (the last resume checkpoint) is kept" if kept is not None and kept.is_file() else ""
    raise TrainingDivergedError(
        f"{run}: training diverged at epoch {epoch}, step {step} of {steps} (loss {loss:.4g}, gradient norm "
        f"{grad_norm:.4g}); stopped before that update, no checkpoint or log written{kept_note}. {hint}")
