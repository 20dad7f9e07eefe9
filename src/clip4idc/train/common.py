"""What every training stage shares: seeding and freezing (threads, device and checkpoint files: runtime.py)."""
from __future__ import annotations

import random

import numpy as np
import torch


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
